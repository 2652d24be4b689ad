"""tg.sparse: ops on SparseTensors (TF2's tf.sparse, TF1's sparse_* names), and their gradients.

Each function takes and returns SparseTensors (client/sparse_tensor.py) and
builds TF's ops (tensorgrid/ops/sparse_ops.py): SparseToDense,
SparseTensorDenseMatMul, SparseReduceSum, SparseAdd, SparseTensorDenseAdd,
SparseReorder, SparseReshape. Gradients flow to the values and to the dense
operands where TF's do.
"""

from tensorgrid.client import array_ops as ao
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import math_ops
from tensorgrid.client import scopes
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.sparse_tensor import SparseTensor, SparseTensorValue
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["SparseTensor", "SparseTensorValue", "to_dense", "from_dense", "sparse_dense_matmul", "reduce_sum",
           "add", "reorder", "reshape", "retain", "transpose", "segment_sum", "segment_mean", "segment_sqrt_n"]


def _sparse(x, what="sp_input"):
    if isinstance(x, SparseTensorValue):
        return SparseTensor.from_value(x)
    if not isinstance(x, SparseTensor):
        raise TypeError(f"{what} must be a SparseTensor, not {type(x).__name__}")
    return x


def to_dense(sp_input, default_value=None, validate_indices=True, name=None):
    """The dense tensor of `sp_input`, default_value (zero) where it has no element."""
    sp = _sparse(sp_input)
    default = ao.zeros([], sp.dtype) if default_value is None else convert_to_tensor(default_value, dtype=sp.dtype)
    out = apply_op("SparseToDense", [sp.indices, sp.dense_shape, sp.values, default],
                   {"validate_indices": bool(validate_indices)}, name=name or "SparseToDense")
    if not graph_lib.context.executing_eagerly() and sp.shape.ndims is not None:
        out._shape = out.shape.merge_with(sp.shape)
    return out


def sparse_to_dense(sparse_indices, output_shape, sparse_values, default_value=0, validate_indices=True,
                    name=None):
    """TF1's tf.sparse_to_dense: a dense tensor of output_shape with sparse_values at sparse_indices."""
    values = convert_to_tensor(sparse_values)
    return apply_op("SparseToDense", [ao._int_tensor(sparse_indices), ao._int_tensor(output_shape), values,
                                      convert_to_tensor(default_value, dtype=values.dtype)],
                    {"validate_indices": bool(validate_indices)}, name=name or "SparseToDense")


def from_dense(tensor, name=None):
    """The SparseTensor of the non-zero elements of `tensor`."""
    with scopes.name_scope(name, "dense_to_sparse"):
        x = convert_to_tensor(tensor)
        indices = math_ops.where(math_ops.not_equal(x, ao.zeros([], x.dtype) if x.dtype is not dtypes.string
                                                    else ao.constant(b"")))
        return SparseTensor(indices, ao.gather_nd(x, indices), ao.shape(x, out_type=dtypes.int64))


def sparse_dense_matmul(sp_a, b, adjoint_a=False, adjoint_b=False, name=None):
    """The matrix product of a SparseTensor and a dense matrix (either order), as a dense matrix."""
    if isinstance(b, (SparseTensor, SparseTensorValue)) and not isinstance(sp_a, (SparseTensor, SparseTensorValue)):
        # dense @ sparse == (sparse^T @ dense^T)^T
        return ao.transpose(sparse_dense_matmul(b, sp_a, adjoint_a=not adjoint_b, adjoint_b=not adjoint_a,
                                                name=name))
    sp = _sparse(sp_a, "sp_a")
    with scopes.name_scope(name, "SparseTensorDenseMatMul"):
        return apply_op("SparseTensorDenseMatMul",
                        [sp.indices, sp.values, sp.dense_shape, convert_to_tensor(b, dtype=sp.dtype)],
                        {"adjoint_a": bool(adjoint_a), "adjoint_b": bool(adjoint_b)}, name="SparseTensorDenseMatMul")


