"""TF1's queues as stateful resource ops: FIFOQueueV2, RandomShuffleQueueV2, PaddingFIFOQueueV2 and
the QueueEnqueue*/QueueDequeue*/QueueClose/QueueSize ops that take their handle.

A queue lives in its device's resource store (worker/resources.py): shared by
every session that gives it the same `shared_name`, else private to its
session. Enqueues wait while the queue is full and dequeues while it holds
too few elements; a waiting op ends with CancelledError when its step is
cancelled (the session closed, another device of the step failed, a worker
died), with DeadlineExceededError at the step's deadline
(RunOptions.timeout_in_ms, or the op's own `timeout_ms`), and with
OutOfRangeError (dequeues) or CancelledError (enqueues) once the queue is
closed and can never satisfy it, as in TensorFlow. Queues hold host arrays,
so their kernels are CPU-only, as TF's.
"""

import threading
import time

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.core_ops import to_host
from tensorgrid.ops.random_ops import generator
from tensorgrid.ops.registry import register
from tensorgrid.worker.resources import resource_for

# How often a waiting op looks at its step's cancellation and deadline.
POLL_S = 0.05

_KINDS = {"FIFOQueueV2": "FIFOQueue", "RandomShuffleQueueV2": "RandomShuffleQueue",
          "PaddingFIFOQueueV2": "PaddingFIFOQueue"}


def wait_for(resource, cond, ready, step, deadline, what):
    """Waits on `cond` (held) until ready(); CancelledError when the step is cancelled or `resource` (with
    `describe()` and `_released`) left its store, DeadlineExceededError at the step's or the op's deadline."""
    cancelled = getattr(step, "cancelled", None)
    step_deadline = getattr(step, "deadline", None)
    if step_deadline is not None:
        deadline = step_deadline if deadline is None else min(deadline, step_deadline)
    while True:
        if resource._released:
            raise errors.CancelledError(None, None, f"{resource.describe()} was removed (its session ended or "
                                        "the cluster was reset)")
        if ready():
            return
        if cancelled is not None and cancelled.is_set():
            raise errors.CancelledError(None, None, f"{what} on {resource.describe()} was cancelled")
        wait = POLL_S
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.DeadlineExceededError(
                    None, None, f"Timed out waiting for {what} on {resource.describe()}")
            wait = min(wait, left)
        cond.wait(wait)


