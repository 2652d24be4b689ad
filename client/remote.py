"""The cluster backend of tg.Session (target "grpc://host:port"): a MasterService client.

The session is created on the master at the first step, with the graph as
it is then; when the graph has grown since (its version moved), the step
first sends the nodes that are new or changed (ExtendSession). A step is one
RunStep call on a persistent channel: the master's step channel when it
offers one and the client can reach it (see tensorgrid/step_channel.py),
gRPC otherwise. Errors come back as the OpError class
the master or a worker raised, with its message, and with `.op` naming the
failing node when there is one.

The token is ConfigProto.token or TENSORGRID_TOKEN; TLS is on when
TENSORGRID_TLS_CA (and, for client certificates, TENSORGRID_TLS_CERT and
TENSORGRID_TLS_KEY) is set.
"""

import logging
import threading

import grpc

from tensorgrid import security, step_channel
from tensorgrid.framework import errors
from tensorgrid.proto import config_pb2, convert, master_pb2

log = logging.getLogger("tensorgrid.client")
# The master enforces a step's deadline; the client waits this much longer for its answer.
STEP_TIMEOUT_SLACK_S = 5.0


def parse_target(target):
    """'grpc://host:port' -> 'host:port'; ValueError for anything else."""
    if not isinstance(target, str) or not target.startswith("grpc://"):
        raise ValueError(f"a cluster target looks like 'grpc://host:port', not {target!r}")
    address = target[len("grpc://"):].rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"a cluster target looks like 'grpc://host:port', not {target!r}")
    return address


def _token(config):
    token = getattr(config, "token", "") if config is not None else ""
    return token or security.read_token()


