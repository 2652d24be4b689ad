"""Sparse ops: the kernels behind tg.sparse (client/sparse_ops.py), with TF's op names.

A sparse tensor travels as three dense tensors: `indices` (int64 [nnz, rank],
one row per stored element), `values` ([nnz]) and `dense_shape` (int64
[rank]). Ops that TF documents as needing canonical (row-major sorted)
indices check the order where TF's kernels do (SparseToDense) and assume it
elsewhere (SparseAdd). Kernels work on host arrays (index bookkeeping is
NumPy) and hand results back in the device's array module.
"""

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.array_ops import _host, _invalid
from tensorgrid.ops.array_ops import _vector_length as _rank_of_shape_input
from tensorgrid.ops.registry import register


def _require_int64(ctx, i, what):
    if ctx.input_dtypes[i] is not dtypes.int64:
        raise TypeError(f"{ctx.op} '{ctx.name}': {what} must be int64, not {ctx.input_dtypes[i].name}")


def _const_shape(ctx, i):
    v = ctx.const_values[i]
    return None if v is None else tuple(int(d) for d in np.asarray(v).reshape(-1))


def _check_sparse_parts(ctx, first):
    """Checks indices [nnz, rank], values [nnz], shape [rank] at inputs first..first+2."""
    _require_int64(ctx, first, "indices")
    _require_int64(ctx, first + 2, "dense_shape")
    ind, val, shp = ctx.input_shapes[first:first + 3]
    if ind is not None and len(ind) != 2:
        raise ctx.error(f"indices must be a matrix [nnz, rank], got shape {list(ind)}")
    if val is not None and len(val) != 1:
        raise ctx.error(f"values must be a vector [nnz], got shape {list(val)}")
    if shp is not None and len(shp) != 1:
        raise ctx.error(f"dense_shape must be a vector [rank], got shape {list(shp)}")
    if ind is not None and val is not None and None not in (ind[0], val[0]) and ind[0] != val[0]:
        raise ctx.error(f"indices has {ind[0]} rows but values has {val[0]} elements")


def _check_in_bounds(indices, shape):
    """InvalidArgumentError for the first index row outside `shape`, in TF's words."""
    if indices.size == 0:
        return
    bad = np.nonzero(((indices < 0) | (indices >= np.asarray(shape, dtype=np.int64))).any(axis=1))[0]
    if bad.size:
        i = int(bad[0])
        raise _invalid(f"indices[{i}] = [{','.join(str(int(x)) for x in indices[i])}] is out of bounds: "
                       f"need 0 <= index < [{','.join(str(int(d)) for d in shape)}]")


def _linear(indices, shape):
    """Each index row's row-major position in a tensor of `shape` (int64)."""
    strides = np.ones(len(shape), dtype=np.int64)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * int(shape[k + 1])
    return indices.astype(np.int64) @ strides if len(shape) else np.zeros(len(indices), np.int64)


# ---- SparseToDense ------------------------------------------------------------------------------------


def _infer_sparse_to_dense(ctx):
    if not ctx.input_dtypes[0].is_integer or not ctx.input_dtypes[1].is_integer:
        raise TypeError(f"{ctx.op} '{ctx.name}': sparse_indices and output_shape must be integer tensors")
    if ctx.input_dtypes[2] is not ctx.input_dtypes[3]:
        raise TypeError(f"{ctx.op} '{ctx.name}': default_value is {ctx.input_dtypes[3].name} but sparse_values "
                        f"are {ctx.input_dtypes[2].name}")
    ind = ctx.input_shapes[0]
    if ind is not None and len(ind) > 2:
        raise ctx.error(f"sparse_indices must be at most 2-D, got shape {list(ind)}")
    dims = _const_shape(ctx, 1)
    if dims is not None:
        return [(ctx.input_dtypes[2], tuple(None if d < 0 else d for d in dims))]
    n = _rank_of_shape_input(ctx, 1)
    return [(ctx.input_dtypes[2], None if n is None else (None,) * n)]


