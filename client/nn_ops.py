"""tg.nn: activations, softmax, losses, dropout, convolution and pooling.

Most functions are compositions of math ops (so their gradients come for
free); relu, softplus, the softmax cross-entropies, conv2d and the pools have
ops of their own (tensorgrid/ops/nn_ops.py) for speed and numerical
stability. Signatures are TF2's and also take TF1's keyword spellings
(`dim`, `keep_dims`, `value`, `filter`, `keep_prob`); `compat_v1` maps the
names whose TF1 meaning differs to their TF1 versions.
"""

import numbers

from tensorgrid.client import array_ops, candidate_sampling, embedding_ops, math_ops, random_ops
from tensorgrid.client.candidate_sampling import compute_accidental_hits, nce_loss, sampled_softmax_loss  # noqa: F401
from tensorgrid.client.sparse_ops import embedding_lookup_sparse  # noqa: F401
from tensorgrid.client.embedding_ops import embedding_lookup_v2 as embedding_lookup  # noqa: F401 - tg.nn's
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework import dtypes

__all__ = [
    "relu", "relu6", "elu", "leaky_relu", "softplus", "sigmoid", "tanh", "softmax", "log_softmax",
    "bias_add", "dropout", "l2_loss", "moments", "batch_normalization", "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2", "sparse_softmax_cross_entropy_with_logits",
    "sigmoid_cross_entropy_with_logits", "conv2d", "conv2d_transpose", "max_pool", "avg_pool", "embedding_lookup",
    "nce_loss", "sampled_softmax_loss", "compute_accidental_hits", "embedding_lookup_sparse",
]


def _one_of(value, alias, what, default=None):
    """A TF2 argument or its TF1 spelling (at most one given)."""
    if value is not None and alias is not None:
        raise ValueError(f"Cannot specify both '{what}' and its deprecated alias")
    if value is None:
        value = alias
    return default if value is None else value


def _const(value, like):
    return convert_to_tensor(value, dtype=like.dtype)


# ---- activations ---------------------------------------------------------------------------

def relu(features, name=None):
    """max(features, 0)."""
    return apply_op("Relu", [features], name=name or "Relu")


def relu6(features, name=None):
    """min(max(features, 0), 6)."""
    with name_scope(name, "Relu6") as scope:
        features = convert_to_tensor(features)
        return math_ops.minimum(relu(features), _const(6, features), name=scope)


def elu(features, name=None):
    """features where positive, exp(features) - 1 elsewhere."""
    with name_scope(name, "Elu") as scope:
        x = convert_to_tensor(features)
        zero = _const(0, x)
        # exp of the clipped value, so large positive inputs never overflow the unused branch
        negative = math_ops.subtract(math_ops.exp(math_ops.minimum(x, zero)), _const(1, x))
        return math_ops.where(math_ops.greater(x, zero), x, negative, name=scope)


def leaky_relu(features, alpha=0.2, name=None):
    """features where positive, alpha * features elsewhere."""
    with name_scope(name, "LeakyRelu") as scope:
        x = convert_to_tensor(features)
        if x.dtype.is_integer:
            x = array_ops.cast(x, dtypes.float32)
        return math_ops.where(math_ops.greater(x, _const(0, x)), x, math_ops.multiply(_const(alpha, x), x),
                              name=scope)


def softplus(features, name=None):
    """log(exp(features) + 1), without overflow."""
    return apply_op("Softplus", [features], name=name or "Softplus")


def sigmoid(x, name=None):
    """1 / (1 + exp(-x))."""
    return math_ops.sigmoid(x, name=name)


def tanh(x, name=None):
    """Hyperbolic tangent."""
    return math_ops.tanh(x, name=name)


def softmax(logits, axis=None, name=None, dim=None):
    """exp(logits) / sum(exp(logits)) along `axis` (default the last)."""
    axis = _one_of(axis, dim, "axis", -1)
    with name_scope(name, "Softmax") as scope:
        e = math_ops.exp(_shifted(logits, axis))
        return math_ops.truediv(e, math_ops.reduce_sum(e, axis, keepdims=True), name=scope)


