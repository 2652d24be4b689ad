"""keras.Model: a Layer with training (compile/fit/evaluate/predict), saving and a summary.

`Model(inputs, outputs)` makes a functional model (models/functional.py); a
subclass that defines `call` is a subclassed model, its layers the ones its
attributes hold.
"""

from tensorgrid.client.keras import backend
from tensorgrid.client.keras.layers.base import Layer, _snake_case
from tensorgrid.client.keras.models.training import Trainer

__all__ = ["Model"]


class Model(Trainer, Layer):
    """A Layer that trains: compile(), fit(), evaluate(), predict(), save(), summary()."""

    def __new__(cls, *args, **kwargs):
        if cls is Model and (len(args) >= 2 or ("inputs" in kwargs and "outputs" in kwargs)
                             or (len(args) == 1 and "outputs" in kwargs)):
            from tensorgrid.client.keras.models.functional import Functional
            return object.__new__(Functional)
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        name = kwargs.pop("name", None)
        trainable = kwargs.pop("trainable", True)
        dtype = kwargs.pop("dtype", None)
        if args or kwargs:
            raise TypeError(f"Model.__init__ got unexpected arguments: {args or ''} {kwargs or ''}; a functional "
                            f"model takes Model(inputs, outputs, name=...)")
        Layer.__init__(self, name=name or backend.unique_name(_snake_case(type(self).__name__)),
                       trainable=trainable, dtype=dtype)
        Trainer.__init__(self)

    @property
    def layers(self):
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        """The layer called `name`, or at position `index` of `layers`."""
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        """Prints the layer table Keras 3 prints (names, output shapes, parameter counts)."""
        from tensorgrid.client.keras.models import summary
        summary.print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                              expand_nested=expand_nested, show_trainable=show_trainable, layer_range=layer_range)

    def build(self, input_shape):
        """Builds a subclassed model by calling it on placeholders of `input_shape`."""
        if self.built:
            return
        from tensorgrid.client.keras.layers.base import KerasTensor, map_shapes
        specs = map_shapes(lambda s: KerasTensor(s, self.compute_dtype), input_shape)
        self.built = True
        self._build_shapes = input_shape
        self.compute_output_spec(specs)

    def _maybe_build(self, shapes):
        if not self.built and type(self).build is Model.build:
            # a subclassed model's first call builds its layers as it runs them
            self.built = True
            self._build_shapes = shapes
            return
        Layer._maybe_build(self, shapes)

    def save_weights(self, filepath, overwrite=True):
        """Writes the weights to a `.weights.h5` file (layout: client/keras/saving/saving_lib.py)."""
        from tensorgrid.client.keras.saving import saving_lib
        saving_lib.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        """Reads weights from a `.weights.h5` file (Keras's or tensorgrid's) or a `.keras` archive."""
        from tensorgrid.client.keras.saving import saving_lib
        saving_lib.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Writes the model (architecture, weights, optimizer state) to a `.keras` archive."""
        from tensorgrid.client.keras.saving import saving_lib
        saving_lib.save_model(self, filepath, overwrite=overwrite)

    def get_config(self):
        """A subclassed model's config: only what Layer records, unless the subclass overrides this."""
        return Layer.get_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from tensorgrid.client.keras.models.functional import Functional
        if "layers" in config and "input_layers" in config and cls in (Model, Functional):
            return Functional.from_config(config, custom_objects=custom_objects)
        config = {k: v for k, v in config.items() if k in ("name", "trainable", "dtype")} \
            if cls.get_config is Model.get_config else config
        return cls(**config)
