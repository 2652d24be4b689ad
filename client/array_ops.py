"""Array ops front-end: creation, shapes, slicing, gathering (declared in tensorgrid/ops).

Shape-like arguments (shapes, perms, begins, paddings, ...) may be Python
lists, numpy arrays, TensorShapes or integer tensors; a list that mixes ints
and scalar tensors is packed into one tensor. Several functions here are
named after Python builtins (`range`, `slice`), as in TensorFlow, so this
module reaches the builtins through `builtins`.
"""

import builtins
import numbers

import numpy as np

from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import TensorOps, apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import Dimension, TensorShape

__all__ = ["constant", "placeholder", "placeholder_with_default", "identity", "stop_gradient",
           "no_op", "group",
           "zeros", "ones", "zeros_like", "ones_like", "fill", "range", "linspace", "lin_space",
           "one_hot", "eye",
           "reshape", "transpose", "expand_dims", "squeeze", "concat", "stack", "unstack", "split",
           "slice", "strided_slice", "slice_helper", "newaxis", "gather", "gather_nd", "scatter_nd",
           "tensor_scatter_nd_update", "tensor_scatter_nd_add", "tensor_scatter_nd_sub", "tensor_scatter_nd_min",
           "tensor_scatter_nd_max",
           "unsorted_segment_sum", "unique", "dynamic_partition", "dynamic_stitch", "tile", "pad", "broadcast_to", "shape", "size", "rank",
           "cast", "to_float", "to_double", "to_int32", "to_int64", "clip_by_value",
           "reverse", "reverse_v2", "reverse_sequence", "sequence_mask", "boolean_mask", "invert_permutation"]

newaxis = None


def constant(value, dtype=None, shape=None, name="Const", verify_shape=False):
    """A tensor holding `value` (converted to `dtype`, broadcast or reshaped to `shape` if given)."""
    if getattr(value, "_is_eager_tensor", False):
        value = value.numpy()
    arr, dt = graph_lib.constant_value_array(value, dtype)
    if shape is not None:
        shape = tuple(TensorShape(shape).as_list())
        if arr.size == 1 and int(np.prod(shape)) != 1:
            arr = np.full(shape, arr.reshape(()), dtype=arr.dtype)
        elif arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        elif verify_shape or arr.size != 1:
            raise TypeError(f"Expected Tensor's shape: {shape}, got {arr.shape}.")
    return apply_op("Const", [], {"value": arr, "dtype": dt}, name=name)


def placeholder(dtype, shape=None, name=None):
    """A value that every run must feed; shape None means any shape."""
    dtype = dtypes.as_dtype(dtype)
    if graph_lib.context.executing_eagerly():
        raise RuntimeError("tg.placeholder() is not compatible with eager execution.")
    return apply_op("Placeholder", [], {"dtype": dtype, "shape": TensorShape(shape)}, name=name or "Placeholder")


def placeholder_with_default(input, shape, name=None):  # noqa: A002 - TF's argument name
    """`input` unless the run feeds a value of shape `shape`."""
    return apply_op("PlaceholderWithDefault", [convert_to_tensor(input)], {"shape": TensorShape(shape)},
                    name=name or "PlaceholderWithDefault")


def identity(input, name=None):  # noqa: A002
    """A tensor with the value of `input`."""
    return apply_op("Identity", [input], name=name or "Identity")


def stop_gradient(input, name=None):  # noqa: A002
    """`input`, through which no gradient flows."""
    return apply_op("StopGradient", [input], name=name or "StopGradient")


def no_op(name=None):
    """An op that does nothing (a target for control dependencies)."""
    return apply_op("NoOp", [], name=name or "NoOp")


def group(*inputs, name=None):
    """An op that runs all `inputs` (ops or tensors, possibly in lists)."""
    flat = []

    def walk(x):
        if isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif x is not None:
            flat.append(x)
    walk(inputs)
    if graph_lib.context.executing_eagerly():
        return None
    g = graph_lib.get_default_graph()
    with g.control_dependencies(flat):
        return no_op(name=name or "group_deps")


# ---- helpers --------------------------------------------------------------------------------


def _is_tensor(x):
    return isinstance(x, TensorOps) or hasattr(x, "_as_tensor")