def log_softmax(logits, axis=None, name=None, dim=None):
    """logits - log(sum(exp(logits))) along `axis` (default the last)."""
    axis = _one_of(axis, dim, "axis", -1)
    with name_scope(name, "LogSoftmax") as scope:
        shifted = _shifted(logits, axis)
        return math_ops.subtract(
            shifted, math_ops.log(math_ops.reduce_sum(math_ops.exp(shifted), axis, keepdims=True)), name=scope)


def _shifted(logits, axis):
    """logits minus their max along axis: same softmax, and exp cannot overflow."""
    logits = convert_to_tensor(logits)
    # the shift cancels out of the result, so no gradient needs to flow through it
    top = array_ops.stop_gradient(math_ops.reduce_max(logits, axis, keepdims=True))
    return math_ops.subtract(logits, top)


# ---- layers' arithmetic --------------------------------------------------------------------

def bias_add(value, bias, data_format=None, name=None):
    """value + bias, bias a vector along the channel axis (last for NHWC, second for NCHW).

    One BiasAdd op, whose bias gradient is one BiasAddGrad, as in TensorFlow.
    """
    with name_scope(name, "BiasAdd") as scope:
        value = convert_to_tensor(value)
        bias = convert_to_tensor(bias, dtype=value.dtype)
        # TF's spellings: "N...C" is NHWC, "NC..." is NCHW, whatever the rank
        fmt = "NCHW" if data_format is not None and data_format.startswith("NC") else "NHWC"
        return apply_op("BiasAdd", [value, bias], {"data_format": fmt}, name=scope)


def dropout(x, rate=None, noise_shape=None, seed=None, name=None, keep_prob=None):
    """Zeroes each element with probability `rate` and scales the rest by 1 / (1 - rate).

    TF2's signature; TF1's `keep_prob=` (= 1 - rate) is accepted as a keyword,
    and `compat_v1["dropout"]` takes it as the second positional argument.
    """
    if keep_prob is not None:
        if rate is not None:
            raise ValueError("Cannot specify both 'rate' and 'keep_prob'")
        rate = 1 - keep_prob if isinstance(keep_prob, numbers.Real) else math_ops.subtract(1.0, keep_prob)
    if rate is None:
        raise ValueError("dropout needs `rate` (or TF1's `keep_prob`)")
    with name_scope(name, "dropout") as scope:
        x = convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise ValueError(f"x has to be a floating point tensor since it's going to be scaled. Got a "
                             f"{x.dtype.name} tensor instead.")
        if isinstance(rate, numbers.Real):
            if not 0 <= rate < 1:
                raise ValueError(f"rate must be a scalar tensor or a float in the range [0, 1), got {rate}")
            if rate == 0:
                return x
            scale = _const(1 / (1 - rate), x)
            rate = _const(rate, x)
        else:
            rate = convert_to_tensor(rate, dtype=x.dtype)
            scale = math_ops.truediv(_const(1, x), math_ops.subtract(_const(1, x), rate))
        if noise_shape is None:
            noise_shape = x.shape.as_list() if x.shape.is_fully_defined() else array_ops.shape(x)
        noise = random_ops.uniform(noise_shape, dtype=x.dtype, seed=seed)
        keep = array_ops.cast(math_ops.greater_equal(noise, rate), x.dtype)
        return math_ops.multiply(math_ops.multiply(x, scale), keep, name=scope)


