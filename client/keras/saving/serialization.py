"""Keras 3's config format: every object as {"module", "class_name", "config", "registered_name"}.

A layer's entry also holds its `build_config` (the input shape it was built
for), a model's its `compile_config`. A functional model's config lists its
layers, each with its `inbound_nodes` (the arguments of each call, KerasTensors
written as `__keras_tensor__` with their `keras_history` [layer, node, tensor]),
and its `input_layers` / `output_layers`, as Keras writes them, so a model is
rebuilt by calling the layers again in order.

Classes are found by name among tensorgrid's Keras classes, the objects
registered with `register_keras_serializable` ("package>Name") and the
`custom_objects` given. A Lambda's function is kept as its Python bytecode
(marshal, base64), which runs code when loaded: deserializing it needs
`safe_mode=False`, as in Keras.
"""

import base64
import contextlib
import importlib
import inspect
import marshal
import types

import numpy as np

from tensorgrid.framework import dtypes

__all__ = ["serialize_keras_object", "deserialize_keras_object", "register_keras_serializable",
           "get_registered_object", "get_registered_name", "get_custom_objects", "custom_object_scope",
           "CustomObjectScope"]

_REGISTERED = {}          # "package>Name" -> class or function
_REGISTERED_NAMES = {}    # class or function -> "package>Name"
_scopes = []              # custom_object_scope dicts, innermost last
_SAFE_MODE = [True]

_MODULES = {   # tensorgrid module -> the Keras module name its objects are written under
    "layers": "keras.layers", "models": "keras", "initializers": "keras.initializers",
    "regularizers": "keras.regularizers", "constraints": "keras.constraints", "losses": "keras.losses",
    "metrics": "keras.metrics", "optimizers": "keras.optimizers", "activations": "keras.activations",
}


def register_keras_serializable(package="Custom", name=None):
    """Decorator: saved configs name the object `package>name` and loading finds it without custom_objects."""
    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        if key in _REGISTERED and _REGISTERED[key] is not obj:
            raise ValueError(f"{key} has already been registered to {_REGISTERED[key]}. Please make sure to use a "
                             f"unique name.")
        _REGISTERED[key] = obj
        _REGISTERED_NAMES[obj] = key
        return obj
    return decorator


def get_registered_name(obj):
    return _REGISTERED_NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name, custom_objects=None, module_objects=None):
    for table in [*reversed(_scopes), custom_objects or {}, _REGISTERED, module_objects or {}]:
        if name in table:
            return table[name]
    return None


def get_custom_objects():
    return _REGISTERED


@contextlib.contextmanager
def custom_object_scope(custom_objects):
    _scopes.append(dict(custom_objects or {}))
    try:
        yield
    finally:
        _scopes.pop()


CustomObjectScope = custom_object_scope


def _keras_module_of(obj):
    module = type(obj).__module__ if not isinstance(obj, type) else obj.__module__
    for part, keras_name in _MODULES.items():
        if f".keras.{part}" in module:
            return keras_name
    return module


