"""Math, logic and reduction ops front-end (declared in tensorgrid/ops/math_ops.py).

Binary ops follow TF's conversion rule: a Python or NumPy operand takes the
dtype of the tensor operand beside it (`x + 1` with x float16 adds a float16
one; a NumPy array of another real dtype is cast, a Python value must fit);
two tensors of different dtypes are a TypeError.
"""

import string

import numpy as np

from tensorgrid.client import array_ops
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import TensorOps, apply_op, convert_to_tensor
from tensorgrid.framework import dtypes

__all__ = [
    "global_norm", "clip_by_global_norm", "clip_by_norm",
    "add", "subtract", "multiply", "divide", "truediv", "floordiv", "mod", "floormod", "negative",
    "abs", "sign", "exp", "log", "log1p", "sqrt", "rsqrt", "square", "pow", "maximum", "minimum",
    "tanh", "sigmoid", "sin", "cos", "floor", "ceil", "round", "add_n", "matmul", "tensordot", "einsum",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
    "logical_not", "where", "where_v2", "is_nan", "is_finite",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_all", "reduce_any",
    "argmax", "argmin",
]


def _is_tensor(value):
    return isinstance(value, TensorOps) or hasattr(value, "_as_tensor")


def _convert(*values):
    """Tensors for `values`: Python and NumPy values take the dtype of the first tensor among them,
    or, with no tensor among them, of the first value (TF's `tf.multiply(1.5, 2)` is float32)."""
    tensors = [convert_to_tensor(v) if _is_tensor(v) else None for v in values]
    if all(t is None for t in tensors):
        tensors[0] = convert_to_tensor(values[0])
    hint = next(t.dtype for t in tensors if t is not None)
    return [t if t is not None else _convert_beside(v, hint) for t, v in zip(tensors, values)]


def _convert_beside(value, dtype):
    """`value` as a tensor beside one of `dtype`. A NumPy array or scalar of another real dtype is cast
    to it, as TF's operators and ops do (`W * X`, W float32, X a float64 array, is float32; an int32
    tensor plus a float array truncates it); Python values keep their check (`int32 + 1.5` fails)."""
    if (isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf"
            and (dtype.is_floating or dtype.is_integer or dtype.is_bool)):
        return convert_to_tensor(np.asarray(value).astype(dtype.as_numpy_dtype), dtype=dtype)
    if dtype.is_floating and isinstance(value, (int, float, list, tuple)) and not isinstance(value, bool):
        try:
            numeric = np.asarray(value).dtype.kind in "iuf"
        except ValueError:  # a ragged list: the conversion below says what is wrong
            numeric = False
        if numeric:  # TF rounds a Python number to the tensor's float dtype (`x_f16 * 0.001` is float16)
            return convert_to_tensor(value, dtype=dtype)
    return convert_to_tensor(value, dtype_hint=dtype)


def _unary(op_type, x, name):
    return apply_op(op_type, [convert_to_tensor(x)], name=name or op_type)


def _binary(op_type, x, y, name):
    return apply_op(op_type, _convert(x, y), name=name or op_type)


# ---- arithmetic ---------------------------------------------------------------------------

def add(x, y, name=None):
    """x + y elementwise, broadcasting."""
    return _binary("Add", x, y, name)


def subtract(x, y, name=None):
    """x - y elementwise, broadcasting."""
    return _binary("Sub", x, y, name)


def multiply(x, y, name=None):
    """x * y elementwise, broadcasting."""
    return _binary("Mul", x, y, name)


_TRUEDIV_FLOAT = {dtypes.int8: dtypes.float32, dtypes.uint8: dtypes.float32, dtypes.int16: dtypes.float32,
                  dtypes.int32: dtypes.float64, dtypes.int64: dtypes.float64}


def truediv(x, y, name=None):
    """x / y elementwise as floats: integers divide as float32 (8, 16 bit) or float64 (32, 64 bit)."""
    x, y = _convert(x, y)
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype.name} != {y.dtype.name}")
    if x.dtype in _TRUEDIV_FLOAT:
        x = array_ops.cast(x, _TRUEDIV_FLOAT[x.dtype])
        y = array_ops.cast(y, _TRUEDIV_FLOAT[y.dtype])
    return apply_op("RealDiv", [x, y], name=name or "truediv")


