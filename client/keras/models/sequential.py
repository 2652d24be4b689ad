"""keras.Sequential: a stack of layers, each called on the previous one's output.

Once the input shape is known (an `Input` first, `input_shape=` on the first
layer, `build()`, or the first call), the stack is called once on a
KerasTensor, so every layer is built and knows its output shape (summary()).
"""

from tensorgrid.client.keras import backend
from tensorgrid.client.keras.layers.base import KerasTensor, Layer
from tensorgrid.client.keras.layers.input_layer import InputLayer
from tensorgrid.client.keras.models.model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """Sequential([layers...], name=None)."""

    def __init__(self, layers=None, trainable=True, name=None):
        Model.__init__(self, name=name or backend.unique_name("sequential"), trainable=trainable)
        self._input_layer = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    def add(self, layer, rebuild=True):
        """Appends a layer (or an Input, which fixes the input shape)."""
        if isinstance(layer, KerasTensor) and layer._keras_history is not None:
            layer = layer._keras_history[0]
        if not isinstance(layer, Layer):
            raise ValueError(f"Only instances of `keras.Layer` can be added to a Sequential model. Received: "
                             f"{layer} (of type {type(layer)})")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"Sequential model '{self.name}' has already been configured to use input shape "
                                 f"{self._input_layer.batch_shape if self._input_layer else None}. You cannot add a "
                                 f"different Input layer to it.")
            self._input_layer = layer
            return
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                             f"'{layer.name}' is already the name of a layer in this model. Update the `name` "
                             f"argument to pass a unique name.")
        self._layers.append(layer)
        self.built = False
        if rebuild:
            self._maybe_rebuild()

    def pop(self, rebuild=True):
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self.built = False
        if rebuild:
            self._maybe_rebuild()
        return layer

    def _maybe_rebuild(self):
        if not self._layers:
            return
        if self._input_layer is not None:
            self.build(self._input_layer.batch_shape)
        elif getattr(self._layers[0], "_input_shape_arg", None) is not None:
            self.build(self._layers[0]._input_shape_arg)

    def build(self, input_shape=None):
        if input_shape is None:
            raise ValueError(f"You must provide an `input_shape` argument to build Sequential model {self.name}.")
        input_shape = tuple(input_shape)
        if self._input_layer is None or self._input_layer.batch_shape != input_shape:
            dtype = getattr(self._layers[0], "_dtype_name", None) if self._layers else None
            if self._layers and type(self._layers[0]).__name__ == "Embedding":
                dtype = "int32"
            self._input_layer = InputLayer(batch_shape=input_shape, dtype=dtype,
                                           name=self._input_layer.name if self._input_layer else None)
        x = self._input_layer.output
        with backend.name_path(self.name):
            for layer in self._layers:
                x = layer(x)
        self._outputs = x
        self.built = True
        self._build_shapes = input_shape

    @property
    def inputs(self):
        return [self._input_layer.output] if self._input_layer is not None and self.built else None

    @property
    def outputs(self):
        return [self._outputs] if self.built else None

    @property
    def input_shape(self):
        return self._input_layer.batch_shape if self._input_layer is not None else None

    @property
    def output_shape(self):
        if not self.built:
            raise AttributeError(f"Sequential model '{self.name}' has no defined outputs yet.")
        return self._outputs.shape

    @property
    def input(self):
        return self.inputs[0] if self.inputs else super().input

    @property
    def output(self):
        return self._outputs if self.built else super().output

    def __call__(self, *args, **kwargs):
        if not self.built and args and not isinstance(args[0], KerasTensor) and hasattr(args[0], "shape"):
            shape = tuple(args[0].shape)
            self.build((None,) + shape[1:])
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        x = inputs
        for layer in self._layers:
            x = layer(x)
        return x

    def get_config(self):
        from tensorgrid.client.keras import saving
        layers = []
        if self._input_layer is not None and self.built:
            layers.append(saving.serialize_keras_object(self._input_layer))
        layers.extend(saving.serialize_keras_object(layer) for layer in self._layers)
        return {"name": self.name, "trainable": self.trainable,
                "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": self.dtype},
                          "registered_name": None},
                "layers": layers}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from tensorgrid.client.keras import saving
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for layer_config in config["layers"]:
            model.add(saving.deserialize_keras_object(layer_config, custom_objects=custom_objects), rebuild=False)
        model._maybe_rebuild()
        if not model.built:
            shape = (config["layers"][0].get("build_config") or {}).get("input_shape") if config["layers"] else None
            if shape is not None:
                model.build(tuple(shape))
        return model
