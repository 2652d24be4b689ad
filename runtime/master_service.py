"""The master's gRPC face: a thin MasterService servicer over runtime/master.Master, the gRPC client
the master reaches workers with, and create_server.

The servicer only parses requests, calls the state machine and builds
responses; errors become status codes in tensorgrid.security. The gRPC
server is a security.AsyncServer: RunStep is a coroutine on its event loop
that holds no thread while the workers run the step (Master.start_step and
end_step, driven by the RunGraph calls' callbacks and a deadline timer on the
loop); every other method runs on the server's thread pool, as before.
"""

import asyncio
import concurrent.futures
import logging
import threading

import grpc

from tensorgrid import security, step_channel
from tensorgrid.framework import errors
from tensorgrid.proto import master_pb2, worker_pb2
from tensorgrid.runtime import master as master_lib

log = logging.getLogger("tensorgrid.master")

# Slack on a RunGraph call's own gRPC deadline: the master enforces the step's deadline itself.
RPC_DEADLINE_SLACK_S = 5.0
CONTROL_TIMEOUT_S = 60.0
# Threads that start steps sent over gRPC (planning, registering graphs: work that may block, kept off the
# event loop and off the pool that serves heartbeats); a step holds one only until its RunGraphs are sent.
START_THREADS = 16


class _CallFuture:
    """A gRPC call future that speaks the master's terms: OpErrors and TimeoutError, converted results."""

    __slots__ = ("_call", "_convert")

    def __init__(self, call, convert_result):
        self._call = call
        self._convert = convert_result

    def result(self, timeout=None):
        try:
            return self._convert(self._call.result(timeout=timeout))
        except grpc.FutureTimeoutError:
            raise TimeoutError() from None
        except grpc.FutureCancelledError:
            raise errors.CancelledError(None, None, "the call was cancelled") from None
        except grpc.RpcError as e:
            raise security.error_from_rpc(e) from None

    def exception(self, timeout=None):
        if self._call.cancelled():
            return errors.CancelledError(None, None, "the call was cancelled")
        exc = self._call.exception(timeout=timeout)
        return None if exc is None else security.error_from_rpc(exc)

    def add_done_callback(self, fn):
        self._call.add_done_callback(lambda _: fn(self))

    def cancel(self):
        return self._call.cancel()

    def cancelled(self):
        return self._call.cancelled()

    def done(self):
        return self._call.done()


def _run_graph_result(response):
    return master_lib.RunGraphResult(
        [(t.name, t.tensor) for t in response.recv],
        list(response.step_stats.dev_stats) if response.HasField("step_stats") else [],
        list(response.partition_graph))


def _status_dict(response):
    return {"job": response.job, "task": response.task, "data_address": response.data_address,
            "step_address": response.step_address,
            "devices": [(d.name, d.device_type, d.index, d.memory_limit) for d in response.device],
            "incarnation": response.incarnation, "active_steps": response.active_steps,
            "rendezvous_entries": response.rendezvous_entries, "registered_graphs": response.registered_graphs,
            "resources": response.resources, "finished_steps_remembered": response.finished_steps_remembered,
            "transport": dict(response.transport)}


def _ignore(_):
    return None


def _parse_run_graph(data):
    return _run_graph_result(worker_pb2.RunGraphResponse.FromString(data))


class GrpcWorkerClient:
    """The master's persistent channels to one worker: gRPC, and the step channel for RunGraph when the
    worker offers one."""

    def __init__(self, address, step_address="", token=None, tls=None, key=None):
        self.address = address
        self._channel = security.open_channel(address, tls)
        self._stub = security.ServiceClient(self._channel, worker_pb2, "WorkerService")
        # `key`: the one the worker registered with, which its control methods require (security.Roles)
        self._metadata = security.call_metadata(token, key)
        self._fast = None
        if step_address and step_channel.enabled(tls):
            self._fast = step_channel.StepChannelClient(step_address, worker_pb2, "WorkerService", token, key)
        # gRPC cancels a call whose future is garbage collected: calls nobody waits for live here until done.
        self._unawaited = set()
        self._unawaited_lock = threading.Lock()

    def _keep(self, call):
        with self._unawaited_lock:
            self._unawaited.add(call)
        call.add_done_callback(self._forget)
        return _CallFuture(call, _ignore)

    def _forget(self, call):
        with self._unawaited_lock:
            self._unawaited.discard(call)

    def register_graph(self, session, graph_defs, device_address):
        request = worker_pb2.RegisterGraphRequest(session_handle=session, device_address=device_address)
        for dev, gd in graph_defs.items():
            request.partition.add(device=dev, graph=gd)
        return _CallFuture(self._control("RegisterGraph", request), lambda r: r.graph_handle)

    def run_graph(self, handle, step_id, feeds, trace, timeout_ms):
        request = worker_pb2.RunGraphRequest(graph_handle=handle, step_id=step_id, trace=trace,
                                             timeout_in_ms=timeout_ms)
        if feeds:
            add = request.send.add
            for name, tensor in feeds:
                add(name=name, tensor=tensor)
        if self._fast is not None:
            # read by the master's step thread itself (Master._wait), not handed over by the poller thread
            call = self._fast.call_async("RunGraph", request, _parse_run_graph, driven=True)
            # no connection opened (the worker's step channel is full of handshakes, say): nothing was sent,
            # and gRPC, the protocol of record, decides whether the worker is there
            if not (call.done() and getattr(call.exception(), "not_sent", False)):
                return call
            log.info("RunGraph on %s goes by gRPC: %s", self.address, call.exception().message)
        timeout = timeout_ms / 1000.0 + RPC_DEADLINE_SLACK_S if timeout_ms else None
        return _CallFuture(self._control("RunGraph", request, timeout), _run_graph_result)

    def _control(self, method, request, timeout=CONTROL_TIMEOUT_S):
        return self._stub.future(method, request, timeout=timeout, metadata=self._metadata)

    def cleanup_step(self, step_id, reason):
        return self._keep(self._control("CleanupStep", worker_pb2.CleanupStepRequest(step_id=step_id, reason=reason)))

    def deregister_graph(self, handle):
        return self._keep(self._control("DeregisterGraph", worker_pb2.DeregisterGraphRequest(graph_handle=handle)))

    def reset(self, containers=None):
        request = worker_pb2.ResetResourcesRequest(container=containers or [])
        return _CallFuture(self._control("ResetResources", request), _ignore)

    def get_status(self):
        return _CallFuture(self._control("GetStatus", worker_pb2.GetStatusRequest(), timeout=5.0), _status_dict)

    def close(self):
        self._channel.close()
        if self._fast is not None:
            self._fast.close()