def _axes(sp, axis):
    if axis is not None:
        return ao._int_tensor(axis)
    rank = sp.shape.ndims
    if rank is not None:
        return ao.constant(list(range(rank)), dtypes.int32)
    return ao.range(ao.size(sp.dense_shape))


def reduce_sum(sp_input, axis=None, keepdims=None, output_is_sparse=False, name=None, *, reduction_axes=None,
               keep_dims=None):
    """The sum of the elements of `sp_input` over `axis` (all axes when None): dense, or a SparseTensor."""
    sp = _sparse(sp_input)
    axis = reduction_axes if axis is None else axis
    keep = bool(keep_dims if keepdims is None else keepdims)
    if output_is_sparse:   # one element per group of input elements, zero sums included, as TF
        indices, values, shape = apply_op("SparseReduceSumSparse",
                                          [sp.indices, sp.values, sp.dense_shape, _axes(sp, axis)],
                                          {"keep_dims": keep}, name=name or "SparseReduceSumSparse")
        return SparseTensor(indices, values, shape)
    return apply_op("SparseReduceSum", [sp.indices, sp.values, sp.dense_shape, _axes(sp, axis)],
                    {"keep_dims": keep}, name=name or "SparseReduceSum")


def add(a, b, threshold=0, name=None, *, thresh=None):
    """a + b: a SparseTensor when both are sparse (sums below `threshold` in magnitude dropped), else dense."""
    a_sparse = isinstance(a, (SparseTensor, SparseTensorValue))
    b_sparse = isinstance(b, (SparseTensor, SparseTensorValue))
    if not a_sparse and not b_sparse:
        raise TypeError("tg.sparse.add needs at least one SparseTensor operand")
    if a_sparse and b_sparse:
        a, b = _sparse(a, "a"), _sparse(b, "b")
        threshold = thresh if thresh is not None else threshold
        real = a.dtype.real_dtype
        t = convert_to_tensor(threshold, dtype=real)
        indices, values, shape = apply_op("SparseAdd", [a.indices, a.values, a.dense_shape, b.indices, b.values,
                                                        b.dense_shape, t], name=name or "SparseAdd")
        static = a.shape.merge_with(b.shape)
        return SparseTensor(indices, values, shape, _static_shape=static if static.ndims is not None else None)
    sp, dense = (_sparse(a, "a"), b) if a_sparse else (_sparse(b, "b"), a)
    return apply_op("SparseTensorDenseAdd", [sp.indices, sp.values, sp.dense_shape,
                                             convert_to_tensor(dense, dtype=sp.dtype)],
                    name=name or "SparseTensorDenseAdd")


def reorder(sp_input, name=None):
    """The same SparseTensor with its elements in canonical row-major order."""
    sp = _sparse(sp_input)
    indices, values = apply_op("SparseReorder", [sp.indices, sp.values, sp.dense_shape], name=name or "SparseReorder")
    return SparseTensor(indices, values, sp.dense_shape, _static_shape=sp._static_shape)


def reshape(sp_input, shape, name=None):
    """`sp_input` reshaped to `shape` (one -1 allowed), its elements in the same row-major positions."""
    sp = _sparse(sp_input)
    indices, new_shape = apply_op("SparseReshape", [sp.indices, sp.dense_shape,
                                                    convert_to_tensor(shape, dtype=dtypes.int64)],
                                  name=name or "SparseReshape")
    known = None
    static = None if graph_lib.context.executing_eagerly() else graph_lib._const_value(new_shape.op.inputs[2])
    if static is not None:
        known = [None if int(d) == -1 else int(d) for d in static]
        if known.count(None) == 1 and sp.shape.is_fully_defined():
            rest = 1
            for d in known:
                rest *= 1 if d is None else d
            total = 1
            for d in sp.shape.as_list():
                total *= d
            known[known.index(None)] = total // rest if rest else None
    return SparseTensor(indices, ao.identity(sp.values), new_shape, _static_shape=known)