def divide(x, y, name=None):
    """x / y elementwise (Python 3 division: see truediv)."""
    return truediv(x, y, name=name or "truediv")


def floordiv(x, y, name=None):
    """floor(x / y) elementwise; integer division by zero is an InvalidArgumentError."""
    return _binary("FloorDiv", x, y, name)


def mod(x, y, name=None):
    """x mod y elementwise with the sign of y, as Python's %."""
    return _binary("FloorMod", x, y, name)


floormod = mod


def pow(x, y, name=None):  # noqa: A001 - TF's name
    """x ** y elementwise, broadcasting."""
    return _binary("Pow", x, y, name)


def maximum(x, y, name=None):
    """The larger of x and y elementwise (nan if either is nan)."""
    return _binary("Maximum", x, y, name)


def minimum(x, y, name=None):
    """The smaller of x and y elementwise (nan if either is nan)."""
    return _binary("Minimum", x, y, name)


def negative(x, name=None):
    """-x elementwise."""
    return _unary("Neg", x, name)


def abs(x, name=None):  # noqa: A001 - TF's name
    """|x| elementwise."""
    return _unary("Abs", x, name)


def sign(x, name=None):
    """-1, 0 or 1 elementwise, as x is negative, zero or positive."""
    return _unary("Sign", x, name)


def square(x, name=None):
    """x * x elementwise."""
    return _unary("Square", x, name)


def exp(x, name=None):
    """e ** x elementwise."""
    return _unary("Exp", x, name)


def log(x, name=None):
    """Natural logarithm elementwise."""
    return _unary("Log", x, name)


def log1p(x, name=None):
    """log(1 + x) elementwise, accurate for small x."""
    return _unary("Log1p", x, name)


def sqrt(x, name=None):
    """Square root elementwise."""
    return _unary("Sqrt", x, name)


def rsqrt(x, name=None):
    """1 / sqrt(x) elementwise."""
    return _unary("Rsqrt", x, name)


def tanh(x, name=None):
    """Hyperbolic tangent elementwise."""
    return _unary("Tanh", x, name)


def sigmoid(x, name=None):
    """1 / (1 + exp(-x)) elementwise."""
    return _unary("Sigmoid", x, name)


def sin(x, name=None):
    """Sine elementwise."""
    return _unary("Sin", x, name)


def cos(x, name=None):
    """Cosine elementwise."""
    return _unary("Cos", x, name)


def floor(x, name=None):
    """The largest integer not above x, elementwise."""
    return _unary("Floor", x, name)


def ceil(x, name=None):
    """The smallest integer not below x, elementwise."""
    return _unary("Ceil", x, name)


def round(x, name=None):  # noqa: A001 - TF's name
    """x rounded to the nearest integer elementwise, halves to even (banker's rounding)."""
    x = convert_to_tensor(x)
    if x.dtype.is_integer:
        return x
    return _unary("Round", x, name)


def add_n(inputs, name=None):
    """The elementwise sum of a list of tensors of one dtype and shape."""
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise ValueError("inputs must be a list of at least one Tensor with the same dtype and shape")
    inputs = _convert(*inputs)
    if len(inputs) == 1 and name is None:
        return inputs[0]
    return apply_op("AddN", inputs, name=name or "AddN")


# ---- matrix products ----------------------------------------------------------------------

def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, name=None):
    """The matrix product a @ b over the last two axes, broadcasting any batch axes before them.

    adjoint_* equal transpose_* (tensorgrid's dtypes are real); *_is_sparse are hints and ignored.
    """
    a, b = _convert(a, b)
    ta, tb = bool(transpose_a or adjoint_a), bool(transpose_b or adjoint_b)
    if a.shape.ndims == 2 and b.shape.ndims == 2:
        return apply_op("MatMul", [a, b], {"transpose_a": ta, "transpose_b": tb}, name=name or "MatMul")
    return apply_op("BatchMatMulV2", [a, b], {"adj_x": ta, "adj_y": tb}, name=name or "MatMul")


def einsum(equation, *inputs, **kwargs):
    """numpy.einsum over tensors: `einsum("ij,jk->ik", a, b)`; accepts `name=`."""
    name = kwargs.pop("name", None)
    if kwargs:
        raise TypeError(f"einsum got unexpected keyword arguments {sorted(kwargs)}")
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = inputs[0]
    if not inputs:
        raise ValueError("einsum needs at least one operand")
    tensors = _convert(*inputs)
    return apply_op("Einsum", tensors, {"equation": equation.replace(" ", ""), "N": len(tensors)},
                    name=name or "Einsum")


