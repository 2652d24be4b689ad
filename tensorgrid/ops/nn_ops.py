"""Neural-network ops that need kernels of their own: Relu, Softplus, BiasAdd and its gradient,
the softmax cross-entropies (numerically stable in one pass), and 2-D convolution and pooling with their gradient ops.

Convolution and pooling work on NHWC tensors (filters HWIO) and use TF's
window geometry: VALID keeps the windows that fit, SAME gives ceil(in/stride)
outputs and pads the input with half the missing rows before and the rest
after. Kernels view the padded input as a (batch, out_h, out_w, k_h, k_w,
channels) array of windows (as_strided, no copy) and reduce or multiply that;
gradients scatter back with one strided add per window position, never a
Python loop over pixels.
"""

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.registry import broadcast_shapes, quiet_fp, register


def _same(ctx):
    return [(ctx.input_dtypes[0], ctx.input_shapes[0])]


def _check_float(ctx, dtype, what):
    if not dtype.is_floating:
        raise ctx.error(f"{what} must be a floating-point tensor, got {dtype.name}")


def _infer_float_unary(ctx):
    _check_float(ctx, ctx.input_dtypes[0], f"{ctx.op}'s input")
    return _same(ctx)


def _relu(xp, attrs):
    def relu(x, out=None):
        return xp.maximum(x, 0, out=out)  # nan stays nan
    return relu


def _relu_grad(xp, attrs):
    def relu_grad(grad, features, out=None):
        return xp.multiply(grad, features > 0, out=out)  # TF's too: a nan gradient stays nan
    return relu_grad


def _softplus(xp, attrs):
    def softplus(x, out=None):
        y = xp.logaddexp(x, 0, out=out)
        return y if out is not None else y.astype(x.dtype, copy=False)
    return softplus


register("Relu", _same, elementwise=_relu, doc="max(x, 0).")
register("ReluGrad", _same, elementwise=_relu_grad,
         doc="Relu's gradient: grad where features > 0, else 0 (inputs: gradients, features).")
register("Softplus", _infer_float_unary, lambda node: quiet_fp(_softplus(node.xp, node.attrs)), elementwise=_softplus,
         doc="log(1 + exp(x)), computed without overflow.")

# ---- bias add ----------------------------------------------------------------------------


def _channel_axis(ctx_or_node, rank):
    """The channel axis of a rank-`rank` tensor: 1 for NCHW, the last for NHWC (the default)."""
    return 1 if ctx_or_node.attr("data_format", "NHWC") == "NCHW" else rank - 1


def _check_data_format(ctx):
    if ctx.attr("data_format", "NHWC") not in ("NHWC", "NCHW"):
        raise ctx.error(f"data_format must be NHWC or NCHW, not {ctx.attr('data_format')!r}")


def _infer_bias_add(ctx):
    value, bias = ctx.input_shapes
    if ctx.input_dtypes[1] != ctx.input_dtypes[0]:
        raise ctx.error(f"bias ({ctx.input_dtypes[1].name}) and value ({ctx.input_dtypes[0].name}) "
                        "must have the same dtype")
    if bias is not None and len(bias) != 1:
        raise ctx.error(f"bias must be 1-D, got shape {list(bias)}")
    _check_data_format(ctx)
    if value is not None:
        if len(value) < 2:
            raise ctx.error(f"value must have rank >= 2, got shape {list(value)}")
        want = value[_channel_axis(ctx, len(value))]
        if bias is not None and None not in (want, bias[0]) and want != bias[0]:
            raise ctx.error(f"bias has {bias[0]} elements but value has {want} channels "
                            f"(value {list(value)}, data_format {ctx.attr('data_format', 'NHWC')})")
    return [(ctx.input_dtypes[0], value)]


def _bias_add_kernel(node):
    def run(value, bias):
        axis = _channel_axis(node, value.ndim)
        if value.ndim < 2 or bias.ndim != 1 or value.shape[axis] != bias.shape[0]:
            raise errors.InvalidArgumentError(
                None, None, f"bias of shape {list(bias.shape)} does not match the channels of value "
                            f"of shape {list(value.shape)} (data_format {node.attr('data_format', 'NHWC')})")
        if axis != value.ndim - 1:
            bias = bias.reshape((-1,) + (1,) * (value.ndim - 2))
        return value + bias
    return run


