"""Keras's default object names: the class name in snake_case, made unique with `_1`, `_2`, ..."""

import collections
import re

__all__ = ["to_snake_case", "auto_name"]

_counts = collections.Counter()


def to_snake_case(name):
    """"RMSprop" -> "rm_sprop", "MeanSquaredError" -> "mean_squared_error" (Keras's rule)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def auto_name(class_name):
    """The first object of a kind gets the bare snake_case name, later ones `<name>_<n>`."""
    base = to_snake_case(class_name)
    n = _counts[base]
    _counts[base] += 1
    return base if n == 0 else f"{base}_{n}"