class Queue:
    """A bounded queue of tuples of arrays, safe for concurrent steps."""

    def __init__(self, kind, name, component_types, shapes, capacity, min_after_dequeue=0, rng=None):
        self.kind = kind
        self.name = name
        self.component_types = list(component_types)
        self.shapes = list(shapes)          # TensorShapes, or [] when unknown
        self.capacity = capacity if capacity is not None and capacity >= 0 else None
        self.min_after_dequeue = min_after_dequeue
        self._rng = rng
        self._items = []
        self._cond = threading.Condition()
        self.closed = False
        self._cancel_enqueues = False
        self._released = False

    def describe(self):
        return f"{self.kind} '{self.name}'"

    def check_compatible(self, kind, component_types, shapes, capacity):
        """A shared queue looked up again by another node must have been declared alike."""
        if kind != self.kind or list(component_types) != self.component_types:
            raise errors.InvalidArgumentError(
                None, None, f"Shared queue '{self.name}' is a {self.kind} of component types "
                f"{[d.name for d in self.component_types]}, but a {kind} of "
                f"{[d.name for d in component_types]} was requested")
        cap = capacity if capacity is not None and capacity >= 0 else None
        if cap != self.capacity:
            raise errors.InvalidArgumentError(
                None, None, f"Shared queue '{self.name}' has capacity {self.capacity} but {cap} was requested")

    # ---- waiting -------------------------------------------------------------------------------
    def _wait(self, ready, step, deadline, what):
        """Waits (condition held) until ready(); raises when the step ends or its deadline passes."""
        wait_for(self, self._cond, ready, step, deadline, what)

    # ---- enqueue -------------------------------------------------------------------------------
    def _check_row(self, row, many):
        if len(row) != len(self.component_types):
            raise errors.InvalidArgumentError(
                None, None, f"{self.describe()} takes {len(self.component_types)} components, got {len(row)}")
        out = []
        for i, (value, dt) in enumerate(zip(row, self.component_types)):
            value = to_host(value)
            arr = np.asarray(value, dtype=dt.as_numpy_dtype) if dt is not dtypes.string else _string_array(value)
            shape = arr.shape[1:] if many else arr.shape
            if self.shapes and not self.shapes[i].is_compatible_with(shape):
                raise errors.InvalidArgumentError(
                    None, None, f"Shape mismatch in tuple component {i} of {self.describe()}. "
                    f"Expected {self.shapes[i]}, got {list(shape)}")
            out.append(arr)
        return out

    def enqueue(self, row, step, deadline=None):
        """Adds one element (a list of component arrays)."""
        self.enqueue_many([[c] for c in self._check_row(row, many=False)], step, deadline, checked=True)

    def enqueue_many(self, columns, step, deadline=None, checked=False):
        """Adds the slices along dimension 0 of every component, waiting for room as it goes."""
        if not checked:
            columns = self._check_row(columns, many=True)
            sizes = {len(c) if np.ndim(c) else -1 for c in columns}
            if -1 in sizes:
                raise errors.InvalidArgumentError(
                    None, None, f"enqueue_many on {self.describe()} needs components of rank >= 1")
            if len(sizes) > 1:
                raise errors.InvalidArgumentError(
                    None, None, f"enqueue_many on {self.describe()}: components have different first "
                    f"dimensions {sorted(sizes)}")
        count = len(columns[0]) if columns else 0
        with self._cond:
            for i in range(count):
                self._wait(lambda: self._cancel_enqueues or self.closed or self._has_room(), step, deadline,
                           "an enqueue")
                if self.closed:
                    raise errors.CancelledError(None, None, f"{self.describe()} is closed.")
                self._items.append(tuple(c[i] for c in columns))
                self._cond.notify_all()

    def _has_room(self):
        return self.capacity is None or len(self._items) < self.capacity

    # ---- dequeue -------------------------------------------------------------------------------
    def dequeue(self, n, step, deadline=None, up_to=False, single=False):
        """Takes n elements (one, unbatched, when single); fewer only when up_to and the queue is closed."""
        need = 1 if single else n
        with self._cond:
            self._wait(lambda: self.closed or self._available() >= need, step, deadline, "a dequeue")
            have = self._available() if not self.closed else len(self._items)
            if have < need:
                if not (up_to and self.closed and have > 0):
                    raise errors.OutOfRangeError(
                        None, None, f"{self.describe()} is closed and has insufficient elements "
                        f"(requested {need}, current size {len(self._items)})")
                need = have
            taken = [self._take() for _ in range(need)]
            self._cond.notify_all()
        if single:
            return tuple(taken[0])
        return tuple(self._batch(i, [row[i] for row in taken]) for i in range(len(self.component_types)))

    def _available(self):
        if self.kind == "RandomShuffleQueue":
            return max(0, len(self._items) - self.min_after_dequeue)
        return len(self._items)

    def _take(self):
        if self.kind == "RandomShuffleQueue":
            i = int(self._rng.integers(len(self._items)))
            self._items[i], self._items[-1] = self._items[-1], self._items[i]
            return self._items.pop()
        return self._items.pop(0)

    def _batch(self, i, values):
        dt = self.component_types[i].as_numpy_dtype
        if not values:
            shape = self.shapes[i].as_tuple() if self.shapes else None
            if shape is None or None in shape:
                shape = ()
            return np.zeros((0,) + tuple(shape), dtype=dt)
        if self.kind == "PaddingFIFOQueue":
            dims = np.max([np.shape(v) for v in values], axis=0) if np.ndim(values[0]) else ()
            out = np.zeros((len(values),) + tuple(int(d) for d in dims), dtype=dt)
            if dt is np.object_:
                out[...] = b""
            for k, v in enumerate(values):
                out[(k,) + tuple(slice(0, d) for d in np.shape(v))] = v
            return out
        shapes = {np.shape(v) for v in values}
        if len(shapes) > 1:
            raise errors.InvalidArgumentError(
                None, None, f"dequeue_many on {self.describe()}: component {i} has elements of different "
                f"shapes {sorted(shapes)}; give the queue shapes, or use a PaddingFIFOQueue")
        return np.stack(values)

    # ---- state ------------------------------------------------------------------------------------
    def close(self, cancel_pending_enqueues=False):
        with self._cond:
            self.closed = True
            if cancel_pending_enqueues:
                self._cancel_enqueues = True
            self._cond.notify_all()

    def release(self):
        """The queue left its store: every op still waiting on it ends with CancelledError."""
        with self._cond:
            self._released = True
            self.closed = True
            self._cond.notify_all()

    def size(self):
        with self._cond:
            return len(self._items)


