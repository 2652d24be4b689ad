"""Convolution and pooling layers (channels_last, as Keras's default): Conv1D/2D, pools, global pools.

The 1-D layers run the 2-D ops on a height-1 image, as TensorFlow's Keras does.
"""

import numbers

from tensorgrid.client import array_ops, context, math_ops, nn_ops
from tensorgrid.client.keras import activations, backend
from tensorgrid.client.keras.layers.base import Layer
from tensorgrid.client.keras.layers.core import set_weight_options, weight_options_config

__all__ = ["Conv1D", "Conv2D", "Conv2DTranspose", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
           "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
           "GlobalMaxPool1D", "GlobalMaxPool2D"]


def _tuple(value, rank, what):
    if isinstance(value, numbers.Integral):
        return (int(value),) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"The `{what}` argument must be a tuple of {rank} integers. Received {what}={value}")
    return value


def _padding(padding):
    padding = str(padding).lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"The `padding` argument must be a list/tuple or one of \"valid\", \"same\". "
                         f"Received: {padding}")
    return padding


class _Conv(Layer):
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(filters, numbers.Integral) or filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly positive value. "
                             f"Received filters={filters}.")
        if groups != 1:
            raise ValueError(f"{type(self).__name__}: groups={groups} is not supported by tensorgrid (only 1)")
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding)
        self.data_format = backend.standardize_data_format(data_format)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate")
        self.groups = groups
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_options(self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                           kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)

    def build(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        if channels is None:
            raise ValueError(f"The channel dimension of the inputs should be defined. Found None. Full input shape "
                             f"received: {input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=self._kernel_shape(channels),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.filters)

    def call(self, inputs):
        fmt = "NHWC" if self.data_format == "channels_last" else "NCHW"
        if self.rank == 1:
            x = array_ops.expand_dims(inputs, 1 if fmt == "NHWC" else 2)
            kernel = array_ops.expand_dims(self.kernel, 0)
            strides, dilations = (1,) + self.strides, (1,) + self.dilation_rate
        else:
            x, kernel, strides, dilations = inputs, self.kernel, self.strides, self.dilation_rate
        y = nn_ops.conv2d(x, kernel, strides=list(strides), padding=self.padding.upper(), data_format=fmt,
                          dilations=list(dilations))
        if self.bias is not None:
            y = nn_ops.bias_add(y, self.bias, data_format=fmt)
        if self.rank == 1:
            y = array_ops.squeeze(y, [1 if fmt == "NHWC" else 2])
        return self.activation(y)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                      padding=self.padding, data_format=self.data_format, dilation_rate=list(self.dilation_rate),
                      groups=self.groups, activation=activations.serialize(self.activation), use_bias=self.use_bias,
                      **weight_options_config(self, "kernel", "bias"))
        return config


class Conv2D(_Conv):
    """2-D convolution over (batch, height, width, channels) with a (kh, kw, in, filters) kernel."""

    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels) with a (k, in, filters) kernel."""

    rank = 1



def _deconv_length(size, kernel, stride, padding, dilation, output_padding=None):
    """Keras's deconv_output_length: the spatial size Conv2DTranspose gives."""
    if size is None:
        return None
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        return size * stride if padding == "same" else size * stride + max(kernel - stride, 0)
    pad = kernel // 2 if padding == "same" else 0
    return (size - 1) * stride + kernel - 2 * pad + output_padding


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (Keras's Conv2DTranspose): kernel (kh, kw, filters, in), tf.nn.conv2d_transpose."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, **kwargs)
        self.output_padding = None if output_padding is None else _tuple(output_padding, 2, "output_padding")

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)

    def call(self, inputs):
        fmt = "NHWC" if self.data_format == "channels_last" else "NCHW"
        spatial = (1, 2) if fmt == "NHWC" else (2, 3)
        dynamic = array_ops.shape(inputs)
        sizes, static_sizes = [], []
        for k, axis in enumerate(spatial):
            pad = None if self.output_padding is None else self.output_padding[k]
            args = (self.kernel_size[k], self.strides[k], self.padding, self.dilation_rate[k], pad)
            static_sizes.append(_deconv_length(inputs.shape[axis], *args))
            sizes.append(static_sizes[-1] if static_sizes[-1] is not None else _deconv_length(dynamic[axis], *args))
        batch = dynamic[0]
        shape = [batch, sizes[0], sizes[1], self.filters] if fmt == "NHWC" else [batch, self.filters] + sizes
        y = nn_ops.conv2d_transpose(inputs, self.kernel, array_ops.stack(shape), strides=list(self.strides),
                                    padding=self.padding.upper(), data_format=fmt, dilations=list(self.dilation_rate))
        static = [inputs.shape[0]] + static_sizes + [self.filters] if fmt == "NHWC" else \
            [inputs.shape[0], self.filters] + static_sizes
        if not context.executing_eagerly():
            y.set_shape(static)
        if self.bias is not None:
            y = nn_ops.bias_add(y, self.bias, data_format=fmt)
        return self.activation(y)

    def get_config(self):
        config = super().get_config()
        config["output_padding"] = None if self.output_padding is None else list(self.output_padding)
        return config

