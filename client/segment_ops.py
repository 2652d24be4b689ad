"""tg.math's segment reductions (segment_* over sorted ids, unsorted_segment_*) and their gradients.

The kernels are in tensorgrid/ops/segment_ops.py; unsorted_segment_sum is
array_ops'. unsorted_segment_mean and unsorted_segment_sqrt_n are, as in TF,
an unsorted_segment_sum divided by each segment's count (or its square root),
an empty segment counting as 1.
"""

from tensorgrid.client import array_ops as ao
from tensorgrid.client import math_ops
from tensorgrid.client import scopes
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["segment_sum", "segment_mean", "segment_max", "segment_min", "segment_prod",
           "unsorted_segment_mean", "unsorted_segment_max", "unsorted_segment_min", "unsorted_segment_prod",
           "unsorted_segment_sqrt_n", "sparse_segment_sum", "sparse_segment_mean", "sparse_segment_sqrt_n"]


def _sorted(kind):
    def segment_reduce(data, segment_ids, name=None):
        return apply_op(f"Segment{kind}", [data, ao._int_tensor(segment_ids)], name=name or f"Segment{kind}")
    segment_reduce.__name__ = f"segment_{kind.lower()}"
    segment_reduce.__doc__ = (f"Row i is the {kind.lower()} of the rows of `data` whose (sorted) segment id is i; "
                              "an empty segment is 0 (1 for a product).")
    return segment_reduce


def _unsorted(kind):
    def unsorted_segment_reduce(data, segment_ids, num_segments, name=None):
        return apply_op(f"UnsortedSegment{kind}", [data, ao._int_tensor(segment_ids), ao._int_tensor(num_segments)],
                        name=name or f"UnsortedSegment{kind}")
    unsorted_segment_reduce.__name__ = f"unsorted_segment_{kind.lower()}"
    unsorted_segment_reduce.__doc__ = (f"Row i is the {kind.lower()} of the slices of `data` whose segment id is i "
                                       "(negative ids dropped); an empty segment holds the reduction's identity.")
    return unsorted_segment_reduce


segment_sum, segment_mean, segment_max, segment_min, segment_prod = (
    _sorted(k) for k in ("Sum", "Mean", "Max", "Min", "Prod"))
unsorted_segment_max, unsorted_segment_min, unsorted_segment_prod = (_unsorted(k) for k in ("Max", "Min", "Prod"))


def _segment_counts(data, segment_ids, num_segments):
    """How many slices each segment has (at least 1), shaped to broadcast against `data`'s segment sums."""
    ids = ao._int_tensor(segment_ids)
    ones = ao.ones(ao.shape(ids), data.dtype)
    counts = math_ops.maximum(ao.unsorted_segment_sum(ones, ids, num_segments), ao.ones([], data.dtype))
    extra = ao.ones(ao.reshape(ao.rank(data) - ao.rank(ids), [1]), dtypes.int32)
    return ao.reshape(counts, ao.concat([ao.shape(counts), extra], 0))


def unsorted_segment_mean(data, segment_ids, num_segments, name=None):
    """Row i is the mean of the slices of `data` whose segment id is i (an empty segment is 0)."""
    with scopes.name_scope(name, "UnsortedSegmentMean"):
        data = convert_to_tensor(data)
        return ao.unsorted_segment_sum(data, segment_ids, num_segments) / \
            _segment_counts(data, segment_ids, num_segments)


def unsorted_segment_sqrt_n(data, segment_ids, num_segments, name=None):
    """Row i is the sum of the slices of `data` with segment id i divided by the sqrt of their count."""
    with scopes.name_scope(name, "UnsortedSegmentSqrtN"):
        data = convert_to_tensor(data)
        return ao.unsorted_segment_sum(data, segment_ids, num_segments) / \
            math_ops.sqrt(_segment_counts(data, segment_ids, num_segments))


# ---- gradients -----------------------------------------------------------------------------------------


def _gather_dropping_negatives(params, ids):
    """params[ids] with the rows of negative ids zero, and the (broadcastable) mask of kept ids."""
    gathered = ao.gather(params, math_ops.maximum(ids, 0))
    keep = math_ops.greater_equal(ids, 0)
    extra = ao.ones(ao.reshape(ao.rank(gathered) - ao.rank(ids), [1]), dtypes.int32)
    keep = ao.reshape(keep, ao.concat([ao.shape(ids), extra], 0))
    return math_ops.where(keep, gathered, ao.zeros_like(gathered)), keep


@registry.register_gradient("SegmentSum")
def _segment_sum_grad(op, grad):
    return [ao.gather(grad, op.inputs[1]), None]


