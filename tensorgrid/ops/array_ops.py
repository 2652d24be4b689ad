"""Array ops: creation, reshaping, slicing, gathering and scattering, padding, casts.

Shape-like inputs (a reshape's shape, a slice's begin, a transpose's perm)
are tensors. When one is known while the graph is built (ctx.const_values)
the shape function uses its value for a static output shape and raises the
ValueError TF1 raises for a static mismatch; otherwise the dims it cannot
know are None. Kernels read shape-like inputs back to host ints, so the same
kernel serves NumPy and CuPy.
"""

import math

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.registry import broadcast_shapes, np_dtype, quiet_fp, register

# ---- helpers shared by shape functions and kernels ----------------------------------------


def _host(a):
    """A kernel input as a host numpy array (CuPy arrays are copied back)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _ints(a):
    """A shape-like kernel input as a list of Python ints."""
    if isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in "iu":
        return a.tolist()  # the common case, at a fraction of a loop's cost
    return [int(v) for v in _host(a).reshape(-1)]


def _invalid(message):
    return errors.InvalidArgumentError(None, None, message)


def _outputs(parts):
    """A kernel's result for an op with len(parts) outputs (one output is returned bare)."""
    return parts[0] if len(parts) == 1 else tuple(parts)


def _const_ints(ctx, i):
    """Input i as a list of ints when its value is known at build time, else None."""
    v = ctx.const_values[i]
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


def _const_int(ctx, i):
    v = _const_ints(ctx, i)
    return None if v is None else v[0]


def _vector_length(ctx, i):
    """The static length of 1-D input i, or None."""
    v = ctx.const_values[i]
    if v is not None:
        return int(np.size(v))
    shape = ctx.input_shapes[i]
    return shape[0] if shape is not None and len(shape) == 1 else None


def _shape_from_input(ctx, i):
    """The static shape a 1-D shape input describes (negative entries unknown), or None."""
    dims = _const_ints(ctx, i)
    if dims is not None:
        return tuple(None if d < 0 else d for d in dims)
    n = _vector_length(ctx, i)
    return None if n is None else (None,) * n


def _num_elements(shape):
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)


def _rank(shape):
    return None if shape is None else len(shape)


def _normalize_axis(ctx, axis, rank, what="axis"):
    """`axis` in [-rank, rank) as a non-negative int; None when it cannot be known."""
    if axis is None or rank is None:
        return axis if axis is not None and axis >= 0 else None
    if not -rank <= axis < rank:
        raise ctx.error(f"{what} {axis} is out of range for a tensor of rank {rank}: "
                        f"expected a value in [{-rank}, {rank})")
    return axis + rank if axis < 0 else axis


def _merge_dims(ctx, a, b, what):
    if a is None:
        return b
    if b is not None and a != b:
        raise ctx.error(f"{what}: dimensions must be equal, but are {a} and {b}")
    return a


def _merge_shapes(ctx, shapes, what):
    """The most specific shape compatible with all of `shapes`, or ctx.error."""
    out = None
    for s in shapes:
        if s is None:
            continue
        if out is None:
            out = tuple(s)
            continue
        if len(s) != len(out):
            raise ctx.error(f"{what}: shapes must be equal rank, but are {len(out)} and {len(s)} "
                            f"({list(out)} and {list(s)})")
        out = tuple(_merge_dims(ctx, a, b, f"{what} {list(out)} and {list(s)}") for a, b in zip(out, s))
    return out


def _same_dtypes(ctx, dts, what):
    if len(set(dts)) > 1:
        raise TypeError(f"{ctx.op} '{ctx.name}': tensors in list passed to '{what}' have types "
                        f"[{', '.join(d.name for d in dts)}] that don't all match")
    return dts[0]


def _require_integer(ctx, i, what):
    if not ctx.input_dtypes[i].is_integer:
        raise TypeError(f"{ctx.op} '{ctx.name}': {what} must be an integer tensor, "
                        f"not {ctx.input_dtypes[i].name}")


def _require_scalar(ctx, i, what):
    shape = ctx.input_shapes[i]
    if shape is not None and len(shape) != 0:
        raise ctx.error(f"{what} must be a scalar, but has shape {list(shape)}")


def _identity_spec(ctx):
    return [(ctx.input_dtypes[0], ctx.input_shapes[0])]


def _infer_written_into_zeros(values_input, shape_input):
    """The shape function of an op whose output is zeros of shape input `shape_input`, of `values_input`'s dtype."""
    def infer(ctx):
        _require_integer(ctx, shape_input, "shape")
        return [(ctx.input_dtypes[values_input], _shape_from_input(ctx, shape_input))]
    return infer


def _written_into_zeros(xp, shape, index, values):
    """Zeros of `shape` with `values` written at `index`: the gradient of reading x[index]."""
    out = xp.zeros(_ints(shape), dtype=values.dtype)
    out[index] = values
    return out


# ---- creation -------------------------------------------------------------------------------


def _infer_fill(ctx):
    _require_integer(ctx, 0, "dims")
    _require_scalar(ctx, 1, "value")
    dims = _const_ints(ctx, 0)
    if dims is not None and any(d < 0 for d in dims):
        raise ctx.error(f"dims must be non-negative, got {dims}")
    return [(ctx.input_dtypes[1], _shape_from_input(ctx, 0))]


def _fill_kernel(node):
    xp = node.xp

    def fill(dims, value):
        value = xp.asarray(value)
        out = xp.empty(_ints(dims), dtype=value.dtype)
        out[...] = value.reshape(())
        return out
    return fill


register("Fill", _infer_fill, _fill_kernel, doc="A tensor of shape `dims` filled with scalar `value`.")
register("ZerosLike", _identity_spec, lambda node: node.xp.zeros_like, doc="Zeros of its input's shape and dtype.")
register("OnesLike", _identity_spec, lambda node: node.xp.ones_like, doc="Ones of its input's shape and dtype.")


def _range_size(start, limit, delta, dtype, fail):
    """The number of elements of range(start, limit, delta) in `dtype`; fail(message) builds the error."""
    if delta == 0:
        raise fail("Requires delta != 0")
    if delta > 0 and start > limit:
        raise fail(f"Requires start <= limit when delta > 0: {start}/{limit}")
    if delta < 0 and start < limit:
        raise fail(f"Requires start >= limit when delta < 0: {start}/{limit}")
    if dtype.kind in "iu":
        return (abs(int(limit) - int(start)) + abs(int(delta)) - 1) // abs(int(delta))
    t = dtype.type  # computed in the output dtype, as TF does, so float32 rounds the same way
    return int(np.ceil(np.abs((t(limit) - t(start)) / t(delta))))


def _infer_range(ctx):
    for i, what in enumerate(("start", "limit", "delta")):
        _require_scalar(ctx, i, what)
    dt = dtypes.as_dtype(ctx.attr("Tidx"))
    if any(v is None for v in ctx.const_values):
        return [(dt, (None,))]
    start, limit, delta = (np.asarray(v).item() for v in ctx.const_values)
    return [(dt, (_range_size(start, limit, delta, np.dtype(dt.as_numpy_dtype), ctx.error),))]


def _range_kernel(node):
    xp = node.xp
    dt = np.dtype(np_dtype(node.attr("Tidx")))

    def range_(start, limit, delta):
        start, limit, delta = (_host(v).item() for v in (start, limit, delta))
        n = _range_size(start, limit, delta, dt, _invalid)
        # start + i * delta in the output dtype, as TF computes it
        return xp.arange(n, dtype=dt) * dt.type(delta) + dt.type(start)
    return range_


