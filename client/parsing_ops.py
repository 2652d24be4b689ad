"""Parsing tf.train.Example protos: parse_example, parse_single_example and their feature specs.

Each call is one ParseExampleV2 op (TF's; tensorgrid/ops/io_ops.py) over a
vector of serialized Examples (parse_example) or a scalar
(parse_single_example). The result is a dict keyed like `features`:
FixedLenFeature gives a dense tensor of [batch] + shape (the default where
an Example lacks the feature, InvalidArgumentError where there is none),
FixedLenSequenceFeature a dense [batch, longest] + shape padded with its
default, VarLenFeature a SparseTensor of [batch, longest] (rank 1 for one
Example). Keys are sorted into the op's inputs as TF sorts them.
"""

import collections

import numpy as np

from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.sparse_tensor import SparseTensor
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape
from tensorgrid.ops import io_ops as _ops  # noqa: F401 - registers ParseExampleV2
from tensorgrid.ops import registry

__all__ = ["FixedLenFeature", "FixedLenSequenceFeature", "VarLenFeature", "parse_example", "parse_single_example"]

_SUPPORTED = (dtypes.float32, dtypes.int64, dtypes.string)


class FixedLenFeature(collections.namedtuple("FixedLenFeature", ["shape", "dtype", "default_value"])):
    """A feature with exactly prod(shape) values per Example (default_value where it is missing)."""

    def __new__(cls, shape, dtype, default_value=None):
        return super().__new__(cls, shape, dtype, default_value)


class FixedLenSequenceFeature(collections.namedtuple(
        "FixedLenSequenceFeature", ["shape", "dtype", "allow_missing", "default_value"])):
    """A feature with any number of elements of `shape` per Example, padded to the batch's longest."""

    def __new__(cls, shape, dtype, allow_missing=False, default_value=None):
        return super().__new__(cls, shape, dtype, allow_missing, default_value)


class VarLenFeature(collections.namedtuple("VarLenFeature", ["dtype"])):
    """A feature with any number of values per Example: a SparseTensor."""


def _check_dtype(key, dtype):
    dtype = dtypes.as_dtype(dtype)
    if dtype not in _SUPPORTED:
        raise ValueError(f"Unsupported dtype {dtype.name} for feature {key!r}: a tf.train.Example holds float32, "
                         "int64 or string values")
    return dtype


def _strings(values):
    arr = np.empty(len(values), dtype=object)
    arr[:] = [v.encode("utf-8") for v in values]
    return convert_to_tensor(arr, dtype=dtypes.string)


def _dense_default(key, feature, dtype):
    """The default tensor of a dense feature (empty: required) and its shape attr."""
    np_dtype = object if dtype is dtypes.string else dtype.as_numpy_dtype
    if isinstance(feature, FixedLenSequenceFeature):
        if not feature.allow_missing:
            raise ValueError("Unsupported: FixedLenSequenceFeature requires allow_missing to be True.")
        shape = as_shape(feature.shape)
        if not shape.is_fully_defined():
            raise ValueError(f"All dimensions of shape for feature {key} need to be known but received {shape}.")
        default = np.zeros([0], np_dtype) if feature.default_value is None else \
            np.asarray(feature.default_value, np_dtype).reshape(())
        return default, TensorShape([None]).concatenate(shape)
    shape = as_shape(feature.shape)
    if not shape.is_fully_defined():
        raise ValueError(f"All dimensions of shape for feature {key} need to be known but received {shape}.")
    if feature.default_value is None:
        return np.zeros([0], np_dtype), shape
    value = np.asarray(feature.default_value, np_dtype)
    try:
        value = value.reshape(shape.as_tuple())
    except ValueError:
        raise ValueError(f"Shape {list(value.shape)} of the default value of feature {key} is not compatible with "
                         f"its shape {shape}") from None
    return value, shape


def _parse(serialized, features, example_names, name, what):
    if not features:
        raise ValueError("Must provide at least one feature key.")
    sparse, dense = [], []
    for key in sorted(features):
        f = features[key]
        if isinstance(f, VarLenFeature):
            sparse.append((key, _check_dtype(key, f.dtype)))
        elif isinstance(f, (FixedLenFeature, FixedLenSequenceFeature)):
            dense.append((key, _check_dtype(key, f.dtype), f))
        else:
            raise ValueError(f"Unsupported feature type {type(f).__name__} for {key!r}: use FixedLenFeature, "
                             "FixedLenSequenceFeature or VarLenFeature")
    defaults, shapes = [], []
    for key, dtype, f in dense:
        value, shape = _dense_default(key, f, dtype)
        defaults.append(convert_to_tensor(value, dtype=dtype))
        shapes.append(shape)
    serialized = convert_to_tensor(serialized, dtype=dtypes.string)
    names = _strings([]) if example_names is None else convert_to_tensor(example_names, dtype=dtypes.string)
    attrs = {"num_sparse": len(sparse), "sparse_types": [t for _, t in sparse], "Tdense": [t for _, t, _ in dense],
             "dense_shapes": shapes, "ragged_value_types": [], "ragged_split_types": []}
    inputs = [serialized, names, _strings([k for k, _ in sparse]), _strings([k for k, _, _ in dense]), _strings([])]
    out = apply_op("ParseExampleV2", inputs + defaults, attrs, name=name or what)
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    n = len(sparse)
    result = {}
    for i, (key, _) in enumerate(sparse):
        result[key] = SparseTensor(out[i], out[n + i], out[2 * n + i])
    for j, (key, _, _) in enumerate(dense):
        result[key] = out[3 * n + j]
    return {key: result[key] for key in features}


def parse_example(serialized, features, example_names=None, name=None):
    """A dict of tensors from a vector of serialized tf.train.Example protos (tf.io.parse_example)."""
    return _parse(serialized, features, example_names, name, "ParseExample")


def parse_single_example(serialized, features, example_names=None, name=None):
    """A dict of tensors from one serialized tf.train.Example (tf.io.parse_single_example)."""
    t = convert_to_tensor(serialized, dtype=dtypes.string)
    if t.shape.ndims not in (None, 0):
        raise ValueError(f"Input serialized must be a scalar, got shape {t.shape}")
    return _parse(t, features, example_names, name, "ParseSingleExample")


registry.not_differentiable("ParseExampleV2")
