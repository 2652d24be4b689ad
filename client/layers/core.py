"""tf.layers.Dense, Dropout and Flatten, and their functional forms."""

import numbers

import numpy as np

from tensorgrid.client import array_ops, math_ops, nn_ops
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.layers.base import Layer
from tensorgrid.framework import dtypes

__all__ = ["Dense", "dense", "Dropout", "dropout", "Flatten", "flatten"]


def _no_activity_regularizer(layer, activity_regularizer):
    if activity_regularizer is not None:
        raise NotImplementedError(f"{layer}: activity_regularizer is not supported by tf.layers in tensorgrid")


class Dense(Layer):
    """activation(inputs @ kernel + bias), over the last axis of inputs."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=variables_lib.zeros_initializer(), kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, trainable=True, name=None,
                 **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        _no_activity_regularizer("dense", activity_regularizer)
        self.units = int(units)
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.kernel_constraint, self.bias_constraint = kernel_constraint, bias_constraint

    def build(self, input_shape):
        last = input_shape[-1] if input_shape.ndims else None
        if last is None:
            raise ValueError("The last dimension of the inputs to `Dense` should be defined. Found `None`.")
        self.kernel = self.add_weight("kernel", [last, self.units], initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = self.add_weight("bias", [self.units], initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer, constraint=self.bias_constraint) \
            if self.use_bias else None

    def call(self, inputs):
        rank = inputs.shape.ndims
        if rank is not None and rank > 2:
            outputs = math_ops.tensordot(inputs, self.kernel, [[rank - 1], [0]])
        else:
            outputs = math_ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            outputs = nn_ops.bias_add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=variables_lib.zeros_initializer(), kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None, trainable=True, name=None,
          reuse=None):
    """The functional form of Dense: variables `<name>/kernel` and `<name>/bias` (name default "dense")."""
    layer = Dense(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                  bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                  bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                  kernel_constraint=kernel_constraint, bias_constraint=bias_constraint, trainable=trainable,
                  name=name, _reuse=reuse)
    return layer(inputs)


def _training_switch(training, when_training, otherwise):
    """when_training() if `training` (a Python bool or a bool tensor, chosen elementwise), else otherwise()."""
    if isinstance(training, (bool, np.bool_, numbers.Integral)):
        return when_training() if training else otherwise()
    training = convert_to_tensor(training, dtype=dtypes.bool_)
    return math_ops.where_v2(training, when_training(), otherwise())


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs (scaling the rest by 1 / (1 - rate)) when training."""

    def __init__(self, rate=0.5, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.rate, self.noise_shape, self.seed = rate, noise_shape, seed

    def call(self, inputs, training=False):
        return _training_switch(training, lambda: nn_ops.dropout(inputs, rate=self.rate, noise_shape=self.noise_shape,
                                                                 seed=self.seed),
                                lambda: array_ops.identity(inputs))


def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
    """The functional form of Dropout; `training` is a Python bool or a bool tensor (default False)."""
    return Dropout(rate, noise_shape=noise_shape, seed=seed, name=name)(inputs, training=training)


class Flatten(Layer):
    """Reshapes [batch, ...] to [batch, prod(...)] (channels-first input flattened in channels-last order)."""

    def __init__(self, data_format="channels_last", name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be channels_last or channels_first, got {data_format!r}")
        self.data_format = data_format

    def call(self, inputs):
        rank = inputs.shape.ndims
        if self.data_format == "channels_first" and rank is not None and rank > 2:
            inputs = array_ops.transpose(inputs, [0] + list(range(2, rank)) + [1])
        dims = inputs.shape.as_list() if rank is not None else None
        rest = int(np.prod(dims[1:])) if dims is not None and None not in dims[1:] else -1
        batch = dims[0] if dims is not None and dims[0] is not None and rest != -1 else None
        if batch is not None:
            return array_ops.reshape(inputs, [batch, rest])
        outputs = array_ops.reshape(inputs, array_ops.stack([array_ops.shape(inputs)[0], rest]))
        outputs.set_shape([dims[0] if dims is not None else None, None if rest == -1 else rest])
        return outputs


def flatten(inputs, name=None, data_format="channels_last"):
    """The functional form of Flatten."""
    return Flatten(data_format=data_format, name=name)(inputs)