def _infer_bias_add_grad(ctx):
    _check_data_format(ctx)
    shape = ctx.input_shapes[0]
    if shape is not None and len(shape) < 2:
        raise ctx.error(f"out_backprop must have rank >= 2, got shape {list(shape)}")
    return [(ctx.input_dtypes[0], None if shape is None else (shape[_channel_axis(ctx, len(shape))],))]


def _bias_add_grad_kernel(node):
    xp = node.xp

    def run(grad):
        axis = _channel_axis(node, grad.ndim)
        axes = tuple(a for a in range(grad.ndim) if a != axis)
        # float16 sums in float32, as the Sum kernel (and TF) do; on a CPU, the reduce grad.sum calls
        acc = np.float32 if grad.dtype == np.float16 else grad.dtype
        total = np.add.reduce(grad, axes, acc) if xp is np else grad.sum(axis=axes, dtype=acc)
        return total.astype(grad.dtype, copy=False)
    return run


register("BiasAdd", _infer_bias_add, _bias_add_kernel,
         doc="value + bias, bias a vector along the channel axis (attr data_format: NHWC, last; NCHW, second).")
register("BiasAddGrad", _infer_bias_add_grad, _bias_add_grad_kernel,
         doc="BiasAdd's bias gradient: out_backprop summed over every axis but the channel axis.")

# ---- softmax cross-entropy --------------------------------------------------------------


def _infer_softmax_xent(ctx):
    features, labels = ctx.input_shapes
    _check_float(ctx, ctx.input_dtypes[0], "logits")
    if ctx.input_dtypes[1] != ctx.input_dtypes[0]:
        raise ctx.error(f"labels ({ctx.input_dtypes[1].name}) and logits ({ctx.input_dtypes[0].name}) "
                        "must have the same dtype")
    shape = broadcast_shapes(features, labels, ctx)
    if shape is not None and len(shape) == 0:
        raise ctx.error("logits and labels must have rank >= 1 (the last axis holds the classes)")
    dt = ctx.input_dtypes[0]
    return [(dt, None if shape is None else shape[:-1]), (dt, shape)]


