"""tg.keras.regularizers: penalties on weights that layers add to the model's loss (Keras 3's formulas).

`L2(l2)(w)` is `l2 * sum(w ** 2)` (no 1/2, as Keras 3), `L1(l1)(w)` is
`l1 * sum(|w|)`; a layer's `kernel_regularizer=` puts its penalty in
`layer.losses`, which `fit` adds to the loss of every step.
"""

from tensorgrid.client import array_ops, math_ops
from tensorgrid.client.keras import _identifiers

__all__ = ["Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "l1", "l2", "l1_l2", "get", "serialize",
           "deserialize"]


def _check_penalty(value, name):
    value = float(value)
    if value < 0:
        raise ValueError(f"Value for argument `{name}` should be a non-negative float. Received: {name}={value}")
    return value


class Regularizer:
    """Base class: `regularizer(weight)` gives a scalar penalty."""

    def __call__(self, x):
        return 0.0

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check_penalty(l1, "l1")
        self.l2 = _check_penalty(l2, "l2")

    def __call__(self, x):
        total = None
        if self.l1:
            total = self.l1 * math_ops.reduce_sum(math_ops.abs(x))
        if self.l2:
            term = self.l2 * math_ops.reduce_sum(math_ops.square(x))
            total = term if total is None else total + term
        return 0.0 if total is None else total

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    def __init__(self, l1=0.01):
        self.l1 = _check_penalty(l1, "l1")

    def __call__(self, x):
        return self.l1 * math_ops.reduce_sum(math_ops.abs(x))

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2=0.01):
        self.l2 = _check_penalty(l2, "l2")

    def __call__(self, x):
        return self.l2 * math_ops.reduce_sum(math_ops.square(x))

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean of |off-diagonal entries| of the Gram matrix of the normalized rows (or columns)."""

    def __init__(self, factor=0.01, mode="rows"):
        if mode not in ("rows", "columns"):
            raise ValueError(f"Invalid value for argument `mode`. Expected one of {{'rows', 'columns'}}. "
                             f"Received: mode={mode}")
        self.factor = _check_penalty(factor, "factor")
        self.mode = mode

    def __call__(self, x):
        if self.mode == "columns":
            x = array_ops.transpose(x)
        norms = math_ops.sqrt(math_ops.reduce_sum(math_ops.square(x), axis=1, keepdims=True))
        unit = x / math_ops.maximum(norms, 1e-12)
        gram = math_ops.matmul(unit, unit, transpose_b=True)
        n = x.shape[0]
        off = math_ops.abs(gram * (1.0 - array_ops.eye(n)))
        return self.factor * math_ops.reduce_sum(off) / (n * (n - 1))

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


l1 = L1
l2 = L2
l1_l2 = L1L2
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2, "OrthogonalRegularizer": OrthogonalRegularizer,
            "l1": L1, "l2": L2, "l1_l2": L1L2, "orthogonal_regularizer": OrthogonalRegularizer}


def serialize(regularizer):
    return _identifiers.serialize(regularizer)


def deserialize(config, custom_objects=None):
    return _identifiers.deserialize(config, _CLASSES, custom_objects)


def get(identifier):
    return _identifiers.lookup(identifier, _CLASSES, "regularizer")
