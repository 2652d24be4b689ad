"""Math, logic and reduction ops: elementwise arithmetic and comparisons, select,
reductions, matmul and einsum, and the shape helpers their gradients use.

Dtype rules are TF's: the inputs of an elementwise op share one dtype (a
mismatch is a TypeError at build time), reductions keep their input's dtype
(an int32 sum stays int32), float16 accumulates in float32.
"""

import string

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.registry import broadcast_shapes, quiet_fp, register

FLOATS = (dtypes.float16, dtypes.float32, dtypes.float64)
INTEGERS = (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8)
NUMERIC = FLOATS + INTEGERS
ALL = NUMERIC + (dtypes.bool_,)
BOOL = (dtypes.bool_,)
INDEX = (dtypes.int32, dtypes.int64)


def _check_dtypes(ctx, allowed, arg_names, start=0):
    """TF's build-time dtype checks: inputs from `start` on, named `arg_names`, share one dtype in `allowed`."""
    first = ctx.input_dtypes[start]
    for arg, dt in zip(arg_names[1:], ctx.input_dtypes[start + 1:]):
        if dt != first:
            raise TypeError(str(ctx.error(
                f"Input '{arg}' has type {dt.name} that does not match type {first.name} "
                f"of argument '{arg_names[0]}'")))
    if first not in allowed:
        raise TypeError(str(ctx.error(
            f"Value passed to parameter '{arg_names[0]}' has DataType {first.name} not in list of "
            f"allowed values: {', '.join(d.name for d in allowed)}")))
    return first


def _accumulator(dtype):
    """The dtype float16 math runs in (float32, as TF's kernels do); others run in their own."""
    return np.float32 if dtype == np.float16 else dtype


# ---- elementwise ---------------------------------------------------------------------------

def _infer_unary(allowed, out_dtype=None):
    def infer(ctx):
        dt = _check_dtypes(ctx, allowed, ("x",))
        return [(out_dtype or dt, ctx.input_shapes[0])]
    return infer


def _infer_binary(allowed, out_dtype=None):
    def infer(ctx):
        dt = _check_dtypes(ctx, allowed, ("x", "y"))
        return [(out_dtype or dt, broadcast_shapes(ctx.input_shapes[0], ctx.input_shapes[1], ctx))]
    return infer


def _ufunc(name, quiet=False):
    """A kernel factory that returns the device's ufunc `name` (optionally without fp warnings)."""
    if quiet:
        return lambda node: quiet_fp(getattr(node.xp, name))
    return lambda node: getattr(node.xp, name)


def _rsqrt(xp, attrs):
    def rsqrt(x, out=None):
        return xp.reciprocal(xp.sqrt(x), out=out)
    return rsqrt


def _sigmoid(xp, attrs):
    def sigmoid(x, out=None):
        # exp(-|x|) never overflows, so both branches stay accurate for large |x|:
        # 1 / (1 + e) where x >= 0, e / (1 + e) elsewhere.
        e = xp.exp(-xp.abs(x))
        return xp.true_divide(xp.where(x >= 0, 1, e), 1 + e, out=out)
    return sigmoid


def _int_div_kernel(name):
    """FloorDiv/FloorMod: integer division by zero is an error, as in TF; floats give inf/nan."""
    def factory(node):
        fn = getattr(node.xp, name)

        def run(x, y):
            if x.dtype.kind in "iu":
                if (y == 0).any():
                    raise errors.InvalidArgumentError(None, None, "Integer division by zero")
                return fn(x, y)
            with np.errstate(all="ignore"):
                return fn(x, y)
        return run
    return factory