def _string_array(value):
    arr = np.array(value, dtype=object)  # a copy: the input may be a read-only constant
    flat = arr.reshape(-1)
    for k, v in enumerate(flat):
        if isinstance(v, str):
            flat[k] = v.encode("utf-8")
    return arr


# ---------------------------------------------------------------- queue (handle) ops

def _component_types(ctx_or_node):
    return [dtypes.as_dtype(t) for t in (ctx_or_node.attr("component_types") or [])]


def _shapes(ctx_or_node):
    return [TensorShape(s) for s in (ctx_or_node.attr("shapes") or [])]


def _infer_queue(ctx):
    types = _component_types(ctx)
    if not types:
        raise ctx.error("a queue needs at least one component type")
    shapes = _shapes(ctx)
    if shapes and len(shapes) != len(types):
        raise ctx.error(f"has {len(types)} component types but {len(shapes)} shapes")
    if ctx.op == "PaddingFIFOQueueV2" and (not shapes or any(s.ndims is None for s in shapes)):
        raise ctx.error("a PaddingFIFOQueue needs the shape (rank known, dimensions may be None) of every "
                        "component")
    if ctx.op != "PaddingFIFOQueueV2" and any(not s.is_fully_defined() for s in shapes):
        raise ctx.error(f"the shapes of a {_KINDS[ctx.op]} must be fully defined, got "
                        f"{[str(s) for s in shapes]}; a PaddingFIFOQueue takes unknown dimensions")
    return [(dtypes.resource, ())]


def _queue_kernel(node):
    kind = _KINDS[node.op]
    types, shapes = _component_types(node), _shapes(node)
    capacity = int(node.attr("capacity", -1))
    shared = node.attr("shared_name", "") or ""

    def create():
        rng = generator(node) if kind == "RandomShuffleQueue" else None
        return Queue(kind, shared or node.name, types, shapes, capacity, int(node.attr("min_after_dequeue", 0)),
                     rng)
    queue = resource_for(node.resources, node.attr("container", ""), shared, node.name, create)
    queue.check_compatible(kind, types, shapes, capacity)
    return lambda: queue


for _op, _doc in [
        ("FIFOQueueV2", "A first-in first-out queue (attrs component_types, shapes, capacity, container, "
                        "shared_name)."),
        ("RandomShuffleQueueV2", "A queue that dequeues in random order, keeping min_after_dequeue elements "
                                 "until closed (attrs as FIFOQueueV2, plus min_after_dequeue, seed, seed2)."),
        ("PaddingFIFOQueueV2", "A FIFO queue whose dequeue_many pads each component to the batch's largest "
                               "shape with zeros.")]:
    register(_op, _infer_queue, _queue_kernel, stateful=True, cpu_only=True, doc=_doc)


# ---------------------------------------------------------------- ops on a queue

def _op_deadline(ms):
    """When an op with attr timeout_ms = ms, starting now, gives up (None: never; -1 is TF's default)."""
    return None if ms < 0 else time.monotonic() + ms / 1000.0


def _check_handle(ctx):
    if ctx.input_dtypes[0] is not dtypes.resource:
        raise ctx.error(f"the first input must be a queue handle, got a {ctx.input_dtypes[0].name} tensor")


