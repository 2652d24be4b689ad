"""keras.Input and InputLayer: where a functional model's KerasTensors start."""

from tensorgrid.client.keras import backend
from tensorgrid.client.keras.layers.base import KerasTensor, Layer, Node

__all__ = ["InputLayer", "Input"]


class InputLayer(Layer):
    """The layer behind keras.Input: no weights, one output KerasTensor of `batch_shape`."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, input_tensor=None,
                 optional=False, name=None, ragged=None, **kwargs):
        kwargs.pop("input_shape", None)
        super().__init__(name=name or backend.unique_name("input_layer"), dtype=dtype, **kwargs)
        if shape is not None and batch_shape is not None:
            raise ValueError("You cannot pass both `shape` and `batch_shape` at the same time.")
        if batch_shape is None:
            if shape is None:
                raise ValueError("You must pass a `shape` argument.")
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            batch_shape = (batch_size,) + shape
        self._batch_shape = tuple(batch_shape)
        self.optional = optional
        self.sparse = bool(sparse)
        self.built = True
        self._dtype_name = backend.standardize_dtype(dtype)
        output = KerasTensor(self._batch_shape, self._dtype_name, name=self.name)
        Node(self, (), {}, output)
        self._output = output

    @property
    def batch_shape(self):
        return self._batch_shape

    def call(self):
        return self._output

    def get_config(self):
        return {"batch_shape": list(self._batch_shape), "dtype": self._dtype_name, "sparse": self.sparse,
                "ragged": False, "name": self.name, "optional": self.optional}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("ragged", None)
        return cls(**config)


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,  # noqa: N802
          optional=False, ragged=None):
    """A symbolic tensor (KerasTensor) to build a functional model from: `shape` leaves the batch out."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, batch_shape=batch_shape,
                       name=name, optional=optional)
    return layer.output