for _op, _fn, _allowed, _quiet_fp in [
    ("Neg", "negative", NUMERIC, False),
    ("Abs", "absolute", NUMERIC, False),
    ("Sign", "sign", NUMERIC, False),
    ("Square", "square", NUMERIC, True),
    ("Exp", "exp", FLOATS, True),
    ("Log", "log", FLOATS, True),
    ("Log1p", "log1p", FLOATS, True),
    ("Sqrt", "sqrt", FLOATS, True),
    ("Tanh", "tanh", FLOATS, False),
    ("Sin", "sin", FLOATS, True),
    ("Cos", "cos", FLOATS, True),
    ("Floor", "floor", FLOATS, False),
    ("Ceil", "ceil", FLOATS, False),
    ("Round", "rint", FLOATS, False),  # rint rounds half to even, as TF's Round does
]:
    register(_op, _infer_unary(_allowed), _ufunc(_fn, _quiet_fp), ufunc=_fn, doc=f"Elementwise {_fn}.")

register("Rsqrt", _infer_unary(FLOATS), lambda node: quiet_fp(_rsqrt(node.xp, node.attrs)), elementwise=_rsqrt,
         doc="Elementwise 1 / sqrt(x).")
register("Sigmoid", _infer_unary(FLOATS), elementwise=_sigmoid, doc="Elementwise 1 / (1 + exp(-x)).")
register("IsNan", _infer_unary(FLOATS, dtypes.bool_), _ufunc("isnan"), ufunc="isnan", doc="Elementwise x != x.")
register("IsFinite", _infer_unary(FLOATS, dtypes.bool_), _ufunc("isfinite"), ufunc="isfinite",
         doc="Elementwise: neither inf nor nan.")
register("LogicalNot", _infer_unary(BOOL), _ufunc("logical_not"), ufunc="logical_not", doc="Elementwise not.")

for _op, _fn, _quiet_fp in [
    ("Add", "add", False),
    ("Sub", "subtract", False),
    ("Mul", "multiply", False),
    ("Pow", "power", True),
    ("Maximum", "maximum", False),
    ("Minimum", "minimum", False),
]:
    register(_op, _infer_binary(NUMERIC), _ufunc(_fn, _quiet_fp), ufunc=_fn, doc=f"Elementwise {_fn}, broadcasting.")

register("RealDiv", _infer_binary(FLOATS), _ufunc("true_divide", quiet=True), ufunc="true_divide",
         doc="Elementwise x / y of floats, broadcasting.")
register("FloorDiv", _infer_binary(NUMERIC), _int_div_kernel("floor_divide"),
         doc="Elementwise floor(x / y), broadcasting.")
register("FloorMod", _infer_binary(NUMERIC), _int_div_kernel("mod"),
         doc="Elementwise x - floor(x / y) * y (the sign of y, as Python's %), broadcasting.")

for _op, _fn, _allowed in [
    ("Equal", "equal", ALL),
    ("NotEqual", "not_equal", ALL),
    ("Less", "less", NUMERIC),
    ("LessEqual", "less_equal", NUMERIC),
    ("Greater", "greater", NUMERIC),
    ("GreaterEqual", "greater_equal", NUMERIC),
    ("LogicalAnd", "logical_and", BOOL),
    ("LogicalOr", "logical_or", BOOL),
]:
    register(_op, _infer_binary(_allowed, dtypes.bool_), _ufunc(_fn), ufunc=_fn,
             doc=f"Elementwise {_fn}, broadcasting.")


def _infer_add_n(ctx):
    n = len(ctx.input_dtypes)
    if n == 0:
        raise ctx.error("inputs must be a list of at least one Tensor with the same dtype and shape")
    dt = _check_dtypes(ctx, NUMERIC, [f"inputs[{i}]" for i in range(n)])
    shape = ctx.input_shapes[0]
    for s in ctx.input_shapes[1:]:
        shape = _merge_shapes(ctx, shape, s)
    return [(dt, shape)]


def _merge_shapes(ctx, a, b):
    if a is None:
        return b
    if b is None:
        return a
    if len(a) != len(b) or any(x is not None and y is not None and x != y for x, y in zip(a, b)):
        raise ctx.error(f"Shapes must be equal, but are {_fmt(a)} and {_fmt(b)}")
    return tuple(x if x is not None else y for x, y in zip(a, b))


