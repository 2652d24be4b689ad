"""tg.keras.initializers: Keras 3's initializers (glorot_uniform kernels, zeros biases by default).

Values are drawn with NumPy: from a generator made from `seed` when one is
given (so the same seed gives the same values on every call, as Keras 3's
seeded initializers do), else from the Keras generator that
`tg.keras.utils.set_random_seed` reseeds.
"""

import math

import numpy as np

from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.keras import _identifiers, backend
from tensorgrid.framework import dtypes

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform",
    "Orthogonal", "Identity", "get", "serialize", "deserialize",
]


def compute_fans(shape):
    """(fan_in, fan_out) of a weight of `shape`: a kernel's receptive field counts for convolutions."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: `initializer(shape, dtype)` gives a tensor of initial values."""

    def __call__(self, shape, dtype=None):
        dtype = dtypes.as_dtype(backend.standardize_dtype(dtype))
        value = np.asarray(self.generate(tuple(int(d) for d in shape)))
        return convert_to_tensor(value.astype(dtype.as_numpy_dtype), dtype=dtype)

    def generate(self, shape):
        raise NotImplementedError(f"{type(self).__name__} must define generate(shape)")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def clone(self):
        return self.__class__.from_config(self.get_config())


class _Seeded(Initializer):
    def __init__(self, seed=None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"`seed` argument should be an instance of `keras.random.SeedGenerator()` or an "
                             f"integer. Received: seed={seed}")
        self.seed = seed

    def _rng(self):
        return np.random.default_rng(self.seed) if self.seed is not None else backend.rng()


class Zeros(Initializer):
    def generate(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def generate(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def generate(self, shape):
        return np.broadcast_to(np.asarray(self.value), shape)

    def get_config(self):
        value = self.value
        return {"value": value.tolist() if isinstance(value, np.ndarray) else value}


class RandomNormal(_Seeded):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def generate(self, shape):
        return self._rng().normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _truncated_normal(rng, shape, mean, stddev):
    """Normal draws, those further than two standard deviations from the mean drawn again."""
    values = rng.standard_normal(shape)
    bad = np.abs(values) > 2.0
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(values) > 2.0
    return mean + stddev * values


class TruncatedNormal(RandomNormal):
    def generate(self, shape):
        return _truncated_normal(self._rng(), shape, self.mean, self.stddev)


class RandomUniform(_Seeded):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def generate(self, shape):
        return self._rng().uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(_Seeded):
    """Draws with variance scale / n, n the fan in, fan out or their mean."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0.0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: {mode}. Please use one of {{'fan_in', 'fan_out', "
                             f"'fan_avg'}}")
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError(f"Invalid `distribution` argument: {distribution}. Please use one of "
                             f"{{'uniform', 'truncated_normal', 'untruncated_normal'}}")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def generate(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "truncated_normal":
            # the standard deviation of a unit normal truncated at two of them
            return _truncated_normal(rng, shape, 0.0, math.sqrt(scale) / 0.87962566103423978)
        return rng.normal(0.0, math.sqrt(scale), shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


def _scaling(name, scale, mode, distribution):
    class _Named(VarianceScaling):
        def __init__(self, seed=None):
            super().__init__(scale=scale, mode=mode, distribution=distribution, seed=seed)

        def get_config(self):
            return {"seed": self.seed}
    _Named.__name__ = _Named.__qualname__ = name
    _Named.__doc__ = f"VarianceScaling(scale={scale}, mode={mode!r}, distribution={distribution!r})."
    return _Named


GlorotUniform = _scaling("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeNormal = _scaling("HeNormal", 2.0, "fan_in", "truncated_normal")
HeUniform = _scaling("HeUniform", 2.0, "fan_in", "uniform")
LecunNormal = _scaling("LecunNormal", 1.0, "fan_in", "truncated_normal")
LecunUniform = _scaling("LecunUniform", 1.0, "fan_in", "uniform")


class Orthogonal(_Seeded):
    """An orthogonal matrix (QR of a normal draw), reshaped to `shape`, times `gain`."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def generate(self, shape):
        if len(shape) < 2:
            raise ValueError(f"The tensor to initialize must be at least two-dimensional. Received: "
                             f"shape={shape} of rank {len(shape)}.")
        rows = math.prod(shape[:-1])
        cols = shape[-1]
        flat = self._rng().normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    def __init__(self, gain=1.0):
        self.gain = gain

    def generate(self, shape):
        if len(shape) != 2:
            raise ValueError(f"Identity matrix initializer can only be used for 2D square matrices. Received: "
                             f"shape={shape} of rank {len(shape)}.")
        return self.gain * np.eye(*shape)

    def get_config(self):
        return {"gain": self.gain}


_ALIASES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal, "normal": RandomNormal,
    "random_uniform": RandomUniform, "uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform, "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "orthogonal": Orthogonal, "identity": Identity,
}
_CLASSES = {cls.__name__: cls for cls in _ALIASES.values()}


def serialize(initializer):
    return _identifiers.serialize(initializer)


def deserialize(config, custom_objects=None):
    return _identifiers.deserialize(config, _CLASSES, custom_objects)


def get(identifier):
    """An Initializer from a name ('glorot_uniform', 'GlorotUniform'), a config dict, a class or a callable."""
    return _identifiers.lookup(identifier, {**_CLASSES, **_ALIASES}, "initializer")


# Keras's snake_case aliases as module attributes (keras.initializers.zeros is Zeros; TF2's
# tf.initializers, which is this module, has them too).
globals().update(_ALIASES)
