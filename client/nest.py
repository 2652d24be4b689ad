"""Nested structures (dicts, namedtuples, lists, tuples) of tensors: flatten and rebuild.

A composite tensor (an IndexedSlices: anything with `_nest_parts()`) flattens
to its component tensors and is rebuilt by its type's `_from_nest_parts`.
"""

class Keep:
    """What a leaf function returns for a leaf that the rebuilt structure holds as `value`, uncollected."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def flatten(structure, leaf_fn, leaves):
    """A spec of `structure`, appending leaf_fn(x) of each leaf x to `leaves`.

    leaf_fn returns the value to collect, or Keep(v) to put v in the rebuilt
    structure instead.
    """
    if isinstance(structure, dict):
        return ("dict", type(structure), [(k, flatten(v, leaf_fn, leaves)) for k, v in structure.items()])
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return ("namedtuple", type(structure), [flatten(v, leaf_fn, leaves) for v in structure])
    if isinstance(structure, (list, tuple)):
        return ("seq", type(structure), [flatten(v, leaf_fn, leaves) for v in structure])
    if hasattr(structure, "_nest_parts"):
        return ("composite", type(structure),
                [("const", None) if p is None else flatten(p, leaf_fn, leaves) for p in structure._nest_parts()])
    value = leaf_fn(structure)
    if isinstance(value, Keep):
        return ("const", value.value)
    leaves.append(value)
    return ("leaf", len(leaves) - 1)


def rebuild(spec, values):
    """The structure `spec` describes, with its leaves taken from `values`."""
    kind = spec[0]
    if kind == "leaf":
        return values[spec[1]]
    if kind == "const":
        return spec[1]
    if kind == "dict":
        return spec[1]((k, rebuild(v, values)) for k, v in spec[2])
    if kind == "namedtuple":
        return spec[1](*[rebuild(v, values) for v in spec[2]])
    if kind == "composite":
        return spec[1]._from_nest_parts([rebuild(v, values) for v in spec[2]])
    items = [rebuild(v, values) for v in spec[2]]
    return items if spec[1] is list else spec[1](items)


def flatten_up_to(spec, value, where=""):
    """The parts of `value` at the leaves of structure `spec` (a flatten() spec), in its order.

    A sequence structure takes any list or tuple of its length, a dict any
    mapping with its keys (matched by key); whatever sits at a leaf is
    returned whole. TypeError, starting with `where`, for a value of another shape.
    """
    kind = spec[0]
    if kind == "leaf":
        return [value]
    if kind == "const":
        return []
    if kind == "dict":
        keys = [k for k, _ in spec[2]]
        if not hasattr(value, "keys") or set(value.keys()) != set(keys):
            raise TypeError(f"{where}: expected a dict with keys {keys}, got {value!r:.200}")
        return [x for k, sub in spec[2] for x in flatten_up_to(sub, value[k], where)]
    if not isinstance(value, (list, tuple)) or len(value) != len(spec[2]):
        raise TypeError(f"{where}: expected a sequence of {len(spec[2])} values, got {value!r:.200}")
    return [x for sub, v in zip(spec[2], value) for x in flatten_up_to(sub, v, where)]
