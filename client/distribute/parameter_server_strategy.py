"""tg.distribute.experimental.ParameterServerStrategy: variables on the ps tasks, compute on this worker.

The graph-mode strategy of TF1 programs (tf.compat.v1.distribute.experimental.ParameterServerStrategy):
inside `scope()` variables go round-robin to the cluster's ps tasks (tg.train.replica_device_setter)
and the other ops to this task, so a Session on the cluster (tg.train.Server's target) trains with
its variables on the ps tasks, each worker process its own replica. TF2's eager
ParameterServerStrategy with a ClusterCoordinator (schedule/join from one coordinator process) is
not supported: tensorgrid has no remote eager execution; `scope()` says so when entered eagerly.
"""

import contextlib

from tensorgrid.client import context
from tensorgrid.client.distribute import distribute_lib
from tensorgrid.framework import errors

__all__ = ["ParameterServerStrategy"]


class ParameterServerStrategy(distribute_lib.Strategy):
    """Variables round-robin on the ps tasks of `cluster_resolver`'s cluster, ops on this task."""

    def __init__(self, cluster_resolver=None, variable_partitioner=None):
        from tensorgrid.client.distribute.cluster_resolver import TFConfigClusterResolver
        from tensorgrid.client.train.device_setter import replica_device_setter
        resolver = cluster_resolver if cluster_resolver is not None else TFConfigClusterResolver()
        spec = resolver.cluster_spec()
        if "ps" not in spec.jobs or not spec.num_tasks("ps"):
            raise ValueError(f"ParameterServerStrategy needs a cluster with a 'ps' job, not {spec.as_dict()}")
        task_type = resolver.task_type or ("chief" if "chief" in spec.jobs else "worker")
        task_id = resolver.task_id or 0
        self._worker_device = f"/job:{task_type}/task:{task_id}"
        self._cluster_resolver = resolver
        self._variable_partitioner = variable_partitioner
        self._setter = replica_device_setter(cluster=spec, worker_device=self._worker_device)
        super().__init__(devices=[self._worker_device + "/device:CPU:0"])

    @property
    def num_ps_tasks(self):
        return self._cluster_resolver.cluster_spec().num_tasks("ps")

    @contextlib.contextmanager
    def scope(self):
        if context.executing_eagerly():
            raise errors.UnimplementedError(
                None, None, "ParameterServerStrategy.scope() in eager mode: tensorgrid has no remote eager "
                "execution (TF2's ClusterCoordinator); build the model in a graph (tf.compat.v1, "
                "disable_eager_execution) and run it with a Session on the cluster")
        from tensorgrid.client import scopes
        with super().scope(), scopes.device(self._setter):
            yield self

    def _run_scope(self):
        from tensorgrid.client import scopes
        return scopes.device(self._worker_device)