def _sparse_to_dense_kernel(node):
    xp = node.xp
    validate = node.attr("validate_indices", True)

    def sparse_to_dense(sparse_indices, output_shape, sparse_values, default_value):
        shape = [int(d) for d in _host(output_shape).reshape(-1)]
        ind = _host(sparse_indices).astype(np.int64)
        ind = ind.reshape(-1, 1) if ind.ndim < 2 and len(shape) == 1 else ind.reshape(-1, len(shape)) \
            if ind.ndim < 2 else ind
        if ind.shape[1] != len(shape):
            raise _invalid(f"sparse_indices rows have {ind.shape[1]} elements but output_shape has "
                           f"{len(shape)} dimensions")
        values = xp.asarray(sparse_values)
        if values.ndim == 1 and values.shape[0] != ind.shape[0]:
            raise _invalid(f"sparse_values has {values.shape[0]} elements but sparse_indices has "
                           f"{ind.shape[0]} rows")
        if np.ndim(default_value) != 0:
            raise _invalid(f"default_value must be a scalar, got shape {list(np.shape(default_value))}")
        _check_in_bounds(ind, shape)
        if validate and len(ind) > 1:
            lin = _linear(ind, shape)
            step = np.diff(lin)
            if (step <= 0).any():
                i = int(np.nonzero(step <= 0)[0][0]) + 1
                row = ",".join(str(int(x)) for x in ind[i])
                if step[i - 1] == 0:
                    raise _invalid(f"indices[{i}] = [{row}] is repeated")
                raise _invalid(f"indices[{i}] = [{row}] is out of order. Many sparse ops require sorted "
                               "indices.\n    Use `tf.sparse.reorder` to create a correctly ordered copy.\n\n")
        out = xp.full(shape, default_value, dtype=values.dtype)
        if ind.size:
            out[tuple(xp.asarray(ind[:, k]) for k in range(len(shape)))] = values
        return out
    return sparse_to_dense


register("SparseToDense", _infer_sparse_to_dense, _sparse_to_dense_kernel, cpu_only=True,
         doc="A dense tensor of output_shape holding sparse_values at sparse_indices, default_value elsewhere.")


# ---- SparseTensorDenseMatMul ----------------------------------------------------------------------------


def _infer_sparse_dense_matmul(ctx):
    _check_sparse_parts(ctx, 0)
    if ctx.input_dtypes[1] is not ctx.input_dtypes[3]:
        raise TypeError(f"{ctx.op} '{ctx.name}': sparse values are {ctx.input_dtypes[1].name} but the dense "
                        f"matrix is {ctx.input_dtypes[3].name}")
    b = ctx.input_shapes[3]
    if b is not None and len(b) != 2:
        raise ctx.error(f"Tensor 'b' is not a matrix: shape {list(b)}")
    a = _const_shape(ctx, 2)
    if a is not None and len(a) != 2:
        raise ctx.error(f"Tensor 'a_shape' is not a vector of 2 elements: {list(a)}")
    adj_a, adj_b = ctx.attr("adjoint_a", False), ctx.attr("adjoint_b", False)
    rows = None if a is None else a[1 if adj_a else 0]
    inner_a = None if a is None else a[0 if adj_a else 1]
    cols = None if b is None else b[0 if adj_b else 1]
    inner_b = None if b is None else b[1 if adj_b else 0]
    if None not in (inner_a, inner_b) and inner_a != inner_b:
        raise ctx.error(f"Cannot multiply A and B because inner dimension does not match: {inner_a} vs. {inner_b}")
    return [(ctx.input_dtypes[1], (rows, cols))]


def _sparse_dense_matmul_kernel(node):
    xp = node.xp
    adj_a, adj_b = node.attr("adjoint_a", False), node.attr("adjoint_b", False)

    def sparse_tensor_dense_matmul(a_indices, a_values, a_shape, b):
        shape = [int(d) for d in _host(a_shape)]
        if len(shape) != 2:
            raise _invalid(f"Tensor 'a_shape' is not a vector of 2 elements: {shape}")
        ind = _host(a_indices).astype(np.int64)
        bb = b.T if adj_b else b
        rows, inner = (shape[1], shape[0]) if adj_a else (shape[0], shape[1])
        if bb.shape[0] != inner:
            raise _invalid(f"Cannot multiply A and B because inner dimension does not match: "
                           f"{inner} vs. {bb.shape[0]}.  Did you forget a transpose?  Dimensions of A: "
                           f"[{shape[0]}, {shape[1]}).  Dimensions of B: {list(b.shape)}")
        _check_in_bounds(ind, shape)
        r, c = (ind[:, 1], ind[:, 0]) if adj_a else (ind[:, 0], ind[:, 1])
        out = xp.zeros((rows, bb.shape[1]), dtype=b.dtype)
        if ind.size:
            xp.add.at(out, xp.asarray(r), xp.asarray(a_values)[:, None] * bb[xp.asarray(c)])
        return out
    return sparse_tensor_dense_matmul


