"""The resource store of a device: variables (and other resources, such as dataset iterators),
keyed by their shared name, living across steps."""

import threading

from tensorgrid.framework import errors


class Variable:
    """One variable's storage; `value` is None until initialized."""

    __slots__ = ("name", "dtype", "shape", "value", "lock")

    def __init__(self, name, dtype, shape):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.value = None
        self.lock = threading.Lock()


class ResourceStore:
    """Name -> Variable, shared by every step and session on one device (until reset); other
    resources (dataset iterators) in a table of their own, made by a factory on first use."""

    def __init__(self):
        self._vars = {}
        self._others = {}
        self._lock = threading.Lock()

    def handle(self, name, dtype, shape):
        """The variable called `name`, created empty on first use."""
        v = self._vars.get(name)
        if v is None:
            with self._lock:
                v = self._vars.get(name)
                if v is None:
                    v = self._vars[name] = Variable(name, dtype, shape)
        return v

    def lookup(self, name):
        return self._vars.get(name)

    def resource(self, name, make):
        """The non-variable resource called `name`, made by make() on first use."""
        r = self._others.get(name)
        if r is None:
            with self._lock:
                r = self._others.get(name)
                if r is None:
                    r = self._others[name] = make()
        return r

    def names(self):
        return list(self._vars)

    def __len__(self):
        return len(self._vars) + len(self._others)

    def clear(self):
        with self._lock:
            self._vars.clear()
            others, self._others = self._others, {}
        for r in others.values():
            close = getattr(r, "close", None)
            if close is not None:
                close()


def read(var, node_desc=""):
    value = var.value
    if value is None:
        raise errors.FailedPreconditionError(
            None, None,
            f"Attempting to use uninitialized value {var.name}"
            + (f" (read by {node_desc})" if node_desc else ""))
    return value
