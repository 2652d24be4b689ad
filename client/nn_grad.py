"""Gradients of the ops declared in tensorgrid/ops/nn_ops.py (the composed tg.nn functions
differentiate through their parts)."""

from tensorgrid.client import array_ops, math_ops, nn_ops
from tensorgrid.client.graph import apply_op
from tensorgrid.ops.registry import register_gradient

_CONV_ATTRS = ("strides", "padding", "dilations", "data_format")
_POOL_ATTRS = ("ksize", "strides", "padding", "data_format")


def _attrs(op, keys):
    return {k: op.get_attr(k) for k in keys}


def _times_rows(per_row, t):
    """per_row[..., None] * t: one factor per row of t's last axis."""
    return math_ops.multiply(array_ops.expand_dims(per_row, -1), t)


@register_gradient("Relu")
def _relu_grad(op, grad):
    return [apply_op("ReluGrad", [grad, op.outputs[0]])]


@register_gradient("ReluGrad")
def _relu_grad_grad(op, grad):
    return [apply_op("ReluGrad", [grad, op.inputs[1]]), None]


@register_gradient("Softplus")
def _softplus_grad(op, grad):
    return [math_ops.multiply(grad, math_ops.sigmoid(op.inputs[0]))]


@register_gradient("BiasAdd")
def _bias_add_grad(op, grad):
    return [grad, apply_op("BiasAddGrad", [grad], {"data_format": op.get_attr("data_format")})]


@register_gradient("BiasAddGrad")
def _bias_add_grad_grad(op, grad):
    """The bias gradient laid along the channel axis and broadcast to out_backprop's shape (TF's)."""
    out_backprop = op.inputs[0]
    rank = array_ops.rank(out_backprop)
    if op.get_attr("data_format") == "NCHW":
        shape = array_ops.concat([[1], array_ops.shape(grad), array_ops.ones([rank - 2], "int32")], 0)
    else:
        shape = array_ops.concat([array_ops.ones([rank - 1], "int32"), array_ops.shape(grad)], 0)
    return [array_ops.broadcast_to(array_ops.reshape(grad, shape), array_ops.shape(out_backprop))]


def _xent_logits_grad(op, grad_loss, grad_backprop):
    """The logits gradient of both softmax cross-entropies, second order included."""
    grad = _times_rows(grad_loss, op.outputs[1])
    if grad_backprop is not None and not _known_zero(grad_backprop):
        softmax = nn_ops.softmax(op.inputs[0])
        inner = math_ops.reduce_sum(math_ops.multiply(grad_backprop, softmax), -1, keepdims=True)
        grad = math_ops.add(grad, math_ops.multiply(math_ops.subtract(grad_backprop, inner), softmax))
    return grad


def _known_zero(t):
    """Whether t is the zeros the gradient machinery stands in for an unused output."""
    return getattr(getattr(t, "op", None), "type", None) == "ZerosLike"


@register_gradient("SoftmaxCrossEntropyWithLogits")
def _softmax_xent_grad(op, grad_loss, grad_backprop):
    labels_grad = _times_rows(grad_loss, math_ops.negative(nn_ops.log_softmax(op.inputs[0])))
    return [_xent_logits_grad(op, grad_loss, grad_backprop), labels_grad]


@register_gradient("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_softmax_xent_grad(op, grad_loss, grad_backprop):
    return [_xent_logits_grad(op, grad_loss, grad_backprop), None]


@register_gradient("Conv2D")
def _conv2d_grad(op, grad):
    x, f = op.inputs
    attrs = _attrs(op, _CONV_ATTRS)
    return [apply_op("Conv2DBackpropInput", [array_ops.shape(x), f, grad], attrs),
            apply_op("Conv2DBackpropFilter", [x, array_ops.shape(f), grad], attrs)]


@register_gradient("Conv2DBackpropInput")
def _conv2d_input_grad_grad(op, grad):
    _, f, dy = op.inputs
    attrs = _attrs(op, _CONV_ATTRS)
    return [None, apply_op("Conv2DBackpropFilter", [grad, array_ops.shape(f), dy], attrs),
            apply_op("Conv2D", [grad, f], attrs)]


@register_gradient("Conv2DBackpropFilter")
def _conv2d_filter_grad_grad(op, grad):
    x, _, dy = op.inputs
    attrs = _attrs(op, _CONV_ATTRS)
    return [apply_op("Conv2DBackpropInput", [array_ops.shape(x), grad, dy], attrs), None,
            apply_op("Conv2D", [x, grad], attrs)]


@register_gradient("MaxPool")
def _max_pool_grad(op, grad):
    return [apply_op("MaxPoolGrad", [op.inputs[0], op.outputs[0], grad], _attrs(op, _POOL_ATTRS))]


@register_gradient("MaxPoolGrad")
def _max_pool_grad_grad(op, grad):
    x, y, _ = op.inputs
    return [None, None, apply_op("MaxPoolGradGrad", [x, y, grad], _attrs(op, _POOL_ATTRS))]


@register_gradient("MaxPoolGradGrad")
def _max_pool_grad_grad_grad(op, grad):
    x, y, _ = op.inputs
    return [None, None, apply_op("MaxPoolGrad", [x, y, grad], _attrs(op, _POOL_ATTRS))]


@register_gradient("AvgPool")
def _avg_pool_grad(op, grad):
    return [apply_op("AvgPoolGrad", [array_ops.shape(op.inputs[0]), grad], _attrs(op, _POOL_ATTRS))]


@register_gradient("AvgPoolGrad")
def _avg_pool_grad_grad(op, grad):
    return [None, apply_op("AvgPool", [grad], _attrs(op, _POOL_ATTRS))]