register("SparseTensorDenseMatMul", _infer_sparse_dense_matmul, _sparse_dense_matmul_kernel, cpu_only=True,
         doc="The matrix product of sparse A (indices, values, shape) and dense B; attrs adjoint_a, adjoint_b.")


# ---- SparseReduceSum -------------------------------------------------------------------------------------


def _reduce_axes(axes, rank):
    out = sorted({int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1)}) \
        if np.size(axes) else []
    for a in out:
        if not 0 <= a < rank:
            raise _invalid(f"Invalid reduction dimension {a}, for input with {rank} dimensions.")
    return out


def _infer_sparse_reduce_sum(ctx):
    _check_sparse_parts(ctx, 0)
    shape, axes = _const_shape(ctx, 2), ctx.const_values[3]
    if shape is None or axes is None:
        return [(ctx.input_dtypes[1], None)]
    try:
        red = _reduce_axes(axes, len(shape))
    except errors.InvalidArgumentError as e:
        raise ctx.error(e.message) from None
    keep = ctx.attr("keep_dims", False)
    return [(ctx.input_dtypes[1], tuple(1 if k in red else d for k, d in enumerate(shape) if keep or k not in red))]


def _reduction_parts(input_indices, input_shape, reduction_axes):
    """(shape, reduced axes, host indices, kept axes) of a sparse reduction's inputs, the indices checked."""
    shape = [int(d) for d in _host(input_shape)]
    red = _reduce_axes(_host(reduction_axes), len(shape))
    ind = _host(input_indices).astype(np.int64)
    _check_in_bounds(ind, shape)
    return shape, red, ind, [k for k in range(len(shape)) if k not in red]


def _sparse_reduce_sum_kernel(node):
    xp = node.xp
    keep = node.attr("keep_dims", False)

    def sparse_reduce_sum(input_indices, input_values, input_shape, reduction_axes):
        shape, red, ind, kept = _reduction_parts(input_indices, input_shape, reduction_axes)
        values = xp.asarray(input_values)
        if not kept:
            out = values.sum(dtype=values.dtype)
        else:
            out = xp.zeros([shape[k] for k in kept], dtype=values.dtype)
            if ind.size:
                xp.add.at(out, tuple(xp.asarray(ind[:, k]) for k in kept), values)
        if keep:
            out = out.reshape([1 if k in red else d for k, d in enumerate(shape)])
        return out
    return sparse_reduce_sum


register("SparseReduceSum", _infer_sparse_reduce_sum, _sparse_reduce_sum_kernel, cpu_only=True,
         doc="The dense sum of a sparse tensor over reduction_axes; attr keep_dims.")


def _infer_reduce_sum_sparse(ctx):
    _check_sparse_parts(ctx, 0)
    return [(dtypes.int64, (None, None)), (ctx.input_dtypes[1], (None,)), (dtypes.int64, (None,))]


def _sparse_reduce_sum_sparse_kernel(node):
    xp = node.xp
    keep = node.attr("keep_dims", False)

    def sparse_reduce_sum_sparse(input_indices, input_values, input_shape, reduction_axes):
        shape, red, ind, kept = _reduction_parts(input_indices, input_shape, reduction_axes)
        out_shape = [1 if k in red else d for k, d in enumerate(shape)] if keep else [shape[k] for k in kept]
        rows = ind[:, kept] if kept else np.zeros((len(ind), 0), np.int64)
        keys, inverse = np.unique(_linear(rows, [shape[k] for k in kept]), return_inverse=True)
        sums = np.zeros(len(keys), dtype=_host(input_values).dtype)
        np.add.at(sums, inverse.reshape(-1), _host(input_values))
        out = np.stack(np.unravel_index(keys, [shape[k] for k in kept]), axis=1) if kept else \
            np.zeros((len(keys), 0), np.int64)
        if keep:
            full = np.zeros((len(keys), len(shape)), np.int64)
            full[:, kept] = out
            out = full
        return (xp.asarray(out.astype(np.int64).reshape(len(keys), -1)), xp.asarray(sums),
                xp.asarray(np.asarray(out_shape, dtype=np.int64)))
    return sparse_reduce_sum_sparse