def _contains_tensor(value):
    if isinstance(value, (list, tuple)):
        return any(_contains_tensor(v) for v in value)
    return _is_tensor(value)


def _int_tensor(value):
    """A shape-like argument as an integer tensor (int32 for Python ints that fit)."""
    if isinstance(value, TensorShape):
        if not value.is_fully_defined():
            raise ValueError(f"Cannot convert a partially known TensorShape {value} to a Tensor")
        value = value.as_list()
    if isinstance(value, (list, tuple)):
        value = [v.value if isinstance(v, Dimension) else v for v in value]
        if not value:
            return constant(np.zeros(0, np.int32))
    if _contains_tensor(value):
        return convert_to_tensor(value)
    return convert_to_tensor(value, dtype_hint=dtypes.int32)


def _static_int(value, what):
    """`value` (an int, or a scalar tensor known while the graph is built) as a Python int."""
    if isinstance(value, numbers.Integral):
        return int(value)
    from tensorgrid.client import math_ops
    v = math_ops.static_value(convert_to_tensor(value))
    if v is None or np.size(v) != 1:
        raise ValueError(f"{what} must be a Python int or a constant scalar, got {value!r}")
    return int(np.asarray(v).reshape(()))


def _zero(dtype):
    return False if dtype.is_bool else 0


def _one(dtype):
    return True if dtype.is_bool else 1


def _convert_list(values, what):
    """Tensors for `values`, Python values converted to the dtype of the first tensor among them."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{what} must be a non-empty list of tensors, got {values!r}")
    dtype = next((convert_to_tensor(v).dtype for v in values if _is_tensor(v)), None)
    return [convert_to_tensor(v) if _is_tensor(v) else convert_to_tensor(v, dtype=dtype) for v in values]


def _as_list(out):
    """An op's outputs as a list (apply_op returns a bare tensor for one output)."""
    return out if isinstance(out, list) else [out]


def shape_tensor(t, out_type=dtypes.int32):
    """The shape of `t` as a tensor: a constant when fully known statically, else a Shape op."""
    t = convert_to_tensor(t)
    if t.shape.is_fully_defined():
        return constant(t.shape.as_list(), dtype=out_type)
    return shape(t, out_type=out_type)


# ---- creation ---------------------------------------------------------------------------------


def fill(dims, value, name=None):
    """A tensor of shape `dims` whose every element is the scalar `value`."""
    return apply_op("Fill", [_int_tensor(dims), value], name=name or "Fill")


def zeros(shape, dtype=dtypes.float32, name=None):
    """A tensor of zeros of the given shape and dtype."""
    dtype = dtypes.as_dtype(dtype)
    return fill(shape, constant(_zero(dtype), dtype), name=name or "zeros")


def ones(shape, dtype=dtypes.float32, name=None):
    """A tensor of ones of the given shape and dtype."""
    dtype = dtypes.as_dtype(dtype)
    return fill(shape, constant(_one(dtype), dtype), name=name or "ones")


def zeros_like(tensor, dtype=None, name=None, optimize=True):
    """Zeros with the shape of `tensor` and its dtype (or `dtype`)."""
    tensor = convert_to_tensor(tensor)
    if dtype is None or dtypes.as_dtype(dtype) == tensor.dtype:
        return apply_op("ZerosLike", [tensor], name=name or "zeros_like")
    return zeros(shape_tensor(tensor), dtype, name=name or "zeros_like")


def ones_like(tensor, dtype=None, name=None, optimize=True):
    """Ones with the shape of `tensor` and its dtype (or `dtype`)."""
    tensor = convert_to_tensor(tensor)
    if dtype is None or dtypes.as_dtype(dtype) == tensor.dtype:
        return apply_op("OnesLike", [tensor], name=name or "ones_like")
    return ones(shape_tensor(tensor), dtype, name=name or "ones_like")


_RANGE_DTYPES = (dtypes.int32, dtypes.int64, dtypes.float32, dtypes.float64)