register("Range", _infer_range, _range_kernel,
         doc="The sequence start, start + delta, ... up to but excluding limit (attr Tidx).")


def _infer_linspace(ctx):
    _require_scalar(ctx, 0, "start")
    _require_scalar(ctx, 1, "stop")
    _require_scalar(ctx, 2, "num")
    if not ctx.input_dtypes[0].is_floating:
        raise TypeError(f"LinSpace '{ctx.name}': start must be a float tensor, not {ctx.input_dtypes[0].name}")
    num = _const_int(ctx, 2)
    if num is not None and num <= 0:
        raise ctx.error(f"Requires num > 0: {num}")
    return [(ctx.input_dtypes[0], (num,))]


def _linspace_kernel(node):
    xp = node.xp

    def linspace(start, stop, num):
        n = _ints(num)[0]
        if n <= 0:
            raise _invalid(f"Requires num > 0: {n}")
        dt = xp.asarray(start).dtype
        return xp.linspace(_host(start).item(), _host(stop).item(), n).astype(dt)
    return linspace


register("LinSpace", _infer_linspace, _linspace_kernel, doc="`num` evenly spaced values from start to stop.")


def _infer_one_hot(ctx):
    _require_integer(ctx, 0, "indices")
    for i, what in ((1, "depth"), (2, "on_value"), (3, "off_value")):
        _require_scalar(ctx, i, what)
    if ctx.input_dtypes[2] != ctx.input_dtypes[3]:
        raise TypeError(f"OneHot '{ctx.name}': on_value ({ctx.input_dtypes[2].name}) and off_value "
                        f"({ctx.input_dtypes[3].name}) must have the same dtype")
    depth = _const_int(ctx, 1)
    if depth is not None and depth < 0:
        raise ctx.error(f"depth must be non-negative, got {depth}")
    shape = ctx.input_shapes[0]
    axis = ctx.attr("axis", -1)
    if shape is None:
        return [(ctx.input_dtypes[2], None)]
    if not -1 <= axis <= len(shape):
        raise ctx.error(f"Expected axis to be -1 or between [0, {len(shape)}], but got {axis}")
    at = len(shape) if axis == -1 else axis
    return [(ctx.input_dtypes[2], tuple(shape[:at]) + (depth,) + tuple(shape[at:]))]


def _one_hot_kernel(node):
    xp = node.xp
    axis = node.attr("axis", -1)

    def one_hot(indices, depth, on_value, off_value):
        indices = xp.asarray(indices)
        hot = indices[..., None] == xp.arange(_ints(depth)[0])
        out = xp.where(hot, xp.asarray(on_value).reshape(()), xp.asarray(off_value).reshape(()))
        out = out.astype(xp.asarray(on_value).dtype, copy=False)
        return out if axis == -1 else xp.moveaxis(out, -1, axis)
    return one_hot


register("OneHot", _infer_one_hot, _one_hot_kernel,
         doc="on_value where the last (attr axis) index equals indices, off_value elsewhere.")

# ---- reshaping --------------------------------------------------------------------------------


