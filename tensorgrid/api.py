"""The names `import tensorgrid as tg` gives (SPEC section 2)."""

import types as _types

from tensorgrid.client import math_ops, nn_ops, random_ops, misc_ops
from tensorgrid.client import variables, context
from tensorgrid.client import graph as _graph
from tensorgrid.client import train  # noqa: F401
from tensorgrid.client import summary  # noqa: F401
from tensorgrid.client import data  # noqa: F401
from tensorgrid.client import io  # noqa: F401
from tensorgrid.client import distribute  # noqa: F401
from tensorgrid.client import raw_ops  # noqa: F401
from tensorgrid.client import saved_model  # noqa: F401
from tensorgrid.client import keras  # noqa: F401 - submodules load on first use
from tensorgrid.client.array_ops import *  # noqa: F401,F403
from tensorgrid.client.math_ops import *  # noqa: F401,F403
from tensorgrid.client.misc_ops import *  # noqa: F401,F403
from tensorgrid.client.random_ops import *  # noqa: F401,F403
from tensorgrid.client.variables import *  # noqa: F401,F403
from tensorgrid.client.partitioned_variables import *  # noqa: F401,F403 - fixed_size_partitioner, ...
from tensorgrid.client.gradients import *  # noqa: F401,F403
from tensorgrid.client.tape import *  # noqa: F401,F403
from tensorgrid.client.indexed_slices import *  # noqa: F401,F403
from tensorgrid.client.function import *  # noqa: F401,F403
from tensorgrid.client.scopes import *  # noqa: F401,F403
from tensorgrid.client.control_flow import *  # noqa: F401,F403
from tensorgrid.client.tensor_array import *  # noqa: F401,F403
from tensorgrid.client.module import Module  # noqa: F401
from tensorgrid.framework import errors  # noqa: F401
from tensorgrid.framework import dtypes as _dtypes_module
from tensorgrid.framework.dtypes import (  # noqa: F401
    DType, as_dtype, float16, float32, float64, int8, int16, int32, int64, uint8, bool_ as bool,
    complex64, complex128, string, resource, variant, half, double)
from tensorgrid.framework.shapes import TensorShape, Dimension  # noqa: F401
from tensorgrid.framework.tensor_spec import TensorSpec  # noqa: F401
from tensorgrid.framework.device_spec import DeviceSpec  # noqa: F401
from tensorgrid.client.graph import Graph, Tensor, Operation, get_default_graph, reset_default_graph  # noqa: F401
from tensorgrid.client.session import Session, InteractiveSession, get_default_session  # noqa: F401
from tensorgrid.client.config import ConfigProto, GraphOptions, RewriterConfig, RunOptions, RunMetadata, GraphDef  # noqa: F401
from tensorgrid.client.importer import import_graph_def  # noqa: F401
from tensorgrid.client import profiler  # noqa: F401
from tensorgrid.client import queues as queue  # noqa: F401 - tg.queue.FIFOQueue, ...
from tensorgrid.client import sparse_ops as sparse  # noqa: F401 - tg.sparse.SparseTensor, to_dense, ...
from tensorgrid.client.sparse_tensor import SparseTensor  # noqa: F401
from tensorgrid.client import string_ops as strings  # noqa: F401 - tg.strings.join, split, ...
from tensorgrid.client import image_ops as image  # noqa: F401 - tg.image.resize, decode_png, ...
from tensorgrid.client import ragged  # noqa: F401 - tg.ragged.constant
from tensorgrid.client.ragged import RaggedTensor  # noqa: F401

nn = nn_ops
math = math_ops
random = random_ops
executing_eagerly = context.executing_eagerly
convert_to_tensor = _graph.convert_to_tensor

dtypes = _dtypes_module
# TF2's aliases of Keras's: tf.optimizers (with tf.optimizers.schedules) and tf.losses
from tensorgrid.client.keras import optimizers, losses  # noqa: E402,F401
# TF2's tf.initializers is Keras's (RandomNormal(), GlorotUniform(), ...); compat.v1 keeps TF1's.
from tensorgrid.client.keras import initializers  # noqa: E402,F401

from tensorgrid.client import remote_eager as _remote_eager  # noqa: E402
from tensorgrid.client import devices as _devices  # noqa: E402

# tg.config: TF2's names for running eager code and tg.functions on a cluster (client/remote_eager.py),
# and for the devices of this process (client/devices.py)
config = _types.SimpleNamespace(
    experimental_connect_to_host=_remote_eager.experimental_connect_to_host,
    experimental_connect_to_cluster=_remote_eager.experimental_connect_to_cluster,
    **{name: getattr(_devices, name) for name in _devices.__all__},
)

debugging = _types.SimpleNamespace(
    assert_equal=misc_ops.__dict__.get("assert_equal"),
    assert_positive=misc_ops.__dict__.get("assert_positive"),
)

__all__ = [n for n in dir() if not n.startswith("_") and n != "_types"]
