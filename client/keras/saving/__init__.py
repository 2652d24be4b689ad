"""tg.keras.saving: configs (serialize / deserialize), `.weights.h5` files and `.keras` archives."""

from tensorgrid.client.keras.saving.serialization import (  # noqa: F401
    serialize_keras_object, deserialize_keras_object, register_keras_serializable, get_registered_object,
    get_registered_name, get_custom_objects, custom_object_scope, CustomObjectScope)
from tensorgrid.client.keras.saving.saving_lib import save_model, load_model, save_weights, load_weights  # noqa: F401
