"""tg.keras.layers: Keras 3's layers on tensorgrid (one module per kind, all names here)."""

from tensorgrid.client.keras.layers.base import Layer, KerasTensor  # noqa: F401
from tensorgrid.client.keras.layers.input_layer import Input, InputLayer  # noqa: F401
from tensorgrid.client.keras.layers.core import *  # noqa: F401,F403
from tensorgrid.client.keras.layers.convolutional import *  # noqa: F401,F403
from tensorgrid.client.keras.layers.normalization import *  # noqa: F401,F403
from tensorgrid.client.keras.layers.merging import *  # noqa: F401,F403
from tensorgrid.client.keras.layers.recurrent import *  # noqa: F401,F403
from tensorgrid.client.keras.layers.activation import *  # noqa: F401,F403


def serialize(layer):
    from tensorgrid.client.keras import saving
    return saving.serialize_keras_object(layer)


def deserialize(config, custom_objects=None):
    from tensorgrid.client.keras import saving
    return saving.deserialize_keras_object(config, custom_objects=custom_objects)