def range(start, limit=None, delta=1, dtype=None, name="range"):  # noqa: A001 - TF's name
    """The sequence start, start + delta, ... up to but excluding limit (range(n) counts from 0).

    Without `dtype` the arguments' widest dtype wins, in TF's order int32 < int64 < float32 < float64.
    """
    if limit is None:
        start, limit = 0, start
    args = [convert_to_tensor(a) if _is_tensor(a) or dtype is None else convert_to_tensor(a, dtype=dtype)
            for a in (start, limit, delta)]
    for a in args:
        if a.dtype not in _RANGE_DTYPES:
            raise TypeError(f"range: arguments must be int32, int64, float32 or float64, not {a.dtype.name}")
    dtype = dtypes.as_dtype(dtype) if dtype is not None else max((a.dtype for a in args), key=_RANGE_DTYPES.index)
    args = [cast(a, dtype) for a in args]
    return apply_op("Range", args, {"Tidx": dtype}, name=name)


def linspace(start, stop, num, name=None, axis=0):
    """`num` evenly spaced values from `start` to `stop`, both included."""
    if axis != 0:
        raise ValueError(f"linspace: only axis=0 is supported, got {axis}")
    start = convert_to_tensor(start)
    stop = convert_to_tensor(stop) if _is_tensor(stop) else convert_to_tensor(stop, dtype=start.dtype)
    return apply_op("LinSpace", [start, stop, _int_tensor(num)], name=name or "LinSpace")


lin_space = linspace


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None, name=None):
    """A one-hot tensor: on_value where the new dim (last, or `axis`) equals `indices`, off_value elsewhere.

    Its dtype is `dtype`, else on_value's or off_value's, else float32.
    """
    given = [convert_to_tensor(v) for v in (on_value, off_value) if v is not None and _is_tensor(v)]
    if dtype is None:
        if given:
            dtype = given[0].dtype
        elif on_value is not None or off_value is not None:
            dtype = convert_to_tensor(on_value if on_value is not None else off_value).dtype
        else:
            dtype = dtypes.float32
    dtype = dtypes.as_dtype(dtype)
    for t in given:
        if t.dtype != dtype:
            raise TypeError(f"one_hot: on_value/off_value of dtype {t.dtype.name} do not match dtype {dtype.name}")
    on = convert_to_tensor(_one(dtype) if on_value is None else on_value, dtype=dtype)
    off = convert_to_tensor(_zero(dtype) if off_value is None else off_value, dtype=dtype)
    return apply_op("OneHot", [indices, _int_tensor(depth), on, off], {"axis": -1 if axis is None else int(axis)},
                    name=name or "one_hot")


def eye(num_rows, num_columns=None, batch_shape=None, dtype=dtypes.float32, name=None):
    """A [batch_shape..., num_rows, num_columns] batch of identity matrices."""
    num_columns = num_rows if num_columns is None else num_columns
    matrix = one_hot(range(num_rows), num_columns, dtype=dtype, name=None if batch_shape else name or "eye")
    if not batch_shape:
        return matrix
    return broadcast_to(matrix, list(batch_shape) + [num_rows, num_columns], name=name or "eye")


# ---- reshaping -----------------------------------------------------------------------------------


def reshape(tensor, shape, name=None):
    """`tensor` with its elements in a new shape; one dim may be -1 (inferred)."""
    return apply_op("Reshape", [tensor, _int_tensor(shape)], name=name or "Reshape")


def invert_permutation(x, name=None):
    """The permutation y with y[x[i]] = i."""
    return apply_op("InvertPermutation", [_int_tensor(x)], name=name or "InvertPermutation")


def transpose(a, perm=None, name="transpose", conjugate=False):
    """`a` with its dims permuted by `perm` (default: reversed)."""
    a = convert_to_tensor(a)
    if perm is None:
        r = a.shape.ndims
        perm = list(builtins.range(r - 1, -1, -1)) if r is not None else reverse(range(rank(a)), [0])
    return apply_op("Transpose", [a, _int_tensor(perm)], name=name)


def expand_dims(input, axis=None, name=None, dim=None):  # noqa: A002 - TF's argument name
    """`input` with a dim of size 1 inserted at `axis` (TF1 spelling: `dim`)."""
    if axis is not None and dim is not None:
        raise ValueError("Cannot specify both 'axis' and 'dim'")
    axis = dim if axis is None else axis
    if axis is None:
        raise ValueError("Must specify an axis argument to tg.expand_dims()")
    return apply_op("ExpandDims", [input, _int_tensor(axis)], name=name or "ExpandDims")


