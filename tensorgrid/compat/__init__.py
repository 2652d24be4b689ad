"""Compatibility namespaces: `tensorgrid.compat.v1` is TF1's API."""

from tensorgrid.compat import v1  # noqa: F401
