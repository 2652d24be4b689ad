"""TF1's API: `import tensorgrid.compat.v1 as tf; tf.disable_eager_execution()`.

Everything `tensorgrid` exports, plus the TF1 names and spellings
(placeholder, Session, variable_scope, Print, to_float, arg_max, ...).
"""

import sys as _sys
import types as _types

from tensorgrid.api import *  # noqa: F401,F403
from tensorgrid.api import __all__ as _top_all
from tensorgrid.client.math_ops import where_v1 as where  # noqa: F401 - TF1's where: a vector condition picks rows
from tensorgrid.client import context as _context
from tensorgrid.client import data as _data
from tensorgrid.client import nn_ops as _nn_ops
from tensorgrid.client.array_ops import placeholder  # noqa: F401
from tensorgrid.client.session import Session, InteractiveSession  # noqa: F401
from tensorgrid.client.variables import scatter_add, scatter_sub, scatter_update  # noqa: F401 - TF1's
from tensorgrid.framework import errors  # noqa: F401
from tensorgrid.client.queues import QueueBase, FIFOQueue, RandomShuffleQueue, PaddingFIFOQueue  # noqa: F401
from tensorgrid.client.accumulators import ConditionalAccumulator, SparseConditionalAccumulator  # noqa: F401
from tensorgrid.client.scopes import container  # noqa: F401 - TF1's tf.container (resource containers)


def disable_eager_execution():
    """Switches to TF1 graph mode: ops build into the default graph and run in a Session."""
    _context.set_eager(False)


def enable_eager_execution(config=None, device_policy=None, execution_mode=None):
    _context.set_eager(True)


def disable_v2_behavior():
    """TF1 behaviour: graph mode (the only v2 behaviour tensorgrid switches)."""
    disable_eager_execution()


def enable_v2_behavior():
    enable_eager_execution()


def _alias(new, old):
    mod = _sys.modules[__name__]
    if hasattr(mod, old) and not hasattr(mod, new):
        setattr(mod, new, getattr(mod, old))


for _new, _old in [
    ("div", "divide"), ("log_sigmoid", "log_sigmoid"), ("random_normal", "random_normal"),
    ("mul", "multiply"), ("sub", "subtract"), ("neg", "negative"),
    ("arg_max", "argmax"), ("arg_min", "argmin"), ("select", "where"),
    ("initialize_all_variables", "global_variables_initializer"),
]:
    _alias(_new, _old)

# TF1's tf.nn: TF2's functions, with TF1's meaning where the two differ (dropout's keep_prob, ...).
nn = _types.ModuleType("tensorgrid.compat.v1.nn", _nn_ops.__doc__)
nn.__dict__.update({k: getattr(_nn_ops, k) for k in _nn_ops.__all__})
nn.__dict__.update(_nn_ops.compat_v1)
# TF1's recurrent networks: tf.nn.rnn_cell.* and tf.nn.dynamic_rnn / static_rnn / bidirectional_dynamic_rnn.
from tensorgrid.client import rnn as _rnn, rnn_cell as _rnn_cell  # noqa: E402
nn.rnn_cell = _types.ModuleType("tensorgrid.compat.v1.nn.rnn_cell", _rnn_cell.__doc__)
nn.rnn_cell.__dict__.update({k: getattr(_rnn_cell, k) for k in _rnn_cell.__all__})
nn.__dict__.update({k: getattr(_rnn, k) for k in _rnn.__all__})

# TF1's tf.summary (graph summary ops, FileWriter) and the summary protos TF1 programs build by hand.
from tensorgrid.client import summary as _summary  # noqa: E402
summary = _summary.v1_namespace()
Summary, Event, SessionLog = summary.Summary, summary.Event, summary.SessionLog
HistogramProto = _summary.protos().HistogramProto

def _app_run(main=None, argv=None):
    """TF1's tf.app.run: calls main(argv) (default __main__.main, sys.argv) and exits with its result."""
    main = main or _sys.modules["__main__"].main
    _sys.exit(main(_sys.argv if argv is None else argv))


app = _types.SimpleNamespace(run=_app_run)

# TF1's tf.layers and tf.losses (TF2's are Keras's), and TF1's tf.initializers.
from tensorgrid.client import layers, losses  # noqa: E402,F401
from tensorgrid.client import variables as _variables  # noqa: E402
initializers = _types.SimpleNamespace(
    zeros=_variables.zeros_initializer, ones=_variables.ones_initializer,
    constant=_variables.constant_initializer, random_normal=_variables.random_normal_initializer,
    truncated_normal=_variables.truncated_normal_initializer, random_uniform=_variables.random_uniform_initializer,
    glorot_uniform=_variables.glorot_uniform_initializer, glorot_normal=_variables.glorot_normal_initializer,
    variance_scaling=_variables.variance_scaling_initializer,
)