def retain(sp_input, to_retain):
    """The SparseTensor of the elements of `sp_input` whose entry in bool vector `to_retain` is true."""
    sp = _sparse(sp_input)
    keep = convert_to_tensor(to_retain, dtype=dtypes.bool_)
    where = ao.reshape(math_ops.where(keep), [-1])
    return SparseTensor(ao.gather(sp.indices, where), ao.gather(sp.values, where), ao.identity(sp.dense_shape),
                        _static_shape=sp._static_shape)


def transpose(sp_input, perm=None, name=None):
    """`sp_input` with its dimensions permuted by `perm` (reversed when None), in canonical order."""
    sp = _sparse(sp_input)
    with scopes.name_scope(name, "SparseTranspose"):
        if perm is None:
            rank = sp.shape.ndims
            perm = list(range(rank - 1, -1, -1)) if rank is not None else \
                ao.range(ao.size(sp.dense_shape) - 1, -1, -1)
        perm = ao._int_tensor(perm)
        indices = ao.transpose(ao.gather(ao.transpose(sp.indices), perm))
        shape = ao.gather(sp.dense_shape, perm)
        static = None
        if sp.shape.ndims is not None and not graph_lib.context.executing_eagerly():
            pv = graph_lib._const_value(perm)
            if pv is not None:
                static = [sp.shape.as_list()[int(p)] for p in pv]
        return reorder(SparseTensor(indices, sp.values, shape, _static_shape=static))


def sparse_placeholder(dtype, shape=None, name=None):
    """TF1's tf.sparse_placeholder: a SparseTensor of three placeholders that every run feeds."""
    from tensorgrid.framework.shapes import TensorShape
    shape = TensorShape(shape)
    rank = shape.ndims
    values = ao.placeholder(dtype, [None], name=None if name is None else name + "/values")
    indices = ao.placeholder(dtypes.int64, [None, rank], name=None if name is None else name + "/indices")
    if shape.is_fully_defined():
        dense_shape = ao.placeholder_with_default(ao.constant(shape.as_list(), dtypes.int64), [rank],
                                                  name=None if name is None else name + "/shape")
    else:
        dense_shape = ao.placeholder(dtypes.int64, [rank], name=None if name is None else name + "/shape")
    return SparseTensor(indices, values, dense_shape, _static_shape=shape if shape.ndims is not None else None)


def embedding_lookup_sparse(params, sp_ids, sp_weights, partition_strategy="mod", name=None, combiner=None,
                            max_norm=None, allow_fast_lookup=False):
    """Each row of SparseTensor `sp_ids` as the combination ("sum", "mean" (default), "sqrtn") of the
    embeddings of its ids, weighted by `sp_weights` (a SparseTensor of the same indices) when given."""
    from tensorgrid.client import embedding_ops, segment_ops
    combiner = combiner or "mean"
    if combiner not in ("sum", "mean", "sqrtn"):
        raise ValueError(f"combiner must be one of 'mean', 'sqrtn' or 'sum', got {combiner!r}")
    ids = _sparse(sp_ids, "sp_ids")
    with scopes.name_scope(name, "embedding_lookup_sparse"):
        rows = ao.gather(ids.indices, 0, axis=1)
        unique_ids, where = ao.unique(ids.values)
        embeddings = embedding_ops.embedding_lookup(params, unique_ids, partition_strategy=partition_strategy,
                                                    max_norm=max_norm)
        if sp_weights is None:
            reduce = {"sum": segment_ops.sparse_segment_sum, "mean": segment_ops.sparse_segment_mean,
                      "sqrtn": segment_ops.sparse_segment_sqrt_n}[combiner]
            return reduce(embeddings, where, rows)
        weights = _sparse(sp_weights, "sp_weights").values
        weights = ao.cast(weights, embeddings.dtype) if weights.dtype != embeddings.dtype else weights
        weighted = ao.gather(embeddings, where) * ao.expand_dims(weights, 1)
        total = segment_ops.segment_sum(weighted, rows)
        if combiner == "sum":
            return total
        norm = weights if combiner == "mean" else math_ops.square(weights)
        norm = segment_ops.segment_sum(norm, rows)
        norm = ao.expand_dims(norm if combiner == "mean" else math_ops.sqrt(norm), 1)
        empty = math_ops.equal(norm, ao.zeros([], norm.dtype))     # a row without ids is 0, as TF's div_no_nan
        return math_ops.where(empty, ao.zeros_like(total), total / math_ops.where(empty, ao.ones_like(norm), norm))