class _Pooling(Layer):
    rank = 2
    op = None

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _tuple(pool_size, self.rank, "pool_size")
        self.strides = self.pool_size if strides is None else _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding)
        self.data_format = backend.standardize_data_format(data_format)

    def call(self, inputs):
        fmt = "NHWC" if self.data_format == "channels_last" else "NCHW"
        pool = nn_ops.max_pool if self.op == "max" else nn_ops.avg_pool
        if self.rank == 1:
            axis = 1 if fmt == "NHWC" else 2
            y = pool(array_ops.expand_dims(inputs, axis), ksize=[1, *self.pool_size],
                     strides=[1, *self.strides], padding=self.padding.upper(), data_format=fmt)
            return array_ops.squeeze(y, [axis])
        return pool(inputs, ksize=list(self.pool_size), strides=list(self.strides), padding=self.padding.upper(),
                    data_format=fmt)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), padding=self.padding, strides=list(self.strides),
                      data_format=self.data_format)
        return config


class MaxPooling2D(_Pooling):
    rank, op = 2, "max"


class AveragePooling2D(_Pooling):
    rank, op = 2, "avg"


class MaxPooling1D(_Pooling):
    rank, op = 1, "max"


class AveragePooling1D(_Pooling):
    rank, op = 1, "avg"


class _GlobalPooling(Layer):
    rank = 2
    op = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = backend.standardize_data_format(data_format)
        self.keepdims = keepdims

    def call(self, inputs):
        axes = list(range(1, self.rank + 1)) if self.data_format == "channels_last" \
            else list(range(2, self.rank + 2))
        reduce = math_ops.reduce_max if self.op == "max" else math_ops.reduce_mean
        return reduce(inputs, axis=axes, keepdims=self.keepdims)

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format, keepdims=self.keepdims)
        return config


class GlobalAveragePooling2D(_GlobalPooling):
    rank, op = 2, "avg"


class GlobalMaxPooling2D(_GlobalPooling):
    rank, op = 2, "max"


class GlobalAveragePooling1D(_GlobalPooling):
    rank, op = 1, "avg"

    def call(self, inputs, mask=None):
        if mask is None:
            return super().call(inputs)
        axis = 1 if self.data_format == "channels_last" else 2
        weights = array_ops.cast(mask, inputs.dtype)
        weights = array_ops.expand_dims(weights, -1 if axis == 1 else 1)
        total = math_ops.reduce_sum(inputs * weights, axis=axis, keepdims=self.keepdims)
        return total / math_ops.reduce_sum(weights, axis=axis, keepdims=self.keepdims)


class GlobalMaxPooling1D(_GlobalPooling):
    rank, op = 1, "max"


MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
