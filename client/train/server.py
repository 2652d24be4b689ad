"""tg.train.Server (tf.distribute.Server): one task of a static cluster, served from the calling process.

A TF1 distributed script starts one Server per task, from a ClusterSpec that
lists every task's "host:port":

    cluster = tf.train.ClusterSpec({"ps": ["h0:2222"], "worker": ["h1:2222", "h2:2222"]})
    server = tf.train.Server(cluster, job_name="worker", task_index=0)
    with tf.Session(server.target) as sess: ...      # or MonitoredTrainingSession(master=server.target)

The Server listens on its task's port and serves there, on one gRPC server,
both this task's WorkerService (its devices and their variables) and a
MasterService. Every task thus hosts a master, and that master knows every
task of the ClusterSpec by address (runtime/static_cluster.py): it asks a
task for its status the first time a step needs it, waits with a log line
for a task not up yet, and from then on polls it as a heartbeat. Sessions on
`server.target` place unpinned nodes on this task's CPU. The masters share
nothing but the workers: between-graph replicas (one client and master per
worker task) meet in the ps tasks' variables, which are shared by name.
The data plane and the step channels listen on further ports of the same
host, which the task reports in GetStatus.

A Server's master also accepts CLI workers (`tensorgrid worker --master
<task address>`) and answers `tensorgrid status --master <task address>`.
"""

import logging
import threading

from tensorgrid import security, step_channel
from tensorgrid.client.train.cluster_spec import ClusterSpec
from tensorgrid.framework import errors
from tensorgrid.proto import cluster_pb2, config_pb2, worker_pb2

__all__ = ["Server"]

log = logging.getLogger("tensorgrid.server")

HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TIMEOUT_S = 10.0


def _server_def(server_or_cluster_def, job_name, task_index, protocol, config):
    """The ServerDef for Server's arguments (TF's rules for defaults and errors)."""
    if isinstance(server_or_cluster_def, cluster_pb2.ServerDef):
        server_def = cluster_pb2.ServerDef()
        server_def.CopyFrom(server_or_cluster_def)
        if job_name is not None:
            server_def.job_name = job_name
        if task_index is not None:
            server_def.task_index = task_index
        if protocol is not None:
            server_def.protocol = protocol
        if config is not None:
            server_def.default_session_config.CopyFrom(config)
        cluster = ClusterSpec(server_def.cluster)
    else:
        cluster = ClusterSpec(server_or_cluster_def)
        if not cluster:
            raise ValueError("The cluster must have at least one job")
        if job_name is None:
            if len(cluster.jobs) != 1:
                raise ValueError("Must specify an explicit `job_name`.")
            job_name = cluster.jobs[0]
        if task_index is None:
            indices = cluster.task_indices(job_name)
            if len(indices) != 1:
                raise ValueError("Must specify an explicit `task_index`.")
            task_index = indices[0]
        server_def = cluster_pb2.ServerDef(cluster=cluster.as_cluster_def(), job_name=job_name,
                                           task_index=task_index, protocol=protocol or "grpc")
        if config is not None:
            if not isinstance(config, config_pb2.ConfigProto):
                raise TypeError(f"`config` must be a tg.ConfigProto, not {type(config).__name__}")
            server_def.default_session_config.CopyFrom(config)
    if server_def.job_name not in cluster.jobs:
        raise errors.InternalError(None, None, f'Job "{server_def.job_name}" was not defined in cluster '
                                   f"(its jobs: {', '.join(cluster.jobs)})")
    if server_def.task_index not in cluster.task_indices(server_def.job_name):
        raise errors.InternalError(None, None, f'Task {server_def.task_index} was not defined in job '
                                   f'"{server_def.job_name}"')
    if (server_def.protocol or "grpc") != "grpc":
        raise errors.NotFoundError(
            None, None, f"no server for protocol {server_def.protocol!r}: tensorgrid servers speak 'grpc'")
    server_def.protocol = "grpc"
    return server_def


