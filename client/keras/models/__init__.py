"""tg.keras.models: Model (functional and subclassed), Sequential, and loading saved models."""

from tensorgrid.client.keras.models.model import Model  # noqa: F401
from tensorgrid.client.keras.models.functional import Functional  # noqa: F401
from tensorgrid.client.keras.models.sequential import Sequential  # noqa: F401


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002 - Keras's argument name
    """The model saved by `model.save(filepath)` (a .keras zip: config, weights, optimizer state)."""
    from tensorgrid.client.keras.saving import saving_lib
    return saving_lib.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def save_model(model, filepath, overwrite=True, **kwargs):
    model.save(filepath, overwrite=overwrite, **kwargs)


def clone_model(model, input_tensors=None, clone_function=None):
    """A new model with the same architecture (fresh weights), built from the model's config."""
    from tensorgrid.client.keras import saving
    return saving.deserialize_keras_object(saving.serialize_keras_object(model))