def tensordot(a, b, axes, name=None):
    """Sums a * b over the axes pairs `axes`: an int n (a's last n with b's first n), or two lists.

    Both ranks must be known when the graph is built; the product is one Einsum node.
    """
    a, b = _convert(a, b)
    ra, rb = a.shape.ndims, b.shape.ndims
    if ra is None or rb is None:
        raise ValueError(f"tensordot needs inputs of known rank, got shapes {a.shape} and {b.shape}")
    axes_a, axes_b = _tensordot_axes(axes, ra, rb)
    letters = iter(string.ascii_letters)
    labels_a = [next(letters) for _ in range(ra)]
    labels_b = [next(letters) for _ in range(rb)]
    for i, j in zip(axes_a, axes_b):
        labels_b[j] = labels_a[i]
    out = [la for i, la in enumerate(labels_a) if i not in axes_a] + \
        [lb for j, lb in enumerate(labels_b) if j not in axes_b]
    return einsum(f"{''.join(labels_a)},{''.join(labels_b)}->{''.join(out)}", a, b, name=name or "Tensordot")


def _tensordot_axes(axes, ra, rb):
    """(axes of a, axes of b) as lists of non-negative ints, from an int or a pair of lists."""
    if _is_tensor(axes):
        value = static_value(axes)
        if value is None:
            raise ValueError("tensordot needs axes known when the graph is built")
        axes = value.tolist()
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > ra or n > rb:
            raise ValueError(f"tensordot axes {n} must be between 0 and the ranks {ra} and {rb}")
        return list(range(ra - n, ra)), list(range(n))
    if not isinstance(axes, (list, tuple)) or len(axes) != 2:
        raise ValueError(f"tensordot axes must be an int or a pair of lists, got {axes!r}")
    axes_a, axes_b = ([x] if isinstance(x, (int, np.integer)) else list(x) for x in axes)
    if len(axes_a) != len(axes_b):
        raise ValueError(f"tensordot axes {axes_a} and {axes_b} have different lengths")
    for ax, rank in ((axes_a, ra), (axes_b, rb)):
        for i, x in enumerate(ax):
            if not -rank <= x < rank:
                raise ValueError(f"tensordot axis {x} is out of range for rank {rank}")
            ax[i] = int(x) % rank
    return axes_a, axes_b


def static_value(t):
    """The NumPy value of tensor `t` when it is known while the graph is built (always, eagerly), else None."""
    if getattr(t, "_is_eager_tensor", False):
        return t.numpy()
    return graph_lib._const_value(t)


# ---- comparisons and logic ------------------------------------------------------------------

def equal(x, y, name=None):
    """x == y elementwise, broadcasting; bool."""
    return _binary("Equal", x, y, name)


def not_equal(x, y, name=None):
    """x != y elementwise, broadcasting; bool."""
    return _binary("NotEqual", x, y, name)


def less(x, y, name=None):
    """x < y elementwise, broadcasting; bool."""
    return _binary("Less", x, y, name)


def less_equal(x, y, name=None):
    """x <= y elementwise, broadcasting; bool."""
    return _binary("LessEqual", x, y, name)


def greater(x, y, name=None):
    """x > y elementwise, broadcasting; bool."""
    return _binary("Greater", x, y, name)


def greater_equal(x, y, name=None):
    """x >= y elementwise, broadcasting; bool."""
    return _binary("GreaterEqual", x, y, name)


def logical_and(x, y, name=None):
    """x and y elementwise, for bool tensors."""
    return _binary("LogicalAnd", x, y, name)


def logical_or(x, y, name=None):
    """x or y elementwise, for bool tensors."""
    return _binary("LogicalOr", x, y, name)


def logical_not(x, name=None):
    """not x elementwise, for a bool tensor."""
    return _unary("LogicalNot", x, name)


def is_nan(x, name=None):
    """Whether x is nan, elementwise."""
    return _unary("IsNan", x, name)


def is_finite(x, name=None):
    """Whether x is neither inf nor nan, elementwise."""
    return _unary("IsFinite", x, name)