# TF1's tf.data: the same datasets, with TF1's Iterator and iterator functions.
data = _types.ModuleType("tensorgrid.compat.v1.data", _data.__doc__)
data.__dict__.update({k: getattr(_data, k) for k in _data.__all__})
data.__dict__.update(_data.compat_v1)

# TF1's sparse names: tf.sparse.* with tf.sparse.placeholder, and the flat sparse_* spellings.
from tensorgrid.client import sparse_ops as _sparse_ops  # noqa: E402
from tensorgrid.client.sparse_tensor import SparseTensorValue  # noqa: E402,F401
sparse = _types.ModuleType("tensorgrid.compat.v1.sparse", _sparse_ops.__doc__)
sparse.__dict__.update({k: getattr(_sparse_ops, k) for k in _sparse_ops.__all__})
sparse.placeholder = sparse_placeholder = _sparse_ops.sparse_placeholder
sparse_to_dense = _sparse_ops.sparse_to_dense
sparse_tensor_to_dense = _sparse_ops.to_dense
sparse_tensor_dense_matmul = _sparse_ops.sparse_dense_matmul
sparse_reduce_sum = _sparse_ops.reduce_sum
sparse_add = _sparse_ops.add
sparse_reorder = _sparse_ops.reorder
sparse_reshape = _sparse_ops.reshape
sparse_retain = _sparse_ops.retain
sparse_transpose = _sparse_ops.transpose
sparse_segment_sum, sparse_segment_mean, sparse_segment_sqrt_n = (
    _sparse_ops.segment_sum, _sparse_ops.segment_mean, _sparse_ops.segment_sqrt_n)

# TF1's file and Example names: tf.io (with tf_record_iterator), tf.python_io, tf.gfile, and the top-level
# parse_example, FixedLenFeature, decode_raw (its first argument named `bytes`), read_file, ...
from tensorgrid.client import io as _io, gfile as _gfile  # noqa: E402
io = _types.ModuleType("tensorgrid.compat.v1.io", _io.__doc__)
io.__dict__.update({k: getattr(_io, k) for k in _io.__all__})
io.tf_record_iterator, io.decode_raw = _io.tf_record_iterator, _io.decode_raw_v1
python_io = _types.SimpleNamespace(TFRecordWriter=_io.TFRecordWriter, TFRecordOptions=_io.TFRecordOptions,
                                   TFRecordCompressionType=_io.TFRecordCompressionType,
                                   tf_record_iterator=_io.tf_record_iterator)
gfile = _gfile.v1_namespace()
from tensorgrid.client.io import (  # noqa: E402,F401
    FixedLenFeature, FixedLenSequenceFeature, VarLenFeature, parse_example, parse_single_example, read_file,
    write_file, matching_files, serialize_tensor, parse_tensor, decode_raw_v1 as decode_raw)

# TF1's top-level segment reductions.
from tensorgrid.client.segment_ops import *  # noqa: E402,F401,F403

# TF1's string and image names: tf.string_split (a SparseTensor), tf.substr, tf.string_join, ...; tf.image's
# resize_images, resize_bilinear, resize_nearest_neighbor, resize_area and the *_image_with_* spellings.
from tensorgrid.client import string_ops as _string_ops, image_ops as _image_ops  # noqa: E402
string_split = _string_ops.string_split
string_join, substr, string_to_number, regex_replace, as_string, reduce_join = (
    _string_ops.join, _string_ops.substr, _string_ops.to_number, _string_ops.regex_replace, _string_ops.as_string,
    _string_ops.reduce_join)
string_to_hash_bucket_fast, string_strip = _string_ops.to_hash_bucket_fast, _string_ops.strip
image = _types.ModuleType("tensorgrid.compat.v1.image", _image_ops.__doc__)
image.__dict__.update({k: getattr(_image_ops, k) for k in _image_ops.__all__})
image.resize = image.resize_images = _image_ops.resize_images_v1
image.resize_bilinear, image.resize_nearest_neighbor = _image_ops.resize_bilinear, _image_ops.resize_nearest_neighbor
image.resize_area = _image_ops.resize_area
image.resize_image_with_crop_or_pad = _image_ops.resize_with_crop_or_pad
image.resize_image_with_pad = _image_ops.resize_with_pad
ragged = _sys.modules["tensorgrid.client.ragged"]

compat = _sys.modules["tensorgrid.compat"]
__all__ = [n for n in dir() if not n.startswith("_")] + list(_top_all)
