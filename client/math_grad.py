"""Gradients of the math, logic and reduction ops, registered in the op registry.

Each gradient builds its result with the client's ops, so it works in graph
and eager mode and can itself be differentiated. Gradients of broadcasting
ops are summed back to each input's shape by math_ops.unbroadcast.
"""

import string

import numpy as np

from tensorgrid.client import array_ops, math_ops
from tensorgrid.ops import registry
from tensorgrid.ops.math_ops import ELLIPSIS, parse_einsum

registry.not_differentiable(
    "Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual",
    "LogicalAnd", "LogicalOr", "LogicalNot", "IsNan", "IsFinite",
    "All", "Any", "ArgMax", "ArgMin", "Where",
    # Piecewise constant: TF gives them no gradient either.
    "Floor", "Ceil", "Round", "FloorDiv",
    "BroadcastGradientArgs", "ReducedShape")


def _shape_of(x):
    """x's shape: a list when known statically, else the runtime Shape of x."""
    return x.shape.as_list() if x.shape.is_fully_defined() else array_ops.shape(x)


def _binary(op, gx, gy):
    x, y = op.inputs
    return [math_ops.unbroadcast(gx, x), math_ops.unbroadcast(gy, y)]


# ---- elementwise ---------------------------------------------------------------------------

@registry.register_gradient("Add")
def _add_grad(op, grad):
    return _binary(op, grad, grad)


@registry.register_gradient("Sub")
def _sub_grad(op, grad):
    return _binary(op, grad, -grad)


@registry.register_gradient("Mul")
def _mul_grad(op, grad):
    x, y = op.inputs
    return _binary(op, grad * y, x * grad)


@registry.register_gradient("RealDiv")
def _real_div_grad(op, grad):
    x, y = op.inputs
    return _binary(op, grad / y, grad * (-x / y / y))


@registry.register_gradient("FloorMod")
def _floor_mod_grad(op, grad):
    x, y = op.inputs
    return _binary(op, grad, -grad * math_ops.floordiv(x, y))


@registry.register_gradient("Pow")
def _pow_grad(op, grad):
    x, y = op.inputs
    z = op.outputs[0]
    # d/dy x**y = x**y log(x), taken as 0 where log(x) is undefined, as TF does; log only
    # sees positive values, so no nan leaks into the gradient of this gradient.
    positive = x > 0
    log_x = math_ops.where(positive, math_ops.log(math_ops.where(positive, x, 1)), 0)
    return _binary(op, grad * y * math_ops.pow(x, y - 1), grad * z * log_x)


@registry.register_gradient("Maximum")
def _maximum_grad(op, grad):
    x, y = op.inputs
    x_wins = math_ops.greater_equal(x, y)
    return _binary(op, math_ops.where(x_wins, grad, 0), math_ops.where(x_wins, 0, grad))


@registry.register_gradient("Minimum")
def _minimum_grad(op, grad):
    x, y = op.inputs
    x_wins = math_ops.less_equal(x, y)
    return _binary(op, math_ops.where(x_wins, grad, 0), math_ops.where(x_wins, 0, grad))


@registry.register_gradient("Neg")
def _neg_grad(op, grad):
    return [-grad]


@registry.register_gradient("Abs")
def _abs_grad(op, grad):
    return [grad * math_ops.sign(op.inputs[0])]


@registry.register_gradient("Sign")
def _sign_grad(op, grad):
    return [array_ops.zeros_like(op.inputs[0])]


@registry.register_gradient("Square")
def _square_grad(op, grad):
    return [grad * (2 * op.inputs[0])]


@registry.register_gradient("Sqrt")
def _sqrt_grad(op, grad):
    return [grad / (2 * op.outputs[0])]


@registry.register_gradient("Rsqrt")
def _rsqrt_grad(op, grad):
    y = op.outputs[0]
    return [grad * (-0.5 * y * y * y)]


@registry.register_gradient("Exp")
def _exp_grad(op, grad):
    return [grad * op.outputs[0]]