def _fmt(shape):
    return "<unknown>" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _add_n(xp, attrs):
    def add_n(*xs, out=None):
        shape = xs[0].shape
        for x in xs[1:]:
            if x.shape != shape:
                raise errors.InvalidArgumentError(
                    None, None, f"Inputs to operation AddN must have the same size and shape. "
                                f"Input 0: {list(shape)} != input: {list(x.shape)}")
        if len(xs) == 1:  # a copy: the result must never be an input
            if out is None:
                return xp.array(xs[0], copy=True)
            xp.copyto(out, xs[0])
            return out
        if out is not None and any(out is x for x in xs[2:]):
            out = None  # summing into it would overwrite an addend before it is read
        total = xp.add(xs[0], xs[1], out=out)
        for x in xs[2:]:
            total = xp.add(total, x, out=total if isinstance(total, xp.ndarray) else None)
        return total
    return add_n


register("AddN", _infer_add_n, elementwise=_add_n, doc="The sum of N tensors of one shape.")

# ---- select --------------------------------------------------------------------------------


def _check_select(ctx):
    if ctx.input_dtypes[0] != dtypes.bool_:
        raise TypeError(str(ctx.error(f"condition must be bool, not {ctx.input_dtypes[0].name}")))
    return _check_dtypes(ctx, ALL, ("x", "y"), start=1)


def _infer_select_v2(ctx):
    dt = _check_select(ctx)
    c, x, y = ctx.input_shapes
    return [(dt, broadcast_shapes(c, broadcast_shapes(x, y, ctx), ctx))]


def _infer_select(ctx):
    dt = _check_select(ctx)
    c, x, y = ctx.input_shapes
    shape = _merge_shapes(ctx, x, y)
    if c is not None and shape is not None:
        if len(c) == 1 and len(shape) > 1:
            if None not in (c[0], shape[0]) and c[0] != shape[0]:
                raise ctx.error(f"condition of length {c[0]} cannot select rows of x of shape {_fmt(shape)}")
        elif c:
            _merge_shapes(ctx, c, shape)
    return [(dt, shape)]


def _select_kernel(node):
    xp = node.xp

    def select(c, x, y):
        rows = c.ndim == 1 and x.ndim > 1
        if x.shape != y.shape or (rows and c.shape[0] != x.shape[0]) or (c.ndim and not rows and c.shape != x.shape):
            raise errors.InvalidArgumentError(
                None, None, f"condition, x and y must have the same shape (or condition be a scalar or "
                            f"a vector over x's rows): {list(c.shape)}, {list(x.shape)}, {list(y.shape)}")
        if rows:
            # TF1's Select: a vector condition picks whole rows.
            c = c.reshape((-1,) + (1,) * (x.ndim - 1))
        return xp.where(c, x, y)
    return select


def _select_v2(xp, attrs):
    def select_v2(condition, x, y, out=None):
        return xp.where(condition, x, y)
    return select_v2


register("SelectV2", _infer_select_v2, elementwise=_select_v2,
         doc="x where condition, else y; all three broadcast (TF2's where).")
register("Select", _infer_select, _select_kernel,
         doc="x where condition, else y; condition has x's shape or is a vector over rows (TF1's where).")


def _infer_where(ctx):
    _check_dtypes(ctx, ALL, ("condition",))
    shape = ctx.input_shapes[0]
    return [(dtypes.int64, None if shape is None else (None, len(shape)))]


register("Where", _infer_where, lambda node: lambda c: node.xp.argwhere(c).astype(np.int64, copy=False),
         doc="The indices (int64, one row per element) where condition is true.")

# ---- reductions ----------------------------------------------------------------------------


