"""tg.keras.optimizers (also tg.optimizers, TF2's alias): Keras 3's optimizers and learning rate schedules.

`SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad` (client/keras/optimizers/algorithms.py, on the base class of
base.py), `schedules` (schedules.py), and `get` / `serialize` / `deserialize`, which compile(optimizer=...)
uses: `get("adam")` gives a new Adam with Keras's defaults.
"""

from tensorgrid.client.keras.optimizers import schedules  # noqa: F401
from tensorgrid.client.keras.optimizers.algorithms import SGD, Adagrad, Adam, AdamW, RMSprop
from tensorgrid.client.keras.optimizers.base import Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "schedules", "get", "serialize",
           "deserialize"]

_CLASSES = {c.__name__: c for c in (SGD, Adam, AdamW, RMSprop, Adagrad)}
_BY_NAME = {name.lower(): cls for name, cls in _CLASSES.items()}


def serialize(optimizer):
    """Keras 3's dict for an optimizer: {"module", "class_name", "config", "registered_name"}."""
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__, "config": optimizer.get_config(),
            "registered_name": None}


def deserialize(config, custom_objects=None):
    """The optimizer `config` describes: serialize()'s dict, or a name such as "adam" or "SGD"."""
    custom_objects = custom_objects or {}
    if isinstance(config, str):
        cls = custom_objects.get(config) or _CLASSES.get(config) or _BY_NAME.get(config.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {config}")
        return cls()
    name = config.get("class_name")
    cls = custom_objects.get(name) or _CLASSES.get(name) or _BY_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Could not interpret optimizer identifier: {config}")
    return cls.from_config(dict(config.get("config") or {}), custom_objects=custom_objects)


def get(identifier):
    """An optimizer from an Optimizer (itself), a name ("adam", "sgd", "rmsprop", ...) or a config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier}")
