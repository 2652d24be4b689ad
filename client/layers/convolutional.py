"""tf.layers.Conv2D and conv2d; the pooling layers (MaxPooling2D, AveragePooling2D) and their functions."""

import numbers

from tensorgrid.client import nn_ops
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.layers.base import Layer
from tensorgrid.client.layers.core import _no_activity_regularizer

__all__ = ["Conv2D", "conv2d", "MaxPooling2D", "max_pooling2d", "AveragePooling2D", "average_pooling2d"]


def _pair(value, what):
    if isinstance(value, numbers.Integral):
        return (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"The `{what}` argument must be a tuple of 2 integers. Received: {value}")
    return value


def _padding(padding):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"The `padding` argument must be one of 'valid', 'same'. Received: {padding}")
    return padding.upper()


def _data_format(data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument must be one of 'channels_first', 'channels_last'. "
                         f"Received: {data_format}")
    return "NHWC" if data_format == "channels_last" else "NCHW"


def _nhwc_window(pair, data_format):
    return [1, pair[0], pair[1], 1] if data_format == "NHWC" else [1, 1, pair[0], pair[1]]


class Conv2D(Layer):
    """A 2-D convolution: activation(conv2d(inputs, kernel) + bias), kernel [kh, kw, in, filters]."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format="channels_last",
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=variables_lib.zeros_initializer(), kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, trainable=True, name=None,
                 **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        _no_activity_regularizer("conv2d", activity_regularizer)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.data_format = _data_format(data_format)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.activation, self.use_bias = activation, use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def build(self, input_shape):
        if input_shape.ndims != 4:
            raise ValueError(f"Input 0 of layer conv2d is incompatible with the layer: expected ndim=4, "
                             f"found ndim={input_shape.ndims}. Full shape received: {input_shape}")
        channels = input_shape[-1 if self.data_format == "NHWC" else 1]
        if channels is None:
            raise ValueError("The channel dimension of the inputs should be defined. Found `None`.")
        self.kernel = self.add_weight("kernel", list(self.kernel_size) + [channels, self.filters],
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = self.add_weight("bias", [self.filters], initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer, constraint=self.bias_constraint) \
            if self.use_bias else None

    def call(self, inputs):
        outputs = nn_ops.conv2d(inputs, self.kernel, _nhwc_window(self.strides, self.data_format), self.padding,
                                data_format=self.data_format,
                                dilations=_nhwc_window(self.dilation_rate, self.data_format))
        if self.bias is not None:
            outputs = nn_ops.bias_add(outputs, self.bias, data_format=self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding="valid", data_format="channels_last",
           dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer=None,
           bias_initializer=variables_lib.zeros_initializer(), kernel_regularizer=None, bias_regularizer=None,
           activity_regularizer=None, kernel_constraint=None, bias_constraint=None, trainable=True, name=None,
           reuse=None):
    """The functional form of Conv2D: variables `<name>/kernel` and `<name>/bias` (name default "conv2d")."""
    layer = Conv2D(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                   dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                   kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                   kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                   activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                   bias_constraint=bias_constraint, trainable=trainable, name=name, _reuse=reuse)
    return layer(inputs)


class _Pooling2D(Layer):
    _pool = None

    def __init__(self, pool_size, strides, padding="valid", data_format="channels_last", name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.data_format = _data_format(data_format)

    def call(self, inputs):
        return self._pool(inputs, _nhwc_window(self.pool_size, self.data_format),
                          _nhwc_window(self.strides, self.data_format), self.padding,
                          data_format=self.data_format)


class MaxPooling2D(_Pooling2D):
    """The max over pool_size windows, moved by strides."""

    _pool = staticmethod(nn_ops.max_pool)


class AveragePooling2D(_Pooling2D):
    """The mean over pool_size windows, moved by strides (SAME windows average only real elements)."""

    _pool = staticmethod(nn_ops.avg_pool)


def max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last", name=None):
    """The functional form of MaxPooling2D."""
    return MaxPooling2D(pool_size, strides, padding=padding, data_format=data_format, name=name)(inputs)


def average_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last", name=None):
    """The functional form of AveragePooling2D."""
    return AveragePooling2D(pool_size, strides, padding=padding, data_format=data_format, name=name)(inputs)
