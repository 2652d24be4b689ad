"""tg.train: optimizers, the global step, checkpoints, and distributed placement helpers."""

from tensorgrid.client.train.cluster_spec import *  # noqa: F401,F403
from tensorgrid.client.train.device_setter import *  # noqa: F401,F403
from tensorgrid.client.train.optimizer import *  # noqa: F401,F403
from tensorgrid.client.train.optimizers import *  # noqa: F401,F403
from tensorgrid.client.train.saver import *  # noqa: F401,F403
from tensorgrid.client.train.checkpoint import *  # noqa: F401,F403
from tensorgrid.client.train.server import *  # noqa: F401,F403
from tensorgrid.client.train.sync_replicas_optimizer import *  # noqa: F401,F403
from tensorgrid.client.train.session_run_hook import *  # noqa: F401,F403
from tensorgrid.client.train.basic_session_run_hooks import *  # noqa: F401,F403
from tensorgrid.client.train.session_manager import *  # noqa: F401,F403
from tensorgrid.client.train.monitored_session import *  # noqa: F401,F403
from tensorgrid.client.train.training_util import *  # noqa: F401,F403
from tensorgrid.client.summary.event_file import summary_iterator  # noqa: F401 - TF1 tf.train.summary_iterator
from tensorgrid.client.train import checkpoint, cluster_spec, device_setter, optimizer, optimizers, saver, server
from tensorgrid.client.train import sync_replicas_optimizer, training_util
from tensorgrid.client.train import basic_session_run_hooks, monitored_session, session_manager, session_run_hook
from tensorgrid.client.input import *  # noqa: F401,F403 - TF1's queue-based input lives in tf.train
from tensorgrid.client import input as _input
from tensorgrid.client.input import queue_runner  # noqa: F401 - tf.train.queue_runner.QueueRunner
from tensorgrid.proto.example_pb2 import (  # noqa: F401 - tf.train.Example and its parts
    BytesList, Example, Feature, FeatureList, FeatureLists, Features, FloatList, Int64List, SequenceExample)

__all__ = (cluster_spec.__all__ + device_setter.__all__ + optimizer.__all__ + optimizers.__all__
           + saver.__all__ + checkpoint.__all__ + server.__all__ + sync_replicas_optimizer.__all__ + training_util.__all__
           + ["summary_iterator"]
           + session_run_hook.__all__ + basic_session_run_hooks.__all__ + session_manager.__all__
           + monitored_session.__all__ + _input.__all__
           + ["BytesList", "Example", "Feature", "FeatureList", "FeatureLists", "Features", "FloatList", "Int64List",
              "SequenceExample"])