register("SparseReduceSumSparse", _infer_reduce_sum_sparse, _sparse_reduce_sum_sparse_kernel, num_outputs=3,
         cpu_only=True,
         doc="SparseReduceSum as a sparse tensor: one element per group of input elements, in row-major order.")


# ---- SparseAdd, SparseAddGrad, SparseTensorDenseAdd -------------------------------------------------------


def _infer_sparse_add(ctx):
    _check_sparse_parts(ctx, 0)
    _check_sparse_parts(ctx, 3)
    if ctx.input_dtypes[1] is not ctx.input_dtypes[4]:
        raise TypeError(f"{ctx.op} '{ctx.name}': the operands' values are {ctx.input_dtypes[1].name} and "
                        f"{ctx.input_dtypes[4].name}")
    rank = _rank_of_shape_input(ctx, 2) or _rank_of_shape_input(ctx, 5)
    return [(dtypes.int64, (None, rank)), (ctx.input_dtypes[1], (None,)), (dtypes.int64, (rank,))]


def _check_same_shape(a_shape, b_shape):
    a, b = [int(d) for d in _host(a_shape)], [int(d) for d in _host(b_shape)]
    if len(a) != len(b):
        raise _invalid(f"Operands do not have the same ranks; got shapes: [{','.join(map(str, a))}] and "
                       f"[{','.join(map(str, b))}]")
    if a != b:
        raise _invalid(f"Operands' shapes do not match: A.shape = [{','.join(map(str, a))}] and "
                       f"B.shape = [{','.join(map(str, b))}]")
    return a


def _sparse_add_kernel(node):
    xp = node.xp

    def sparse_add(a_indices, a_values, a_shape, b_indices, b_values, b_shape, thresh):
        shape = _check_same_shape(a_shape, b_shape)
        ai, bi = _host(a_indices).astype(np.int64), _host(b_indices).astype(np.int64)
        av, bv = _host(a_values), _host(b_values)
        lin = np.concatenate([_linear(ai, shape), _linear(bi, shape)])
        keys, first, inverse, counts = np.unique(lin, return_index=True, return_inverse=True, return_counts=True)
        sums = np.zeros(len(keys), dtype=av.dtype)
        np.add.at(sums, inverse.reshape(-1), np.concatenate([av, bv]))
        # entries of one operand only are kept as they are; TF drops only sums below thresh
        keep = (counts == 1) | (np.abs(sums) >= _host(thresh))
        indices = np.concatenate([ai, bi])[first[keep]].reshape(-1, len(shape))
        return (xp.asarray(indices), xp.asarray(sums[keep]), xp.asarray(np.asarray(shape, dtype=np.int64)))
    return sparse_add


register("SparseAdd", _infer_sparse_add, _sparse_add_kernel, num_outputs=3, cpu_only=True,
         doc="The sum of two sparse tensors of one shape (canonical order); sums below thresh are dropped.")


def _infer_sparse_add_grad(ctx):
    return [(ctx.input_dtypes[0], (ctx.input_shapes[1] or (None,))[:1]),
            (ctx.input_dtypes[0], (ctx.input_shapes[2] or (None,))[:1])]


def _sparse_add_grad_kernel(node):
    xp = node.xp

    def sparse_add_grad(backprop_val_grad, a_indices, b_indices, sum_indices):
        grad = _host(backprop_val_grad)
        where = {tuple(row): k for k, row in enumerate(_host(sum_indices).tolist())}

        def pick(indices):
            out = np.zeros(len(indices), dtype=grad.dtype)
            for k, row in enumerate(_host(indices).tolist()):
                j = where.get(tuple(row))
                if j is not None:
                    out[k] = grad[j]
            return xp.asarray(out)
        return pick(a_indices), pick(b_indices)
    return sparse_add_grad


register("SparseAddGrad", _infer_sparse_add_grad, _sparse_add_grad_kernel, num_outputs=2, cpu_only=True,
         doc="The gradients of SparseAdd's two value inputs from the gradient of its sum's values.")