class _Master:
    """The channels to the master (gRPC, and the step channel once offered); calls raise OpErrors."""

    def __init__(self, target, config, tls=None):
        self.address = parse_target(target)
        self.tls = tls if tls is not None else security.TlsFiles.from_env()
        self.token = _token(config)
        self.channel = security.open_channel(self.address, self.tls)
        self.stub = security.ServiceClient(self.channel, master_pb2, "MasterService")
        self.metadata = security.call_metadata(self.token)
        self.fast = None

    def use_step_channel(self, port):
        """Sends later steps through the master's step channel on `port`, if it can be reached."""
        if not port or not step_channel.enabled(self.tls):
            return
        host = self.address.rpartition(":")[0]
        fast = step_channel.StepChannelClient(f"{host}:{port}", master_pb2, "MasterService", self.token)
        try:
            fast.probe()
        except errors.UnavailableError as e:
            log.info("the master's step channel is out of reach (%s); steps use gRPC", e)
            fast.close()
            return
        self.fast = fast

    def call(self, method, request, timeout=None):
        try:
            return self.stub(method, request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise security.error_from_rpc(e, f"cannot reach the master at {self.address}") from None

    def run_step(self, request, timeout=None):
        if self.fast is None:
            return self.call("RunStep", request, timeout)
        try:
            data = self.fast.call("RunStep", request, timeout)
        except errors.UnavailableError as e:
            if not getattr(e, "in_transit", False):
                raise
            # the master is gone: a restarted one has a step channel port of its own, which the session it
            # is created again on (RemoteBackend) tells; until then steps go by gRPC
            self.fast.close()
            self.fast = None
            if getattr(e, "not_sent", False):
                return self.call("RunStep", request, timeout)  # nothing was sent: gRPC reaches a new master
            raise security.in_transit(f"cannot reach the master at {self.address}: {e.message}") from None
        return master_pb2.RunStepResponse.FromString(data)

    def close(self):
        self.channel.close()
        if self.fast is not None:
            self.fast.close()


def _session_lost(err):
    """Whether a NotFoundError says the master no longer has the session for a reason the client can mend by
    creating it again: the master restarted, or closed it as idle."""
    return security.MASTER_RESTARTED in err.message or security.SESSION_EXPIRED in err.message


class RemoteBackend:
    """Runs steps of one client Graph on the cluster whose master listens at `target`."""

    def __init__(self, target, graph, config=None):
        self._master = _Master(target, config)
        self._graph = graph
        self._config = config
        self._handle = None
        self._master_version = 0    # the session's graph version on the master
        self._sent_version = -1     # the client graph version the master has
        self._sent = {}             # node name -> (device, control inputs) as sent
        self._lock = threading.Lock()
        self.closed = False

    # ---- graph sync ------------------------------------------------------------------------
    def _changed_nodes(self, graph):
        """Nodes new since the last sync, or whose device or control inputs changed since, with their state."""
        changed = []
        sent = self._sent
        for node in graph.to_ir():
            state = (node.device, tuple(node.control_inputs))
            if sent.get(node.name) != state:
                changed.append((node, state))
        return changed

    def _sync(self, graph):
        try:
            self._send_graph(graph)
        except errors.NotFoundError as e:
            if not _session_lost(e):
                raise
            self._recreate(graph)

    def _recreate(self, graph):
        """Creates the session again on a restarted master, from the graph as it is now (the variables live
        on the workers, which outlive the master)."""
        log.warning("the master at %s lost the session (it restarted, or closed it as idle); creating it again",
                    self._master.address)
        with self._lock:
            self._handle, self._sent, self._sent_version = None, {}, -1
        try:
            self._send_graph(graph)
        except errors.OpError as e:
            raise type(e)(None, None, f"the master restarted (or closed the session as idle) and the session "
                          f"could not be created again on it ({e.message}); recreate the session") from None

    def _send_graph(self, graph):
        with self._lock:
            version = graph.version
            if version == self._sent_version:
                return
            changed = self._changed_nodes(graph)
            nodes = [node for node, _ in changed]
            gd = convert.graph_ir_to_proto(nodes, version=version)
            if self._handle is None:
                request = master_pb2.CreateSessionRequest(graph_def=gd)
                if isinstance(self._config, config_pb2.ConfigProto):
                    request.config.CopyFrom(self._config)
                    request.config.ClearField("token")  # it travels in the call metadata only
                response = self._master.call("CreateSession", request)
                self._handle = response.session_handle
                self._master_version = response.graph_version
                self._master.use_step_channel(response.step_port)
            elif nodes:
                request = master_pb2.ExtendSessionRequest(session_handle=self._handle, graph_def=gd,
                                                          current_graph_version=self._master_version)
                self._master_version = self._master.call("ExtendSession", request).new_graph_version
            self._sent.update((node.name, state) for node, state in changed)
            self._sent_version = version

    # ---- steps -------------------------------------------------------------------------------
    def run(self, graph, feeds, fetches, targets, timeout_ms=0, trace=False):
        """Runs one step on the cluster; returns ({tensor name: array}, RunMetadata or None)."""
        if graph.version != self._sent_version:
            self._sync(graph)
        request = master_pb2.RunStepRequest(session_handle=self._handle, fetch=fetches, target=targets)
        if feeds:
            add = request.feed.add
            for name, value in feeds.items():
                add(name=name, tensor=convert.ndarray_to_tensor_proto(value))
        if timeout_ms:
            request.options.timeout_in_ms = timeout_ms
        if trace:
            request.options.trace_level = config_pb2.RunOptions.FULL_TRACE
        wait_s = timeout_ms / 1000.0 + STEP_TIMEOUT_SLACK_S if timeout_ms else None
        try:
            try:
                response = self._master.run_step(request, wait_s)
            except errors.NotFoundError as e:
                if not _session_lost(e):
                    raise
                # nothing of the step ran: the master refused its session before planning it
                self._recreate(graph)
                request.session_handle = self._handle
                response = self._master.run_step(request, wait_s)
        except errors.OpError as e:
            raise self._with_node(e) from None
        results = {t.name: convert.tensor_proto_to_ndarray(t.tensor) for t in response.tensor}
        return results, (response.metadata if trace else None)

    def _with_node(self, err):
        """The error with .node_def/.op set from the client graph's node it names, as in-process."""
        name = err.op if isinstance(err.op, str) else None
        if name:
            try:
                err.node_def = self._graph.get_operation_by_name(name)._node
            except (KeyError, ValueError):
                pass
        return err

    def list_devices(self):
        response = self._master.call("ListDevices", master_pb2.ListDevicesRequest(session_handle=self._handle or ""))
        return [(d.name, d.device_type, d.memory_limit) for d in response.device]

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self._handle is not None:
            try:
                self._master.call("CloseSession", master_pb2.CloseSessionRequest(session_handle=self._handle),
                                  timeout=5.0)
            except errors.OpError:
                pass
        self._master.close()


def reset(target, config=None, containers=None):
    """Closes every session on the cluster at `target` and clears the resources of `containers`
    (every resource when None) on its workers."""
    master = _Master(target, config)
    try:
        master.call("Reset", master_pb2.ResetRequest(container=containers or []))
    finally:
        master.close()


def cluster_status(target, config=None, timeout=10.0, tls=None):
    """The master's ClusterStatusResponse (tls: security.TlsFiles, default from the environment)."""
    master = _Master(target, config, tls)
    try:
        return master.call("ClusterStatus", master_pb2.ClusterStatusRequest(), timeout=timeout)
    finally:
        master.close()