def squeeze(input, axis=None, name=None, squeeze_dims=None):  # noqa: A002
    """`input` without its dims of size 1 (only those in `axis` when given; TF1 spelling `squeeze_dims`)."""
    if axis is not None and squeeze_dims is not None:
        raise ValueError("Cannot specify both 'axis' and 'squeeze_dims'")
    axis = squeeze_dims if axis is None else axis
    axes = [] if axis is None else [int(a) for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
    return apply_op("Squeeze", [input], {"squeeze_dims": axes}, name=name or "Squeeze")


def concat(values, axis, name="concat"):
    """`values` joined along dim `axis` (TF1 argument order: values first)."""
    if not isinstance(values, (list, tuple)):
        values = [values]
    if len(values) == 1:
        if _int_tensor(axis).shape.ndims not in (None, 0):
            raise ValueError(f"concat: axis must be a scalar, got {axis!r}")
        return identity(values[0], name=name)
    tensors = _convert_list(values, "concat: values")
    return apply_op("ConcatV2", tensors + [_int_tensor(axis)], {"N": len(tensors)}, name=name)


def stack(values, axis=0, name="stack"):
    """`values` (same shapes) stacked along a new dim at `axis`."""
    tensors = _convert_list(values, "stack: values")
    return apply_op("Pack", tensors, {"N": len(tensors), "axis": int(axis)}, name=name)


def unstack(value, num=None, axis=0, name="unstack"):
    """The list of slices of `value` along dim `axis`; `num` defaults to that dim's static size."""
    value = convert_to_tensor(value)
    if num is None:
        shape_ = value.shape
        if shape_.ndims is None:
            raise ValueError(f"Cannot infer argument `num` from shape {shape_}")
        if not -shape_.ndims <= axis < shape_.ndims:
            raise ValueError(f"axis = {axis} not in [{-shape_.ndims}, {shape_.ndims})")
        num = shape_[axis]
        if num is None:
            raise ValueError(f"Cannot infer argument `num` from shape {shape_}")
    if num == 0:
        return []
    return _as_list(apply_op("Unpack", [value], {"num": int(num), "axis": int(axis)}, name=name))


def split(value, num_or_size_splits, axis=0, num=None, name="split"):
    """`value` split along `axis` into num_or_size_splits equal parts, or parts of the listed sizes."""
    if isinstance(num_or_size_splits, (numbers.Integral, Dimension)) and not isinstance(num_or_size_splits, bool):
        n = int(num_or_size_splits.value if isinstance(num_or_size_splits, Dimension) else num_or_size_splits)
        return _as_list(apply_op("Split", [_int_tensor(axis), value], {"num_split": n}, name=name))
    sizes = _int_tensor(num_or_size_splits)
    if sizes.shape.ndims == 0:
        raise ValueError(f"Rank-0 tensors are not supported as the num_or_size_splits argument to split. "
                         f"Argument provided: {num_or_size_splits!r}")
    if num is None:
        num = sizes.shape[0]
        if num is None:
            raise ValueError(f"Cannot infer argument `num` from shape {sizes.shape}")
    return _as_list(apply_op("SplitV", [value, sizes, _int_tensor(axis)], {"num_split": int(num)}, name=name))


# ---- slicing --------------------------------------------------------------------------------------


def slice(input_, begin, size, name=None):  # noqa: A001 - TF's name
    """The block of `input_` starting at `begin` with extent `size` (-1: to the end of that dim)."""
    return apply_op("Slice", [input_, _int_tensor(begin), _int_tensor(size)], name=name or "Slice")


def strided_slice(input_, begin, end, strides=None, begin_mask=0, end_mask=0, ellipsis_mask=0,
                  new_axis_mask=0, shrink_axis_mask=0, var=None, name=None):
    """NumPy-style basic indexing spelled as begin/end/strides vectors and bit masks."""
    if strides is None:
        strides = [1] * len(begin) if isinstance(begin, (list, tuple)) else ones_like(_int_tensor(begin))
    begin, end, strides = _int_tensor(begin), _int_tensor(end), _int_tensor(strides)
    attrs = {"begin_mask": int(begin_mask), "end_mask": int(end_mask), "ellipsis_mask": int(ellipsis_mask),
             "new_axis_mask": int(new_axis_mask), "shrink_axis_mask": int(shrink_axis_mask)}
    return apply_op("StridedSlice", [input_, begin, end, strides], attrs, name=name or "strided_slice")


def _index_value(s):
    """An index component (int, numpy int or scalar integer tensor) as an int or a tensor."""
    if _is_tensor(s):
        t = convert_to_tensor(s)
        if not t.dtype.is_integer or t.shape.ndims not in (None, 0):
            raise TypeError(f"Only integers, slices (`:`), ellipsis (`...`), tg.newaxis (`None`) and scalar "
                            f"int32/int64 tensors are valid indices, got {s!r}")
        return t
    if isinstance(s, numbers.Integral) and not isinstance(s, bool):
        return int(s)
    raise TypeError(f"Only integers, slices (`:`), ellipsis (`...`), tg.newaxis (`None`) and scalar "
                    f"int32/int64 tensors are valid indices, got {s!r}")


def slice_helper(tensor, key):
    """`tensor[key]` with NumPy's basic indexing rules (ints, slices, ..., None); a bool mask uses boolean_mask."""
    if isinstance(key, bool) or (isinstance(key, np.ndarray) and key.dtype == np.bool_) or \
            (_is_tensor(key) and convert_to_tensor(key).dtype.is_bool):
        return boolean_mask(tensor, key)
    spec = key if isinstance(key, (list, tuple)) else [key]
    begin, end, strides = [], [], []
    masks = {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0}
    for i, s in enumerate(spec):
        bit = 1 << i
        if isinstance(s, builtins.slice):
            begin.append(0 if s.start is None else _index_value(s.start))
            end.append(0 if s.stop is None else _index_value(s.stop))
            strides.append(1 if s.step is None else _index_value(s.step))
            masks["begin_mask"] |= bit if s.start is None else 0
            masks["end_mask"] |= bit if s.stop is None else 0
        elif s is Ellipsis or s is None:
            begin.append(0)
            end.append(0)
            strides.append(1)
            masks["ellipsis_mask" if s is Ellipsis else "new_axis_mask"] |= bit
        else:
            s = _index_value(s)
            begin.append(s)
            end.append(s + 1)
            strides.append(1)
            masks["shrink_axis_mask"] |= bit
    if not spec:
        return identity(tensor)
    return strided_slice(tensor, begin, end, strides, name="strided_slice", **masks)


def gather(params, indices, validate_indices=None, name=None, axis=None, batch_dims=0):
    """The slices of `params` along `axis` (default 0) at `indices`.

    Rows of a variable (axis 0) are read with its sparse_read, where the variable lives, and their
    gradient is an IndexedSlices.
    """
    if batch_dims != 0:
        raise ValueError(f"gather: batch_dims other than 0 is not supported, got {batch_dims}")
    if hasattr(params, "sparse_read") and axis in (None, 0):
        return params.sparse_read(indices, name=name)
    return apply_op("GatherV2", [params, _int_tensor(indices), _int_tensor(0 if axis is None else axis)],
                    {"batch_dims": 0}, name=name or "GatherV2")


def gather_nd(params, indices, name=None, batch_dims=0):
    """The slices of `params` at the index vectors in the last dim of `indices`."""
    if batch_dims != 0:
        raise ValueError(f"gather_nd: batch_dims other than 0 is not supported, got {batch_dims}")
    return apply_op("GatherNd", [params, _int_tensor(indices)], name=name or "GatherNd")


def unique(x, out_idx=dtypes.int32, name=None):
    """(y, idx): the distinct values of vector x in order of first appearance, and x[i] == y[idx[i]]."""
    return apply_op("Unique", [x], {"out_idx": dtypes.as_dtype(out_idx)}, name=name or "Unique")


def dynamic_partition(data, partitions, num_partitions, name=None):
    """num_partitions tensors: output i holds the slices of `data` whose entry in `partitions` is i."""
    out = apply_op("DynamicPartition", [data, _int_tensor(partitions)], {"num_partitions": int(num_partitions)},
                   name=name or "DynamicPartition")
    return out if isinstance(out, list) else [out]


def dynamic_stitch(indices, data, name=None):
    """One tensor whose row indices[m][i] is data[m][i] (a later m wins for a repeated index)."""
    if len(indices) != len(data) or not indices:
        raise ValueError(f"dynamic_stitch needs as many indices as data tensors (at least one), got "
                         f"{len(indices)} and {len(data)}")
    return apply_op("DynamicStitch", [_int_tensor(i) for i in indices] + list(data), {"N": len(indices)},
                    name=name or "DynamicStitch")


def scatter_nd(indices, updates, shape, name=None):
    """Zeros of `shape` with `updates` added at `indices` (duplicate indices sum)."""
    return apply_op("ScatterNd", [_int_tensor(indices), updates, _int_tensor(shape)], name=name or "ScatterNd")


def _tensor_scatter(op_type, tensor, indices, updates, name):
    tensor = convert_to_tensor(tensor)
    updates = convert_to_tensor(updates, dtype=tensor.dtype)
    return apply_op(op_type, [tensor, _int_tensor(indices), updates], name=name or op_type)


def tensor_scatter_nd_update(tensor, indices, updates, name=None):
    """A copy of `tensor` with the slices at `indices` replaced by `updates`."""
    return _tensor_scatter("TensorScatterUpdate", tensor, indices, updates, name)


def tensor_scatter_nd_add(tensor, indices, updates, name=None):
    """A copy of `tensor` with `updates` added at `indices` (duplicates add)."""
    return _tensor_scatter("TensorScatterAdd", tensor, indices, updates, name)


def tensor_scatter_nd_sub(tensor, indices, updates, name=None):
    """A copy of `tensor` with `updates` subtracted at `indices`."""
    return _tensor_scatter("TensorScatterSub", tensor, indices, updates, name)


def tensor_scatter_nd_min(tensor, indices, updates, name=None):
    """A copy of `tensor` with the element-wise minimum of it and `updates` at `indices`."""
    return _tensor_scatter("TensorScatterMin", tensor, indices, updates, name)


def tensor_scatter_nd_max(tensor, indices, updates, name=None):
    """A copy of `tensor` with the element-wise maximum of it and `updates` at `indices`."""
    return _tensor_scatter("TensorScatterMax", tensor, indices, updates, name)


def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """Row i of the result sums the slices of `data` whose segment id is i (negative ids are dropped)."""
    return apply_op("UnsortedSegmentSum", [data, _int_tensor(segment_ids), _int_tensor(num_segments)],
                    name=name or "UnsortedSegmentSum")


# ---- tiling, padding, broadcasting, reversing, masking ----------------------------------------------


def tile(input, multiples, name=None):  # noqa: A002
    """`input` repeated multiples[i] times along dim i."""
    return apply_op("Tile", [input, _int_tensor(multiples)], name=name or "Tile")


def pad(tensor, paddings, mode="CONSTANT", name=None, constant_values=0):
    """`tensor` padded by `paddings` ([rank, 2]: before, after) with a constant, or by reflecting it.

    mode: CONSTANT, REFLECT (mirror without the edge) or SYMMETRIC (mirror with the edge).
    """
    tensor = convert_to_tensor(tensor)
    paddings = _int_tensor(paddings)
    mode = mode.upper()
    if mode == "CONSTANT":
        if not _is_tensor(constant_values) and constant_values == 0:
            return apply_op("Pad", [tensor, paddings], name=name or "Pad")
        value = constant_values if _is_tensor(constant_values) else convert_to_tensor(constant_values, dtype=tensor.dtype)
        return apply_op("PadV2", [tensor, paddings, value], name=name or "PadV2")
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ValueError(f"Unknown padding mode: {mode}")
    return apply_op("MirrorPad", [tensor, paddings], {"mode": mode}, name=name or "MirrorPad")


def broadcast_to(input, shape, name=None):  # noqa: A002
    """`input` broadcast to `shape` with NumPy's rules."""
    return apply_op("BroadcastTo", [input, _int_tensor(shape)], name=name or "BroadcastTo")


def reverse(tensor, axis, name=None):
    """`tensor` with the dims listed in `axis` reversed."""
    axis = [axis] if isinstance(axis, numbers.Integral) else axis
    return apply_op("ReverseV2", [tensor, _int_tensor(axis)], name=name or "ReverseV2")


reverse_v2 = reverse


def reverse_sequence(input, seq_lengths, seq_axis=None, batch_axis=None, name=None, seq_dim=None,  # noqa: A002
                     batch_dim=None):
    """`input` with the first seq_lengths[b] steps (along seq_axis) of batch entry b reversed."""
    seq_axis = seq_axis if seq_axis is not None else seq_dim
    batch_axis = batch_axis if batch_axis is not None else (batch_dim or 0)
    if seq_axis is None:
        raise ValueError("reverse_sequence needs seq_axis")
    return apply_op("ReverseSequence", [input, convert_to_tensor(seq_lengths, dtype_hint=dtypes.int64)],
                    {"seq_dim": int(seq_axis), "batch_dim": int(batch_axis)}, name=name or "ReverseSequence")


def sequence_mask(lengths, maxlen=None, dtype=dtypes.bool_, name=None):
    """mask[..., j] = j < lengths[...], for j below maxlen (by default the largest length)."""
    from tensorgrid.client import math_ops, scopes
    with scopes.name_scope(name, "SequenceMask"):
        lengths = convert_to_tensor(lengths)
        if maxlen is None:
            maxlen = math_ops.reduce_max(lengths)
        maxlen = cast(convert_to_tensor(maxlen), lengths.dtype)
        mask = math_ops.less(range(0, maxlen, 1, dtype=lengths.dtype), expand_dims(lengths, -1))
        return mask if dtypes.as_dtype(dtype) == dtypes.bool_ else cast(mask, dtype)


def boolean_mask(tensor, mask, name="boolean_mask", axis=None):
    """The slices of `tensor` where `mask` is true; mask covers the dims starting at `axis` (default 0)."""
    tensor = convert_to_tensor(tensor)
    mask = convert_to_tensor(mask, dtype=dtypes.bool_) if not _is_tensor(mask) else convert_to_tensor(mask)
    if mask.shape.ndims is None:
        raise ValueError("Number of mask dimensions must be specified, even if some dimensions are None. "
                         "E.g. shape=[None] is ok, but shape=None is not.")
    if mask.shape.ndims == 0:
        raise ValueError("mask cannot be scalar.")
    axis = 0 if axis is None else _static_int(axis, "boolean_mask: axis")
    if axis < 0:
        if tensor.shape.ndims is None:
            raise ValueError(f"boolean_mask: a negative axis ({axis}) needs a tensor of known rank")
        axis += tensor.shape.ndims
    return apply_op("BooleanMask", [tensor, mask], {"axis": axis}, name=name)


# ---- shapes and casts --------------------------------------------------------------------------------


def shape(input, name=None, out_type=dtypes.int32):  # noqa: A002
    """The shape of `input` as a 1-D integer tensor, computed when the step runs."""
    return apply_op("Shape", [input], {"out_type": dtypes.as_dtype(out_type)}, name=name or "Shape")


def size(input, name=None, out_type=dtypes.int32):  # noqa: A002
    """The number of elements of `input`."""
    return apply_op("Size", [input], {"out_type": dtypes.as_dtype(out_type)}, name=name or "Size")


def rank(input, name=None):  # noqa: A002
    """The number of dims of `input`, as an int32 scalar."""
    return apply_op("Rank", [input], name=name or "Rank")


def cast(x, dtype, name=None):
    """`x` converted to `dtype` (floats truncate toward zero into integers; x itself if already of dtype)."""
    x = convert_to_tensor(x)
    dtype = dtypes.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply_op("Cast", [x], {"SrcT": x.dtype, "DstT": dtype}, name=name or "Cast")


def to_float(x, name="ToFloat"):
    """`x` cast to float32 (TF1)."""
    return cast(x, dtypes.float32, name=name)


def to_double(x, name="ToDouble"):
    """`x` cast to float64 (TF1)."""
    return cast(x, dtypes.float64, name=name)


def to_int32(x, name="ToInt32"):
    """`x` cast to int32 (TF1)."""
    return cast(x, dtypes.int32, name=name)


def to_int64(x, name="ToInt64"):
    """`x` cast to int64 (TF1)."""
    return cast(x, dtypes.int64, name=name)


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """`t` with values below clip_value_min raised to it and values above clip_value_max lowered to it."""
    t = convert_to_tensor(t)
    lo, hi = (convert_to_tensor(v) if _is_tensor(v) else convert_to_tensor(v, dtype=t.dtype)
              for v in (clip_value_min, clip_value_max))
    return apply_op("ClipByValue", [t, lo, hi], name=name or "clip_by_value")


from tensorgrid.client import array_grad  # noqa: E402,F401 - registers the gradients above