def _dropout_v1(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
    """TF1's dropout: the second positional argument is keep_prob."""
    return dropout(x, rate=rate, noise_shape=noise_shape, seed=seed, name=name, keep_prob=keep_prob)


def l2_loss(t, name=None):
    """sum(t ** 2) / 2."""
    with name_scope(name, "L2Loss") as scope:
        t = convert_to_tensor(t)
        return math_ops.multiply(math_ops.reduce_sum(math_ops.square(t)), _const(0.5, t), name=scope)


def moments(x, axes, shift=None, keepdims=None, name=None, keep_dims=None):
    """(mean, variance) of x over `axes`; float16 is accumulated in float32."""
    keepdims = bool(_one_of(keepdims, keep_dims, "keepdims", False))
    axes = [axes] if isinstance(axes, numbers.Integral) else list(axes)
    with name_scope(name, "moments"):
        x = convert_to_tensor(x)
        y = array_ops.cast(x, dtypes.float32) if x.dtype == dtypes.float16 else x
        mean = math_ops.reduce_mean(y, axes, keepdims=True, name="mean")
        # the mean's own gradient through the variance is zero, so it need not flow
        centered = math_ops.subtract(y, array_ops.stop_gradient(mean))
        variance = math_ops.reduce_mean(math_ops.square(centered), axes, keepdims=True, name="variance")
        if not keepdims:
            mean = array_ops.squeeze(mean, axes)
            variance = array_ops.squeeze(variance, axes)
        if x.dtype == dtypes.float16:
            mean, variance = array_ops.cast(mean, x.dtype), array_ops.cast(variance, x.dtype)
        return mean, variance


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """(x - mean) / sqrt(variance + variance_epsilon) * scale + offset, as TF computes it.

    TF's arithmetic: inv = rsqrt(variance + epsilon) * scale, then x * inv + (offset - mean * inv);
    `offset` and `scale` may be None.
    """
    with name_scope(name, "batchnorm") as scope:
        x = convert_to_tensor(x)
        inv = math_ops.rsqrt(math_ops.add(convert_to_tensor(variance, dtype=x.dtype), _const(variance_epsilon, x)))
        if scale is not None:
            inv = math_ops.multiply(inv, convert_to_tensor(scale, dtype=x.dtype))
        shift = math_ops.negative(math_ops.multiply(convert_to_tensor(mean, dtype=x.dtype), inv))
        if offset is not None:
            shift = math_ops.add(convert_to_tensor(offset, dtype=x.dtype), shift)
        return math_ops.add(math_ops.multiply(x, inv), shift, name=scope)


# ---- losses ----------------------------------------------------------------------------------

def _classes_last(t, axis):
    """t with `axis` moved to the end (a transpose only when it is not already last)."""
    rank = t.shape.ndims
    if axis == -1 or (rank is not None and axis == rank - 1):
        return t
    if rank is None:
        raise ValueError(f"the class axis {axis} can only be moved when the rank of {t!r} is known")
    axis %= rank
    return array_ops.transpose(t, [d for d in range(rank) if d != axis] + [axis])


def softmax_cross_entropy_with_logits(labels=None, logits=None, axis=-1, name=None, dim=None):
    """-sum(labels * log_softmax(logits)) along `axis`: one loss per example.

    Gradients flow into both logits and labels (TF2's, and TF1's _v2, meaning).
    The logits gradient is softmax - labels, as in TF: exact when every row of
    labels sums to 1.
    """
    return _softmax_xent(labels, logits, _one_of(None if axis == -1 else axis, dim, "axis", -1), name, True)


def softmax_cross_entropy_with_logits_v2(labels=None, logits=None, axis=None, name=None, dim=None):
    """TF1's name for softmax_cross_entropy_with_logits with gradients into labels."""
    return _softmax_xent(labels, logits, _one_of(axis, dim, "axis", -1), name, True)


def _softmax_cross_entropy_with_logits_v1(_sentinel=None, labels=None, logits=None, dim=-1, name=None,
                                          axis=None):
    """TF1's softmax_cross_entropy_with_logits: keyword arguments only, no gradient into labels."""
    if _sentinel is not None:
        raise ValueError("Only call `softmax_cross_entropy_with_logits` with named arguments "
                         "(labels=..., logits=..., ...)")
    return _softmax_xent(labels, logits, _one_of(axis, None if dim == -1 else dim, "axis", -1), name, False)


def _softmax_xent(labels, logits, axis, name, labels_gradient):
    if labels is None or logits is None:
        raise ValueError("Both labels and logits must be provided.")
    with name_scope(name, "softmax_cross_entropy_with_logits") as scope:
        logits = convert_to_tensor(logits)
        labels = convert_to_tensor(labels, dtype=logits.dtype)
        if not labels_gradient:
            labels = array_ops.stop_gradient(labels)
        loss, _ = apply_op("SoftmaxCrossEntropyWithLogits",
                           [_classes_last(logits, axis), _classes_last(labels, axis)], name=scope)
        return loss


def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None, _sentinel=None):
    """-log_softmax(logits)[label] per example; labels are class indices (int32 or int64).

    A label outside [0, classes) fails the step with InvalidArgumentError.
    """
    if labels is None or logits is None:
        raise ValueError("Both labels and logits must be provided.")
    with name_scope(name, "SparseSoftmaxCrossEntropyWithLogits") as scope:
        logits = convert_to_tensor(logits)
        labels = convert_to_tensor(labels)
        loss, _ = apply_op("SparseSoftmaxCrossEntropyWithLogits", [logits, labels], name=scope)
        return loss