def serialize_keras_object(obj):
    """obj as Keras's config dict (None, plain values and lists as they are)."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dtypes.DType):
        return obj.name
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(x) for x in obj]
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    if isinstance(obj, types.FunctionType) and not hasattr(obj, "get_config"):
        from tensorgrid.client.keras import activations
        if obj in activations._ALL_REVERSE:
            return activations._ALL_REVERSE[obj]
        registered = _REGISTERED_NAMES.get(obj)
        return {"module": obj.__module__ if registered is None else None, "class_name": "function",
                "config": registered or obj.__name__, "registered_name": registered or "function"}
    if not hasattr(obj, "get_config"):
        raise TypeError(f"Cannot serialize object {obj!r} of type {type(obj)}. To be serializable, a class must "
                        f"implement the `get_config()` method.")
    cls = type(obj)
    config = {"module": _keras_module_of(obj), "class_name": cls.__name__,
              "config": serialize_keras_object(obj.get_config()), "registered_name": _REGISTERED_NAMES.get(cls)}
    if hasattr(obj, "get_build_config"):
        build = obj.get_build_config()
        if build is not None:
            config["build_config"] = build
    if getattr(obj, "compiled", False) and hasattr(obj, "get_compile_config"):
        config["compile_config"] = obj.get_compile_config()
    return config


def _builtin_classes():
    from tensorgrid.client import keras
    table = {}
    for part in ("layers", "models", "initializers", "regularizers", "constraints", "losses", "metrics",
                 "optimizers", "activations"):
        try:
            module = getattr(keras, part)
        except (ImportError, AttributeError):
            continue
        for name in dir(module):
            value = getattr(module, name)
            if not name.startswith("_") and (isinstance(value, type) or callable(value)):
                table.setdefault(name, value)
    return table


def deserialize_keras_object(config, custom_objects=None, safe_mode=None, module_objects=None, **kwargs):
    """The object a config dict describes (a string names a built-in or registered object).

    safe_mode None inherits the enclosing call's (True at the top), so a model's layers load as the model does."""
    if safe_mode is None:
        safe_mode = _SAFE_MODE[-1]
    if config is None or isinstance(config, (bool, int, float)):
        return config
    if isinstance(config, (list, tuple)):
        return [deserialize_keras_object(c, custom_objects, safe_mode, module_objects) for c in config]
    if isinstance(config, str):
        found = get_registered_object(config, custom_objects, module_objects or _builtin_classes())
        if found is None:
            return config
        return found() if isinstance(found, type) else found
    if not isinstance(config, dict):
        raise TypeError(f"Could not parse config: {config!r:.200}")
    if "class_name" not in config:
        return {k: deserialize_keras_object(v, custom_objects, safe_mode, module_objects) for k, v in config.items()}
    class_name = config["class_name"]
    inner = config.get("config")
    if class_name == "function":
        fn = get_registered_object(inner, custom_objects, module_objects or _builtin_classes())
        if fn is None:
            raise TypeError(f"Could not locate function '{inner}'. Make sure custom classes and functions are "
                            f"decorated with `@keras.saving.register_keras_serializable()`, or pass them in "
                            f"`custom_objects`.")
        return fn
    if class_name == "__keras_tensor__":
        raise ValueError("a __keras_tensor__ entry can only appear in a functional model's inbound_nodes")
    cls = None
    if config.get("registered_name"):
        cls = get_registered_object(config["registered_name"], custom_objects)
    if cls is None:
        cls = get_registered_object(class_name, custom_objects, {**_builtin_classes(), **(module_objects or {})})
    if cls is None:
        raise TypeError(f"Could not locate class '{class_name}'. Make sure custom classes are decorated with "
                        f"`@keras.saving.register_keras_serializable()`. Full object config: {config}")
    _SAFE_MODE.append(safe_mode)
    try:
        params = inspect.signature(cls.from_config).parameters
        extra = {}
        if "custom_objects" in params:
            extra["custom_objects"] = custom_objects
        if "safe_mode" in params:
            extra["safe_mode"] = safe_mode
        with custom_object_scope(custom_objects):
            obj = cls.from_config(dict(inner or {}), **extra)
    finally:
        _SAFE_MODE.pop()
    if config.get("build_config") and hasattr(obj, "build_from_config") and not getattr(obj, "built", True):
        obj.build_from_config(config["build_config"])
    if config.get("compile_config") and hasattr(obj, "compile_from_config"):
        obj.compile_from_config(config["compile_config"])
    return obj


def serialize_function(fn):
    """A Lambda's function: a registered or built-in one by name, any other as base64 marshalled bytecode."""
    if getattr(fn, "__name__", "<lambda>") != "<lambda>" and (fn in _REGISTERED_NAMES
                                                              or getattr(fn, "__module__", "").startswith(
                                                                  "tensorgrid.")):
        return serialize_keras_object(fn)
    code = base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")
    defaults = serialize_keras_object(list(fn.__defaults__)) if fn.__defaults__ else None
    return {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": None}}


def deserialize_function(config, custom_objects=None, safe_mode=None):
    if isinstance(config, dict) and config.get("class_name") == "__lambda__":
        if (safe_mode if safe_mode is not None else _SAFE_MODE[-1]):
            raise ValueError("Requested the deserialization of a `Lambda` layer whose `function` is a Python "
                             "lambda. This carries a potential risk of arbitrary code execution and thus it is "
                             "disallowed by default. If you trust the source of the artifact, you can override "
                             "this error by passing `safe_mode=False` to the loading function, or calling "
                             "`keras.config.enable_unsafe_deserialization().")
        code = marshal.loads(base64.b64decode(config["config"]["code"]))
        defaults = config["config"].get("defaults")
        scope = dict(importlib.import_module("tensorgrid").__dict__)
        scope["tg"] = importlib.import_module("tensorgrid")
        scope.update(custom_objects or {})
        return types.FunctionType(code, scope, argdefs=tuple(defaults) if defaults else None)
    return deserialize_keras_object(config, custom_objects)


# ---- functional models --------------------------------------------------------------------------------------

def functional_config(model):
    """Keras 3's config of a functional model: its layers with their inbound nodes, inputs and outputs."""
    from tensorgrid.client.keras.layers.base import KerasTensor, map_structure
    model_nodes = {id(n) for n in model._nodes}

    def node_index(layer, node):
        kept = [n for n in layer._inbound_nodes if id(n) in model_nodes]
        return kept.index(node)

    def history(t):
        layer, index, tensor_index = t._keras_history
        return [layer.name, node_index(layer, layer._inbound_nodes[index]), tensor_index]

    def tensor_config(x):
        if isinstance(x, KerasTensor):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(x.shape), "dtype": x.dtype, "keras_history": history(x)}}
        return serialize_keras_object(x)
    layers = []
    for layer in model.layers:
        entry = serialize_keras_object(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = []
        for node in layer._inbound_nodes:
            if id(node) not in model_nodes or node.is_input:
                continue
            args, kwargs = map_structure(tensor_config, (node.call_args, node.call_kwargs))
            entry["inbound_nodes"].append({"args": list(args), "kwargs": kwargs})
        layers.append(entry)

    def io(structure):
        if isinstance(structure, dict):
            return {k: history(v) for k, v in structure.items()}
        if isinstance(structure, (list, tuple)):
            return [io(x) for x in structure]
        return history(structure)
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": io(model._inputs_struct), "output_layers": io(model._outputs_struct)}


def functional_from_config(cls, config, custom_objects=None):
    """Rebuilds a functional model: makes each layer, then calls them on the tensors their nodes name."""
    from tensorgrid.client.keras.layers.base import flatten
    created = {}
    pending = []
    for entry in config["layers"]:
        layer = deserialize_keras_object({k: v for k, v in entry.items() if k not in ("inbound_nodes", "name")},
                                         custom_objects=custom_objects)
        created[entry["name"]] = layer
        pending.extend((layer, i, node) for i, node in enumerate(entry.get("inbound_nodes", [])))
    outputs = {}   # (layer name, node index) -> output tensors (flat)
    for name, layer in created.items():
        if type(layer).__name__ == "InputLayer":
            outputs[(name, 0)] = [layer.output]

    def resolve(x):
        if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
            layer_name, index, tensor_index = x["config"]["keras_history"]
            return outputs[(layer_name, index)][tensor_index]
        return x

    def ready(x):
        if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
            return tuple(x["config"]["keras_history"][:2]) in outputs
        if isinstance(x, dict):
            return all(ready(v) for v in x.values())
        if isinstance(x, list):
            return all(ready(v) for v in x)
        return True
    counts = {}
    while pending:
        progressed = False
        for item in list(pending):
            layer, _, node = item
            if not (ready(node["args"]) and ready(node["kwargs"])):
                continue
            args = [_resolve_nested(a, resolve) for a in node["args"]]
            kwargs = {k: _resolve_nested(v, resolve) for k, v in node["kwargs"].items()}
            result = layer(*args, **kwargs)
            index = counts.get(layer.name, 0)
            counts[layer.name] = index + 1
            outputs[(layer.name, index)] = flatten(result)
            pending.remove(item)
            progressed = True
        if not progressed:
            raise ValueError(f"could not rebuild functional model {config.get('name')!r}: the nodes of "
                             f"{sorted({p[0].name for p in pending})} wait on tensors no layer makes")

    def io(structure):
        if isinstance(structure, dict):
            return {k: io(v) for k, v in structure.items()}
        if structure and isinstance(structure[0], str):
            name, index, tensor_index = structure
            return outputs[(name, index)][tensor_index]
        return [io(x) for x in structure]
    return cls(io(config["input_layers"]), io(config["output_layers"]), name=config.get("name"),
               trainable=config.get("trainable", True))


def _resolve_nested(x, resolve):
    if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
        return resolve(x)
    if isinstance(x, list):
        return [_resolve_nested(v, resolve) for v in x]
    if isinstance(x, dict):
        return {k: _resolve_nested(v, resolve) for k, v in x.items()}
    return x
