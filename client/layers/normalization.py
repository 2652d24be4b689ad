"""tf.layers.BatchNormalization and batch_normalization.

Training normalizes with the batch's mean and (biased) variance and adds
update ops for the moving mean and variance to UPDATE_OPS:
`moving -= (moving - batch_value) * (1 - momentum)`. As TF1's fused kernel
does for 4-D inputs normalized over their channel axis, the moving
variance then takes the batch variance with Bessel's correction (n / (n - 1));
other inputs update it with the biased one. Inference normalizes with the
moving statistics. `training` may be a bool tensor: both results are
computed and one is selected, and the updates then leave the moving
statistics unchanged when it is False (TF1's momentum-of-1 rule).
"""

import numbers

import numpy as np

from tensorgrid.client import array_ops, math_ops, nn_ops
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.layers.base import Layer
from tensorgrid.client.layers.core import _training_switch

__all__ = ["BatchNormalization", "batch_normalization"]


class BatchNormalization(Layer):
    """Normalizes each feature along `axis` to zero mean and unit variance, then scales (gamma) and shifts (beta)."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer=variables_lib.zeros_initializer(), gamma_initializer=variables_lib.ones_initializer(),
                 moving_mean_initializer=variables_lib.zeros_initializer(),
                 moving_variance_initializer=variables_lib.ones_initializer(), beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, renorm=False,
                 renorm_clipping=None, renorm_momentum=0.99, fused=None, trainable=True, virtual_batch_size=None,
                 adjustment=None, name=None, **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        if renorm or virtual_batch_size is not None or adjustment is not None:
            raise NotImplementedError("batch_normalization: renorm, virtual_batch_size and adjustment are not "
                                      "supported by tf.layers in tensorgrid")
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else axis
        self.momentum, self.epsilon = momentum, epsilon
        self.center, self.scale = center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.beta_regularizer, self.gamma_regularizer = beta_regularizer, gamma_regularizer
        self.beta_constraint, self.gamma_constraint = beta_constraint, gamma_constraint
        self.fused = fused

    def build(self, input_shape):
        rank = input_shape.ndims
        if rank is None:
            raise ValueError(f"Input has undefined rank: {input_shape}")
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        self._axes = sorted(a % rank for a in axes)
        for a in self._axes:
            if input_shape[a] is None:
                raise ValueError(f"Input has undefined `axis` dimension. Input shape: {input_shape}")
        # TF1's fused kernel serves 4-D inputs normalized over one channel axis (NHWC or NCHW)
        fusable = rank == 4 and self._axes in ([3], [1])
        if self.fused and not fusable:
            raise ValueError(f"Unsupported axis {self.axis} or rank {rank} for fused batch norm")
        self._fused = fusable if self.fused is None else bool(self.fused)
        shape = [input_shape[a] for a in self._axes]
        dtype = self._dtype
        self.gamma = self.add_weight("gamma", shape, dtype=dtype, initializer=self.gamma_initializer,
                                     regularizer=self.gamma_regularizer, constraint=self.gamma_constraint) \
            if self.scale else None
        self.beta = self.add_weight("beta", shape, dtype=dtype, initializer=self.beta_initializer,
                                    regularizer=self.beta_regularizer, constraint=self.beta_constraint) \
            if self.center else None
        self.moving_mean = self.add_weight("moving_mean", shape, dtype=dtype,
                                           initializer=self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape, dtype=dtype,
                                               initializer=self.moving_variance_initializer, trainable=False)

    def _broadcast(self, t, rank):
        """A per-feature vector shaped to broadcast against the inputs."""
        if t is None or self._axes == [rank - 1]:
            return t
        return array_ops.reshape(t, [self._input_dims[a] if a in self._axes else 1 for a in range(rank)])

    def call(self, inputs, training=False):
        rank = inputs.shape.ndims
        self._input_dims = inputs.shape.as_list()
        reduce_axes = [a for a in range(rank) if a not in self._axes]
        gamma, beta = self._broadcast(self.gamma, rank), self._broadcast(self.beta, rank)

        def normalize(mean, variance):
            return nn_ops.batch_normalization(inputs, self._broadcast(mean, rank), self._broadcast(variance, rank),
                                              beta, gamma, self.epsilon)

        if isinstance(training, (bool, np.bool_, numbers.Integral)) and not training:
            return normalize(self.moving_mean, self.moving_variance)
        mean, variance = nn_ops.moments(inputs, reduce_axes)
        outputs = _training_switch(training, lambda: normalize(mean, variance),
                                   lambda: normalize(self.moving_mean, self.moving_variance))
        update_variance = variance
        if self._fused:
            count = _elements_per_feature(inputs, reduce_axes)
            update_variance = math_ops.multiply(variance, math_ops.truediv(count, math_ops.maximum(count - 1.0, 1.0)))
        decay = _training_switch(training, lambda: convert_to_tensor(1.0 - self.momentum, dtype=mean.dtype),
                                 lambda: convert_to_tensor(0.0, dtype=mean.dtype))
        self.add_update(_assign_moving_average(self.moving_mean, mean, decay, "AssignMovingAvg"))
        self.add_update(_assign_moving_average(self.moving_variance, update_variance, decay, "AssignMovingAvg_1"))
        return outputs


def _elements_per_feature(inputs, reduce_axes):
    dims = inputs.shape.as_list()
    if all(dims[a] is not None for a in reduce_axes):
        return convert_to_tensor(float(np.prod([dims[a] for a in reduce_axes])), dtype=inputs.dtype)
    shape = array_ops.shape(inputs)
    return array_ops.cast(math_ops.reduce_prod(array_ops.gather(shape, reduce_axes)), inputs.dtype)


def _assign_moving_average(variable, value, decay, name):
    """variable -= (variable - value) * decay, as an op."""
    from tensorgrid.client import scopes
    with scopes.name_scope(name) as scope:
        delta = math_ops.multiply(math_ops.subtract(variable, value), decay)
        return variable.assign_sub(delta, name=scope, read_value=False)


def batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                        beta_initializer=variables_lib.zeros_initializer(),
                        gamma_initializer=variables_lib.ones_initializer(),
                        moving_mean_initializer=variables_lib.zeros_initializer(),
                        moving_variance_initializer=variables_lib.ones_initializer(), beta_regularizer=None,
                        gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, training=False,
                        trainable=True, name=None, reuse=None, renorm=False, renorm_clipping=None,
                        renorm_momentum=0.99, fused=None, virtual_batch_size=None, adjustment=None):
    """The functional form of BatchNormalization (variables gamma, beta, moving_mean, moving_variance)."""
    layer = BatchNormalization(axis=axis, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
                               beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
                               moving_mean_initializer=moving_mean_initializer,
                               moving_variance_initializer=moving_variance_initializer,
                               beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                               beta_constraint=beta_constraint, gamma_constraint=gamma_constraint, renorm=renorm,
                               renorm_clipping=renorm_clipping, renorm_momentum=renorm_momentum, fused=fused,
                               trainable=trainable, virtual_batch_size=virtual_batch_size, adjustment=adjustment,
                               name=name, _reuse=reuse)
    return layer(inputs, training=training)