def _infer_reshape(ctx):
    dt = ctx.input_dtypes[0]
    _require_integer(ctx, 1, "shape")
    target = _const_ints(ctx, 1)
    if target is None:
        return [(dt, _shape_from_input(ctx, 1))]
    if target.count(-1) > 1:
        raise ctx.error(f"Only one input size may be -1, not both in shape {target}")
    if any(d < -1 for d in target):
        raise ctx.error(f"Size {min(target)} in shape {target} must be non-negative")
    known = math.prod(d for d in target if d != -1)
    n = _num_elements(ctx.input_shapes[0])
    if -1 not in target:
        if n is not None and n != known:
            raise ctx.error(f"Cannot reshape a tensor with {n} elements to shape {target} ({known} elements)")
        return [(dt, tuple(target))]
    if n is None:
        return [(dt, tuple(None if d == -1 else d for d in target))]
    if known == 0 or n % known:
        raise ctx.error(f"Input to reshape is a tensor with {n} values, but the requested shape "
                        f"{target} requires a multiple of {known}")
    return [(dt, tuple(n // known if d == -1 else d for d in target))]


def _reshape_kernel(node):
    def reshape(x, shape):
        dims = _ints(shape)
        try:
            return x.reshape(dims)
        except ValueError:
            raise _invalid(f"Input to reshape is a tensor with {x.size} values, but the requested "
                           f"shape is {dims}") from None
    return reshape


register("Reshape", _infer_reshape, _reshape_kernel, doc="Its input with a new shape (one dim may be -1).")


def _check_permutation(perm, rank, fail):
    if sorted(perm) != list(range(rank)):
        raise fail(f"perm {perm} is not a permutation of [0, ..., {rank - 1}]")


def _infer_transpose(ctx):
    _require_integer(ctx, 1, "perm")
    shape = ctx.input_shapes[0]
    perm = _const_ints(ctx, 1)
    if perm is None:
        n = _vector_length(ctx, 1) if shape is None else len(shape)
        return [(ctx.input_dtypes[0], None if n is None else (None,) * n)]
    if shape is None:
        return [(ctx.input_dtypes[0], (None,) * len(perm))]
    if len(perm) != len(shape):
        raise ctx.error(f"transpose expects a vector of size {len(shape)}, but perm {perm} has size {len(perm)}")
    _check_permutation(perm, len(shape), ctx.error)
    return [(ctx.input_dtypes[0], tuple(shape[p] for p in perm))]


def _transpose_kernel(node):
    xp = node.xp

    def transpose(x, perm):
        perm = _ints(perm)
        if len(perm) != x.ndim:
            raise _invalid(f"transpose expects a vector of size {x.ndim}, but perm {perm} has size {len(perm)}")
        _check_permutation(perm, x.ndim, _invalid)
        return xp.transpose(x, perm)
    return transpose


register("Transpose", _infer_transpose, _transpose_kernel, doc="Permutes its input's dims by `perm`.")


def _infer_invert_permutation(ctx):
    _require_integer(ctx, 0, "x")
    perm = _const_ints(ctx, 0)
    if perm is not None:
        _check_permutation(perm, len(perm), ctx.error)
    return _identity_spec(ctx)


def _invert_permutation_kernel(node):
    xp = node.xp

    def invert_permutation(perm):
        p = _ints(perm)
        _check_permutation(p, len(p), _invalid)
        return xp.asarray(np.argsort(p).astype(perm.dtype))
    return invert_permutation


register("InvertPermutation", _infer_invert_permutation, _invert_permutation_kernel,
         doc="The permutation that undoes `x`.")


def _infer_expand_dims(ctx):
    _require_integer(ctx, 1, "dim")
    if _num_elements(ctx.input_shapes[1]) not in (None, 1):
        raise ctx.error(f"dim must be a tensor with a single value, but has shape {list(ctx.input_shapes[1])}")
    shape = ctx.input_shapes[0]
    dim = _const_int(ctx, 1)
    if shape is None:
        return [(ctx.input_dtypes[0], None)]
    if dim is None:
        return [(ctx.input_dtypes[0], (None,) * (len(shape) + 1))]
    at = _normalize_axis(ctx, dim, len(shape) + 1, "dim")
    return [(ctx.input_dtypes[0], tuple(shape[:at]) + (1,) + tuple(shape[at:]))]


def _expand_dims_kernel(node):
    xp = node.xp

    def expand_dims(x, dim):
        d = _ints(dim)[0]
        x = xp.asarray(x)
        if not -x.ndim - 1 <= d <= x.ndim:
            raise _invalid(f"dim {d} is out of range for a tensor of rank {x.ndim}")
        d %= x.ndim + 1
        return x.reshape(x.shape[:d] + (1,) + x.shape[d:])  # what xp.expand_dims does, without its checks
    return expand_dims


register("ExpandDims", _infer_expand_dims, _expand_dims_kernel, doc="Inserts a dim of size 1 at `dim`.")


def _infer_squeeze(ctx):
    shape = ctx.input_shapes[0]
    axes = list(ctx.attr("squeeze_dims") or [])
    dt = ctx.input_dtypes[0]
    if shape is None:
        return [(dt, None)]
    if not axes:
        if any(d is None for d in shape):
            return [(dt, None)]
        return [(dt, tuple(d for d in shape if d != 1))]
    axes = {_normalize_axis(ctx, a, len(shape)) for a in axes}
    for a in sorted(axes):
        if shape[a] is not None and shape[a] != 1:
            raise ctx.error(f"Can not squeeze dim[{a}], expected a dimension of 1, got {shape[a]} "
                            f"(input shape {list(shape)})")
    return [(dt, tuple(d for i, d in enumerate(shape) if i not in axes))]


def _squeeze_kernel(node):
    xp = node.xp
    axes = list(node.attr("squeeze_dims") or [])

    def squeeze(x):
        x = xp.asarray(x)
        if not axes:
            return xp.squeeze(x)
        dims = tuple(a % x.ndim for a in axes)
        for a in dims:
            if x.shape[a] != 1:
                raise _invalid(f"Can not squeeze dim[{a}], expected a dimension of 1, got {x.shape[a]}")
        return xp.squeeze(x, axis=dims)
    return squeeze


register("Squeeze", _infer_squeeze, _squeeze_kernel,
         doc="Removes dims of size 1 (those in attr squeeze_dims, or all).")


def _infer_concat(ctx):
    n = len(ctx.input_dtypes) - 1
    dt = _same_dtypes(ctx, ctx.input_dtypes[:n], "values")
    _require_integer(ctx, n, "axis")
    shapes = ctx.input_shapes[:n]
    ranks = {len(s) for s in shapes if s is not None}
    if len(ranks) > 1:
        raise ctx.error(f"Shapes must be equal rank, but are {sorted(ranks)} for shapes {[list(s) for s in shapes if s is not None]}")
    if not ranks:
        return [(dt, None)]
    rank = ranks.pop()
    if rank == 0:
        raise ctx.error("Can't concatenate scalars (use tg.stack instead)")
    axis = _normalize_axis(ctx, _const_int(ctx, n), rank)
    if axis is None:
        return [(dt, (None,) * rank)]
    out = []
    for d in range(rank):
        dims = [s[d] for s in shapes if s is not None]
        if d == axis:
            out.append(sum(dims) if len(dims) == n and None not in dims else None)
            continue
        merged = None
        for x in dims:
            if merged is not None and x is not None and x != merged:
                raise ctx.error(f"Dimension {d} in both shapes must be equal, but are {merged} and {x}. "
                                f"Shapes are {[list(s) for s in shapes if s is not None]}")
            merged = x if merged is None else merged
        out.append(merged)
    return [(dt, tuple(out))]


def _concat_kernel(node):
    xp = node.xp

    def concat(*args):
        *values, axis = args
        try:
            return xp.concatenate([xp.asarray(v) for v in values], axis=_ints(axis)[0])
        except ValueError as e:
            raise _invalid(f"cannot concatenate shapes {[list(v.shape) for v in values]}: {e}") from None
    return concat


register("ConcatV2", _infer_concat, _concat_kernel, doc="Joins its N inputs along the last input, axis.")


def _infer_pack(ctx):
    dt = _same_dtypes(ctx, ctx.input_dtypes, "values")
    shape = _merge_shapes(ctx, ctx.input_shapes, "Pack")
    if shape is None:
        return [(dt, None)]
    axis = _normalize_axis(ctx, ctx.attr("axis", 0), len(shape) + 1)
    return [(dt, shape[:axis] + (len(ctx.input_shapes),) + shape[axis:])]


def _pack_kernel(node):
    xp = node.xp
    axis = node.attr("axis", 0)

    def pack(*values):
        try:
            return xp.stack([xp.asarray(v) for v in values], axis=axis)
        except ValueError as e:
            raise _invalid(f"cannot stack shapes {[list(xp.shape(v)) for v in values]}: {e}") from None
    return pack


register("Pack", _infer_pack, _pack_kernel, doc="Stacks its N inputs along a new dim, attr axis.")


def _infer_unpack(ctx):
    shape = ctx.input_shapes[0]
    num = ctx.attr("num")
    dt = ctx.input_dtypes[0]
    if shape is None:
        return [(dt, None)] * num
    axis = _normalize_axis(ctx, ctx.attr("axis", 0), len(shape))
    if shape[axis] is not None and shape[axis] != num:
        raise ctx.error(f"Dimension {axis} of shape {list(shape)} is {shape[axis]}, but num is {num}")
    return [(dt, shape[:axis] + shape[axis + 1:])] * num


def _unpack_kernel(node):
    axis = node.attr("axis", 0)
    num = node.attr("num")

    def unpack(x):
        ax = axis % x.ndim
        if x.shape[ax] != num:
            raise _invalid(f"Dimension {ax} of shape {list(x.shape)} is {x.shape[ax]}, but num is {num}")
        return _outputs([x[(slice(None),) * ax + (i,)] for i in range(num)])
    return unpack


register("Unpack", _infer_unpack, _unpack_kernel, num_outputs=lambda attrs: attrs["num"],
         doc="Splits its input into attr num tensors along dim attr axis, removing that dim.")


def _infer_split(ctx):
    _require_integer(ctx, 0, "axis")
    shape = ctx.input_shapes[1]
    n = ctx.attr("num_split")
    dt = ctx.input_dtypes[1]
    if shape is None:
        return [(dt, None)] * n
    axis = _normalize_axis(ctx, _const_int(ctx, 0), len(shape))
    if axis is None:
        return [(dt, (None,) * len(shape))] * n
    dim = shape[axis]
    if dim is not None and dim % n:
        raise ctx.error(f"Dimension size must be evenly divisible by {n} but is {dim} "
                        f"for splitting shape {list(shape)} along axis {axis}")
    piece = None if dim is None else dim // n
    return [(dt, shape[:axis] + (piece,) + shape[axis + 1:])] * n


def _split_kernel(node):
    xp = node.xp
    n = node.attr("num_split")

    def split(axis, x):
        ax = _ints(axis)[0] % x.ndim
        if x.shape[ax] % n:
            raise _invalid(f"Dimension size must be evenly divisible by {n} but is {x.shape[ax]}")
        return _outputs(xp.split(x, n, axis=ax))
    return split


register("Split", _infer_split, _split_kernel, num_outputs=lambda attrs: attrs["num_split"],
         doc="Splits `value` into attr num_split equal parts along `axis` (inputs: axis, value).")


def _resolve_split_sizes(sizes, dim, fail):
    """size_splits with its one -1 filled in from `dim` (None: unknown), checked against dim."""
    if sizes.count(-1) > 1:
        raise fail(f"size_splits {sizes} may contain at most one -1")
    if any(s < -1 for s in sizes):
        raise fail(f"size_splits {sizes} must be non-negative (or one -1)")
    known = sum(s for s in sizes if s != -1)
    if dim is None:
        return [None if s == -1 else s for s in sizes]
    if (-1 in sizes and known > dim) or (-1 not in sizes and known != dim):
        raise fail(f"Determined shape must either match input shape along split_dim exactly if fully "
                   f"specified, or be less than the size of the input along split_dim if not fully "
                   f"specified. Got: {known} for size_splits {sizes} and dimension {dim}")
    return [dim - known if s == -1 else s for s in sizes]


def _infer_split_v(ctx):
    _require_integer(ctx, 1, "size_splits")
    _require_integer(ctx, 2, "axis")
    shape = ctx.input_shapes[0]
    n = ctx.attr("num_split")
    dt = ctx.input_dtypes[0]
    if shape is None:
        return [(dt, None)] * n
    axis = _normalize_axis(ctx, _const_int(ctx, 2), len(shape))
    sizes = _const_ints(ctx, 1)
    if axis is None:
        return [(dt, (None,) * len(shape))] * n
    if sizes is None:
        return [(dt, shape[:axis] + (None,) + shape[axis + 1:])] * n
    if len(sizes) != n:
        raise ctx.error(f"size_splits {sizes} has {len(sizes)} entries, but num_split is {n}")
    sizes = _resolve_split_sizes(sizes, shape[axis], ctx.error)
    return [(dt, shape[:axis] + (s,) + shape[axis + 1:]) for s in sizes]


def _split_v_kernel(node):
    xp = node.xp

    def split_v(x, size_splits, axis):
        ax = _ints(axis)[0] % x.ndim
        sizes = _resolve_split_sizes(_ints(size_splits), x.shape[ax], _invalid)
        return _outputs(xp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=ax))
    return split_v


register("SplitV", _infer_split_v, _split_v_kernel, num_outputs=lambda attrs: attrs["num_split"],
         doc="Splits `value` into parts of sizes `size_splits` (one may be -1) along `axis`.")

# ---- slicing ------------------------------------------------------------------------------------


def _slice_bounds(shape, begin, size, fail):
    """Per-dim (begin, size) with size -1 resolved, checked against `shape` (dims may be None)."""
    if len(begin) != len(shape) or len(size) != len(shape):
        raise fail(f"Expected begin and size arguments to be 1-D tensors of size {len(shape)}, "
                   f"but got sizes {len(begin)} and {len(size)} instead")
    out = []
    for i, (dim, b, s) in enumerate(zip(shape, begin, size)):
        if s == -1:
            s = None if dim is None else dim - b
        if b < 0 or (dim is not None and b > dim):
            raise fail(f"Expected begin[{i}] in [0, {dim}], but got {b}")
        if s is not None and (s < 0 or (dim is not None and b + s > dim)):
            raise fail(f"Expected size[{i}] in [0, {None if dim is None else dim - b}], but got {s}")
        out.append((b, s))
    return out


def _infer_slice(ctx):
    _require_integer(ctx, 1, "begin")
    _require_integer(ctx, 2, "size")
    shape = ctx.input_shapes[0]
    dt = ctx.input_dtypes[0]
    begin, size = _const_ints(ctx, 1), _const_ints(ctx, 2)
    if shape is None:
        n = _vector_length(ctx, 2)
        if size is not None:
            return [(dt, tuple(None if s == -1 else s for s in size))]
        return [(dt, None if n is None else (None,) * n)]
    if begin is None or size is None:
        if size is not None and len(size) == len(shape):
            return [(dt, tuple(None if s == -1 else s for s in size))]
        return [(dt, (None,) * len(shape))]
    return [(dt, tuple(s for _, s in _slice_bounds(shape, begin, size, ctx.error)))]


def _slice_kernel(node):
    def slice_(x, begin, size):
        bounds = _slice_bounds(x.shape, _ints(begin), _ints(size), _invalid)
        return x[tuple(slice(b, b + s) for b, s in bounds)]
    return slice_


register("Slice", _infer_slice, _slice_kernel, doc="The block of its input at `begin` of `size` (-1: to the end).")

_UNKNOWN = object()  # a strided-slice bound whose value is not known at build time


def _strided_index(begin, end, strides, attrs, fail):
    """The NumPy index that StridedSlice's begin/end/strides and masks describe."""
    def bit(mask, i):
        return (attrs.get(mask, 0) >> i) & 1

    if not len(begin) == len(end) == len(strides):
        raise fail(f"begin, end and strides must have the same length, got {len(begin)}, {len(end)}, {len(strides)}")
    if bin(attrs.get("ellipsis_mask", 0)).count("1") > 1:
        raise fail("Multiple ellipses in slice spec not allowed")
    index = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        if s == 0:
            raise fail(f"strides[{i}] must be non-zero")
        if bit("ellipsis_mask", i):
            index.append(Ellipsis)
        elif bit("new_axis_mask", i):
            index.append(None)
        elif bit("shrink_axis_mask", i):
            index.append(b)
        else:
            index.append(slice(None if bit("begin_mask", i) else b, None if bit("end_mask", i) else e, s))
    return tuple(index)


def _indexed_shape(ctx, shape, index):
    """The static shape of x[index] for x of static `shape`; ctx.error on an index out of range."""
    consumed = sum(1 for k in index if k is not None and k is not Ellipsis)
    if consumed > len(shape):
        raise ctx.error(f"Index out of range using input dim {len(shape)}; input has only {len(shape)} dims")
    full = []
    for k in index:
        full.extend([slice(None)] * (len(shape) - consumed) if k is Ellipsis else [k])
    if not any(k is Ellipsis for k in index):
        full.extend([slice(None)] * (len(shape) - consumed))
    out, d = [], 0
    for k in full:
        if k is None:
            out.append(1)
            continue
        dim = shape[d]
        if isinstance(k, slice):
            unknown = dim is None or any(v is _UNKNOWN for v in (k.start, k.stop, k.step))
            out.append(None if unknown else len(range(*k.indices(dim))))
        elif k is not _UNKNOWN and dim is not None and not -dim <= k < dim:
            raise ctx.error(f"slice index {k} of dimension {d} out of bounds (size {dim})")
        d += 1
    return tuple(out)


def _infer_strided_slice(ctx, value_input=0, first_spec=1):
    dt = ctx.input_dtypes[value_input]
    for i in range(first_spec, first_spec + 3):
        _require_integer(ctx, i, "begin, end and strides")
    n = next((_vector_length(ctx, i) for i in range(first_spec, first_spec + 3)
              if _vector_length(ctx, i) is not None), None)
    shape = ctx.input_shapes[value_input]
    if n is None or shape is None:
        return [(dt, None)]
    specs = [_const_ints(ctx, i) or [_UNKNOWN] * n for i in range(first_spec, first_spec + 3)]
    index = _strided_index(*specs, ctx.attrs, ctx.error)
    return [(dt, _indexed_shape(ctx, shape, index))]


def _strided_slice_kernel(node):
    xp = node.xp

    def strided_slice(x, begin, end, strides):
        index = _strided_index(_ints(begin), _ints(end), _ints(strides), node.attrs, _invalid)
        return xp.asarray(x[index])
    return strided_slice


register("StridedSlice", _infer_strided_slice, _strided_slice_kernel,
         doc="NumPy basic indexing as begin/end/strides with begin, end, ellipsis, new_axis, shrink_axis masks.")


def _strided_slice_grad_kernel(node):
    xp = node.xp

    def strided_slice_grad(shape, begin, end, strides, dy):
        index = _strided_index(_ints(begin), _ints(end), _ints(strides), node.attrs, _invalid)
        return _written_into_zeros(xp, shape, index, dy)
    return strided_slice_grad


register("StridedSliceGrad", _infer_written_into_zeros(4, 0), _strided_slice_grad_kernel,
         doc="Zeros of `shape` with `dy` written where StridedSlice with the same spec reads.")

# ---- gathering and scattering ------------------------------------------------------------------


def _check_indices(indices, limits, fail):
    """Raises fail(...) naming the first entry of `indices` (last dim indexes `limits`) out of range."""
    if not indices.size:
        return
    bad = (indices < 0) | (indices >= limits)
    if bool(bad.any()):
        pos = tuple(int(i) for i in np.argwhere(_host(bad))[0])
        limit = np.broadcast_to(_host(limits), bad.shape)[pos]
        raise fail(f"indices{list(pos)} = {_host(indices)[pos]} is not in [0, {limit})")


def _infer_gather(ctx):
    _require_integer(ctx, 1, "indices")
    _require_integer(ctx, 2, "axis")
    if ctx.attr("batch_dims", 0):
        raise ctx.error("batch_dims other than 0 is not supported")
    params, indices = ctx.input_shapes[0], ctx.input_shapes[1]
    dt = ctx.input_dtypes[0]
    if params is None:
        return [(dt, None)]
    axis = _normalize_axis(ctx, _const_int(ctx, 2), len(params))
    if axis is None or indices is None:
        return [(dt, None)]
    return [(dt, params[:axis] + tuple(indices) + params[axis + 1:])]


def _gather_kernel(node):
    xp = node.xp

    def gather(params, indices, axis):
        params = xp.asarray(params)
        ax = _ints(axis)[0] % params.ndim
        _check_indices(indices, params.shape[ax], _invalid)
        return xp.take(params, indices, axis=ax)
    return gather


register("GatherV2", _infer_gather, _gather_kernel, doc="Slices of `params` along `axis` at `indices`.")


def _infer_gather_nd(ctx):
    _require_integer(ctx, 1, "indices")
    params, indices = ctx.input_shapes
    dt = ctx.input_dtypes[0]
    if indices is not None and len(indices) == 0:
        raise ctx.error("indices must be at least a vector")
    if params is None or indices is None or indices[-1] is None:
        return [(dt, None)]
    k = indices[-1]
    if k > len(params):
        raise ctx.error(f"indices.shape[-1] must be <= params.rank, but saw indices shape: {list(indices)} "
                        f"and params shape: {list(params)}")
    return [(dt, tuple(indices[:-1]) + tuple(params[k:]))]


def _nd_index(indices, shape, xp):
    """The NumPy index that gather_nd/scatter_nd's `indices` (last dim indexes `shape`) describe."""
    k = indices.shape[-1]
    _check_indices(indices, xp.asarray(shape[:k], dtype=indices.dtype), _invalid)
    return tuple(indices[..., j] for j in range(k))


def _gather_nd_kernel(node):
    xp = node.xp

    def gather_nd(params, indices):
        params = xp.asarray(params)
        if indices.shape[-1] > params.ndim:
            raise _invalid(f"indices.shape[-1] must be <= params.rank, but saw indices shape: "
                           f"{list(indices.shape)} and params shape: {list(params.shape)}")
        index = _nd_index(indices, params.shape, xp)
        if not index:
            return xp.broadcast_to(params, indices.shape[:-1] + params.shape).copy()
        return params[index]
    return gather_nd


register("GatherNd", _infer_gather_nd, _gather_nd_kernel,
         doc="Slices of `params` at the index vectors in the last dim of `indices`.")


def _scatter_updates_shape(indices, shape):
    """The shape ScatterNd's updates must have: indices.shape[:-1] + shape[indices.shape[-1]:]."""
    return tuple(indices[:-1]) + tuple(shape[indices[-1]:])


def _infer_scatter_nd(ctx):
    _require_integer(ctx, 0, "indices")
    _require_integer(ctx, 2, "shape")
    indices, updates = ctx.input_shapes[0], ctx.input_shapes[1]
    shape = _shape_from_input(ctx, 2)
    _check_scatter_updates(ctx, indices, updates, shape, "output")
    return [(ctx.input_dtypes[1], shape)]


def _check_scatter_updates(ctx, indices, updates, shape, what):
    """updates must be indices.shape[:-1] + shape[indices.shape[-1]:], where the shapes are known."""
    if None not in (indices, updates, shape) and indices and indices[-1] is not None:
        want = _scatter_updates_shape(indices, shape)
        if len(want) != len(updates) or any(a is not None and b is not None and a != b for a, b in zip(want, updates)):
            raise ctx.error(f"updates of shape {list(updates)} do not fit indices of shape {list(indices)} and "
                            f"{what} shape {list(shape)}: expected {list(want)}")


def _scatter_nd_kernel(node):
    xp = node.xp

    def scatter_nd(indices, updates, shape):
        out = xp.zeros(_ints(shape), dtype=updates.dtype)
        want = _scatter_updates_shape(indices.shape, out.shape)
        if updates.shape != want:
            raise _invalid(f"updates of shape {list(updates.shape)} do not fit indices of shape "
                           f"{list(indices.shape)} and output shape {list(out.shape)}: expected {list(want)}")
        index = _nd_index(indices, out.shape, xp)
        if not index:
            return out + updates.reshape((-1,) + out.shape).sum(axis=0, dtype=out.dtype)
        xp.add.at(out, index, updates)  # duplicate indices accumulate
        return out
    return scatter_nd


register("ScatterNd", _infer_scatter_nd, _scatter_nd_kernel,
         doc="Zeros of `shape` with `updates` added at `indices` (duplicates sum).")


def _infer_tensor_scatter(ctx):
    _require_integer(ctx, 1, "indices")
    tensor, indices, updates = ctx.input_shapes
    if ctx.input_dtypes[0] != ctx.input_dtypes[2]:
        raise ctx.error(f"updates ({ctx.input_dtypes[2].name}) must have the tensor's dtype "
                        f"({ctx.input_dtypes[0].name})")
    _check_scatter_updates(ctx, indices, updates, tensor, "tensor")
    return [(ctx.input_dtypes[0], tensor)]


def _tensor_scatter_kernel(combine):
    def make(node):
        xp = node.xp

        def tensor_scatter(tensor, indices, updates):
            out = xp.array(tensor, copy=True)
            want = _scatter_updates_shape(indices.shape, out.shape)
            if updates.shape != want:
                raise _invalid(f"updates of shape {list(updates.shape)} do not fit indices of shape "
                               f"{list(indices.shape)} and tensor shape {list(out.shape)}: expected {list(want)}")
            index = _nd_index(indices, out.shape, xp)
            if combine is None:
                out[index] = updates        # a repeated index: one of its updates (TF leaves which unspecified)
            else:
                getattr(xp, combine).at(out, index, updates)
            return out
        return tensor_scatter
    return make


for _op, _combine, _what in (("TensorScatterUpdate", None, "replaced by"), ("TensorScatterAdd", "add", "plus"),
                             ("TensorScatterSub", "subtract", "minus"), ("TensorScatterMin", "minimum", "the minimum with"),
                             ("TensorScatterMax", "maximum", "the maximum with")):
    register(_op, _infer_tensor_scatter, _tensor_scatter_kernel(_combine),
             doc=f"A copy of `tensor` whose slices at `indices` are {_what} `updates` (tf.tensor_scatter_nd_*).")


def _infer_segment_sum(ctx):
    _require_integer(ctx, 1, "segment_ids")
    _require_integer(ctx, 2, "num_segments")
    _require_scalar(ctx, 2, "num_segments")
    data, ids = ctx.input_shapes[0], ctx.input_shapes[1]
    dt = ctx.input_dtypes[0]
    if data is None or ids is None:
        return [(dt, None)]
    if len(ids) > len(data) or any(a is not None and b is not None and a != b for a, b in zip(data, ids)):
        raise ctx.error(f"segment_ids shape {list(ids)} must be a prefix of data shape {list(data)}")
    return [(dt, (_const_int(ctx, 2),) + tuple(data[len(ids):]))]


def _segment_sum_kernel(node):
    xp = node.xp

    def unsorted_segment_sum(data, segment_ids, num_segments):
        n = _ints(num_segments)[0]
        data = xp.asarray(data)
        out = xp.zeros((n,) + data.shape[segment_ids.ndim:], dtype=data.dtype)
        if segment_ids.size and int(segment_ids.max()) >= n:
            raise _invalid(f"segment_ids {int(segment_ids.max())} is out of range [0, {n})")
        keep = segment_ids >= 0  # negative ids are dropped, as in TF
        xp.add.at(out, segment_ids[keep], data[keep])
        return out
    return unsorted_segment_sum


register("UnsortedSegmentSum", _infer_segment_sum, _segment_sum_kernel,
         doc="Sums the slices of `data` into num_segments rows by `segment_ids`.")

# ---- unique, dynamic partition and stitch ----------------------------------------------------------


def _infer_unique(ctx):
    x = ctx.input_shapes[0]
    if x is not None and len(x) != 1:
        raise ctx.error(f"unique expects a 1D vector, got shape {list(x)}")
    out_idx = dtypes.as_dtype(ctx.attr("out_idx", dtypes.int32))
    return [(ctx.input_dtypes[0], (None,)), (out_idx, x if x is not None else (None,))]


def _unique_kernel(node):
    xp = node.xp
    out_idx = dtypes.as_dtype(node.attr("out_idx", dtypes.int32)).as_numpy_dtype

    def unique(x):
        if x.ndim != 1:
            raise _invalid(f"unique expects a 1D vector, got shape {list(x.shape)}")
        values, first, inverse = np.unique(_host(x), return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")          # TF's order: first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return xp.asarray(values[order]), xp.asarray(rank[inverse.reshape(-1)].astype(out_idx))
    return unique


register("Unique", _infer_unique, _unique_kernel, num_outputs=2,
         doc="The distinct values of a vector in order of first appearance, and each element's index into them.")


def _infer_dynamic_partition(ctx):
    _require_integer(ctx, 1, "partitions")
    data, parts = ctx.input_shapes
    n = ctx.attr("num_partitions")
    if n is None or n < 1:
        raise ctx.error(f"num_partitions must be at least 1, got {n}")
    if data is None or parts is None:
        out = None
    else:
        if len(parts) > len(data) or any(a is not None and b is not None and a != b for a, b in zip(data, parts)):
            raise ctx.error(f"data.shape {list(data)} must start with partitions.shape {list(parts)}")
        out = (None,) + tuple(data[len(parts):])
    return [(ctx.input_dtypes[0], out)] * n


def _dynamic_partition_kernel(node):
    xp = node.xp
    n = node.attr("num_partitions")

    def dynamic_partition(data, partitions):
        data = xp.asarray(data)
        if data.shape[:partitions.ndim] != partitions.shape:
            raise _invalid(f"data.shape {list(data.shape)} must start with partitions.shape "
                           f"{list(partitions.shape)}")
        _check_indices(partitions, n, lambda m: _invalid(m.replace("indices", "partitions", 1)))
        return _outputs([data[partitions == i] for i in range(n)])
    return dynamic_partition


register("DynamicPartition", _infer_dynamic_partition, _dynamic_partition_kernel,
         num_outputs=lambda attrs: attrs["num_partitions"],
         doc="Splits `data` into num_partitions outputs by the partition number of each leading-index entry.")


def _infer_dynamic_stitch(ctx):
    n = len(ctx.input_dtypes) // 2
    for i in range(n):
        _require_integer(ctx, i, "indices")
    dt = _same_dtypes(ctx, ctx.input_dtypes[n:], "data")
    idx, data = ctx.input_shapes[0], ctx.input_shapes[n]
    rest = None if idx is None or data is None else tuple(data[len(idx):])
    size = None
    known = [ctx.const_values[i] for i in range(n)]
    if all(v is not None for v in known):
        size = max((int(np.max(v)) + 1 for v in known if np.size(v)), default=0)
    return [(dt, None if rest is None else (size,) + rest)]


def _dynamic_stitch_kernel(node):
    xp = node.xp

    def dynamic_stitch(*args):
        n = len(args) // 2
        indices, data = args[:n], [xp.asarray(d) for d in args[n:]]
        rest = data[0].shape[indices[0].ndim:]
        size = max((int(_host(i).max()) + 1 for i in indices if i.size), default=0)
        out = xp.zeros((size,) + rest, dtype=data[0].dtype)
        for i, d in zip(indices, data):
            if d.shape != i.shape + rest:
                raise _invalid(f"data shape {list(d.shape)} does not match indices shape {list(i.shape)} "
                               f"followed by {list(rest)}")
            _check_indices(i, size, _invalid)
            out[i.reshape(-1)] = d.reshape((-1,) + rest)    # later inputs win for repeated indices
        return out
    return dynamic_stitch


register("DynamicStitch", _infer_dynamic_stitch, _dynamic_stitch_kernel,
         doc="Interleaves the N `data` inputs into one tensor: row indices[m][i] is data[m][i].")

# ---- tiling, padding, broadcasting, reversing ---------------------------------------------------


def _infer_tile(ctx):
    _require_integer(ctx, 1, "multiples")
    shape = ctx.input_shapes[0]
    mult = _const_ints(ctx, 1)
    dt = ctx.input_dtypes[0]
    if shape is None:
        n = _vector_length(ctx, 1)
        return [(dt, None if n is None else (None,) * n)]
    n = _vector_length(ctx, 1)
    if n is not None and n != len(shape):
        raise ctx.error(f"multiples has {n} entries, but the input has rank {len(shape)} (shape {list(shape)})")
    if mult is None:
        return [(dt, (None,) * len(shape))]
    if any(m < 0 for m in mult):
        raise ctx.error(f"multiples must be non-negative, got {mult}")
    return [(dt, tuple(None if d is None else d * m for d, m in zip(shape, mult)))]


def _tile_kernel(node):
    xp = node.xp

    def tile(x, multiples):
        mult = _ints(multiples)
        x = xp.asarray(x)
        if len(mult) != x.ndim or any(m < 0 for m in mult):
            raise _invalid(f"multiples {mult} do not fit an input of shape {list(x.shape)}")
        return xp.tile(x, mult)
    return tile


register("Tile", _infer_tile, _tile_kernel, doc="Its input repeated `multiples[i]` times along dim i.")


def _check_paddings(shape, paddings, mode, fail):
    if len(paddings) != 2 * len(shape):
        raise fail(f"paddings must have shape [{len(shape)}, 2] for an input of shape {list(shape)}, "
                   f"got {len(paddings) // 2} rows")
    pairs = [tuple(paddings[i:i + 2]) for i in range(0, len(paddings), 2)]
    for i, ((lo, hi), dim) in enumerate(zip(pairs, shape)):
        if lo < 0 or hi < 0:
            raise fail(f"paddings must be non-negative: {lo} {hi}")
        limit = None if dim is None or mode == "CONSTANT" else (dim - 1 if mode == "REFLECT" else dim)
        if limit is not None and max(lo, hi) > limit:
            raise fail(f"paddings must be no greater than the dimension size ({limit}) for {mode} mode: "
                       f"{lo}, {hi} for dimension {i} of {list(shape)}")
    return pairs


def _infer_pad(ctx):
    dt = ctx.input_dtypes[0]
    _require_integer(ctx, 1, "paddings")
    if len(ctx.input_dtypes) == 3:
        _require_scalar(ctx, 2, "constant_values")
        if ctx.input_dtypes[2] != dt:
            raise TypeError(f"{ctx.op} '{ctx.name}': constant_values ({ctx.input_dtypes[2].name}) must have "
                            f"the input's dtype ({dt.name})")
    shape = ctx.input_shapes[0]
    pads = ctx.input_shapes[1]
    if shape is None:
        return [(dt, None if pads is None or pads[0] is None else (None,) * pads[0])]
    if pads is not None and (len(pads) != 2 or pads[0] not in (None, len(shape)) or pads[1] not in (None, 2)):
        raise ctx.error(f"paddings must have shape [{len(shape)}, 2] for an input of shape {list(shape)}, "
                        f"got {list(pads)}")
    vals = _const_ints(ctx, 1)
    if vals is None:
        return [(dt, (None,) * len(shape))]
    pairs = _check_paddings(shape, vals, ctx.attr("mode", "CONSTANT"), ctx.error)
    return [(dt, tuple(None if d is None else d + lo + hi for d, (lo, hi) in zip(shape, pairs)))]


def _pad_kernel(node):
    xp = node.xp

    def pad(x, paddings, constant_values=None):
        x = xp.asarray(x)
        pairs = _check_paddings(x.shape, _ints(paddings), "CONSTANT", _invalid)
        c = 0 if constant_values is None else _host(constant_values).item()
        return xp.pad(x, pairs, mode="constant", constant_values=c)
    return pad


register("Pad", _infer_pad, _pad_kernel, doc="Its input padded with zeros by `paddings` ([rank, 2]).")
register("PadV2", _infer_pad, _pad_kernel, doc="Its input padded with `constant_values` by `paddings`.")


def _mirror_pad_kernel(node):
    xp = node.xp
    mode = node.attr("mode")

    def mirror_pad(x, paddings):
        x = xp.asarray(x)
        pairs = _check_paddings(x.shape, _ints(paddings), mode, _invalid)
        return xp.pad(x, pairs, mode="reflect" if mode == "REFLECT" else "symmetric")
    return mirror_pad


register("MirrorPad", _infer_pad, _mirror_pad_kernel,
         doc="Its input padded by reflecting it (attr mode REFLECT or SYMMETRIC).")


def _infer_mirror_pad_grad(ctx):
    _require_integer(ctx, 1, "paddings")
    shape = ctx.input_shapes[0]
    vals = _const_ints(ctx, 1)
    dt = ctx.input_dtypes[0]
    if shape is None or vals is None:
        return [(dt, None if shape is None else (None,) * len(shape))]
    pairs = _check_paddings(shape, vals, "CONSTANT", ctx.error)
    return [(dt, tuple(None if d is None else d - lo - hi for d, (lo, hi) in zip(shape, pairs)))]


def _mirror_pad_grad_kernel(node):
    xp = node.xp
    # a reflected pad skips the edge element, a symmetric one repeats it
    skip = 1 if node.attr("mode") == "REFLECT" else 0

    def mirror_pad_grad(grad, paddings):
        pairs = _check_paddings(grad.shape, _ints(paddings), "CONSTANT", _invalid)
        for axis, (lo, hi) in enumerate(pairs):
            n = grad.shape[axis]
            m = n - lo - hi

            def part(start, stop, a=axis):
                return (slice(None),) * a + (slice(start, stop),)
            core = grad[part(lo, n - hi)].copy()
            if lo:
                core[part(skip, skip + lo)] += xp.flip(grad[part(0, lo)], axis)
            if hi:
                core[part(m - hi - skip, m - skip)] += xp.flip(grad[part(n - hi, n)], axis)
            grad = core
        return grad
    return mirror_pad_grad


register("MirrorPadGrad", _infer_mirror_pad_grad, _mirror_pad_grad_kernel,
         doc="The gradient of MirrorPad: the padded borders folded back onto the input.")


def _broadcast_target(ctx, shape, target):
    """`target` with its dims checked against numpy broadcasting of `shape`."""
    if len(shape) > len(target):
        raise ctx.error(f"Unable to broadcast tensor of shape {list(shape)} to tensor of shape {list(target)}")
    for d, t in zip(shape[::-1], target[::-1]):
        if d is not None and t is not None and d != 1 and d != t:
            raise ctx.error(f"Unable to broadcast tensor of shape {list(shape)} to tensor of shape {list(target)}")
    return tuple(target)


def _infer_broadcast_to(ctx):
    _require_integer(ctx, 1, "shape")
    target = _shape_from_input(ctx, 1)
    shape = ctx.input_shapes[0]
    if target is not None and shape is not None:
        target = _broadcast_target(ctx, shape, target)
    return [(ctx.input_dtypes[0], target)]


def _broadcast_to_kernel(node):
    xp = node.xp

    def broadcast_to(x, shape):
        dims = _ints(shape)
        try:
            if x.ndim > len(dims):  # an assignment would drop leading 1s; broadcast_to refuses them
                raise ValueError
            out = xp.empty(dims, x.dtype)
            out[...] = x  # a copy of xp.broadcast_to(x, dims), without making that view first
            return out
        except ValueError:
            raise _invalid(f"Unable to broadcast tensor of shape {list(xp.shape(x))} to tensor of shape {dims}") from None
    return broadcast_to


register("BroadcastTo", _infer_broadcast_to, _broadcast_to_kernel, doc="Its input broadcast to `shape`.")


def _infer_reverse(ctx):
    _require_integer(ctx, 1, "axis")
    shape = ctx.input_shapes[0]
    axes = _const_ints(ctx, 1)
    if shape is not None and axes is not None:
        norm = [_normalize_axis(ctx, a, len(shape)) for a in axes]
        if len(set(norm)) != len(norm):
            raise ctx.error(f"axis {axes} specifies a dimension more than once")
    return _identity_spec(ctx)


def _reverse_kernel(node):
    xp = node.xp

    def reverse(x, axis):
        x = xp.asarray(x)
        axes = [a % x.ndim for a in _ints(axis)] if x.ndim else _ints(axis)
        if len(set(axes)) != len(axes):
            raise _invalid(f"axis {_ints(axis)} specifies a dimension more than once")
        return xp.flip(x, axis=tuple(axes))
    return reverse


register("ReverseV2", _infer_reverse, _reverse_kernel, doc="Its input with the dims in `axis` reversed.")


def _infer_reverse_sequence(ctx):
    shape = ctx.input_shapes[0]
    if shape is not None:
        for key in ("seq_dim", "batch_dim"):
            axis = ctx.attr(key, 0)
            if not -len(shape) <= axis < len(shape):
                raise ctx.error(f"{key} {axis} is out of range for an input of rank {len(shape)}")
    return _identity_spec(ctx)


def _reverse_sequence_kernel(node):
    xp = node.xp
    seq_dim, batch_dim = node.attr("seq_dim"), node.attr("batch_dim", 0)

    def reverse_sequence(x, lengths):
        x = xp.asarray(x)
        lengths = np.asarray(lengths).reshape(-1)
        if len(lengths) != x.shape[batch_dim]:
            raise _invalid(f"{len(lengths)} lengths for a batch of {x.shape[batch_dim]}")
        if (lengths > x.shape[seq_dim]).any() or (lengths < 0).any():
            raise _invalid(f"lengths {lengths.tolist()} must lie in [0, {x.shape[seq_dim]}]")
        out = x.copy()
        for b, n in enumerate(lengths):
            src = [slice(None)] * x.ndim
            src[batch_dim], src[seq_dim] = b, slice(int(n) - 1, None, -1) if n else slice(0, 0)
            dst = list(src)
            dst[seq_dim] = slice(0, int(n))
            out[tuple(dst)] = x[tuple(src)]
        return out
    return reverse_sequence


register("ReverseSequence", _infer_reverse_sequence, _reverse_sequence_kernel,
         doc="Each batch entry (along attr batch_dim) with its first lengths[b] steps along attr seq_dim reversed.")

# ---- shapes and casts ------------------------------------------------------------------------------


def _out_type(ctx):
    dt = dtypes.as_dtype(ctx.attr("out_type", dtypes.int32))
    if dt not in (dtypes.int32, dtypes.int64):
        raise TypeError(f"{ctx.op} '{ctx.name}': out_type must be int32 or int64, not {dt.name}")
    return dt


def _infer_shape(ctx):
    return [(_out_type(ctx), (_rank(ctx.input_shapes[0]),))]


register("Shape", _infer_shape,
         lambda node: lambda x: node.xp.asarray(np.shape(x), dtype=np_dtype(node.attr("out_type", dtypes.int32))),
         doc="Its input's shape as a 1-D tensor (attr out_type).")
register("Size", lambda ctx: [(_out_type(ctx), ())],
         lambda node: lambda x: node.xp.asarray(np.size(x), dtype=np_dtype(node.attr("out_type", dtypes.int32))),
         doc="Its input's number of elements (attr out_type).")
register("Rank", lambda ctx: [(dtypes.int32, ())],
         lambda node: lambda x: node.xp.asarray(np.ndim(x), dtype=np.int32), doc="Its input's number of dims.")


def _cast(xp, attrs):
    dt = np_dtype(attrs["DstT"])

    def cast(x, out=None):
        if out is None:
            return xp.asarray(x).astype(dt)
        xp.copyto(out, x, casting="unsafe")  # astype's conversion, into out
        return out
    return cast


register("Cast", lambda ctx: [(dtypes.as_dtype(ctx.attr("DstT")), ctx.input_shapes[0])],
         lambda node: quiet_fp(_cast(node.xp, node.attrs)), elementwise=_cast,  # nan and inf cast silently, as in TF
         doc="Its input converted to dtype attr DstT (floats truncate toward zero into integers).")


def _infer_clip(ctx):
    dt = _same_dtypes(ctx, ctx.input_dtypes, "t, clip_value_min, clip_value_max")
    shape = ctx.input_shapes[0]
    out = broadcast_shapes(broadcast_shapes(shape, ctx.input_shapes[1], ctx), ctx.input_shapes[2], ctx)
    if shape is not None and out is not None and len(out) != len(shape):
        raise ctx.error(f"clip bounds of shapes {list(ctx.input_shapes[1])} and {list(ctx.input_shapes[2])} "
                        f"do not broadcast to t's shape {list(shape)}")
    return [(dt, shape if shape is not None else out)]


def _clip_kernel(node):
    xp = node.xp

    def clip_by_value(t, lo, hi):
        t = xp.asarray(t)
        out = xp.maximum(xp.minimum(t, hi), lo)
        if out.shape != t.shape:
            raise _invalid(f"clip bounds of shapes {list(xp.shape(lo))} and {list(xp.shape(hi))} do not "
                           f"broadcast to t's shape {list(t.shape)}")
        return out.astype(t.dtype, copy=False)
    return clip_by_value


register("ClipByValue", _infer_clip, _clip_kernel, doc="`t` limited to [clip_value_min, clip_value_max].")


def _infer_boolean_mask(ctx):
    if ctx.input_dtypes[1] is not dtypes.bool_:
        raise TypeError(f"BooleanMask '{ctx.name}': mask must be a bool tensor, not {ctx.input_dtypes[1].name}")
    shape, mask = ctx.input_shapes
    axis = ctx.attr("axis", 0)
    dt = ctx.input_dtypes[0]
    if shape is None or mask is None:
        return [(dt, None)]
    if len(mask) == 0:
        raise ctx.error("mask cannot be scalar")
    if axis + len(mask) > len(shape):
        raise ctx.error(f"mask of rank {len(mask)} at axis {axis} does not fit a tensor of rank {len(shape)}")
    covered = shape[axis:axis + len(mask)]
    if any(a is not None and b is not None and a != b for a, b in zip(covered, mask)):
        raise ctx.error(f"Shapes {list(covered)} and {list(mask)} are incompatible "
                        f"(tensor shape {list(shape)}, mask shape {list(mask)}, axis {axis})")
    m = ctx.const_values[1]
    count = None if m is None else int(np.count_nonzero(m))
    return [(dt, shape[:axis] + (count,) + shape[axis + len(mask):])]


def _boolean_mask_kernel(node):
    xp = node.xp
    axis = node.attr("axis", 0)

    def boolean_mask(x, mask):
        x = xp.asarray(x)
        covered = x.shape[axis:axis + mask.ndim]
        if covered != mask.shape:
            raise _invalid(f"mask of shape {list(mask.shape)} does not match dims {list(covered)} "
                           f"of a tensor of shape {list(x.shape)} at axis {axis}")
        return x[(slice(None),) * axis + (mask,)]
    return boolean_mask


register("BooleanMask", _infer_boolean_mask, _boolean_mask_kernel,
         doc="The slices of `tensor` along attr axis where `mask` is true, flattened into one dim.")


def _boolean_mask_grad_kernel(node):
    xp = node.xp
    axis = node.attr("axis", 0)

    def boolean_mask_grad(grad, mask, shape):
        return _written_into_zeros(xp, shape, (slice(None),) * axis + (mask,), grad)
    return boolean_mask_grad


register("BooleanMaskGrad", _infer_written_into_zeros(0, 2), _boolean_mask_grad_kernel,
         doc="Zeros of `shape` with `grad` written where BooleanMask with `mask` reads.")