def _condition(condition):
    return convert_to_tensor(condition, dtype_hint=dtypes.bool_)


def where(condition, x=None, y=None, name=None):
    """x where condition is true, else y, all three broadcast (TF2's where).

    Without x and y: the int64 indices, one row [num_true, rank] per true element of condition.
    """
    if x is None and y is None:
        return apply_op("Where", [_condition(condition)], name=name or "Where")
    if x is None or y is None:
        raise ValueError("x and y must both be non-None or both be None.")
    return apply_op("SelectV2", [_condition(condition)] + _convert(x, y), name=name or "SelectV2")


where_v2 = where


def where_v1(condition, x=None, y=None, name=None):
    """TF1's where: condition has x's shape, is a scalar, or is a vector that picks rows of x."""
    if x is None and y is None:
        return where(condition, name=name)
    if x is None or y is None:
        raise ValueError("x and y must both be non-None or both be None.")
    return apply_op("Select", [_condition(condition)] + _convert(x, y), name=name or "Select")


# ---- reductions ---------------------------------------------------------------------------

def _either(new, new_name, old, old_name):
    """TF1's deprecated-argument lookup: `new` or its old spelling, not both."""
    if new is not None and old is not None:
        raise ValueError(f"Cannot specify both '{new_name}' and '{old_name}'")
    return new if new is not None else old


def _reduction_axes(x, axis):
    if axis is not None:
        return convert_to_tensor(axis, dtype_hint=dtypes.int32, name="reduction_indices")
    if x.shape.ndims is not None:
        return convert_to_tensor(np.arange(x.shape.ndims, dtype=np.int32), name="reduction_indices")
    return array_ops.range(0, array_ops.rank(x))


def _reduce(op_type, input_tensor, axis, keepdims, name, reduction_indices, keep_dims):
    x = convert_to_tensor(input_tensor)
    axis = _either(axis, "axis", reduction_indices, "reduction_indices")
    keep = bool(_either(keepdims, "keepdims", keep_dims, "keep_dims"))
    return apply_op(op_type, [x, _reduction_axes(x, axis)], {"keep_dims": keep}, name=name or op_type)