@registry.register_gradient("Log")
def _log_grad(op, grad):
    return [grad / op.inputs[0]]


@registry.register_gradient("Log1p")
def _log1p_grad(op, grad):
    return [grad / (1 + op.inputs[0])]


@registry.register_gradient("Tanh")
def _tanh_grad(op, grad):
    y = op.outputs[0]
    return [grad * (1 - y * y)]


@registry.register_gradient("Sigmoid")
def _sigmoid_grad(op, grad):
    y = op.outputs[0]
    return [grad * (y * (1 - y))]


@registry.register_gradient("Sin")
def _sin_grad(op, grad):
    return [grad * math_ops.cos(op.inputs[0])]


@registry.register_gradient("Cos")
def _cos_grad(op, grad):
    return [-grad * math_ops.sin(op.inputs[0])]


@registry.register_gradient("AddN")
def _add_n_grad(op, grad):
    return [grad] * len(op.inputs)


@registry.register_gradient("SelectV2")
def _select_v2_grad(op, grad):
    c, x, y = op.inputs
    gx, gy = math_ops.where(c, grad, 0), math_ops.where(c, 0, grad)
    return [None, math_ops.unbroadcast(gx, x), math_ops.unbroadcast(gy, y)]


@registry.register_gradient("Select")
def _select_grad(op, grad):
    c = op.inputs[0]
    zeros = array_ops.zeros_like(grad)
    return [None, math_ops.where_v1(c, grad, zeros), math_ops.where_v1(c, zeros, grad)]


# ---- matrix products -----------------------------------------------------------------------

def _matmul_grads(grad, a, b, ta, tb):
    """(da, db) for a product of a (transposed if ta) and b (transposed if tb)."""
    def mm(x, y, tx, ty):
        return math_ops.matmul(x, y, transpose_a=tx, transpose_b=ty)
    if not ta and not tb:
        return mm(grad, b, False, True), mm(a, grad, True, False)
    if not ta and tb:
        return mm(grad, b, False, False), mm(grad, a, True, False)
    if ta and not tb:
        return mm(b, grad, False, True), mm(a, grad, False, False)
    return mm(b, grad, True, True), mm(grad, a, True, True)


@registry.register_gradient("MatMul")
def _matmul_grad(op, grad):
    a, b = op.inputs
    return list(_matmul_grads(grad, a, b, op.get_attr("transpose_a"), op.get_attr("transpose_b")))


@registry.register_gradient("BatchMatMulV2")
def _batch_matmul_grad(op, grad):
    a, b = op.inputs
    return _binary(op, *_matmul_grads(grad, a, b, op.get_attr("adj_x"), op.get_attr("adj_y")))


@registry.register_gradient("Einsum")
def _einsum_grad(op, grad):
    """Each input's gradient is itself an einsum: of the output gradient with the other inputs.

    '...' is spelled out in fresh letters first, so every dimension has a label. An input
    label found nowhere else (summed out of that input alone) takes its size from a ones
    tensor of the input's shape; a repeated input label ('ii') gives a diagonal output.
    """
    equation = op.get_attr("equation")
    inputs = list(op.inputs)
    labels, output = parse_einsum(equation, len(inputs))
    ranks = [x.shape.ndims for x in inputs]
    if any(ELLIPSIS in lab and r is None for lab, r in zip(labels, ranks)):
        raise ValueError(f"the gradient of einsum '{equation}' needs the rank of every input with '...'")
    spans = [r - len(lab) + 1 if ELLIPSIS in lab else 0 for lab, r in zip(labels, ranks)]
    fresh = [c for c in string.ascii_letters if c not in equation][:max(spans, default=0)]

    def spell(lab, span):
        if ELLIPSIS not in lab:
            return "".join(lab)
        i = lab.index(ELLIPSIS)
        return "".join(lab[:i] + fresh[len(fresh) - span:] + lab[i + 1:])
    terms = [spell(lab, span) for lab, span in zip(labels, spans)]
    out = spell(output, len(fresh))
    grads = []
    for k, x in enumerate(inputs):
        operands = [(out, grad)] + [(t, v) for j, (t, v) in enumerate(zip(terms, inputs)) if j != k]
        if not set(terms[k]) <= set("".join(t for t, _ in operands)):
            operands.append((terms[k], array_ops.ones_like(x)))
        eq = ",".join(t for t, _ in operands) + "->" + terms[k]
        grads.append(math_ops.unbroadcast(math_ops.einsum(eq, *[v for _, v in operands]), x))
    return grads


