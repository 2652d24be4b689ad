"""TF1's queues: tf.queue.FIFOQueue, RandomShuffleQueue and PaddingFIFOQueue (also tf.FIFOQueue, ...).

A queue is a stateful resource on its device (ops: tensorgrid/ops/queue_ops.py).
With `shared_name`, every session that names it on that device shares it
(between-graph replicas reaching one queue on a ps task, as TF's
shared_name); without, each session has its own (worker/resources.py).
Every op on the queue is colocated with it. Dequeues wait for elements and
enqueues for room; closing the queue lets dequeues drain it, then raise
OutOfRangeError.
"""

from tensorgrid.client import context, random_ops
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.scopes import current_container, name_scope
from tensorgrid.framework import dtypes as dtypes_lib
from tensorgrid.framework.shapes import TensorShape, as_shape

__all__ = ["QueueBase", "FIFOQueue", "RandomShuffleQueue", "PaddingFIFOQueue"]


def _as_type_list(dtypes):
    if not isinstance(dtypes, (list, tuple)):
        dtypes = [dtypes]
    return [dtypes_lib.as_dtype(d) for d in dtypes]


def _as_shape_list(shapes, count, unknown_dim_allowed=False):
    """TF's reading of `shapes`: None (unknown), one shape, or one shape per component."""
    if unknown_dim_allowed and (not isinstance(shapes, (list, tuple)) or not shapes
                                or any(s is None or isinstance(s, int) for s in shapes)):
        raise ValueError("When providing partial shapes, a list of shapes must be provided.")
    if shapes is None:
        return None
    if isinstance(shapes, TensorShape):
        shapes = [shapes]
    if not isinstance(shapes, (list, tuple)):
        raise TypeError(f"shapes must be a TensorShape or a list or tuple of TensorShapes, got {shapes!r}")
    if all(s is None or isinstance(s, int) for s in shapes):
        shapes = [shapes]
    shapes = [as_shape(s) for s in shapes]
    if len(shapes) != count:
        raise ValueError(f"Queue shapes must have the same length as dtypes: {len(shapes)} shapes for "
                         f"{count} dtypes")
    if not unknown_dim_allowed and any(not s.is_fully_defined() for s in shapes):
        raise ValueError(f"All shapes must be fully defined: {[str(s) for s in shapes]}")
    return shapes


class QueueBase:
    """A queue of tuples of tensors on one device; the base of FIFOQueue and friends."""

    def __init__(self, dtypes, shapes, names, queue_ref):
        self._dtypes = dtypes
        self._shapes = shapes if shapes is not None else [TensorShape(None)] * len(dtypes)
        self._shapes_given = shapes is not None
        if names is not None:
            names = list(names) if isinstance(names, (list, tuple)) else [names]
            if len(names) != len(dtypes):
                raise ValueError("Queue names must have the same length as dtypes")
        self._names = names
        self._queue_ref = queue_ref
        self._eager = context.executing_eagerly()
        self._name = "queue" if self._eager else queue_ref.op.name.split("/")[-1]

    @property
    def queue_ref(self):
        """The queue's resource handle tensor."""
        return self._queue_ref

    @property
    def name(self):
        return self._queue_ref.op.name if not self._eager else self._name

    @property
    def dtypes(self):
        return list(self._dtypes)

    @property
    def shapes(self):
        return list(self._shapes)

    @property
    def names(self):
        return self._names

    # ---- enqueue --------------------------------------------------------------------------------
    def _components(self, vals, many):
        """The enqueued values as a list of tensors in component order, checked against dtypes and shapes."""
        if isinstance(vals, dict):
            if self._names is None:
                raise ValueError("Queue must have names to enqueue a dictionary")
            if sorted(self._names) != sorted(vals):
                raise ValueError(f"Keys in dictionary to enqueue do not match names of Queue. "
                                 f"Dictionary: {sorted(vals)}, Queue: {sorted(self._names)}")
            vals = [vals[k] for k in self._names]
        elif self._names is not None:
            raise ValueError("You must enqueue a dictionary in a Queue with names")
        elif not isinstance(vals, (list, tuple)):
            vals = [vals]
        if len(vals) != len(self._dtypes):
            raise ValueError(f"Expected {len(self._dtypes)} components to enqueue, got {len(vals)}")
        tensors = []
        for i, (v, dt) in enumerate(zip(vals, self._dtypes)):
            t = convert_to_tensor(v, dtype=dt, name=f"component_{i}")
            shape = t.shape
            if many and shape.ndims is not None:
                if shape.ndims == 0:
                    raise ValueError(f"Shape must be at least rank 1 to enqueue_many, component {i} is a scalar")
                shape = TensorShape(shape.as_tuple()[1:])
            if not shape.is_compatible_with(self._shapes[i]):
                raise ValueError(f"Shapes {shape} and {self._shapes[i]} are incompatible "
                                 f"(component {i} of queue {self._name})")
            tensors.append(t)
        return tensors

    def enqueue(self, vals, name=None):
        """Adds one element; in a step, it waits while the queue is full."""
        with name_scope(name, f"{self._name}_enqueue") as scope:
            tensors = self._components(vals, many=False)
            return apply_op("QueueEnqueueV2", [self._queue_ref] + tensors,
                            {"Tcomponents": [t.dtype for t in tensors], "timeout_ms": -1}, name=scope or None)

    def enqueue_many(self, vals, name=None):
        """Adds the slices along dimension 0 of `vals` (each component sliced alike)."""
        with name_scope(name, f"{self._name}_EnqueueMany") as scope:
            tensors = self._components(vals, many=True)
            return apply_op("QueueEnqueueManyV2", [self._queue_ref] + tensors,
                            {"Tcomponents": [t.dtype for t in tensors], "timeout_ms": -1}, name=scope or None)

    # ---- dequeue -------------------------------------------------------------------------------
    def _result(self, outputs, batch_dim):
        outputs = outputs if isinstance(outputs, list) else [outputs]
        if not self._eager:
            for t, shape in zip(outputs, self._shapes):
                if batch_dim is False:
                    t.set_shape(shape)
                elif shape.ndims is not None:
                    t.set_shape(TensorShape([batch_dim] + list(shape.as_tuple())))
        if self._names is not None:
            return dict(zip(self._names, outputs))
        return outputs[0] if len(outputs) == 1 else outputs

    def _attrs(self):
        return {"component_types": list(self._dtypes), "timeout_ms": -1}

    def dequeue(self, name=None):
        """Takes one element: one tensor, a list of them, or a dict when the queue has names."""
        out = apply_op("QueueDequeueV2", [self._queue_ref], self._attrs(), name=name or f"{self._name}_Dequeue")
        return self._result(out, False)

    def dequeue_many(self, n, name=None):
        """Takes n elements batched along a new dimension 0; OutOfRangeError when closed with fewer."""
        n_t = convert_to_tensor(n, dtype=dtypes_lib.int32, name="n")
        out = apply_op("QueueDequeueManyV2", [self._queue_ref, n_t], self._attrs(),
                       name=name or f"{self._name}_DequeueMany")
        return self._result(out, _static_int(n_t))

    def dequeue_up_to(self, n, name=None):
        """As dequeue_many, but once the queue is closed gives the last elements, fewer than n."""
        n_t = convert_to_tensor(n, dtype=dtypes_lib.int32, name="n")
        out = apply_op("QueueDequeueUpToV2", [self._queue_ref, n_t], self._attrs(),
                       name=name or f"{self._name}_DequeueUpTo")
        return self._result(out, None)

    # ---- state ---------------------------------------------------------------------------------
    def close(self, cancel_pending_enqueues=False, name=None):
        """Closes the queue; with cancel_pending_enqueues, waiting enqueues fail with CancelledError."""
        return apply_op("QueueCloseV2", [self._queue_ref],
                        {"cancel_pending_enqueues": bool(cancel_pending_enqueues)},
                        name=name or f"{self._name}_Close")

    def is_closed(self, name=None):
        return apply_op("QueueIsClosedV2", [self._queue_ref], {}, name=name or f"{self._name}_IsClosed")

    def size(self, name=None):
        """The number of elements in the queue (int32)."""
        return apply_op("QueueSizeV2", [self._queue_ref], {}, name=name or f"{self._name}_Size")


