"""Gradients of the array ops, built from the client's ops so they work in graph and eager mode.

Where the shapes involved are known statically a gradient uses them as
constants, so its result keeps a static shape; otherwise it computes them
with Shape ops when the step runs.
"""

import numpy as np

from tensorgrid.client import array_ops as ao
from tensorgrid.client import math_ops
from tensorgrid.client.graph import apply_op
from tensorgrid.client.indexed_slices import IndexedSlices
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

registry.not_differentiable("Const", "Placeholder", "StopGradient", "ZerosLike", "OnesLike", "Range",
                            "LinSpace", "OneHot", "InvertPermutation", "Shape", "Size", "Rank")

_SLICE_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def _dims(t):
    """t's static shape as a list of ints, or None unless fully known."""
    return t.shape.as_list() if t.shape.is_fully_defined() else None


def _sum_to(grad, x):
    """`grad` of a result that broadcast `x`, summed back to x's shape."""
    xs, gs = _dims(x), grad.shape.as_tuple()
    if xs is not None and gs is not None:
        lead = len(gs) - len(xs)
        axes = list(range(lead)) + [lead + i for i, d in enumerate(xs) if d == 1 and gs[lead + i] != 1]
        if not axes:
            return grad
    else:
        axes, _ = math_ops.broadcast_gradient_args(ao.shape(x), ao.shape(grad))
    return ao.reshape(math_ops.reduce_sum(grad, axes), ao.shape_tensor(x))


def _normalized_axis(axis_tensor, rank_of):
    """A gather/concat axis input as a non-negative Python int when it can be, else as a tensor."""
    axis = math_ops.static_value(axis_tensor)
    rank = rank_of.shape.ndims
    if axis is None:
        return axis_tensor if rank is None else math_ops.mod(axis_tensor, rank)
    axis = int(np.asarray(axis).reshape(()))
    if axis >= 0:
        return axis
    return axis + rank if rank is not None else math_ops.mod(axis, ao.rank(rank_of))


@registry.register_gradient("Identity")
def _identity_grad(op, grad):
    return [grad]


@registry.register_gradient("PlaceholderWithDefault")
def _placeholder_with_default_grad(op, grad):
    return [grad]


@registry.register_gradient("Fill")
def _fill_grad(op, grad):
    return [None, math_ops.reduce_sum(grad)]


@registry.register_gradient("Reshape")
@registry.register_gradient("ExpandDims")
@registry.register_gradient("Squeeze")
def _reshape_grad(op, grad):
    return [ao.reshape(grad, ao.shape_tensor(op.inputs[0]))] + [None] * (len(op.inputs) - 1)


@registry.register_gradient("Transpose")
def _transpose_grad(op, grad):
    perm = math_ops.static_value(op.inputs[1])
    inverse = np.argsort(np.asarray(perm).reshape(-1)).tolist() if perm is not None else ao.invert_permutation(op.inputs[1])
    return [ao.transpose(grad, inverse), None]


@registry.register_gradient("ConcatV2")
def _concat_grad(op, grad):
    values = op.inputs[:-1]
    axis = _normalized_axis(op.inputs[-1], grad)
    if isinstance(axis, int) and all(v.shape.ndims is not None and v.shape[axis] is not None for v in values):
        sizes = [v.shape[axis] for v in values]
    else:
        sizes = ao.stack([ao.gather(ao.shape(v), axis) for v in values])
    return ao.split(grad, sizes, axis=axis, num=len(values)) + [None]


@registry.register_gradient("Pack")
def _pack_grad(op, grad):
    return ao.unstack(grad, num=op.get_attr("N"), axis=op.get_attr("axis"))


@registry.register_gradient("Unpack")
def _unpack_grad(op, *grads):
    return [ao.stack(list(grads), axis=op.get_attr("axis"))]


@registry.register_gradient("Split")
def _split_grad(op, *grads):
    return [None, ao.concat(list(grads), op.inputs[0])]


@registry.register_gradient("SplitV")
def _split_v_grad(op, *grads):
    return [ao.concat(list(grads), op.inputs[2]), None, None]


@registry.register_gradient("Slice")
def _slice_grad(op, grad):
    x, begin = op.inputs[0], op.inputs[1]
    b, xs, gs = math_ops.static_value(begin), _dims(x), _dims(op.outputs[0])
    if b is not None and xs is not None and gs is not None:
        paddings = [[int(bi), xi - int(bi) - gi] for bi, xi, gi in zip(np.asarray(b).reshape(-1), xs, gs)]
    else:
        after = ao.shape(x, out_type=begin.dtype) - begin - ao.shape(grad, out_type=begin.dtype)
        paddings = ao.stack([begin, after], axis=1)
    return [ao.pad(grad, paddings), None, None]