class MasterServicer:
    """MasterService: parses each request, calls the Master, builds the response."""

    def __init__(self, master, address="", step_port=0):
        self.master = master
        self.address = address
        self.step_port = step_port
        self._starts = None             # START_THREADS threads, made by the first run_step_async

    def CreateSession(self, request):
        graph = security.parse_graph_def(request.graph_def)
        handle, version = self.master.create_session(graph, request.config)
        return master_pb2.CreateSessionResponse(session_handle=handle, graph_version=version,
                                                step_port=self.step_port)

    def ExtendSession(self, request):
        nodes = list(security.parse_graph_def(request.graph_def))
        version = self.master.extend_session(request.session_handle, nodes, request.current_graph_version)
        return master_pb2.ExtendSessionResponse(new_graph_version=version)

    def RunStep(self, request):
        return _run_step_response(*self.master.run_step(*_step_args(request)))

    async def run_step_async(self, request):
        """RunStep as a coroutine: a start thread plans the step and sends its RunGraphs, and the loop
        awaits their callbacks (or the deadline) with no thread held; the response is built on the loop."""
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def on_done(step):
            loop.call_soon_threadsafe(_resolve, ended, step)

        if self._starts is None:
            self._starts = concurrent.futures.ThreadPoolExecutor(START_THREADS, thread_name_prefix="tg-master-start")
        step = await loop.run_in_executor(self._starts, self._start, request, on_done)
        timer = None
        if step.deadline is not None:
            timer = loop.call_later(self.master.seconds_left(step), self.master.expire, step)
        try:
            await asyncio.shield(ended)
        except asyncio.CancelledError:
            # the client went away: the step runs on, as under a thread, and leaves the step table when it ends
            ended.add_done_callback(lambda _: self._end_unheard(step))
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if self.master.replication.primaries():
            # copying the step's writes to the replicas reads the primaries: not on the loop
            return _run_step_response(*await loop.run_in_executor(self._starts, self.master.end_step, step))
        return _run_step_response(*self.master.end_step(step))

    def _start(self, request, on_done):
        return self.master.start_step(*_step_args(request), on_done=on_done)

    def _end_unheard(self, step):
        try:
            self.master.end_step(step)
        except errors.OpError:
            pass

    def CloseSession(self, request):
        self.master.close_session(request.session_handle)
        return master_pb2.CloseSessionResponse()

    def ListDevices(self, request):
        response = master_pb2.ListDevicesResponse()
        for name, device_type, memory in self.master.list_devices():
            response.device.add(name=name, device_type=device_type, memory_limit=memory)
        return response

    def RegisterWorker(self, request):
        key = security.caller_key.get()
        if not key:
            raise errors.InvalidArgumentError(
                None, None, f"RegisterWorker: the call carries no worker key ({security.KEY_KEY} metadata, over "
                "gRPC): a worker gives its master the key its control methods will require")
        devices = [(d.device_type, d.index, d.memory_limit) for d in request.device]
        rec = self.master.register_worker(request.address, request.data_address, request.job,
                                          request.task if request.HasField("task") else None,
                                          request.incarnation, devices, request.step_address, request.replicas,
                                          key=key)
        response = master_pb2.RegisterWorkerResponse(
            job=rec.job, task=rec.task, heartbeat_interval_ms=int(self.master.heartbeat_interval * 1000))
        for name, device_type, index, memory in rec.devices:
            response.device.add(name=name, device_type=device_type, index=index, memory_limit=memory)
        return response

    def Heartbeat(self, request):
        known = self.master.heartbeat(request.job, request.task, request.incarnation, request.shutting_down,
                                      key=security.caller_key.get())
        return master_pb2.HeartbeatResponse(known=known)

    def ClusterStatus(self, request):
        return status_proto(self.master.cluster_status(), self.address)

    def Reset(self, request):
        self.master.reset(list(request.container) or None)
        return master_pb2.ResetResponse()