def _infer_sparse_dense_add(ctx):
    _check_sparse_parts(ctx, 0)
    if ctx.input_dtypes[1] is not ctx.input_dtypes[3]:
        raise TypeError(f"{ctx.op} '{ctx.name}': sparse values are {ctx.input_dtypes[1].name} but the dense "
                        f"tensor is {ctx.input_dtypes[3].name}")
    return [(ctx.input_dtypes[3], ctx.input_shapes[3])]


def _sparse_dense_add_kernel(node):
    xp = node.xp

    def sparse_tensor_dense_add(a_indices, a_values, a_shape, b):
        shape = [int(d) for d in _host(a_shape)]
        if shape != list(b.shape):
            raise _invalid(f"Dimensions [{','.join(map(str, shape))}] and [{','.join(map(str, b.shape))}] are "
                           "not compatible")
        ind = _host(a_indices).astype(np.int64)
        _check_in_bounds(ind, shape)
        out = xp.array(b, copy=True)
        if ind.size:
            xp.add.at(out, tuple(xp.asarray(ind[:, k]) for k in range(len(shape))), xp.asarray(a_values))
        return out
    return sparse_tensor_dense_add


register("SparseTensorDenseAdd", _infer_sparse_dense_add, _sparse_dense_add_kernel, cpu_only=True,
         doc="Dense b plus the sparse tensor (a_indices, a_values, a_shape) of its shape.")


# ---- SparseReorder, SparseReshape -----------------------------------------------------------------------


def _infer_sparse_reorder(ctx):
    _check_sparse_parts(ctx, 0)
    return [(dtypes.int64, ctx.input_shapes[0]), (ctx.input_dtypes[1], ctx.input_shapes[1])]


def _sparse_reorder_kernel(node):
    xp = node.xp

    def sparse_reorder(input_indices, input_values, input_shape):
        shape = [int(d) for d in _host(input_shape)]
        ind = _host(input_indices).astype(np.int64)
        _check_in_bounds(ind, shape)
        order = np.argsort(_linear(ind, shape), kind="stable")
        return xp.asarray(ind[order]), xp.asarray(input_values)[xp.asarray(order)]
    return sparse_reorder


register("SparseReorder", _infer_sparse_reorder, _sparse_reorder_kernel, num_outputs=2, cpu_only=True,
         doc="The same sparse tensor with its entries in canonical row-major order.")


def _new_shape(shape, new):
    """`new` with its one -1 filled in from the element count of `shape`."""
    total = int(np.prod(shape, dtype=np.int64))
    unknown = [k for k, d in enumerate(new) if d == -1]
    if len(unknown) > 1:
        raise _invalid(f"only one output dimension may be -1, not both {unknown[0]} and {unknown[1]}")
    known = int(np.prod([d for d in new if d != -1], dtype=np.int64))
    if unknown:
        if known == 0 or total % known:
            raise _invalid(f"Input to reshape is a SparseTensor with {total} dense values, but the requested "
                           f"shape requires a multiple of {known}")
        new = list(new)
        new[unknown[0]] = total // known
    elif known != total:
        raise _invalid(f"Input to reshape is a tensor with {total} dense values, but the requested shape has "
                       f"{known}")
    return new


def _infer_sparse_reshape(ctx):
    _require_int64(ctx, 0, "input_indices")
    _require_int64(ctx, 1, "input_shape")
    _require_int64(ctx, 2, "new_shape")
    rank = _rank_of_shape_input(ctx, 2)
    rows = ctx.input_shapes[0][0] if ctx.input_shapes[0] is not None else None
    return [(dtypes.int64, (rows, rank)), (dtypes.int64, (rank,))]


def _sparse_reshape_kernel(node):
    xp = node.xp

    def sparse_reshape(input_indices, input_shape, new_shape):
        shape = [int(d) for d in _host(input_shape)]
        new = _new_shape(shape, [int(d) for d in _host(new_shape)])
        ind = _host(input_indices).astype(np.int64)
        lin = _linear(ind, shape)
        out = np.stack(np.unravel_index(lin, new), axis=1).astype(np.int64) if new else \
            np.zeros((len(ind), 0), np.int64)
        return xp.asarray(out.reshape(len(ind), len(new))), xp.asarray(np.asarray(new, dtype=np.int64))
    return sparse_reshape


register("SparseReshape", _infer_sparse_reshape, _sparse_reshape_kernel, num_outputs=2, cpu_only=True,
         doc="The indices and shape of a sparse tensor reshaped to new_shape (one -1 allowed).")
