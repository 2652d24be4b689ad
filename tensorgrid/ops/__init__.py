"""The op registry and every op declaration; importing this package registers them all."""

from tensorgrid.ops import core_ops, math_ops, array_ops, nn_ops, random_ops, misc_ops, state_ops  # noqa: F401
from tensorgrid.ops import summary_ops  # noqa: F401
from tensorgrid.ops import io_ops, dataset_ops  # noqa: F401
from tensorgrid.ops import queue_ops, accumulator_ops, checkpoint_ops  # noqa: F401
from tensorgrid.ops import scatter_ops  # noqa: F401
from tensorgrid.ops import training_ops  # noqa: F401
from tensorgrid.ops import sparse_ops, segment_ops, candidate_sampling_ops  # noqa: F401
from tensorgrid.ops import string_ops, ragged_ops, image_ops  # noqa: F401
from tensorgrid.ops import control_flow_ops, tensor_array_ops  # noqa: F401
from tensorgrid.ops import collective_ops  # noqa: F401
from tensorgrid.ops import fused_ops  # noqa: F401
from tensorgrid.ops.registry import OPS, get  # noqa: F401
