"""tg.distribute: distributed training in TF2's names (tf.distribute.Server, ...)."""

from tensorgrid.client.train.cluster_spec import ClusterSpec  # noqa: F401
from tensorgrid.client.train.server import Server  # noqa: F401

__all__ = ["Server", "ClusterSpec"]
