"""Layers that merge several inputs: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot."""

from tensorgrid.client import array_ops, math_ops
from tensorgrid.client.keras.layers.base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
           "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot"]


class _Merge(Layer):
    """Combines a list of at least two tensors element-wise (with broadcasting)."""

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(input_shape[0],
                                                                                            (list, tuple)):
            raise ValueError(f"A merge layer should be called on a list of inputs. Received: "
                             f"input_shape={input_shape} (not a list of shapes)")
        if len(input_shape) < 2:
            raise ValueError(f"A merge layer should be called on a list of at least 2 inputs. Got "
                             f"{len(input_shape)} inputs. Full input_shape received: {input_shape}")

    def call(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = self._merge(out, x)
        return self._finish(out, len(inputs))

    def _finish(self, out, n):
        return out


class Add(_Merge):
    def _merge(self, a, b):
        return math_ops.add(a, b)


class Subtract(_Merge):
    def build(self, input_shape):
        super().build(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. Received: "
                             f"input_shape={input_shape}")

    def _merge(self, a, b):
        return math_ops.subtract(a, b)


class Multiply(_Merge):
    def _merge(self, a, b):
        return math_ops.multiply(a, b)


class Average(_Merge):
    def _merge(self, a, b):
        return math_ops.add(a, b)

    def _finish(self, out, n):
        return out / float(n)


class Maximum(_Merge):
    def _merge(self, a, b):
        return math_ops.maximum(a, b)


class Minimum(_Merge):
    def _merge(self, a, b):
        return math_ops.minimum(a, b)


class Concatenate(_Merge):
    """Joins the inputs along `axis` (the last by default); the other dimensions must agree."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def build(self, input_shape):
        super().build(input_shape)
        ranks = {len(s) for s in input_shape}
        if len(ranks) != 1:
            raise ValueError(f"A `Concatenate` layer requires inputs with matching shapes except for the "
                             f"concatenation axis. Received: input_shape={input_shape}")
        rank = ranks.pop()
        axis = self.axis % rank
        for i in range(rank):
            dims = {s[i] for s in input_shape if s[i] is not None}
            if i != axis and len(dims) > 1:
                raise ValueError(f"A `Concatenate` layer requires inputs with matching shapes except for the "
                                 f"concatenation axis. Received: input_shape={input_shape}")

    def call(self, inputs):
        return array_ops.concat(list(inputs), axis=self.axis)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


class Dot(_Merge):
    """Dot products of two (batch, ...) inputs along `axes`; `normalize` makes them cosine similarities."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.axes = axes
        self.normalize = normalize

    def call(self, inputs):
        a, b = inputs
        axes = self.axes if isinstance(self.axes, (list, tuple)) else [self.axes, self.axes]
        axes = [ax % t.shape.rank for ax, t in zip(axes, (a, b))]
        if self.normalize:
            a = a * math_ops.rsqrt(math_ops.maximum(math_ops.reduce_sum(a * a, axis=axes[0], keepdims=True), 1e-12))
            b = b * math_ops.rsqrt(math_ops.maximum(math_ops.reduce_sum(b * b, axis=axes[1], keepdims=True), 1e-12))
        if a.shape.rank == 2 and b.shape.rank == 2:
            return math_ops.reduce_sum(a * b, axis=1, keepdims=True)
        return math_ops.einsum(_dot_equation(a.shape.rank, b.shape.rank, axes), a, b)

    def get_config(self):
        config = super().get_config()
        config.update(axes=self.axes, normalize=self.normalize)
        return config


def _dot_equation(rank_a, rank_b, axes):
    letters = "bcdefghijklmnopq"
    a = ["a"] + [letters[i] for i in range(rank_a - 1)]
    b = ["a"] + [letters[rank_a - 1 + i] for i in range(rank_b - 1)]
    b[axes[1]] = a[axes[0]]
    out = [c for i, c in enumerate(a) if i != axes[0]] + [c for i, c in enumerate(b) if i not in (0, axes[1])]
    return f"{''.join(a)},{''.join(b)}->{''.join(out)}"


def _functional(cls):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"{cls.__name__}(**kwargs)(inputs)."
    return merge


add, subtract, multiply, average = _functional(Add), _functional(Subtract), _functional(Multiply), _functional(Average)
maximum, minimum, concatenate = _functional(Maximum), _functional(Minimum), _functional(Concatenate)


def dot(inputs, axes=-1, **kwargs):
    return Dot(axes=axes, **kwargs)(inputs)