# ---- gradients -----------------------------------------------------------------------------------------


@registry.register_gradient("SparseToDense")
def _sparse_to_dense_grad(op, grad):
    values_grad = ao.gather_nd(grad, op.inputs[0])
    default_grad = math_ops.reduce_sum(grad) - math_ops.reduce_sum(values_grad)
    return [None, None, values_grad, default_grad]


@registry.register_gradient("SparseTensorDenseMatMul")
def _sparse_dense_matmul_grad(op, grad):
    indices, values, shape, b = op.inputs
    adj_a, adj_b = op.get_attr("adjoint_a"), op.get_attr("adjoint_b")
    b_grad = apply_op("SparseTensorDenseMatMul", [indices, values, shape, grad],
                      {"adjoint_a": not adj_a, "adjoint_b": False})
    if adj_b:
        b_grad = ao.transpose(b_grad)
    rows, cols = ao.gather(indices, 0, axis=1), ao.gather(indices, 1, axis=1)
    out_rows, b_rows = (cols, rows) if adj_a else (rows, cols)
    b_eff = ao.transpose(b) if adj_b else b
    values_grad = math_ops.reduce_sum(ao.gather(grad, out_rows) * ao.gather(b_eff, b_rows), axis=1)
    return [None, values_grad, None, b_grad]


@registry.register_gradient("SparseReduceSum")
def _sparse_reduce_sum_grad(op, grad):
    indices, shape = op.inputs[0], op.inputs[2]
    kept = math_ops.reduced_shape(shape, op.inputs[3])
    scale = math_ops.floordiv(shape, kept)   # the reduced dims' sizes, 1 elsewhere: indices // scale zeroes them
    return [None, ao.gather_nd(ao.reshape(grad, kept), math_ops.floordiv(indices, scale)), None, None]


@registry.register_gradient("SparseAdd")
def _sparse_add_grad(op, indices_grad, values_grad, shape_grad):
    a_grad, b_grad = apply_op("SparseAddGrad", [values_grad, op.inputs[0], op.inputs[3], op.outputs[0]])
    return [None, a_grad, None, None, b_grad, None, None]


@registry.register_gradient("SparseTensorDenseAdd")
def _sparse_dense_add_grad(op, grad):
    return [None, ao.gather_nd(grad, op.inputs[0]), None, grad]


@registry.register_gradient("SparseReorder")
def _sparse_reorder_grad(op, indices_grad, values_grad):
    indices, shape = op.inputs[0], op.inputs[2]
    entries = ao.range(ao.shape(indices, out_type=dtypes.int64)[0], dtype=dtypes.int64)
    _, order = apply_op("SparseReorder", [indices, entries, shape])
    return [None, ao.gather(values_grad, ao.invert_permutation(order)), None]


registry.not_differentiable("SparseReshape", "SparseAddGrad", "SparseReduceSumSparse")


from tensorgrid.client.segment_ops import (  # noqa: E402 - tg.sparse.segment_* (kernels beside the dense ones)
    sparse_segment_sum as segment_sum, sparse_segment_mean as segment_mean, sparse_segment_sqrt_n as segment_sqrt_n)
