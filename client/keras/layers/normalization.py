"""BatchNormalization (moving statistics updated in training) and LayerNormalization, with Keras 3's math."""

from tensorgrid.client import array_ops, math_ops, nn_ops
from tensorgrid.client.keras import initializers
from tensorgrid.client.keras.layers.base import Layer
from tensorgrid.client.keras.layers.core import _serialize, set_weight_options, weight_options_config

__all__ = ["BatchNormalization", "LayerNormalization"]


def _axes(axis, rank):
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % rank for a in axes)


class _AffineMixin:
    """gamma and beta weights along some axes, with their initializers, regularizers and constraints."""

    def _affine_init(self, center, scale, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
                     beta_constraint, gamma_constraint):
        self.center, self.scale = center, scale
        set_weight_options(self, beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
                           beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                           beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)

    def _affine_build(self, shape):
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(name="gamma", shape=shape, initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight(name="beta", shape=shape, initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint)

    def _affine_config(self):
        return dict(center=self.center, scale=self.scale, **weight_options_config(self, "beta", "gamma"))


def _broadcast(t, shape):
    return t if t is None or shape is None else array_ops.reshape(t, shape)


class BatchNormalization(Layer, _AffineMixin):
    """Normalizes with the batch's statistics in training (updating the moving ones), the moving ones otherwise.

    moving = moving * momentum + batch * (1 - momentum), the batch variance the biased one, as Keras 3.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 synchronized=False, **kwargs):
        for key in ("renorm", "renorm_clipping", "renorm_momentum"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self._affine_init(center, scale, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
                          beta_constraint, gamma_constraint)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.synchronized = synchronized

    def build(self, input_shape):
        rank = len(input_shape)
        axis = self.axis % rank
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(f"Axis {self.axis} of input tensor should have a defined dimension but the layer "
                             f"received an input with shape {input_shape}.")
        self._affine_build((dim,))
        self.moving_mean = self.add_weight(name="moving_mean", shape=(dim,),
                                           initializer=self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(dim,),
                                               initializer=self.moving_variance_initializer, trainable=False)
        self._reduction_axes = [a for a in range(rank) if a != axis]
        self._broadcast_shape = None if axis == rank - 1 else [1 if a != axis else dim for a in range(rank)]

    def call(self, inputs, training=None, mask=None):
        gamma = _broadcast(self.gamma, self._broadcast_shape)
        beta = _broadcast(self.beta, self._broadcast_shape)
        if training and self.trainable:
            mean, variance = nn_ops.moments(inputs, self._reduction_axes)
            decay = 1.0 - self.momentum
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * decay)
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * decay)
            mean, variance = _broadcast(mean, self._broadcast_shape), _broadcast(variance, self._broadcast_shape)
        else:
            mean = _broadcast(self.moving_mean.read_value(), self._broadcast_shape)
            variance = _broadcast(self.moving_variance.read_value(), self._broadcast_shape)
        return nn_ops.batch_normalization(inputs, mean, variance, beta, gamma, self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                      moving_mean_initializer=_serialize(self.moving_mean_initializer),
                      moving_variance_initializer=_serialize(self.moving_variance_initializer),
                      synchronized=self.synchronized, **self._affine_config())
        return config


class LayerNormalization(Layer, _AffineMixin):
    """Normalizes each example over `axis` (the last by default) with its own mean and variance."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else list(axis)
        self.epsilon = float(epsilon)
        self.rms_scaling = rms_scaling
        self._affine_init(center and not rms_scaling, scale, beta_initializer, gamma_initializer, beta_regularizer,
                          gamma_regularizer, beta_constraint, gamma_constraint)

    def build(self, input_shape):
        rank = len(input_shape)
        self._axes = _axes(self.axis, rank)
        shape = tuple(input_shape[a] for a in self._axes)
        self._affine_build(shape)
        self._broadcast_shape = None if self._axes == [rank - 1] else \
            [input_shape[a] if a in self._axes else 1 for a in range(rank)]

    def call(self, inputs):
        gamma = _broadcast(self.gamma, self._broadcast_shape)
        beta = _broadcast(self.beta, self._broadcast_shape)
        if self.rms_scaling:
            variance = math_ops.reduce_mean(math_ops.square(inputs), axis=self._axes, keepdims=True)
            out = inputs * math_ops.rsqrt(variance + self.epsilon)
            return out * gamma if gamma is not None else out
        mean, variance = nn_ops.moments(inputs, self._axes, keepdims=True)
        return nn_ops.batch_normalization(inputs, mean, variance, beta, gamma, self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, epsilon=self.epsilon, rms_scaling=self.rms_scaling, **self._affine_config())
        return config