def _axes_list(value):
    """A scalar or vector of axes (on any device) as a list of ints."""
    if isinstance(value, (np.ndarray, np.generic)) and value.ndim <= 1:  # most steps: no reshape to pay for
        axes = value.tolist()
        return [axes] if isinstance(axes, int) else axes
    return [int(a) for a in np.reshape(value.get() if hasattr(value, "get") else value, -1).tolist()]


def _normalize_axes(axes, rank, fail):
    """Axes as sorted non-negative ints; `fail(message)` builds the error to raise."""
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise fail(f"Invalid reduction dimension {a} for input with {rank} dimensions")
        a %= rank
        if a in out:
            raise fail(f"Axes contains duplicate dimension: {a}")
        out.append(a)
    return sorted(out)


def _reduced_dims(shape, axes, keep):
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)


def _infer_reduce(allowed):
    def infer(ctx):
        dt = _check_dtypes(ctx, allowed, ("input",))
        if ctx.input_dtypes[1] not in INDEX:
            raise TypeError(str(ctx.error(f"reduction axes must be int32 or int64, not {ctx.input_dtypes[1].name}")))
        if ctx.input_shapes[1] is not None and len(ctx.input_shapes[1]) > 1:
            raise ctx.error(f"reduction axes must be a scalar or a vector, not of shape {_fmt(ctx.input_shapes[1])}")
        shape, axes, keep = ctx.input_shapes[0], ctx.const_values[1], ctx.attr("keep_dims", False)
        if shape is None:
            return [(dt, None)]
        if axes is None:
            return [(dt, (None,) * len(shape) if keep else None)]
        axes = _normalize_axes(_axes_list(axes), len(shape), ctx.error)
        return [(dt, _reduced_dims(shape, axes, keep))]
    return infer


def _reduction_kernel(reduce, identity=None):
    """A kernel factory for reduce(xp, x, axes, keepdims) -> array of x's dtype.

    `identity(dtype)` fills the result of reducing an empty tensor (max and min, whose
    NumPy versions refuse empty input).
    """
    def factory(node):
        xp = node.xp
        keep = node.attr("keep_dims", False)

        def fail(message):
            return errors.InvalidArgumentError(None, None, message)

        def run(x, axes):
            ax = _normalize_axes(_axes_list(axes), x.ndim, fail)
            if identity is not None and x.size == 0:
                return xp.full(_reduced_dims(x.shape, ax, keep), identity(x.dtype), dtype=x.dtype)
            return reduce(xp, x, tuple(ax), keep)
        return quiet_fp(run)
    return factory


# On a CPU, reductions call the ufunc's reduce that ndarray.sum and its kind call (numpy/_core/_methods.py)
# without the Python layer between: the same loops, so the same bits, for a few microseconds less.

def _sum(xp, x, axes, keep):
    acc = _accumulator(x.dtype)
    total = np.add.reduce(x, axes, acc, None, keep) if xp is np else x.sum(axis=axes, dtype=acc, keepdims=keep)
    return total.astype(x.dtype, copy=False)


def _prod(xp, x, axes, keep):
    acc = _accumulator(x.dtype)
    total = np.multiply.reduce(x, axes, acc, None, keep) if xp is np else x.prod(axis=axes, dtype=acc, keepdims=keep)
    return total.astype(x.dtype, copy=False)


def _float_mean(x, axes, keep, acc):
    """NumPy's x.mean(axes, acc) (numpy/_core/_methods.py's _mean) for floats: the sum, divided by the
    count as an intp, unsafely cast back into the sum's array."""
    count = 1
    for a in axes:
        count *= x.shape[a]
    total = np.add.reduce(x, axes, acc, None, keep)
    if isinstance(total, np.ndarray):
        return np.true_divide(total, np.intp(count), out=total, casting="unsafe")
    return total.dtype.type(total / np.intp(count))


def _max(xp, x, axes, keep):
    return np.maximum.reduce(x, axes, None, None, keep) if xp is np else x.max(axis=axes, keepdims=keep)


