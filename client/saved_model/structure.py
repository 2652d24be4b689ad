"""The nest specs of traced functions (client/nest.py) as JSON, and back, for SavedModels."""

import collections
import importlib

_NAMEDTUPLES = {}


def to_json(spec):
    """A JSON-able form of a nest.flatten spec; ValueError for a constant JSON cannot hold."""
    kind = spec[0]
    if kind == "leaf":
        return {"leaf": spec[1]}
    if kind == "const":
        if spec[1] is not None and not isinstance(spec[1], (bool, int, float, str)):
            raise ValueError(f"a saved function returns the Python value {spec[1]!r}; a SavedModel keeps only "
                             f"tensors, None, numbers and strings in a function's results")
        return {"const": spec[1]}
    if kind == "dict":
        return {"dict": [[k, to_json(v)] for k, v in spec[2]]}
    if kind == "namedtuple":
        return {"namedtuple": spec[1].__name__, "fields": list(spec[1]._fields), "items": [to_json(v) for v in spec[2]]}
    if kind == "composite":
        return {"composite": f"{spec[1].__module__}:{spec[1].__qualname__}", "items": [to_json(v) for v in spec[2]]}
    return {"list" if spec[1] is list else "tuple": [to_json(v) for v in spec[2]]}


def from_json(data):
    """The nest.flatten spec `to_json` made `data` from (namedtuples come back as namedtuples of that name)."""
    if "leaf" in data:
        return ("leaf", data["leaf"])
    if "const" in data:
        return ("const", data["const"])
    if "dict" in data:
        return ("dict", dict, [(k, from_json(v)) for k, v in data["dict"]])
    if "namedtuple" in data:
        key = (data["namedtuple"], tuple(data["fields"]))
        if key not in _NAMEDTUPLES:
            _NAMEDTUPLES[key] = collections.namedtuple(*key)
        return ("namedtuple", _NAMEDTUPLES[key], [from_json(v) for v in data["items"]])
    if "composite" in data:
        module, _, name = data["composite"].partition(":")
        if not module.startswith("tensorgrid."):
            raise ValueError(f"a saved function returns a {data['composite']}, not a tensorgrid type")
        return ("composite", getattr(importlib.import_module(module), name), [from_json(v) for v in data["items"]])
    if "list" in data:
        return ("seq", list, [from_json(v) for v in data["list"]])
    return ("seq", tuple, [from_json(v) for v in data["tuple"]])