def _log_softmax(xp, logits):
    """(log_softmax, softmax) along the last axis, shifted by the max so exp never overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    total = e.sum(axis=-1, keepdims=True)
    return shifted - xp.log(total), e / total


def _softmax_xent_kernel(node):
    xp = node.xp

    def run(logits, labels):
        logits, labels = xp.broadcast_arrays(logits, labels)
        log_sm, sm = _log_softmax(xp, logits)
        # TF's backprop: softmax - labels, exact when each row of labels sums to 1.
        return -(labels * log_sm).sum(axis=-1), sm - labels
    return run


register("SoftmaxCrossEntropyWithLogits", _infer_softmax_xent, _softmax_xent_kernel, num_outputs=2,
         doc="Inputs logits, labels (last axis = classes); outputs loss per row and its gradient "
             "w.r.t. logits (softmax - labels).")


def _infer_sparse_xent(ctx):
    features, labels = ctx.input_shapes
    _check_float(ctx, ctx.input_dtypes[0], "logits")
    if ctx.input_dtypes[1] not in (dtypes.int32, dtypes.int64):
        raise ctx.error(f"labels must be int32 or int64, got {ctx.input_dtypes[1].name}")
    if features is not None and len(features) == 0:
        raise ctx.error("logits must have rank >= 1 (the last axis holds the classes)")
    if features is not None and labels is not None:
        if len(labels) != len(features) - 1:
            raise ctx.error(f"Rank mismatch: labels have rank {len(labels)} and logits rank {len(features)}; "
                            "labels must have rank one less than logits")
        if any(a is not None and b is not None and a != b for a, b in zip(features[:-1], labels)):
            raise ctx.error(f"labels shape {list(labels)} must equal logits shape {list(features)} "
                            "without its last dimension")
        features = tuple(b if a is None else a for a, b in zip(features[:-1], labels)) + features[-1:]
    dt = ctx.input_dtypes[0]
    return [(dt, None if features is None else features[:-1]), (dt, features)]


def _sparse_xent_kernel(node):
    """The loss -log_softmax[label] and the backprop softmax - onehot(label) of each row, computed
    where they are needed: the loss reads log_softmax only at the labels, and the backprop is the
    softmax with 1 taken off at the labels in place. The same float operations on the same operands
    as the whole log_softmax and onehot (which cost twice as much on a [64, 10] batch), so the bits
    are the same."""
    xp = node.xp

    def run(logits, labels):
        classes = logits.shape[-1]
        # as unsigned, a negative label is huge: one reduction checks both ends of the range
        if labels.size and int(labels.view(labels.dtype.str.replace("i", "u")).max()) >= classes:
            bad = (labels < 0) | (labels >= classes)
            first = int(labels[bad].ravel()[0])
            raise errors.InvalidArgumentError(
                None, None,
                f"Received a label value of {first} which is outside the valid range of [0, {classes}). "
                f"Label values: {' '.join(str(int(v)) for v in labels.ravel()[:32])}")
        shifted = logits - xp.maximum.reduce(logits, axis=-1, keepdims=True)
        e = xp.exp(shifted)
        total = xp.add.reduce(e, axis=-1, keepdims=True)  # as e.sum(axis=-1), without its Python layer
        at_label = xp.arange(0, labels.size * classes, classes) + labels.reshape(-1)  # flat indices
        loss = -(shifted.reshape(-1)[at_label] - xp.log(total.reshape(-1)))
        backprop = xp.true_divide(e, total, out=e)
        backprop.reshape(-1)[at_label] -= 1
        return (loss[0] if labels.ndim == 0 else loss.reshape(labels.shape)), backprop  # a row's loss: a scalar
    return run


register("SparseSoftmaxCrossEntropyWithLogits", _infer_sparse_xent, _sparse_xent_kernel, num_outputs=2,
         doc="Inputs logits [..., classes], labels [...] (class indices); outputs loss and its "
             "gradient w.r.t. logits. A label outside [0, classes) is an InvalidArgumentError.")

# ---- window geometry shared by convolution and pooling ----------------------------------


def window_geometry(size, k, stride, dilation, padding):
    """(out, pad_before, pad_after) of one spatial axis, as TF computes them; out None if size is."""
    if size is None:
        return None, 0, 0
    span = (k - 1) * dilation + 1
    if padding == "VALID":
        return max((size - span) // stride + 1, 0), 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2, total - total // 2


def _nhwc_pair(attrs, key, default=None):
    """(h, w) of a 4-element NHWC attr such as strides or ksize."""
    v = attrs.get(key, default)
    return int(v[1]), int(v[2])


def _check_window_attrs(ctx, keys):
    padding = ctx.attr("padding")
    if padding not in ("SAME", "VALID"):
        raise ctx.error(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    if ctx.attr("data_format", "NHWC") != "NHWC":
        raise ctx.error(f"data_format must be NHWC here, got {ctx.attr('data_format')!r}")
    for key in keys:
        v = ctx.attr(key)
        if v is None:
            continue
        if len(v) != 4 or any(int(x) < 1 for x in v):
            raise ctx.error(f"{key} must be 4 positive ints (NHWC), got {list(v)}")
        if int(v[0]) != 1 or int(v[3]) != 1:
            raise ctx.error(f"{key} over the batch or channel dimension is not supported, got {list(v)}")


def _check_rank4(ctx, shape, what):
    if shape is not None and len(shape) != 4:
        raise ctx.error(f"{what} must be 4-dimensional (NHWC), got shape {list(shape)}")


class _Windows:
    """The windows of one NHWC input: geometry, padding and the strided view over them."""

    def __init__(self, xp, h, w, kh, kw, attrs, dilated=True):
        self.xp = xp
        self.h, self.w, self.kh, self.kw = h, w, kh, kw
        self.sh, self.sw = _nhwc_pair(attrs, "strides")
        self.dh, self.dw = _nhwc_pair(attrs, "dilations", [1, 1, 1, 1]) if dilated else (1, 1)
        padding = attrs["padding"]
        self.oh, self.pt, self.pb = window_geometry(h, kh, self.sh, self.dh, padding)
        self.ow, self.pl, self.pr = window_geometry(w, kw, self.sw, self.dw, padding)

    def pad(self, x, value=0):
        if not (self.pt or self.pb or self.pl or self.pr):
            return x
        return self.xp.pad(x, ((0, 0), (self.pt, self.pb), (self.pl, self.pr), (0, 0)), constant_values=value)

    def view(self, xpad):
        """xpad as (n, out_h, out_w, k_h, k_w, c) windows, sharing its memory."""
        n, _, _, c = xpad.shape
        s0, s1, s2, s3 = xpad.strides
        return self.xp.lib.stride_tricks.as_strided(
            xpad, (n, self.oh, self.ow, self.kh, self.kw, c),
            (s0, s1 * self.sh, s2 * self.sw, s1 * self.dh, s2 * self.dw, s3))

    def scatter(self, n, c, dtype, contribution):
        """Sums contribution(i, j) ([n, out_h, out_w, c] for window position (i, j)) into an input-shaped array."""
        xp = self.xp
        out = xp.zeros((n, self.h + self.pt + self.pb, self.w + self.pl + self.pr, c), dtype=dtype)
        rows, cols = (self.oh - 1) * self.sh + 1, (self.ow - 1) * self.sw + 1
        for i in range(self.kh):
            for j in range(self.kw):
                r, q = i * self.dh, j * self.dw
                out[:, r:r + rows:self.sh, q:q + cols:self.sw, :] += contribution(i, j)
        return out[:, self.pt:self.pt + self.h, self.pl:self.pl + self.w, :]


def _host_ints(values):
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _const_sizes(ctx, index, what):
    v = ctx.const_values[index]
    if v is None:
        return (None,) * 4
    sizes = tuple(int(d) for d in np.asarray(v).ravel())
    if len(sizes) != 4:
        raise ctx.error(f"{what} must have 4 elements (NHWC), got {list(sizes)}")
    return sizes


# ---- convolution ------------------------------------------------------------------------

def _conv_output(ctx, x, f):
    kh, kw = (None, None) if f is None else f[:2]
    sh, sw = _nhwc_pair(ctx.attrs, "strides")
    dh, dw = _nhwc_pair(ctx.attrs, "dilations", [1, 1, 1, 1])
    padding = ctx.attr("padding")
    n, h, w, _ = (None,) * 4 if x is None else x
    oh = None if kh is None else window_geometry(h, kh, sh, dh, padding)[0]
    ow = None if kw is None else window_geometry(w, kw, sw, dw, padding)[0]
    if padding == "VALID" and 0 in (oh, ow):
        raise ctx.error(f"the {kh}x{kw} filter (dilated {dh}x{dw}) does not fit the {h}x{w} input "
                        "with VALID padding: the output would be empty")
    return (n, oh, ow, None if f is None else f[3])


def _infer_conv2d(ctx):
    x, f = ctx.input_shapes
    _check_rank4(ctx, x, "input")
    _check_rank4(ctx, f, "filter")
    _check_window_attrs(ctx, ("strides", "dilations"))
    if ctx.input_dtypes[0] != ctx.input_dtypes[1]:
        raise ctx.error(f"input ({ctx.input_dtypes[0].name}) and filter ({ctx.input_dtypes[1].name}) "
                        "must have the same dtype")
    if x is not None and f is not None and None not in (x[3], f[2]) and x[3] != f[2]:
        raise ctx.error(f"input depth {x[3]} must equal the filter's in_channels {f[2]} "
                        f"(input {list(x)}, filter {list(f)})")
    return [(ctx.input_dtypes[0], _conv_output(ctx, x, f))]


def _conv2d_kernel(node):
    xp = node.xp

    def run(x, f):
        win = _Windows(xp, x.shape[1], x.shape[2], f.shape[0], f.shape[1], node.attrs)
        cols = win.view(win.pad(x))
        return xp.tensordot(cols, f, axes=([3, 4, 5], [0, 1, 2])).astype(x.dtype, copy=False)
    return run


register("Conv2D", _infer_conv2d, _conv2d_kernel,
         doc="2-D convolution: input [n,h,w,c], filter [kh,kw,c,out]; attrs strides, padding, dilations.")


def _infer_conv_input_grad(ctx):
    _, f, dy = ctx.input_shapes
    _check_window_attrs(ctx, ("strides", "dilations"))
    sizes = _const_sizes(ctx, 0, "input_sizes")
    if sizes[3] is None and f is not None:
        sizes = sizes[:3] + (f[2],)
    return [(ctx.input_dtypes[1], sizes)]


def _conv_input_grad_kernel(node):
    xp = node.xp

    def run(input_sizes, f, dy):
        n, h, w, c = _host_ints(input_sizes)
        win = _Windows(xp, h, w, f.shape[0], f.shape[1], node.attrs)
        dcols = xp.tensordot(dy, f, axes=([3], [3]))  # [n, oh, ow, kh, kw, c]
        return win.scatter(n, c, dy.dtype, lambda i, j: dcols[:, :, :, i, j, :])
    return run


register("Conv2DBackpropInput", _infer_conv_input_grad, _conv_input_grad_kernel,
         doc="Conv2D's gradient w.r.t. its input: inputs input_sizes, filter, out_backprop.")


def _infer_conv_filter_grad(ctx):
    _check_window_attrs(ctx, ("strides", "dilations"))
    return [(ctx.input_dtypes[0], _const_sizes(ctx, 1, "filter_sizes"))]


def _conv_filter_grad_kernel(node):
    xp = node.xp

    def run(x, filter_sizes, dy):
        kh, kw, _, _ = _host_ints(filter_sizes)
        win = _Windows(xp, x.shape[1], x.shape[2], kh, kw, node.attrs)
        cols = win.view(win.pad(x))
        return xp.tensordot(cols, dy, axes=([0, 1, 2], [0, 1, 2])).astype(x.dtype, copy=False)
    return run


register("Conv2DBackpropFilter", _infer_conv_filter_grad, _conv_filter_grad_kernel,
         doc="Conv2D's gradient w.r.t. its filter: inputs input, filter_sizes, out_backprop.")

# ---- pooling ------------------------------------------------------------------------------


def _infer_pool(ctx):
    x = ctx.input_shapes[0]
    _check_rank4(ctx, x, "input")
    _check_window_attrs(ctx, ("ksize", "strides"))
    if ctx.op == "AvgPool":
        _check_float(ctx, ctx.input_dtypes[0], "AvgPool's input")
    elif not ctx.input_dtypes[0].is_numeric:
        raise ctx.error(f"MaxPool needs a numeric input, got {ctx.input_dtypes[0].name}")
    kh, kw = _nhwc_pair(ctx.attrs, "ksize")
    sh, sw = _nhwc_pair(ctx.attrs, "strides")
    padding = ctx.attr("padding")
    if x is None:
        return [(ctx.input_dtypes[0], (None,) * 4)]
    oh = window_geometry(x[1], kh, sh, 1, padding)[0]
    ow = window_geometry(x[2], kw, sw, 1, padding)[0]
    if 0 in (oh, ow):
        raise ctx.error(f"the {kh}x{kw} window does not fit the {x[1]}x{x[2]} input with VALID padding")
    return [(ctx.input_dtypes[0], (x[0], oh, ow, x[3]))]


def _pool_windows(xp, h, w, attrs):
    kh, kw = _nhwc_pair(attrs, "ksize")
    return _Windows(xp, h, w, kh, kw, attrs, dilated=False)


def _lowest(dtype):
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


def _max_pool_kernel(node):
    xp = node.xp

    def run(x):
        win = _pool_windows(xp, x.shape[1], x.shape[2], node.attrs)
        return win.view(win.pad(x, _lowest(x.dtype))).max(axis=(3, 4))
    return run


register("MaxPool", _infer_pool, _max_pool_kernel,
         doc="Max over each window: input [n,h,w,c]; attrs ksize, strides, padding.")


def _infer_max_pool_grad(ctx):
    _check_window_attrs(ctx, ("ksize", "strides"))
    return [(ctx.input_dtypes[2], ctx.input_shapes[0])]


def _argmax_positions(xp, x, attrs):
    """(flat index into the padded input of each window's first maximum, window geometry)."""
    n, h, w, c = x.shape
    win = _pool_windows(xp, h, w, attrs)
    windows = win.view(win.pad(x, _lowest(x.dtype)))
    arg = windows.reshape(n, win.oh, win.ow, win.kh * win.kw, c).argmax(axis=3)
    rows = xp.arange(win.oh)[None, :, None, None] * win.sh + arg // win.kw
    cols = xp.arange(win.ow)[None, None, :, None] * win.sw + arg % win.kw
    hp, wp = h + win.pt + win.pb, w + win.pl + win.pr
    return ((xp.arange(n)[:, None, None, None] * hp + rows) * wp + cols) * c + xp.arange(c), win


def _max_pool_grad_kernel(node):
    xp = node.xp

    def run(x, y, grad):
        n, h, w, c = x.shape
        # Each window hands its gradient to its first maximum, as TF does.
        flat, win = _argmax_positions(xp, x, node.attrs)
        hp, wp = h + win.pt + win.pb, w + win.pl + win.pr
        dx = xp.bincount(flat.ravel(), weights=grad.ravel(), minlength=n * hp * wp * c)
        dx = dx.reshape(n, hp, wp, c)[:, win.pt:win.pt + h, win.pl:win.pl + w, :]
        return dx.astype(grad.dtype)
    return run


register("MaxPoolGrad", _infer_max_pool_grad, _max_pool_grad_kernel,
         doc="MaxPool's gradient: inputs orig_input, orig_output, grad.")


def _max_pool_grad_grad_kernel(node):
    def run(x, y, grad):
        flat, win = _argmax_positions(node.xp, x, node.attrs)
        return win.pad(grad).ravel()[flat]
    return run


register("MaxPoolGradGrad", lambda ctx: [(ctx.input_dtypes[2], ctx.input_shapes[1])], _max_pool_grad_grad_kernel,
         doc="MaxPoolGrad's gradient w.r.t. its grad input: inputs orig_input, orig_output, grad "
             "(input-shaped); each window takes grad at its first maximum.")


def _window_counts(xp, win):
    """[out_h, out_w]: how many elements of each window lie inside the unpadded input."""
    def per_axis(out, stride, pad, k, size):
        pos = xp.arange(out)[:, None] * stride - pad + xp.arange(k)[None, :]
        return ((pos >= 0) & (pos < size)).sum(axis=1)
    return per_axis(win.oh, win.sh, win.pt, win.kh, win.h)[:, None] * \
        per_axis(win.ow, win.sw, win.pl, win.kw, win.w)[None, :]


def _avg_pool_kernel(node):
    xp = node.xp

    def run(x):
        win = _pool_windows(xp, x.shape[1], x.shape[2], node.attrs)
        total = win.view(win.pad(x)).sum(axis=(3, 4))
        return total / _window_counts(xp, win).astype(x.dtype)[None, :, :, None]
    return run


register("AvgPool", _infer_pool, _avg_pool_kernel,
         doc="Mean over each window; SAME windows divide by their count of real (unpadded) elements.")


def _infer_avg_pool_grad(ctx):
    _check_window_attrs(ctx, ("ksize", "strides"))
    return [(ctx.input_dtypes[1], _const_sizes(ctx, 0, "orig_input_shape"))]


def _avg_pool_grad_kernel(node):
    xp = node.xp

    def run(orig_input_shape, grad):
        n, h, w, c = _host_ints(orig_input_shape)
        win = _pool_windows(xp, h, w, node.attrs)
        share = grad / _window_counts(xp, win).astype(grad.dtype)[None, :, :, None]
        return win.scatter(n, c, grad.dtype, lambda i, j: share)
    return run


register("AvgPoolGrad", _infer_avg_pool_grad, _avg_pool_grad_kernel,
         doc="AvgPool's gradient: inputs orig_input_shape, grad.")
