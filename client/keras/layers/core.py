"""Core Keras layers: Dense, Activation, Dropout, Flatten, Reshape, Permute, RepeatVector, Lambda, Embedding."""

import math

import numpy as np

from tensorgrid.client import array_ops, embedding_ops, math_ops, nn_ops
from tensorgrid.client.keras import activations, backend, constraints, initializers, regularizers
from tensorgrid.client.keras.layers.base import Layer

__all__ = ["Dense", "Activation", "Dropout", "Flatten", "Reshape", "Permute", "RepeatVector", "Lambda",
           "Embedding", "Identity", "Masking"]


def _serialize(obj):
    from tensorgrid.client.keras import saving
    return saving.serialize_keras_object(obj)


_GETTERS = {"initializer": initializers.get, "regularizer": regularizers.get, "constraint": constraints.get}


def set_weight_options(layer, **options):
    """Sets each `<weight>_initializer` / `_regularizer` / `_constraint` argument on layer, resolved."""
    for key, value in options.items():
        setattr(layer, key, _GETTERS[key.rsplit("_", 1)[1]](value))


def weight_options_config(layer, *weights):
    """The serialized initializer, regularizer and constraint of each of `weights` ('kernel', 'bias', ...)."""
    return {f"{w}_{kind}": _serialize(getattr(layer, f"{w}_{kind}")) for kind in _GETTERS for w in weights}


class Dense(Layer):
    """activation(inputs @ kernel + bias), the matrix product over the last axis of the inputs."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive integer. "
                             f"Received: units={units}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_options(self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                           kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"The last dimension of the inputs to a Dense layer should be defined. "
                             f"Found None. Full input shape received: {input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, self.units),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def call(self, inputs):
        rank = inputs.shape.rank
        if rank == 2:
            x = math_ops.matmul(inputs, self.kernel)
        else:
            x = math_ops.tensordot(inputs, self.kernel, [[rank - 1], [0]])
        if self.bias is not None:
            x = nn_ops.bias_add(x, self.bias)
        return self.activation(x)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=activations.serialize(self.activation), use_bias=self.use_bias,
                      **weight_options_config(self, "kernel", "bias"))
        return config


class Identity(Layer):
    def call(self, inputs):
        return inputs


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


class Dropout(Layer):
    """In training, zeroes a `rate` fraction of the inputs and scales the rest by 1 / (1 - rate)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                             f"Received: rate={rate}")
        self.rate = rate
        self.noise_shape = noise_shape
        self.seed = seed
        self._op_seed = int(seed) if seed is not None else int(backend.rng().integers(1, 2 ** 31 - 1))

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        noise_shape = None
        if self.noise_shape is not None:
            dynamic = array_ops.shape(inputs)
            noise_shape = array_ops.stack([dynamic[i] if d is None else d for i, d in enumerate(self.noise_shape)])
        return nn_ops.dropout(inputs, rate=self.rate, noise_shape=noise_shape, seed=self._op_seed)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed, noise_shape=self.noise_shape)
        return config



class Masking(Layer):
    """Masks the timesteps whose features all equal mask_value: zeroes them and gives the (batch, time) mask
    that the layers after it (an RNN) skip them by."""

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value

    def compute_mask(self, inputs, mask=None):
        return math_ops.reduce_any(math_ops.not_equal(inputs, self.mask_value), axis=-1)

    def call(self, inputs):
        keep = math_ops.reduce_any(math_ops.not_equal(inputs, self.mask_value), axis=-1, keepdims=True)
        return inputs * array_ops.cast(keep, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config["mask_value"] = self.mask_value
        return config

class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = backend.standardize_data_format(data_format)

    def call(self, inputs):
        if self.data_format == "channels_first" and inputs.shape.rank > 2:
            inputs = array_ops.transpose(inputs, [0] + list(range(2, inputs.shape.rank)) + [1])
        rest = inputs.shape.as_tuple()[1:]
        if all(d is not None for d in rest):
            return array_ops.reshape(inputs, [-1, math.prod(rest)])
        return array_ops.reshape(inputs, array_ops.stack([array_ops.shape(inputs)[0], -1]))

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


class Reshape(Layer):
    """(batch, ...) -> (batch, *target_shape); one entry of target_shape may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)

    def call(self, inputs):
        target = list(self.target_shape)
        rest = inputs.shape.as_tuple()[1:]
        if -1 in target and all(d is not None for d in rest):
            known = math.prod(d for d in target if d != -1)
            target[target.index(-1)] = math.prod(rest) // known
        if -1 not in target:
            return array_ops.reshape(inputs, [-1, *target])
        batch = array_ops.shape(inputs)[:1]
        return array_ops.reshape(inputs, array_ops.concat([batch, list(self.target_shape)], 0))

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


class Permute(Layer):
    """Permutes the non-batch axes: dims are 1-based, as Keras's."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` "
                             f"must be consecutive and start from 1. Received dims={dims}")

    def call(self, inputs):
        return array_ops.transpose(inputs, [0, *self.dims])

    def get_config(self):
        config = super().get_config()
        config["dims"] = list(self.dims)
        return config


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def call(self, inputs):
        return array_ops.tile(array_ops.expand_dims(inputs, 1), [1, self.n, 1])

    def get_config(self):
        config = super().get_config()
        config["n"] = self.n
        return config


class Lambda(Layer):
    """Wraps a function of tensors as a layer (its ops are traced like any layer's)."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        self.function = function
        self.arguments = arguments or {}
        self._output_shape = output_shape
        self.mask = mask

    def call(self, inputs, mask=None, training=None):
        import inspect
        kwargs = dict(self.arguments)
        params = inspect.signature(self.function).parameters
        if "training" in params:
            kwargs["training"] = training
        if "mask" in params:
            kwargs["mask"] = mask
        return self.function(inputs, **kwargs)

    def get_config(self):
        from tensorgrid.client.keras.saving import serialization
        config = super().get_config()
        config.update(function=serialization.serialize_function(self.function),
                      arguments=self.arguments, output_shape=self._output_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None, safe_mode=None):
        from tensorgrid.client.keras.saving import serialization
        config = dict(config)
        config["function"] = serialization.deserialize_function(config["function"], custom_objects, safe_mode)
        return cls(**config)


class Embedding(Layer):
    """Rows of an (input_dim, output_dim) table, looked up by integer ids (sparse gradients)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, **kwargs):
        kwargs.pop("input_length", None)
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value} "
                                 f"(of type {type(value).__name__}).")
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        set_weight_options(self, embeddings_initializer=embeddings_initializer,
                           embeddings_regularizer=embeddings_regularizer, embeddings_constraint=embeddings_constraint)
        self.mask_zero = mask_zero
        self.autocast = False
        if weights is not None:
            self._initial_weights = weights

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer, name="embeddings",
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)

    def call(self, inputs):
        if inputs.dtype.name not in ("int32", "int64"):
            inputs = array_ops.cast(inputs, "int32")
        return embedding_ops.embedding_lookup_v2(self.embeddings, inputs)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return math_ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, output_dim=self.output_dim, mask_zero=self.mask_zero,
                      **weight_options_config(self, "embeddings"))
        return config