def _min(xp, x, axes, keep):
    return np.minimum.reduce(x, axes, None, None, keep) if xp is np else x.min(axis=axes, keepdims=keep)


def _mean(xp, x, axes, keep):
    if x.dtype.kind == "f":
        acc = _accumulator(x.dtype)
        mean = _float_mean(x, axes, keep, acc) if xp is np else x.mean(axis=axes, dtype=acc, keepdims=keep)
        return mean.astype(x.dtype, copy=False)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    total = x.sum(axis=axes, dtype=np.int64, keepdims=keep)
    # Integer means truncate toward zero, as C++ integer division (and TF) do; an empty mean is 0.
    quotient = xp.abs(total) // max(count, 1)
    return (xp.sign(total) * quotient).astype(x.dtype, copy=False)


register("Sum", _infer_reduce(NUMERIC), _reduction_kernel(_sum), doc="Sum over axes (input 1).")
register("Prod", _infer_reduce(NUMERIC), _reduction_kernel(_prod), doc="Product over axes (input 1).")
register("Mean", _infer_reduce(NUMERIC), _reduction_kernel(_mean), doc="Mean over axes (input 1).")
register("Max", _infer_reduce(NUMERIC),
         _reduction_kernel(_max,
                           lambda dt: dtypes.as_dtype(dt).min if dt.kind != "f" else -np.inf),
         doc="Maximum over axes (input 1); the lowest value for an empty reduction.")
register("Min", _infer_reduce(NUMERIC),
         _reduction_kernel(_min,
                           lambda dt: dtypes.as_dtype(dt).max if dt.kind != "f" else np.inf),
         doc="Minimum over axes (input 1); the highest value for an empty reduction.")
register("All", _infer_reduce(BOOL),
         _reduction_kernel(lambda xp, x, axes, keep: x.all(axis=axes, keepdims=keep)),
         doc="Logical and over axes (input 1).")
register("Any", _infer_reduce(BOOL),
         _reduction_kernel(lambda xp, x, axes, keep: x.any(axis=axes, keepdims=keep)),
         doc="Logical or over axes (input 1).")


def _infer_arg(ctx):
    _check_dtypes(ctx, ALL, ("input",))
    if ctx.input_dtypes[1] not in INDEX:
        raise TypeError(str(ctx.error(f"dimension must be int32 or int64, not {ctx.input_dtypes[1].name}")))
    if ctx.input_shapes[1] not in (None, ()):
        raise ctx.error(f"dimension must be a scalar, not of shape {_fmt(ctx.input_shapes[1])}")
    out = dtypes.as_dtype(ctx.attr("output_type", dtypes.int64))
    if out not in INDEX:
        raise TypeError(str(ctx.error(f"output_type must be int32 or int64, not {out.name}")))
    shape, axis = ctx.input_shapes[0], ctx.const_values[1]
    if shape is None:
        return [(out, None)]
    if axis is None:
        return [(out, (None,) * (len(shape) - 1))]
    axis = int(axis)
    if not -len(shape) <= axis < len(shape):
        raise ctx.error(f"Expected dimension in the range [{-len(shape)}, {len(shape)}), but got {axis}")
    axis %= len(shape)
    return [(out, shape[:axis] + shape[axis + 1:])]


def _arg_kernel(method):
    def factory(node):
        out = dtypes.as_dtype(node.attr("output_type", dtypes.int64)).as_numpy_dtype

        def run(x, axis):
            axis = int(axis)
            if not -x.ndim <= axis < x.ndim:
                raise errors.InvalidArgumentError(
                    None, None, f"Expected dimension in the range [{-x.ndim}, {x.ndim}), but got {axis}")
            if x.shape[axis] == 0:
                raise errors.InvalidArgumentError(
                    None, None, f"Reduction axis {axis} is empty in shape {list(x.shape)}")
            return getattr(x, method)(axis=axis).astype(out, copy=False)
        return run
    return factory


