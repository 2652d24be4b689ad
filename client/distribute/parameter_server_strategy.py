"""tg.distribute.experimental.ParameterServerStrategy: variables on the ps tasks, compute on the workers.

Two ways of use, as in TF:

- **TF2, eager, with a ClusterCoordinator** (client/distribute/coordinator.py). The process that
  makes the strategy is the coordinator, the cluster's `chief` task: its first eager `scope()` (or
  the ClusterCoordinator) starts a tg.train.Server for that task in this process and connects eager
  execution to its master (tg.config.experimental_connect_to_host). Variables made in `scope()` go
  round-robin to the ps tasks (one whole variable per task, in the order they are made; an explicit
  tg.device scope wins), and `coordinator.schedule(fn)` runs fn on a worker task, reading and
  updating them there. `variable_partitioner` is not supported in eager mode (TF makes a
  ShardedVariable): the eager `scope()` raises UnimplementedError.
- **TF1, graph mode** (tf.compat.v1.distribute.experimental.ParameterServerStrategy): inside
  `scope()` variables go round-robin to the cluster's ps tasks (tg.train.replica_device_setter)
  and the other ops to this task, so a Session on the cluster (tg.train.Server's target) trains
  with its variables on the ps tasks, each worker process its own replica.
"""

import contextlib
import itertools
import logging
import threading

from tensorgrid.client import context
from tensorgrid.client.distribute import distribute_lib
from tensorgrid.framework import errors

__all__ = ["ParameterServerStrategy"]

log = logging.getLogger("tensorgrid.distribute")


class _PSExtended(distribute_lib.StrategyExtended):
    def __init__(self, strategy):
        super().__init__(strategy)
        self._next_ps = itertools.count()
        self._lock = threading.Lock()

    def _variable_device(self):
        strategy = self._container_strategy()
        if strategy._remote is None:
            return ""
        with self._lock:
            k = next(self._next_ps) % strategy.num_ps_tasks
        return f"/job:ps/replica:0/task:{k}/device:CPU:0"

    @property
    def parameter_devices(self):
        n = self._container_strategy().num_ps_tasks
        return tuple(f"/job:ps/replica:0/task:{k}/device:CPU:0" for k in range(n))

    @property
    def worker_devices(self):
        strategy = self._container_strategy()
        if strategy._remote is None:
            return super().worker_devices
        return tuple(f"/job:worker/replica:0/task:{i}/device:CPU:0" for i in range(strategy._num_workers))


class ParameterServerStrategy(distribute_lib.Strategy):
    """Variables round-robin on the ps tasks of `cluster_resolver`'s cluster; compute on the workers (TF2,
    through a ClusterCoordinator) or on this task (TF1 graphs)."""

    _extended_class = _PSExtended

    def __init__(self, cluster_resolver=None, variable_partitioner=None):
        from tensorgrid.client.distribute.cluster_resolver import TFConfigClusterResolver
        from tensorgrid.client.train.device_setter import replica_device_setter
        resolver = cluster_resolver if cluster_resolver is not None else TFConfigClusterResolver()
        spec = resolver.cluster_spec()
        if "ps" not in spec.jobs or not spec.num_tasks("ps"):
            raise ValueError(f"ParameterServerStrategy needs a cluster with a 'ps' job, not {spec.as_dict()}")
        task_type = resolver.task_type or ("chief" if "chief" in spec.jobs else "worker")
        task_id = resolver.task_id or 0
        self._task = (task_type, task_id)
        self._worker_device = f"/job:{task_type}/task:{task_id}"
        self._cluster_resolver = resolver
        self._variable_partitioner = variable_partitioner
        self._setter = replica_device_setter(cluster=spec, worker_device=self._worker_device)
        self._remote = None       # the RemoteContext of the coordinator, once connected
        self._server = None
        self._coordinator = None
        super().__init__(devices=[self._worker_device + "/device:CPU:0"])

    @property
    def num_ps_tasks(self):
        return self._cluster_resolver.cluster_spec().num_tasks("ps")

    @property
    def _num_workers(self):
        spec = self._cluster_resolver.cluster_spec()
        return spec.num_tasks("worker") if "worker" in spec.jobs else 0

    def _connect(self):
        """Makes this process the coordinator: a Server for its chief task, eager execution connected to it."""
        from tensorgrid.client import remote_eager
        if self._remote is not None:
            return
        current = remote_eager.current()
        if current is None:
            spec = self._cluster_resolver.cluster_spec()
            if "chief" not in spec.jobs:
                raise ValueError(
                    f"ParameterServerStrategy in eager mode (TF2, with a ClusterCoordinator) runs in the cluster's "
                    f"coordinator, its 'chief' task, and the cluster {spec.as_dict()} has no 'chief' job")
            if self._task[0] != "chief":
                raise ValueError(
                    f"ParameterServerStrategy in eager mode runs in the coordinator (the 'chief' task), not in "
                    f"/job:{self._task[0]}/task:{self._task[1]}: a {self._task[0]} task only serves "
                    f"(tg.distribute.Server(...).join())")
            from tensorgrid.client.train.server import Server
            self._server = Server(spec, "chief", self._task[1])
            log.info("ParameterServerStrategy: the coordinator serves /job:chief/task:%d at %s", self._task[1],
                     self._server.target)
            remote_eager._connect(self._server.target, None, f"/job:chief/replica:0/task:{self._task[1]}")
            current = remote_eager.current()
        self._remote = current

    @contextlib.contextmanager
    def scope(self):
        from tensorgrid.client import scopes
        if context.executing_eagerly():
            if self._variable_partitioner is not None:
                raise errors.UnimplementedError(
                    None, None, "ParameterServerStrategy(variable_partitioner=...) in eager mode: tensorgrid has no "
                    "ShardedVariable; make the variables unpartitioned (each goes whole to one ps task) or build "
                    "the model in a TF1 graph, where tg.fixed_size_partitioner spreads a variable over the ps tasks")
            self._connect()
            with super().scope():
                yield self
            return
        with super().scope(), scopes.device(self._setter):
            yield self

    def _run_scope(self):
        from tensorgrid.client import scopes
        if self._remote is not None:
            return contextlib.nullcontext()   # a scheduled function: its worker's device scope is in force
        return scopes.device(self._worker_device)
