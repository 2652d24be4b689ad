"""The worker's gRPC face: a thin WorkerService servicer over worker/worker.Worker, the link that
registers the worker with its master and heartbeats, and create_server."""

import logging
import os
import secrets
import threading
import time

import grpc

from tensorgrid import security, step_channel
from tensorgrid.framework import errors
from tensorgrid.proto import convert, master_pb2, master_pb2_grpc, worker_pb2
from tensorgrid.runtime import tracing
from tensorgrid.worker import transport
from tensorgrid.worker.worker import Worker

log = logging.getLogger("tensorgrid.worker")
# The worker's key, when the operator chooses it (to call its control methods by hand, say); random otherwise.
KEY_ENV = "TENSORGRID_WORKER_KEY"


def tensor_proto(value):
    """A TensorProto of a kernel's output (a NumPy or CuPy array, or a NumPy scalar)."""
    if hasattr(value, "get") and not hasattr(value, "__array_interface__"):
        value = value.get()
    return convert.ndarray_to_tensor_proto(value)


class WorkerServicer:
    """WorkerService: parses each request, calls the Worker, builds the response."""

    def __init__(self, worker):
        self.worker = worker

    def GetStatus(self, request):
        w = self.worker
        status = w.status()
        response = worker_pb2.GetStatusResponse(
            job=w.job or "", task=w.task if w.task is not None else -1, incarnation=w.incarnation,
            active_steps=status["active_steps"], rendezvous_entries=status["rendezvous_entries"],
            registered_graphs=status["registered_graphs"], resources=status["resources"],
            finished_steps_remembered=status["finished_steps_remembered"],
            data_address=w.data_address, step_address=w.step_address,
            transport={k: int(v) for k, v in status["transport"].items() if isinstance(v, (int, float))})
        for name, device_type, index, memory in w.device_attributes():
            response.device.add(name=name, device_type=device_type, index=index, memory_limit=memory)
        return response

    def RegisterGraph(self, request):
        partitions, graph_defs = {}, {}
        for part in request.partition:
            if part.device in partitions:
                raise errors.InvalidArgumentError(None, None, f"RegisterGraph: two partitions for {part.device}")
            partitions[part.device] = security.parse_graph_def(part.graph)
            graph_defs[part.device] = part.graph
        handle = self.worker.register_graph(request.session_handle, partitions, dict(request.device_address),
                                            graph_defs)
        return worker_pb2.RegisterGraphResponse(graph_handle=handle)

    def DeregisterGraph(self, request):
        self.worker.deregister_graph(request.graph_handle)
        return worker_pb2.DeregisterGraphResponse()

    def RunGraph(self, request):
        feeds = {t.name: convert.tensor_proto_to_ndarray(t.tensor) for t in request.send}
        result = self.worker.run_graph(request.graph_handle, request.step_id, feeds, request.trace,
                                       request.timeout_in_ms)
        response = worker_pb2.RunGraphResponse()
        add = response.recv.add
        for name, value in result.fetches.items():
            add(name=name, tensor=tensor_proto(value))
        if result.traces is not None:
            for dev, records in result.traces.items():
                tracing.fill_device_stats(response.step_stats.dev_stats.add(), dev, records)
            response.partition_graph.extend(result.graph_defs.values())
        return response

    def CleanupStep(self, request):
        self.worker.cleanup_step(request.step_id, request.reason)
        return worker_pb2.CleanupStepResponse()

    def SendTensor(self, chunks):
        transport.serve_tensor_stream(chunks, self.worker.deliver)
        return worker_pb2.SendTensorResponse()

    def ResetResources(self, request):
        self.worker.reset(list(request.container) or None)
        return worker_pb2.ResetResourcesResponse()


def create_server(address, worker, token=None, tls=None, master_key=None):
    """A gRPC server serving `worker` on host:port (port 0: any free port), not yet started; (server, port).

    Each running step holds one thread for its RunGraph (and SendTensor
    streams one each): steps are bounded, so CleanupStep and GetStatus always
    find a thread (security.rpc_pool). With `master_key`, only calls that
    carry it reach the control methods (security.Roles).
    """
    server = security.new_server(security.rpc_pool("tg-worker-rpc"), token, master_key=master_key)
    port = security.bind(server, address, tls)
    server.add_generic_rpc_handlers((security.service_handlers(worker_pb2, "WorkerService",
                                                               WorkerServicer(worker), ("RunGraph",)),))
    return server, port