def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None, _sentinel=None):
    """Elementwise -labels * log(sigmoid(logits)) - (1 - labels) * log(1 - sigmoid(logits)).

    Computed as max(x, 0) - x * z + log(1 + exp(-|x|)) so it never overflows.
    """
    if labels is None or logits is None:
        raise ValueError("Both labels and logits must be provided.")
    with name_scope(name, "logistic_loss") as scope:
        logits = convert_to_tensor(logits)
        labels = convert_to_tensor(labels, dtype=logits.dtype)
        zeros = array_ops.zeros_like(logits)
        positive = math_ops.greater_equal(logits, zeros)
        relu_logits = math_ops.where(positive, logits, zeros)
        neg_abs_logits = math_ops.where(positive, math_ops.negative(logits), logits)
        return math_ops.add(math_ops.subtract(relu_logits, math_ops.multiply(logits, labels)),
                            math_ops.log1p(math_ops.exp(neg_abs_logits)), name=scope)


# ---- convolution and pooling -------------------------------------------------------------------

def _window_attr(value, what, data_format):
    """An int or a list of 1, 2 or 4 ints as TF's 4-element NHWC form."""
    if value is None:
        raise ValueError(f"{what} must be given")
    if isinstance(value, numbers.Integral):
        value = [value]
    value = [int(v) for v in value]
    if len(value) == 1:
        value = value * 2
    if len(value) == 2:
        return [1, value[0], value[1], 1]
    if len(value) != 4:
        raise ValueError(f"{what} must be an int or a list of 1, 2 or 4 ints, got {value}")
    if data_format == "NCHW":
        return [value[0], value[2], value[3], value[1]]
    return value


def _padding(padding):
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    return padding.upper()


def _in_nhwc(data_format, build, x, name):
    """build(x, op_name) on NHWC data: NCHW input is transposed in and the result transposed back.

    The op that gives the result is named `name` (the kernel's, or the transpose back's).
    """
    data_format = data_format or "NHWC"
    if data_format == "NHWC":
        return build(x, name)
    if data_format != "NCHW":
        raise ValueError(f"data_format must be NHWC or NCHW, got {data_format!r}")
    return array_ops.transpose(build(array_ops.transpose(x, [0, 2, 3, 1]), None), [0, 3, 1, 2], name=name)


def _conv_attrs(strides, padding, dilations, data_format):
    """The NHWC attrs of a Conv2D-family op (NCHW callers are transposed around it by _in_nhwc)."""
    return {"strides": _window_attr(strides, "strides", data_format), "padding": _padding(padding),
            "dilations": _window_attr(1 if dilations is None else dilations, "dilations", data_format),
            "data_format": "NHWC"}


def conv2d(input, filters=None, strides=None, padding=None, data_format="NHWC", dilations=None, name=None,  # noqa: A002
           filter=None, use_cudnn_on_gpu=True):  # noqa: A002 - TF1's argument name
    """2-D convolution of input [batch, h, w, in] with filters [kh, kw, in, out]."""
    filters = _one_of(filters, filter, "filters")
    if filters is None:
        raise ValueError("conv2d needs filters")
    attrs = _conv_attrs(strides, padding, dilations, data_format)
    with name_scope(name, "Conv2D") as scope:
        x = convert_to_tensor(input)
        filters = convert_to_tensor(filters, dtype=x.dtype)
        return _in_nhwc(data_format, lambda t, op_name: apply_op("Conv2D", [t, filters], attrs, name=op_name), x,
                        scope)