register("ArgMax", _infer_arg, _arg_kernel("argmax"), doc="Index of the largest value along axis (input 1).")
register("ArgMin", _infer_arg, _arg_kernel("argmin"), doc="Index of the smallest value along axis (input 1).")

# ---- matrix products -----------------------------------------------------------------------


def _infer_matmul(batched):
    adj_a, adj_b = ("adj_x", "adj_y") if batched else ("transpose_a", "transpose_b")

    def infer(ctx):
        dt = _check_dtypes(ctx, NUMERIC, ("a", "b"))
        a, b = ctx.input_shapes
        for s in (a, b):
            if s is not None and (len(s) < 2 if batched else len(s) != 2):
                raise ctx.error(f"Shape must be rank {'at least ' if batched else ''}2 but is rank {len(s)} "
                                f"for inputs with shapes {_fmt(a)} and {_fmt(b)}")
        if a is None or b is None:
            return [(dt, None)]
        ta, tb = ctx.attr(adj_a, False), ctx.attr(adj_b, False)
        m, ka = (a[-1], a[-2]) if ta else (a[-2], a[-1])
        kb, n = (b[-1], b[-2]) if tb else (b[-2], b[-1])
        if ka is not None and kb is not None and ka != kb:
            raise ctx.error(f"Dimensions must be equal, but are {ka} and {kb} for inputs with shapes "
                            f"{_fmt(a)} and {_fmt(b)}")
        batch = broadcast_shapes(a[:-2], b[:-2], ctx)
        return [(dt, batch + (m, n))]
    return infer


def _matmul_kernel(batched):
    adj_a, adj_b = ("adj_x", "adj_y") if batched else ("transpose_a", "transpose_b")

    def factory(node):
        xp = node.xp
        ta, tb = node.attr(adj_a, False), node.attr(adj_b, False)

        def matmul(a, b):
            if (a.ndim < 2 or b.ndim < 2) if batched else (a.ndim != 2 or b.ndim != 2):
                raise errors.InvalidArgumentError(
                    None, None, f"In[0] and In[1] must have rank {'at least ' if batched else ''}2, "
                                f"but are {list(a.shape)} and {list(b.shape)}")
            if ta:
                a = a.swapaxes(-1, -2)  # the method: xp.swapaxes's view without its Python layer
            if tb:
                b = b.swapaxes(-1, -2)
            if a.shape[-1] != b.shape[-2]:
                raise errors.InvalidArgumentError(
                    None, None, f"Matrix size-incompatible: In[0]: {list(a.shape)}, In[1]: {list(b.shape)}")
            acc = _accumulator(a.dtype)
            if acc != a.dtype:
                return xp.matmul(a.astype(acc), b.astype(acc)).astype(a.dtype)
            return xp.matmul(a, b)
        return matmul
    return factory


register("MatMul", _infer_matmul(False), _matmul_kernel(False),
         doc="Matrix product of two rank-2 tensors (attrs transpose_a, transpose_b).")
register("BatchMatMulV2", _infer_matmul(True), _matmul_kernel(True),
         doc="Matrix product over the last two axes, broadcasting the batch axes (attrs adj_x, adj_y).")

# ---- einsum --------------------------------------------------------------------------------

ELLIPSIS = "..."