@registry.register_gradient("SegmentMean")
def _segment_mean_grad(op, grad):
    data, ids = op.inputs
    rows = ao.shape(grad)[0]
    return [ao.gather(grad / _segment_counts(data, ids, rows), ids), None]


def _min_or_max_grad(op, grad, num_segments):
    data, ids = op.inputs[0], op.inputs[1]
    chosen_value, keep = _gather_dropping_negatives(op.outputs[0], ids)
    chosen = math_ops.logical_and(math_ops.equal(data, chosen_value), keep)
    # ties share the gradient equally, as in TF
    shares = ao.unsorted_segment_sum(ao.cast(chosen, grad.dtype), ids, num_segments)
    spread, _ = _gather_dropping_negatives(grad / shares, ids)
    return [math_ops.where(chosen, spread, ao.zeros_like(spread)), None] + [None] * (len(op.inputs) - 2)


def _prod_grad(op, grad, num_segments):
    data, ids = op.inputs[0], op.inputs[1]
    zero = math_ops.equal(data, ao.zeros([], data.dtype))
    zeros_per_segment = ao.unsorted_segment_sum(ao.cast(zero, dtypes.int32), ids, num_segments)
    # two zeros in a segment: every element's derivative is 0
    grad = math_ops.where(math_ops.greater(zeros_per_segment, 1), ao.zeros_like(grad), grad)
    nonzero_data = math_ops.where(zero, ao.ones_like(data), data)
    nonzero_prod = apply_op("UnsortedSegmentProd", [nonzero_data, ids, ao._int_tensor(num_segments)])
    prod, _ = _gather_dropping_negatives(op.outputs[0], ids)
    others, _ = _gather_dropping_negatives(nonzero_prod, ids)
    partial = math_ops.where(zero, others, prod / nonzero_data)
    spread, _ = _gather_dropping_negatives(grad, ids)
    return [spread * partial, None] + [None] * (len(op.inputs) - 2)


@registry.register_gradient("SegmentMax")
@registry.register_gradient("SegmentMin")
def _segment_min_or_max_grad(op, grad):
    return _min_or_max_grad(op, grad, ao.shape(grad)[0])


@registry.register_gradient("UnsortedSegmentMax")
@registry.register_gradient("UnsortedSegmentMin")
def _unsorted_segment_min_or_max_grad(op, grad):
    return _min_or_max_grad(op, grad, op.inputs[2])


@registry.register_gradient("SegmentProd")
def _segment_prod_grad(op, grad):
    return _prod_grad(op, grad, ao.shape(grad)[0])


@registry.register_gradient("UnsortedSegmentProd")
def _unsorted_segment_prod_grad(op, grad):
    return _prod_grad(op, grad, op.inputs[2])


# ---- sparse segment reductions (tg.sparse.segment_*) --------------------------------------------------------


def _sparse_segment(kind):
    def sparse_segment_reduce(data, indices, segment_ids, num_segments=None, name=None):
        inputs = [data, ao._int_tensor(indices), ao._int_tensor(segment_ids)]
        op = f"SparseSegment{kind}"
        if num_segments is not None:
            inputs.append(ao._int_tensor(num_segments))
            op += "WithNumSegments"
        return apply_op(op, inputs, name=name or op)
    sparse_segment_reduce.__name__ = f"sparse_segment_{kind.lower()}"
    sparse_segment_reduce.__doc__ = (f"Row i is the {kind} of the rows data[indices[j]] whose (sorted) segment_ids[j] "
                                     "is i; num_segments fixes the row count.")
    return sparse_segment_reduce


sparse_segment_sum, sparse_segment_mean, sparse_segment_sqrt_n = (_sparse_segment(k) for k in ("Sum", "Mean", "SqrtN"))


def _sparse_segment_grad(kind):
    def grad_fn(op, grad):
        data, indices, ids = op.inputs[0], op.inputs[1], op.inputs[2]
        if kind != "Sum":
            counts = _segment_counts(grad, ids, ao.shape(grad)[0])
            grad = grad / (counts if kind == "Mean" else math_ops.sqrt(counts))
        rows = ao.shape(data)[0]
        return [ao.unsorted_segment_sum(ao.gather(grad, ids), indices, rows)] + [None] * (len(op.inputs) - 1)
    return grad_fn


for _kind in ("Sum", "Mean", "SqrtN"):
    registry.register_gradient(f"SparseSegment{_kind}")(_sparse_segment_grad(_kind))
    registry.register_gradient(f"SparseSegment{_kind}WithNumSegments")(_sparse_segment_grad(_kind))
