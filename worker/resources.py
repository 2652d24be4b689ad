"""The resource store of a device: variables, queues, dataset iterators and other state that lives
across steps.

Which sessions share a resource (the container rule)
-----------------------------------------------------
Resources are keyed as TensorFlow's ResourceMgr keys them, by container and
name, and live on their device until `Session.reset` (or a worker restart):

- A variable is keyed by (container, shared name, dtype, shape). Every
  session that names the same variable on the same device gets the same
  storage: the sessions of one graph, the between-graph replicas that each
  build their own copy of a model (their `w` on the ps task is one `w`), a
  client that restarts and finds its model initialized, a Saver restoring
  into a new session. The shared name is the variable's graph name unless
  the program gives another, and the container is "" unless the program
  sets one (`tg.compat.v1.container`). Two programs that give a variable the
  same default name but another shape or dtype (the second program run on a
  cluster after the first) get two variables: each is a different variable
  in TF's sense, since neither program could read the other's value.
- A queue (or another kernel-owned resource) with a `shared_name` is keyed
  by (container, shared name): sessions that name it share it, as TF's
  shared_name. Without one it is private to its session: keyed by the
  session and the node's name, so every step of that session (whatever it
  fetches) sees the same queue, and it goes when the session ends.

Session-private resources are reached through a `ResourceView`, the store as
one session sees it; kernels get a view (KernelNode.resources).
"""

import threading

from tensorgrid.framework import errors
from tensorgrid.framework.shapes import TensorShape


class Variable:
    """One variable's storage; `value` is None until initialized."""

    __slots__ = ("name", "dtype", "shape", "value", "lock")

    def __init__(self, name, dtype, shape):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.value = None
        self.lock = threading.Lock()


def _shape_key(shape):
    return None if shape is None else TensorShape(shape).as_tuple()


class ResourceStore:
    """Every resource of one device, shared by every step and session there (until reset)."""

    def __init__(self):
        self._items = {}   # key -> resource; keys are tuples, their first item the kind
        self._lock = threading.Lock()

    def _get(self, key, create):
        item = self._items.get(key)
        if item is None:
            with self._lock:
                item = self._items.get(key)
                if item is None:
                    item = self._items[key] = create()
        return item

    def handle(self, name, dtype, shape, container=""):
        """The variable (container, name, dtype, shape), created empty on first use."""
        return self._get(("var", container or "", name, dtype, _shape_key(shape)),
                         lambda: Variable(name, dtype, shape))

    def resource(self, name, create, container=""):
        """The shared resource (container, name), made by `create()` on first use."""
        return self._get(("shared", container or "", name), create)

    def private(self, owner, name, create):
        """Resource `name` private to `owner` (a session), made by `create()` on first use."""
        return self._get(("private", owner, name), create)

    def find(self, name, container="", owner=None):
        """The shared resource (container, name), or with `owner` the one `name` private to it; None if absent."""
        key = ("private", owner, name) if owner is not None else ("shared", container or "", name)
        return self._items.get(key)

    def drop(self, name, container=""):
        """Removes (and releases) the shared resource (container, name), whose owner is gone."""
        key = ("shared", container or "", name)
        self._remove(lambda k: k == key)

    def view(self, owner):
        """The store as session `owner` sees it."""
        return ResourceView(self, owner)

    def lookup(self, name):
        """A variable called `name` (of any container, dtype or shape), or None."""
        for key, item in list(self._items.items()):
            if key[0] == "var" and key[2] == name:
                return item
        return None

    def names(self):
        return [key[2] for key in list(self._items)]

    def variables(self):
        """Every Variable of the store (initialized or not)."""
        return [item for key, item in list(self._items.items()) if key[0] == "var"]

    def __len__(self):
        return len(self._items)

    def drop_owner(self, owner):
        """Removes the resources private to `owner` (its session ended)."""
        self._remove(lambda key: key[0] == "private" and key[1] == owner)

    def clear(self, containers=None):
        """Removes every resource, or those of the given containers (session-private ones go with "")."""
        if containers is None:
            self._remove(lambda key: True)
            return
        wanted = {c or "" for c in containers}
        self._remove(lambda key: (key[1] in wanted) if key[0] != "private" else ("" in wanted))

    def _remove(self, matches):
        with self._lock:
            gone = [key for key in self._items if matches(key)]
            items = [self._items.pop(key) for key in gone]
        for item in items:
            release = getattr(item, "release", None) or getattr(item, "close", None)
            if release is not None:
                release()  # a queue wakes whoever waits on it, an iterator closes


class ResourceView:
    """A device's resource store as one session sees it: shared resources, plus its private ones."""

    __slots__ = ("store", "owner")

    def __init__(self, store, owner):
        self.store = store
        self.owner = owner

    def handle(self, name, dtype, shape, container=""):
        return self.store.handle(name, dtype, shape, container)

    def resource(self, name, create, container=""):
        return self.store.resource(name, create, container)

    def resource_for(self, container, shared_name, node_name, create):
        """The resource a kernel of node `node_name` owns: shared when it has a shared name, else the
        session's own (a fresh one per kernel where there is no session, as in eager mode)."""
        if shared_name:
            return self.store.resource(shared_name, create, container)
        if self.owner is None:
            return create()
        return self.store.private(self.owner, node_name, create)


def resource_for(resources, container, shared_name, node_name, create):
    """`ResourceView.resource_for` on a kernel's resources, a bare store (no session) included."""
    if isinstance(resources, ResourceView):
        return resources.resource_for(container, shared_name, node_name, create)
    return ResourceView(resources, None).resource_for(container, shared_name, node_name, create)


def find_resource(resources, container, shared_name, node_name):
    """The resource `resource_for` would give, if it exists yet (None otherwise); never creates one."""
    if shared_name:
        store = resources.store if isinstance(resources, ResourceView) else resources
        return store.find(shared_name, container)
    if isinstance(resources, ResourceView) and resources.owner is not None:
        return resources.store.find(node_name, owner=resources.owner)
    return None


def read(var, node_desc=""):
    value = var.value
    if value is None:
        raise errors.FailedPreconditionError(
            None, None,
            f"Attempting to use uninitialized value {var.name}"
            + (f" (read by {node_desc})" if node_desc else ""))
    return value