def parse_einsum(equation, num_inputs):
    """Splits an einsum equation into per-input and output label lists ('...' one label).

    Follows numpy.einsum: spaces are ignored, and without '->' the output is '...'
    (if any input has one) then the labels used exactly once, in alphabetical order.
    The output may repeat a label, which puts its values on that diagonal (numpy
    refuses this; the gradients of diagonal inputs such as 'ii->i' need it).
    Raises ValueError on a malformed equation.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != num_inputs:
        raise ValueError(f"einsum equation '{equation}' names {len(terms)} operands, but {num_inputs} were given")
    inputs = [_einsum_labels(t, equation) for t in terms]
    if arrow:
        output = _einsum_labels(rhs, equation)
        used = {label for labels in inputs for label in labels}
        for label in output:
            if label not in used and label != ELLIPSIS:
                raise ValueError(f"einsum equation '{equation}': output subscript '{label}' "
                                 "never appeared in an input")
        if ELLIPSIS in output and len(set(output)) != len(output):
            raise ValueError(f"einsum equation '{equation}': an output with '...' cannot repeat a subscript")
    else:
        counts = {}
        for label in (la for labels in inputs for la in labels if la != ELLIPSIS):
            counts[label] = counts.get(label, 0) + 1
        output = ([ELLIPSIS] if any(ELLIPSIS in labels for labels in inputs) else []) + \
            sorted(label for label, n in counts.items() if n == 1)
    return inputs, output


def _einsum_labels(term, equation):
    labels, i = [], 0
    while i < len(term):
        if term.startswith(ELLIPSIS, i):
            if ELLIPSIS in labels:
                raise ValueError(f"einsum equation '{equation}': more than one '...' in one operand")
            labels.append(ELLIPSIS)
            i += 3
        elif term[i] in string.ascii_letters:
            labels.append(term[i])
            i += 1
        else:
            raise ValueError(f"einsum equation '{equation}': invalid subscript character '{term[i]}'")
    return labels


def _infer_einsum(ctx):
    dt = _check_dtypes(ctx, NUMERIC, [f"inputs[{i}]" for i in range(len(ctx.input_dtypes))])
    try:
        inputs, output = parse_einsum(ctx.attr("equation"), len(ctx.input_dtypes))
    except ValueError as e:
        raise ctx.error(str(e)) from None
    sizes, ellipsis, ellipsis_known = {}, (), True
    for k, (labels, shape) in enumerate(zip(inputs, ctx.input_shapes)):
        if shape is None:
            ellipsis_known &= ELLIPSIS not in labels
            continue
        explicit = len(labels) - (ELLIPSIS in labels)
        if len(shape) < explicit or (ELLIPSIS not in labels and len(shape) != explicit):
            raise ctx.error(f"operand {k} has rank {len(shape)}, but its subscripts "
                            f"'{''.join(labels)}' need {explicit}")
        dims = _expand_ellipsis(labels, len(shape))
        seen = {}
        for label, d in zip(dims, shape):
            if isinstance(label, int):
                continue
            if label in seen and None not in (seen[label], d) and seen[label] != d:
                raise ctx.error(f"dimensions in operand {k} for collapsing index '{label}' don't match "
                                f"({seen[label]} != {d})")
            seen[label] = d
            sizes[label] = _broadcast_dim(ctx, label, sizes.get(label, 1), d)
        if ELLIPSIS in labels:
            ellipsis = broadcast_shapes(ellipsis, tuple(d for la, d in zip(dims, shape) if isinstance(la, int)), ctx)
    if ELLIPSIS not in output and ellipsis:
        raise ctx.error("output has more dimensions than subscripts given in einstein sum, "
                        "but no '...' ellipsis provided to broadcast the extra dimensions")
    if ELLIPSIS in output and not ellipsis_known:
        return [(dt, None)]
    shape = []
    for label in output:
        shape.extend(ellipsis if label == ELLIPSIS else [sizes.get(label)])
    return [(dt, tuple(shape))]


def _expand_ellipsis(labels, rank):
    """Labels with '...' replaced by ints 0..n-1, one per dimension it covers."""
    if ELLIPSIS not in labels:
        return list(labels)
    i = labels.index(ELLIPSIS)
    n = rank - len(labels) + 1
    return labels[:i] + list(range(n)) + labels[i + 1:]


def _broadcast_dim(ctx, label, a, b):
    if a is None or b is None:
        return b if a in (None, 1) else a
    if a != b and 1 not in (a, b):
        raise ctx.error(f"einsum subscript '{label}' has sizes {a} and {b}, which do not broadcast")
    return b if a == 1 else a


def _einsum_kernel(node):
    xp = node.xp
    equation = node.attr("equation").replace(" ", "")
    lhs, _, _ = equation.partition("->")
    _, output = parse_einsum(equation, len(lhs.split(",")))
    unique = list(dict.fromkeys(output))
    if len(unique) == len(output):
        return _einsum_call(xp, equation)
    # A repeated output label: compute the diagonal, then place it in a zero tensor.
    diagonal = _einsum_call(xp, lhs + "->" + "".join(unique))

    def embed(*xs):
        d = diagonal(*xs)
        full = xp.zeros([d.shape[unique.index(label)] for label in output], dtype=d.dtype)
        strides = [sum(s for s, la in zip(full.strides, output) if la == u) for u in unique]
        xp.lib.stride_tricks.as_strided(full, d.shape, strides)[...] = d
        return full
    return embed


def _einsum_call(xp, equation):
    def einsum(*xs):
        acc = _accumulator(xs[0].dtype)
        if acc != xs[0].dtype:
            return xp.einsum(equation, *[x.astype(acc) for x in xs], optimize=len(xs) > 1).astype(xs[0].dtype)
        return xp.einsum(equation, *xs, optimize=len(xs) > 1)
    return einsum


register("Einsum", _infer_einsum, _einsum_kernel,
         doc="numpy.einsum of N inputs (attr equation); an output label may repeat (a diagonal).")

# ---- shape helpers for gradients -----------------------------------------------------------


def _infer_bcast_args(ctx):
    _check_dtypes(ctx, INDEX, ("s0", "s1"))
    a, b = ctx.const_values
    if a is not None and b is not None:
        broadcast_shapes(tuple(_axes_list(a)), tuple(_axes_list(b)), ctx)
    return [(ctx.input_dtypes[0], (None,)), (ctx.input_dtypes[0], (None,))]


def _broadcast_reduction_axes(s0, s1):
    """The axes to sum a broadcast result over to get back to shapes s0 and s1 (TF's BCast)."""
    s0, s1 = [int(d) for d in s0], [int(d) for d in s1]
    n = max(len(s0), len(s1))
    p0, p1 = [1] * (n - len(s0)) + s0, [1] * (n - len(s1)) + s1
    r0, r1 = [], []
    for i, (a, b) in enumerate(zip(p0, p1)):
        if a != b and 1 not in (a, b):
            raise errors.InvalidArgumentError(None, None, f"Incompatible shapes: {s0} vs. {s1}")
        if (a == 1 and b != 1) or i < n - len(s0):
            r0.append(i)
        if (b == 1 and a != 1) or i < n - len(s1):
            r1.append(i)
    return r0, r1


def _bcast_args_kernel(node):
    xp = node.xp

    def run(s0, s1):
        r0, r1 = _broadcast_reduction_axes(s0.tolist(), s1.tolist())
        return xp.asarray(r0, dtype=s0.dtype), xp.asarray(r1, dtype=s0.dtype)
    return run


register("BroadcastGradientArgs", _infer_bcast_args, _bcast_args_kernel, num_outputs=2,
         doc="For shapes s0, s1: the axes to sum the gradient of a broadcast over, for each.")


def _infer_reduced_shape(ctx):
    _check_dtypes(ctx, INDEX, ("input_shape",))
    if ctx.input_dtypes[1] not in INDEX:
        raise TypeError(str(ctx.error(f"axes must be int32 or int64, not {ctx.input_dtypes[1].name}")))
    return [(ctx.input_dtypes[0], ctx.input_shapes[0])]


def _reduced_shape_kernel(node):
    def run(shape, axes):
        out = shape.copy()
        if out.size:
            out[node.xp.asarray(axes).reshape(-1) % out.size] = 1
        return out
    return run


register("ReducedShape", _infer_reduced_shape, _reduced_shape_kernel,
         doc="Shape input 0 with the axes of input 1 set to 1: a reduction's keepdims shape.")