def _infer_enqueue(ctx):
    _check_handle(ctx)
    return []


def _enqueue_kernel(many):
    def factory(node):
        ms = int(node.attr("timeout_ms", -1))

        def enqueue(step, queue, *components):
            deadline = _op_deadline(ms)
            if many:
                queue.enqueue_many(list(components), step, deadline)
            else:
                queue.enqueue(list(components), step, deadline)
        return enqueue
    return factory


register("QueueEnqueueV2", _infer_enqueue, _enqueue_kernel(False), stateful=True, needs_step=True,
         cpu_only=True, colocate_with_input=0, num_outputs=0,
         doc="Adds one element (its inputs after the handle) to a queue, waiting while it is full.")
register("QueueEnqueueManyV2", _infer_enqueue, _enqueue_kernel(True), stateful=True, needs_step=True,
         cpu_only=True, colocate_with_input=0, num_outputs=0,
         doc="Adds the slices along dimension 0 of its inputs to a queue.")


def _infer_dequeue(ctx):
    """Dtypes only: a dequeue's shapes are the queue's, which the front-end sets (as TF's does)."""
    _check_handle(ctx)
    return [(t, None) for t in _component_types(ctx)]


def _dequeue_count(attrs):
    return len(attrs.get("component_types") or [])


def _dequeue_kernel(node):
    ms = int(node.attr("timeout_ms", -1))
    count = _dequeue_count(node.attrs)

    def dequeue(step, queue):
        out = queue.dequeue(1, step, _op_deadline(ms), single=True)
        return out[0] if count == 1 else out
    return dequeue


def _dequeue_many_kernel(node):
    ms = int(node.attr("timeout_ms", -1))
    count = _dequeue_count(node.attrs)
    up_to = node.op == "QueueDequeueUpToV2"

    def dequeue_many(step, queue, n):
        n = int(n)
        if n < 0:
            raise errors.InvalidArgumentError(None, None, f"cannot dequeue a negative number ({n}) of elements")
        out = queue.dequeue(n, step, _op_deadline(ms), up_to=up_to)
        return out[0] if count == 1 else out
    return dequeue_many


register("QueueDequeueV2", _infer_dequeue, _dequeue_kernel, stateful=True, needs_step=True, cpu_only=True,
         colocate_with_input=0, num_outputs=_dequeue_count,
         doc="Takes one element from a queue, waiting while it is empty.")
register("QueueDequeueManyV2", _infer_dequeue, _dequeue_many_kernel, stateful=True, needs_step=True,
         cpu_only=True, colocate_with_input=0, num_outputs=_dequeue_count,
         doc="Takes n elements from a queue, batched along a new dimension 0.")
register("QueueDequeueUpToV2", _infer_dequeue, _dequeue_many_kernel, stateful=True, needs_step=True,
         cpu_only=True, colocate_with_input=0, num_outputs=_dequeue_count,
         doc="As QueueDequeueManyV2, but a closed queue gives its last, smaller batch.")


def _close_kernel(node):
    cancel = bool(node.attr("cancel_pending_enqueues", False))
    return lambda queue: queue.close(cancel)


register("QueueCloseV2", lambda ctx: _check_handle(ctx) or [], _close_kernel, stateful=True, cpu_only=True,
         colocate_with_input=0, num_outputs=0,
         doc="Closes a queue: no more enqueues; dequeues drain it, then fail with OutOfRangeError.")
register("QueueSizeV2", lambda ctx: _check_handle(ctx) or [(dtypes.int32, ())],
         lambda node: lambda queue: np.int32(queue.size()), stateful=True, cpu_only=True,
         colocate_with_input=0, doc="The number of elements in a queue.")
register("QueueIsClosedV2", lambda ctx: _check_handle(ctx) or [(dtypes.bool_, ())],
         lambda node: lambda queue: np.bool_(queue.closed), stateful=True, cpu_only=True,
         colocate_with_input=0, doc="Whether a queue is closed.")