@registry.register_gradient("StridedSlice")
def _strided_slice_grad(op, grad):
    x, begin, end, strides = op.inputs
    attrs = {k: op.get_attr(k) for k in _SLICE_MASKS}
    dx = apply_op("StridedSliceGrad", [ao.shape_tensor(x, begin.dtype), begin, end, strides, grad], attrs,
                  name="StridedSliceGrad")
    return [dx, None, None, None]


@registry.register_gradient("StridedSliceGrad")
def _strided_slice_grad_grad(op, grad):
    masks = {k: op.get_attr(k) for k in _SLICE_MASKS}
    return [None, None, None, None, ao.strided_slice(grad, *op.inputs[1:4], **masks)]


def gathered_rows_gradient(grad, indices, dims, shape_fn):
    """The gradient (an IndexedSlices) of gathering rows `indices` of a tensor whose static shape is `dims`
    (None when not fully known: shape_fn() then gives its shape tensor)."""
    if dims is not None:
        dense_shape = ao.constant(dims, dtypes.int32)
        values = ao.reshape(grad, [-1] + dims[1:])
    else:
        dense_shape = shape_fn()
        values = ao.reshape(grad, ao.concat([[-1], dense_shape[1:]], 0))
    return IndexedSlices(values, ao.reshape(indices, [-1]), dense_shape)


@registry.register_gradient("GatherV2")
def _gather_grad(op, grad):
    params, indices = op.inputs[0], op.inputs[1]
    axis = _normalized_axis(op.inputs[2], params)
    rank = params.shape.ndims
    if not isinstance(axis, int) or rank is None:
        raise ValueError(f"the gradient of gather needs a constant axis and params of known rank, "
                         f"got axis {op.inputs[2]!r} and params shape {params.shape}")
    dims = _dims(params)
    if axis == 0:
        return [gathered_rows_gradient(grad, indices, dims, lambda: ao.shape(params)), None, None]
    if dims is not None:
        values_shape = dims[:axis] + [-1] + dims[axis + 1:]
        num_segments = dims[axis]
    else:
        params_shape = ao.shape(params)
        values_shape = ao.concat([params_shape[:axis], [-1], params_shape[axis + 1:]], 0)
        num_segments = params_shape[axis]
    values = ao.reshape(grad, values_shape)
    flat_indices = ao.reshape(indices, [-1])
    # the gathered axis goes first for the segment sum, then back to its place
    perm = [axis] + list(range(axis)) + list(range(axis + 1, rank))
    summed = ao.unsorted_segment_sum(ao.transpose(values, perm), flat_indices, num_segments)
    return [ao.transpose(summed, np.argsort(perm).tolist()), None, None]


@registry.register_gradient("GatherNd")
def _gather_nd_grad(op, grad):
    params, indices = op.inputs
    return [ao.scatter_nd(indices, grad, ao.shape_tensor(params, indices.dtype)), None]


@registry.register_gradient("ScatterNd")
def _scatter_nd_grad(op, grad):
    return [None, ao.gather_nd(grad, op.inputs[0]), None]


@registry.register_gradient("TensorScatterAdd")
def _tensor_scatter_add_grad(op, grad):
    return [grad, None, ao.gather_nd(grad, op.inputs[1])]


@registry.register_gradient("TensorScatterSub")
def _tensor_scatter_sub_grad(op, grad):
    return [grad, None, math_ops.negative(ao.gather_nd(grad, op.inputs[1]))]


@registry.register_gradient("TensorScatterUpdate")
def _tensor_scatter_update_grad(op, grad):
    indices, updates = op.inputs[1], op.inputs[2]
    return [ao.tensor_scatter_nd_update(grad, indices, ao.zeros_like(updates)), None, ao.gather_nd(grad, indices)]


@registry.register_gradient("UnsortedSegmentSum")
def _unsorted_segment_sum_grad(op, grad):
    ids = op.inputs[1]
    gathered = ao.gather(grad, math_ops.maximum(ids, 0))
    keep = math_ops.greater_equal(ids, 0)  # rows of dropped (negative) ids get no gradient
    extra = op.inputs[0].shape.ndims - ids.shape.ndims
    keep = ao.reshape(keep, ao.concat([ao.shape(ids), ao.ones([extra], ids.dtype)], 0)) if extra else keep
    return [math_ops.where(keep, gathered, ao.zeros_like(gathered)), None, None]


registry.not_differentiable("Unique")