def conv2d_transpose(input, filters=None, output_shape=None, strides=None, padding="SAME", data_format="NHWC",  # noqa: A002
                     dilations=None, name=None, filter=None):  # noqa: A002 - TF1's argument name
    """The transpose (gradient) of conv2d: input [batch, h, w, in] with filters [kh, kw, out, in] gives
    output_shape [batch, out_h, out_w, out] (TF's tf.nn.conv2d_transpose, a Conv2DBackpropInput op)."""
    filters = _one_of(filters, filter, "filters")
    if filters is None or output_shape is None:
        raise ValueError("conv2d_transpose needs filters and output_shape")
    attrs = _conv_attrs(strides, padding, dilations, data_format)
    with name_scope(name, "conv2d_transpose") as scope:
        x = convert_to_tensor(input)
        filters = convert_to_tensor(filters, dtype=x.dtype)
        sizes = convert_to_tensor(output_shape, dtype="int32")
        if (data_format or "NHWC") == "NCHW":
            sizes = array_ops.gather(sizes, [0, 2, 3, 1])
        return _in_nhwc(data_format, lambda t, op_name: apply_op("Conv2DBackpropInput", [sizes, filters, t], attrs,
                                                                 name=op_name), x, scope)

def _pool(op_type, default_name, input, value, ksize, strides, padding, data_format, name):  # noqa: A002
    x = _one_of(input, value, "input")
    if x is None:
        raise ValueError(f"{default_name} needs an input")
    attrs = {"ksize": _window_attr(ksize, "ksize", data_format),
             "strides": _window_attr(strides, "strides", data_format),
             "padding": _padding(padding), "data_format": "NHWC"}
    with name_scope(name, default_name) as scope:
        return _in_nhwc(data_format, lambda t, op_name: apply_op(op_type, [t], attrs, name=op_name),
                        convert_to_tensor(x), scope)


def max_pool(input=None, ksize=None, strides=None, padding=None, data_format="NHWC", name=None,  # noqa: A002
             value=None):
    """Max over ksize windows of input [batch, h, w, c]; TF1's `value=` spelling is accepted."""
    return _pool("MaxPool", "MaxPool", input, value, ksize, strides, padding, data_format, name)


def avg_pool(input=None, ksize=None, strides=None, padding=None, data_format="NHWC", name=None,  # noqa: A002
             value=None):
    """Mean over ksize windows; SAME windows at the border average only their real elements."""
    return _pool("AvgPool", "AvgPool", input, value, ksize, strides, padding, data_format, name)


def _xw_plus_b(x, weights, biases, name=None):
    """matmul(x, weights) + biases (TF1's tf.nn.xw_plus_b)."""
    with name_scope(name, "xw_plus_b") as scope:
        return bias_add(math_ops.matmul(x, weights), biases, name=scope)


# Names whose TF1 meaning differs from TF2's (or that only TF1 has), for tensorgrid.compat.v1's nn namespace.
compat_v1 = {
    "xw_plus_b": _xw_plus_b,
    "dropout": _dropout_v1,
    "embedding_lookup": embedding_ops.embedding_lookup,
    "softmax_cross_entropy_with_logits": _softmax_cross_entropy_with_logits_v1,
    "nce_loss": candidate_sampling.nce_loss_v1,
    "sampled_softmax_loss": candidate_sampling.sampled_softmax_loss_v1,
    "log_uniform_candidate_sampler": candidate_sampling.log_uniform_candidate_sampler,
    "uniform_candidate_sampler": candidate_sampling.uniform_candidate_sampler,
}

from tensorgrid.client import nn_grad  # noqa: E402,F401 - registers the gradients of these ops
