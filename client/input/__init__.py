"""TF1's queue-based input: coordinators, queue runners, input producers and batching (tf.train.*)."""

from tensorgrid.client.input.batching import *  # noqa: F401,F403
from tensorgrid.client.input.coordinator import *  # noqa: F401,F403
from tensorgrid.client.input.producers import *  # noqa: F401,F403
from tensorgrid.client.input.queue_runner import *  # noqa: F401,F403
from tensorgrid.client.input import batching, coordinator, producers, queue_runner

__all__ = batching.__all__ + coordinator.__all__ + producers.__all__ + queue_runner.__all__