def _step_args(request):
    """Master.run_step's arguments for a RunStepRequest."""
    options = request.options
    return (request.session_handle, [(t.name, t.tensor) for t in request.feed], list(request.fetch),
            list(request.target), options.timeout_in_ms, options.trace_level != 0)


def _run_step_response(tensors, metadata, step_id):
    response = master_pb2.RunStepResponse(step_id=step_id)
    add = response.tensor.add
    for name, tensor in tensors:
        add(name=name, tensor=tensor)
    if metadata is not None:
        response.metadata.CopyFrom(metadata)
    return response


def _resolve(future, value):
    if not future.done():
        future.set_result(value)


def status_proto(status, address=""):
    """The ClusterStatusResponse for Master.cluster_status()'s dicts."""
    response = master_pb2.ClusterStatusResponse(active_steps=status["active_steps"], master_address=address)
    for w in status["workers"]:
        ws = response.worker.add(
            job=w["job"], task=w["task"], address=w["address"], data_address=w["data_address"],
            incarnation=w["incarnation"], health=w["health"], dead_reason=w["dead_reason"],
            last_heartbeat_age_s=w["last_heartbeat_age_s"],
            active_steps=w.get("active_steps", 0), rendezvous_entries=w.get("rendezvous_entries", 0),
            registered_graphs=w.get("registered_graphs", 0), resources=w.get("resources", 0),
            reachable=w["reachable"])
        for name, device_type, index, memory in w["devices"]:
            ws.device.add(name=name, device_type=device_type, index=index, memory_limit=memory)
    for s in status["sessions"]:
        response.session.add(**s)
    return response


class MasterServer:
    """A running master: the gRPC server, the step channel server, the Master state and the heartbeat monitor."""

    def __init__(self, server, master, fast_server=None):
        self.grpc_server = server
        self.fast_server = fast_server
        self.master = master
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="tg-heartbeat-monitor", daemon=True)

    def _watch(self):
        period = max(0.05, min(0.5, self.master.heartbeat_timeout / 4))
        while not self._stop.wait(period):
            try:
                self.master.check_health()
                self.master.collect_idle_sessions()
            except Exception:  # noqa: BLE001 - the monitor must keep running
                log.exception("heartbeat check failed")

    def start(self):
        self.grpc_server.start()
        if self.fast_server is not None:
            self.fast_server.start()
        self._monitor.start()
        return self

    def stop(self, grace=1.0):
        self._stop.set()
        if self.fast_server is not None:
            self.fast_server.close()
        event = self.grpc_server.stop(grace)
        self.master.close()
        return event

    def wait_for_termination(self, timeout=None):
        return self.grpc_server.wait_for_termination(timeout)


def create_server(address, token=None, tls=None, heartbeat_timeout=10.0, heartbeat_interval=1.0,
                  local_task=None, more_services=(), client_token=None, session_gc_seconds=0.0):
    """A MasterServer bound to host:port (port 0: any free port), not yet started; returns (server, port).

    Unless TLS is on, the master also serves its methods on a step channel
    port of the same host, which CreateSession tells clients. `more_services`
    (generic handlers) share the gRPC server: a tg.train.Server serves its
    task's WorkerService there too, and its `local_task` (job, task) is where
    the master places unpinned nodes. `token` is the cluster token; a
    `client_token` reaches only the client methods (security.CLIENT_METHODS).
    """
    security.check_credentials(token, client_token)
    master = master_lib.Master(lambda addr, step_addr, key=None: GrpcWorkerClient(addr, step_addr, token, tls, key),
                               heartbeat_timeout=heartbeat_timeout, heartbeat_interval=heartbeat_interval,
                               local_task=local_task, session_gc_s=session_gc_seconds)
    server = security.new_async_server(security.rpc_pool("tg-master-rpc"), token, client_token, "tg-master-aio")
    port = security.bind(server, address, tls)
    host = address.rsplit(":", 1)[0]
    servicer = MasterServicer(master, f"{host}:{port}")
    fast, awaited = None, {"RunStep": servicer.run_step_async}
    if step_channel.enabled(tls):
        fast = step_channel.StepChannelServer(master_pb2, "MasterService", servicer, host, 0, token, client_token)
        servicer.step_port = fast.port
        # the master reaches its workers by step channel too, whose calls the step's own thread reads
        # (Master.run_step): a RunStep sent over gRPC anyway holds a thread, as every step used to
        awaited = None
    server.add_generic_rpc_handlers((security.service_handlers(master_pb2, "MasterService", servicer, ("RunStep",),
                                                               ("RegisterWorker", "Heartbeat"), awaited),
                                     *more_services))
    return MasterServer(server, master, fast), port