class Server:
    """An in-process server for one task of a static cluster: this task's worker and a master."""

    def __init__(self, server_or_cluster_def, job_name=None, task_index=None, protocol=None, config=None,
                 start=True):
        self._server_def = _server_def(server_or_cluster_def, job_name, task_index, protocol, config)
        self._cluster = ClusterSpec(self._server_def.cluster)
        self._key = (self._server_def.job_name, self._server_def.task_index)
        address = self._cluster.task_address(*self._key)
        self._host, _, port = address.rpartition(":")
        if not self._host or not port.isdigit():
            raise ValueError(f"the address of /job:{self._key[0]}/task:{self._key[1]} is not host:port: {address!r}")
        self._port = self._server_def.port or int(port)
        self._lock = threading.Lock()
        self._parts = None
        self._stopped = threading.Event()
        if start:
            self.start()

    @staticmethod
    def create_local_server(config=None, start=True):
        """A single-task server on a free port of localhost (job "localhost")."""
        return Server({"localhost": ["localhost:0"]}, protocol="grpc", config=config, start=start)

    @property
    def server_def(self):
        """The ServerDef (proto/cluster.proto) this server was made from."""
        return self._server_def

    @property
    def target(self):
        """The tg.Session target of this task's master: "grpc://host:port"."""
        return f"grpc://{self._host}:{self._port}"

    def start(self):
        """Starts serving (again a no-op once started)."""
        with self._lock:
            if self._parts is None:
                self._parts = _TaskServer(self._server_def, self._cluster, self._key, self._host, self._port)
                self._port = self._parts.port
                self._stopped.clear()
                # A script ends without stopping its server: stop it before the interpreter shuts thread pools
                # down under the gRPC server (calls still arriving would fail there, with tracebacks).
                threading._register_atexit(self.stop)

    def join(self):
        """Blocks until the server stops (a ps task's script ends here)."""
        self._stopped.wait()

    def stop(self, grace=0.5):
        """Stops serving: steps in flight here fail, other tasks see this task as gone (not in TF)."""
        with self._lock:
            parts, self._parts = self._parts, None
        if parts is not None:
            parts.stop(grace)
        self._stopped.set()

    def __repr__(self):
        state = "serving" if self._parts is not None else "stopped"
        return f"<tg.train.Server /job:{self._key[0]}/task:{self._key[1]} {self.target} {state}>"


class _TaskServer:
    """The running pieces of a Server: the shared gRPC server, the worker's data plane and step channel,
    the master and the static cluster poller."""

    def __init__(self, server_def, cluster, key, host, port):
        from tensorgrid.runtime import master_service, static_cluster
        from tensorgrid.worker import worker as worker_lib
        from tensorgrid.worker import worker_service

        config = server_def.default_session_config
        token = config.token or security.read_token()
        tls = security.TlsFiles.from_env()
        self.worker = worker_lib.Worker(worker_lib.local_devices("all"))
        self.worker.set_identity(*key)
        worker_handlers = security.service_handlers(worker_pb2, "WorkerService",
                                                    worker_service.WorkerServicer(self.worker))
        self.master_server, self.port = master_service.create_server(
            f"{host}:{port}", token=token, tls=tls, heartbeat_timeout=HEARTBEAT_TIMEOUT_S,
            heartbeat_interval=HEARTBEAT_INTERVAL_S, local_task=key, more_services=(worker_handlers,))
        self.worker_fast = None
        self.plane = None
        try:
            self.plane, self.worker.data_address = worker_service.make_data_plane(self.worker, host, host, token, tls)
            self.worker.plane = self.plane
            if step_channel.enabled(tls):
                self.worker_fast = step_channel.StepChannelServer(
                    worker_pb2, "WorkerService", worker_service.WorkerServicer(self.worker), host, 0, token)
                self.worker.step_address = f"{host}:{self.worker_fast.port}"
                self.worker_fast.start()
            master = self.master_server.master
            tasks = {(job, i): cluster.task_address(job, i) for job in cluster.jobs for i in cluster.task_indices(job)}
            tasks[key] = f"{host}:{self.port}"
            self.static = static_cluster.StaticCluster(master, tasks)
            master.static = self.static
            self.master_server.start()
            if not self.static.probe([key]):
                raise errors.InternalError(None, None, f"the server of /job:{key[0]}/task:{key[1]} cannot reach "
                                           f"itself at {tasks[key]}")
            self.static.watch([key])
            self.static.start(HEARTBEAT_INTERVAL_S)
        except BaseException:
            self.stop(0)
            raise
        log.info("server /job:%s/task:%d listening on %s:%d (data %s, step channel %s)", key[0], key[1], host,
                 self.port, self.worker.data_address, self.worker.step_address or "off")

    def stop(self, grace):
        static = getattr(self, "static", None)
        if static is not None:
            static.close()
        self.worker.abort_all(f"{self.worker.task_name} is stopping")
        if self.worker_fast is not None:
            self.worker_fast.close()
        self.master_server.stop(grace).wait(grace + 1)
        if self.plane is not None:
            self.plane.close()
        self.worker.close()