# ---- reductions ----------------------------------------------------------------------------

def _keepdims(op, t):
    """`t`, an output (gradient) of reduction `op`, reshaped to the input's rank with reduced axes 1."""
    if op.get_attr("keep_dims"):
        return t
    x, axes = op.inputs
    ax = math_ops.static_value(axes)
    if ax is not None and x.shape.ndims is not None:
        shape = x.shape.as_list()
        for a in np.reshape(ax, -1):
            shape[int(a)] = 1
        # static wherever the kept dims are (a batch reduced away: TF's _SumGrad too), no Shape to run
        if None not in shape:
            return array_ops.reshape(t, shape)
    return array_ops.reshape(t, math_ops.reduced_shape(array_ops.shape(x), axes))


def _sum_grad_of(op, grad, shape=None):
    """Sum's input gradient; `shape`, the input's (_shape_of), where the caller has it already."""
    return array_ops.broadcast_to(_keepdims(op, grad), _shape_of(op.inputs[0]) if shape is None else shape)


@registry.register_gradient("Sum")
def _sum_grad(op, grad):
    return [_sum_grad_of(op, grad), None]


@registry.register_gradient("Mean")
def _mean_grad(op, grad):
    x, y = op.inputs[0], op.outputs[0]
    shape = _shape_of(x)  # one Shape node for the count and the broadcast, as TF's grappler merges them
    if x.shape.is_fully_defined() and y.shape.is_fully_defined():
        count = x.shape.num_elements() // max(y.shape.num_elements(), 1)
    else:
        # the output's size is static where its shape is (a mean over the batch), as TF's grappler folds it
        out_size = max(y.shape.num_elements(), 1) if y.shape.is_fully_defined() else \
            math_ops.maximum(math_ops.reduce_prod(array_ops.shape(y)), 1)
        count = array_ops.cast(math_ops.floordiv(math_ops.reduce_prod(shape), out_size), x.dtype)
    return [_sum_grad_of(op, grad, shape) / count, None]


def _extremum_grad(op, grad):
    """Max and Min: the gradient flows to the inputs equal to the result, split evenly among ties."""
    x, axes = op.inputs
    hits = array_ops.cast(math_ops.equal(x, _keepdims(op, op.outputs[0])), x.dtype)
    return [hits / math_ops.reduce_sum(hits, axes, keepdims=True) * _keepdims(op, grad), None]


registry.register_gradient("Max")(_extremum_grad)
registry.register_gradient("Min")(_extremum_grad)


@registry.register_gradient("Prod")
def _prod_grad(op, grad):
    """d prod / d x_i is the product of the other elements, found without dividing by zero:
    with no zero in the group it is prod / x_i; with one zero, the product of the non-zeros
    at the zero and 0 elsewhere; with two or more zeros, 0 everywhere."""
    x, axes = op.inputs
    is_zero = math_ops.equal(x, 0)
    nonzero = math_ops.where(is_zero, 1, x)
    nonzero_prod = math_ops.reduce_prod(nonzero, axes, keepdims=True)
    zeros = math_ops.reduce_sum(array_ops.cast(is_zero, x.dtype), axes, keepdims=True)
    at_single_zero = math_ops.where(math_ops.logical_and(is_zero, math_ops.equal(zeros, 1)), nonzero_prod, 0)
    others = math_ops.where(math_ops.equal(zeros, 0), nonzero_prod / nonzero, at_single_zero)
    return [others * _keepdims(op, grad), None]
