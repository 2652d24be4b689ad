"""tg.keras: Keras 3's API (as shipped with TensorFlow 2.16+) on tensorgrid's graph runtime.

Submodules load on first use (`tg.keras.layers`, `tg.keras.optimizers`, ...), so `import
tensorgrid` stays cheap and each part of Keras can be imported without the others.
"""

import importlib

_SUBMODULES = (
    "activations", "backend", "callbacks", "constraints", "datasets", "initializers", "layers",
    "losses", "metrics", "mixed_precision", "models", "optimizers", "regularizers", "saving", "utils",
)

_TOP_LEVEL = {
    # name -> (submodule, attribute): Keras's top-level aliases.
    "Sequential": ("models", "Sequential"),
    "Model": ("models", "Model"),
    "Input": ("layers", "Input"),
    "Layer": ("layers", "Layer"),
}


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _TOP_LEVEL:
        module_name, attr = _TOP_LEVEL[name]
        value = getattr(__getattr__(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tensorgrid.keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_TOP_LEVEL))