def reduce_sum(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """The sum over `axis` (all axes when None), keeping reduced axes as 1 with keepdims."""
    return _reduce("Sum", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_mean(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """The mean over `axis` (all axes when None); integer means truncate toward zero, as TF's."""
    return _reduce("Mean", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_max(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """The maximum over `axis` (all axes when None); the dtype's lowest value for an empty tensor."""
    return _reduce("Max", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_min(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """The minimum over `axis` (all axes when None); the dtype's highest value for an empty tensor."""
    return _reduce("Min", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_prod(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """The product over `axis` (all axes when None)."""
    return _reduce("Prod", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_all(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """Logical and over `axis` (all axes when None) of a bool tensor."""
    return _reduce("All", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def reduce_any(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
    """Logical or over `axis` (all axes when None) of a bool tensor."""
    return _reduce("Any", input_tensor, axis, keepdims, name, reduction_indices, keep_dims)


def _arg(op_type, input, axis, output_type, name, dimension):  # noqa: A002
    axis = _either(axis, "axis", dimension, "dimension")
    attrs = {"output_type": dtypes.as_dtype(output_type)}
    axis = convert_to_tensor(0 if axis is None else axis, dtype_hint=dtypes.int32, name="dimension")
    return apply_op(op_type, [convert_to_tensor(input), axis], attrs, name=name or op_type)


def argmax(input, axis=None, output_type=dtypes.int64, name=None, dimension=None):  # noqa: A002
    """The index of the largest value along `axis` (0 when None), as `output_type` (int64)."""
    return _arg("ArgMax", input, axis, output_type, name, dimension)


def argmin(input, axis=None, output_type=dtypes.int64, name=None, dimension=None):  # noqa: A002
    """The index of the smallest value along `axis` (0 when None), as `output_type` (int64)."""
    return _arg("ArgMin", input, axis, output_type, name, dimension)


# ---- gradient helpers ------------------------------------------------------------------------

def broadcast_gradient_args(s0, s1, name=None):
    """For two shapes, the axes over which to sum the gradient of their broadcast, for each."""
    return apply_op("BroadcastGradientArgs", [s0, s1], name=name or "BroadcastGradientArgs")


def unbroadcast(grad, x):
    """`grad`, shaped like a broadcast of x, summed over the axes x was broadcast along and shaped like x.

    Uses the static shapes when both are fully known (always, eagerly), else the runtime
    Shape and BroadcastGradientArgs ops. None stays None.
    """
    if grad is None:
        return None
    if grad.shape.is_fully_defined() and x.shape.is_fully_defined():
        g, s = grad.shape.as_list(), x.shape.as_list()
        if g == s:
            return grad
        lead = len(g) - len(s)
        axes = list(range(lead)) + [lead + i for i, d in enumerate(s) if d == 1 and g[lead + i] != 1]
        if axes:
            grad = reduce_sum(grad, axes)
        return array_ops.reshape(grad, s)
    shape = array_ops.shape(x)
    axes, _ = broadcast_gradient_args(shape, array_ops.shape(grad))
    return array_ops.reshape(reduce_sum(grad, axes), shape)


def reduced_shape(input_shape, axes, name=None):
    """input_shape with the dims in `axes` set to 1: the shape of a keepdims reduction."""
    return apply_op("ReducedShape", [input_shape, axes], name=name or "ReducedShape")


from tensorgrid.client import math_grad  # noqa: E402,F401 - registers the gradients of these ops


def global_norm(t_list, name=None):
    """sqrt(sum of the squares of every element of every tensor in t_list); None entries are skipped.

    Named `<name>/global_norm`, as TF names it.
    """
    from tensorgrid.client.indexed_slices import IndexedSlices
    with _scope(name, "global_norm"):
        # an IndexedSlices counts by its values, as in TF
        sums = [reduce_sum(square(convert_to_tensor(t.values if isinstance(t, IndexedSlices) else t)))
                for t in t_list if t is not None]
        return sqrt(add_n(sums), name="global_norm")


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """Scales t_list by clip_norm / max(global_norm, clip_norm); returns (clipped list, global norm)."""
    from tensorgrid.client import array_ops
    from tensorgrid.client.indexed_slices import IndexedSlices
    # TF's names: the norm under `name/`, the clipped tensors `<scope>/<scope>_i` under a second scope
    norm = global_norm(t_list, name) if use_norm is None else convert_to_tensor(use_norm)
    with _scope(name, "clip_by_global_norm") as scope:
        clip = convert_to_tensor(clip_norm, dtype_hint=norm.dtype)
        # TF's formula: an infinite norm gives NaNs rather than silently zeroing the gradients.
        scale = clip * minimum(1.0 / norm, 1.0 / clip)
        clipped = []
        for i, t in enumerate(t_list):
            if isinstance(t, IndexedSlices):    # stays sparse: its values are scaled
                values = array_ops.identity(multiply(t.values, array_ops.cast(scale, t.dtype)), name=f"{scope}_{i}")
                t = IndexedSlices(values, t.indices, t.dense_shape)
            elif t is not None:
                t = convert_to_tensor(t)
                t = array_ops.identity(multiply(t, array_ops.cast(scale, t.dtype)), name=f"{scope}_{i}")
            clipped.append(t)
        return clipped, norm


def clip_by_norm(t, clip_norm, axes=None, name=None):
    """t scaled so its L2 norm (over `axes`) is at most clip_norm."""
    with _scope(name, "clip_by_norm") as scope:
        t = convert_to_tensor(t)
        l2sum = reduce_sum(t * t, axes, keepdims=True)
        positive = greater(l2sum, 0.0)
        safe = where(positive, l2sum, l2sum * 0.0 + 1.0)
        l2norm = where(positive, sqrt(safe), l2sum)
        return truediv(t * clip_norm, maximum(l2norm, clip_norm), name=scope)


def _scope(name, default):
    from tensorgrid.client import scopes
    return scopes.name_scope(name, default)

# tg.math's segment reductions (client/segment_ops.py; tg.math only, as in TF2)
from tensorgrid.client.segment_ops import (  # noqa: E402,F401
    segment_sum, segment_mean, segment_max, segment_min, segment_prod, unsorted_segment_mean, unsorted_segment_max,
    unsorted_segment_min, unsorted_segment_prod, unsorted_segment_sqrt_n)
from tensorgrid.client.array_ops import unsorted_segment_sum  # noqa: E402,F401