def _static_int(t):
    if getattr(t, "_is_eager_tensor", False):
        return int(t.numpy())
    from tensorgrid.client.graph import _const_value
    value = _const_value(t)
    return None if value is None else int(value)


def _queue_attrs(dtypes, shapes, capacity, shared_name):
    attrs = {"component_types": dtypes, "shapes": list(shapes or []), "capacity": int(capacity),
             "container": "", "shared_name": shared_name or ""}
    container = current_container()
    if container:
        attrs["container"] = container
    return attrs


class FIFOQueue(QueueBase):
    """A queue that gives elements back in the order they came."""

    def __init__(self, capacity, dtypes, shapes=None, names=None, shared_name=None, name="fifo_queue"):
        dtypes = _as_type_list(dtypes)
        shapes = _as_shape_list(shapes, len(dtypes))
        ref = apply_op("FIFOQueueV2", [], _queue_attrs(dtypes, shapes, capacity, shared_name), name=name)
        super().__init__(dtypes, shapes, names, ref)


class PaddingFIFOQueue(QueueBase):
    """A FIFOQueue whose dequeue_many pads every component to the largest shape in the batch."""

    def __init__(self, capacity, dtypes, shapes, names=None, shared_name=None, name="padding_fifo_queue"):
        dtypes = _as_type_list(dtypes)
        shapes = _as_shape_list(shapes, len(dtypes), unknown_dim_allowed=True)
        if len(shapes) != len(dtypes):
            raise ValueError(f"Shapes must be provided for all components, but received {len(dtypes)} dtypes "
                             f"and {len(shapes)} shapes.")
        ref = apply_op("PaddingFIFOQueueV2", [], _queue_attrs(dtypes, shapes, capacity, shared_name), name=name)
        super().__init__(dtypes, shapes, names, ref)


class RandomShuffleQueue(QueueBase):
    """A queue that gives elements back in random order, holding min_after_dequeue of them until closed."""

    def __init__(self, capacity, min_after_dequeue, dtypes, shapes=None, names=None, seed=None,
                 shared_name=None, name="random_shuffle_queue"):
        dtypes = _as_type_list(dtypes)
        shapes = _as_shape_list(shapes, len(dtypes))
        attrs = _queue_attrs(dtypes, shapes, capacity, shared_name)
        seed1, seed2 = random_ops.get_seed(seed)
        attrs.update(min_after_dequeue=int(min_after_dequeue), seed=seed1, seed2=seed2)
        ref = apply_op("RandomShuffleQueueV2", [], attrs, name=name)
        super().__init__(dtypes, shapes, names, ref)
