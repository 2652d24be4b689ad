"""tg.distribute: distributed training in TF2's names (strategies, cluster resolvers, tf.distribute.Server)."""

from tensorgrid.client.train.cluster_spec import ClusterSpec  # noqa: F401
from tensorgrid.client.train.server import Server  # noqa: F401
from tensorgrid.client.distribute import cluster_resolver  # noqa: F401
from tensorgrid.client.distribute import experimental  # noqa: F401
from tensorgrid.client.distribute import coordinator  # noqa: F401
from tensorgrid.client.distribute.distribute_lib import (  # noqa: F401
    InputContext, InputOptions, ReduceOp, ReplicaContext, RunOptions, Strategy, StrategyExtended,
    experimental_set_strategy, get_replica_context, get_strategy, has_strategy, in_cross_replica_context)
from tensorgrid.client.distribute.collective_all_reduce_strategy import MultiWorkerMirroredStrategy  # noqa: F401
from tensorgrid.client.distribute.mirrored_strategy import MirroredStrategy, OneDeviceStrategy  # noqa: F401

__all__ = ["Server", "ClusterSpec", "cluster_resolver", "experimental", "coordinator", "InputContext", "InputOptions", "ReduceOp",
           "ReplicaContext", "RunOptions", "Strategy", "StrategyExtended", "experimental_set_strategy",
           "get_replica_context", "get_strategy", "has_strategy", "in_cross_replica_context",
           "MultiWorkerMirroredStrategy", "MirroredStrategy", "OneDeviceStrategy"]