@registry.register_gradient("DynamicPartition")
def _dynamic_partition_grad(op, *grads):
    data, partitions = op.inputs
    shape = ao.shape(partitions)
    positions = ao.reshape(ao.range(math_ops.reduce_prod(shape)), shape)
    parts = ao.dynamic_partition(positions, partitions, op.get_attr("num_partitions"))
    return [ao.reshape(ao.dynamic_stitch(parts, list(grads)), ao.shape_tensor(data)), None]


@registry.register_gradient("DynamicStitch")
def _dynamic_stitch_grad(op, grad):
    n = len(op.inputs) // 2
    # as TF's: every position an index names gets the gradient of its row, repeated indices included
    return [None] * n + [ao.gather(grad, ao.cast(i, dtypes.int32)) for i in op.inputs[:n]]


@registry.register_gradient("Tile")
def _tile_grad(op, grad):
    x, multiples = op.inputs
    rank = x.shape.ndims
    m, xs = math_ops.static_value(multiples), _dims(x)
    if m is not None and xs is not None:
        split_shape = [d for pair in zip(np.asarray(m).reshape(-1).tolist(), xs) for d in pair]
    else:
        split_shape = ao.reshape(ao.transpose(ao.stack([multiples, ao.shape(x, out_type=multiples.dtype)])), [-1])
    # grad viewed as [m0, d0, m1, d1, ...]: summing the m axes folds every tile onto the input
    axes = list(range(0, 2 * rank, 2)) if rank is not None else ao.range(0, ao.size(split_shape), 2)
    dx = math_ops.reduce_sum(ao.reshape(grad, split_shape), axes)
    return [ao.reshape(dx, ao.shape_tensor(x)), None]


@registry.register_gradient("Pad")
@registry.register_gradient("PadV2")
def _pad_grad(op, grad):
    x, paddings = op.inputs[0], op.inputs[1]
    p = math_ops.static_value(paddings)
    begin = np.asarray(p)[:, 0].tolist() if p is not None else ao.reshape(ao.slice(paddings, [0, 0], [-1, 1]), [-1])
    dx = ao.slice(grad, begin, ao.shape_tensor(x, paddings.dtype))
    return [dx] + [None] * (len(op.inputs) - 1)


@registry.register_gradient("MirrorPad")
def _mirror_pad_grad(op, grad):
    mode = op.get_attr("mode")
    return [apply_op("MirrorPadGrad", [grad, op.inputs[1]], {"mode": mode}, name="MirrorPadGrad"), None]


@registry.register_gradient("MirrorPadGrad")
def _mirror_pad_grad_grad(op, grad):
    mode = op.get_attr("mode")
    return [apply_op("MirrorPad", [grad, op.inputs[1]], {"mode": mode}, name="MirrorPad"), None]


@registry.register_gradient("BroadcastTo")
def _broadcast_to_grad(op, grad):
    return [_sum_to(grad, op.inputs[0]), None]


@registry.register_gradient("Cast")
def _cast_grad(op, grad):
    src, dst = op.inputs[0].dtype, op.outputs[0].dtype
    return [ao.cast(grad, src) if src.is_floating and dst.is_floating else None]


@registry.register_gradient("ClipByValue")
def _clip_by_value_grad(op, grad):
    t, lo, hi = op.inputs
    zeros = ao.zeros_like(grad)
    below, above = math_ops.less(t, lo), math_ops.greater(t, hi)
    dt = math_ops.where(math_ops.logical_or(below, above), zeros, grad)
    return [dt, _sum_to(math_ops.where(below, grad, zeros), lo), _sum_to(math_ops.where(above, grad, zeros), hi)]


@registry.register_gradient("ReverseV2")
def _reverse_grad(op, grad):
    return [ao.reverse(grad, op.inputs[1]), None]


@registry.register_gradient("ReverseSequence")
def _reverse_sequence_grad(op, grad):
    return [ao.reverse_sequence(grad, op.inputs[1], op.get_attr("seq_dim"), op.get_attr("batch_dim")), None]


@registry.register_gradient("BooleanMask")
def _boolean_mask_grad(op, grad):
    x, mask = op.inputs
    dx = apply_op("BooleanMaskGrad", [grad, mask, ao.shape_tensor(x)], {"axis": op.get_attr("axis")},
                  name="BooleanMaskGrad")
    return [dx, None]


@registry.register_gradient("BooleanMaskGrad")
def _boolean_mask_grad_grad(op, grad):
    return [ao.boolean_mask(grad, op.inputs[1], axis=op.get_attr("axis")), None, None]