class MasterLink:
    """Registers a worker with its master and heartbeats; registers again when the master forgets it."""

    def __init__(self, worker, master_address, address, data_address, job="worker", task=None, token=None,
                 tls=None, heartbeat_interval=1.0, step_address="", replicas=0, key=None):
        self.worker = worker
        self.replicas = replicas
        self.master_address = master_address
        self.address = address
        self.data_address = data_address
        self.step_address = step_address
        self.job = job
        self.task = task
        self.interval = heartbeat_interval
        # the worker's key goes with every call: it registers the key, and the master checks it on heartbeats
        self._metadata = security.call_metadata(token, key)
        self._channel = security.open_channel(master_address, tls)
        self._stub = master_pb2_grpc.MasterServiceStub(self._channel)
        self._stop = threading.Event()
        self._thread = None

    def _request(self):
        request = master_pb2.RegisterWorkerRequest(address=self.address, data_address=self.data_address,
                                                   job=self.job, incarnation=self.worker.incarnation,
                                                   step_address=self.step_address, replicas=self.replicas)
        if self.task is not None:
            request.task = self.task
        for device_type, index, memory in self.worker.device_specs:
            request.device.add(device_type=device_type, index=index, memory_limit=memory)
        return request

    def register(self, wait_s=10.0):
        """Registers, retrying while the master is unreachable for up to wait_s; raises OpError otherwise."""
        give_up = time.monotonic() + wait_s
        while True:
            try:
                response = self._stub.RegisterWorker(self._request(), timeout=max(1.0, wait_s),
                                                     metadata=self._metadata)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > give_up or self._stop.is_set():
                    raise security.error_from_rpc(
                        e, f"cannot reach the master at {self.master_address}") from None
                self._stop.wait(0.2)
        self.job, self.task = response.job, response.task
        self.worker.set_identity(response.job, response.task)
        log.info("registered with %s as %s", self.master_address, self.worker.task_name)
        return response

    def start(self):
        self._thread = threading.Thread(target=self._beat, name="tg-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(self.interval):
            try:
                known = self._stub.Heartbeat(
                    master_pb2.HeartbeatRequest(job=self.job, task=self.task, incarnation=self.worker.incarnation),
                    timeout=max(1.0, 2 * self.interval), metadata=self._metadata).known
                if not known:
                    # The master restarted (or gave the task away): the graphs it registered here are garbage.
                    log.warning("the master at %s does not know this worker; registering again", self.master_address)
                    self.worker.drop_graphs()
                    self.register(wait_s=0)
            except (grpc.RpcError, errors.OpError) as e:
                log.info("heartbeat to %s failed: %s", self.master_address, e)

    def stop(self):
        """Stops heartbeating and tells the master this worker is leaving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1)
        if self.job is not None:
            try:
                self._stub.Heartbeat(master_pb2.HeartbeatRequest(job=self.job, task=self.task,
                                                                 incarnation=self.worker.incarnation,
                                                                 shutting_down=True),
                                     timeout=1.0, metadata=self._metadata)
            except grpc.RpcError:
                pass
        self._channel.close()


def make_data_plane(worker, host, advertise_host, token=None, tls=None):
    """The worker's started data plane (worker/transport.py) and the data address to advertise.

    With TLS on, tensors that leave the host travel over gRPC with TLS, and
    TENSORGRID_TRANSPORT=tcp is a ValueError.
    """
    plane = transport.DataPlane(host=host, token=token, deliver=worker.deliver, tls=tls)
    port = plane.start().rsplit(":", 1)[1]
    return plane, f"{advertise_host}:{port}"


class WorkerProcess:
    """Everything a `tensorgrid worker` runs: Worker state, gRPC and step channel servers, data plane,
    master link."""

    def __init__(self, master_address, host="127.0.0.1", port=0, advertise=None, job="worker", task=None,
                 devices=(("CPU", 0, 0),), allow_pickle=False, token=None, tls=None, heartbeat_interval=1.0,
                 replicas=0, key=None):
        self.worker = Worker(devices, allow_pickle=allow_pickle)
        # The key this worker gives its master at registration; only calls carrying it reach the control
        # methods, so other holders of the cluster token cannot drive this worker (docs/security.md).
        key = key or os.environ.get(KEY_ENV) or secrets.token_hex(32)
        self.server, self.port = create_server(f"{host}:{port}", self.worker, token, tls, key)
        self.address = advertise or f"{_reachable_host(host)}:{self.port}"
        advertise_host = self.address.rsplit(":", 1)[0]
        try:
            self.plane, self.data_address = make_data_plane(self.worker, host, advertise_host, token, tls)
        except BaseException:
            self.server.stop(None)
            raise
        self.worker.plane = self.plane
        self.worker.data_address = self.data_address
        self.fast_server = None
        step_address = ""
        if step_channel.enabled(tls):
            self.fast_server = step_channel.StepChannelServer(worker_pb2, "WorkerService", WorkerServicer(self.worker),
                                                              host, 0, token, master_key=key)
            step_address = self.worker.step_address = f"{advertise_host}:{self.fast_server.port}"
        self.link = MasterLink(self.worker, master_address, self.address, self.data_address, job, task, token, tls,
                               heartbeat_interval, step_address, replicas, key)

    def start(self, wait_s=10.0):
        self.server.start()
        if self.fast_server is not None:
            self.fast_server.start()
        try:
            self.link.register(wait_s)
        except BaseException:
            self._close_servers(0)
            raise
        self.link.start()
        return self

    def _close_servers(self, grace):
        if self.fast_server is not None:
            self.fast_server.close()
        self.server.stop(grace).wait(grace + 1)
        self.plane.close()

    def stop(self, grace=1.0):
        self.link.stop()
        self.worker.abort_all(f"{self.worker.task_name} is stopping")
        self._close_servers(grace)
        self.worker.close()


def _reachable_host(host):
    """The host other processes reach a server bound to `host` at."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        import socket
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host
