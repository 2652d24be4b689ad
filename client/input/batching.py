"""TF1's queue-based batching: tf.train.batch, shuffle_batch, batch_join and shuffle_batch_join.

Each builds a queue of the given tensors (a FIFOQueue, a PaddingFIFOQueue
with dynamic_pad, a RandomShuffleQueue for the shuffling ones), a
QueueRunner whose threads enqueue them, and returns the dequeued batch in
the structure given: a list, a dict, or one tensor (also for a list of one,
as TF returns it).
"""

from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.input import queue_runner
from tensorgrid.client.queues import FIFOQueue, PaddingFIFOQueue, RandomShuffleQueue
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework.shapes import TensorShape, as_shape

__all__ = ["batch", "shuffle_batch", "batch_join", "shuffle_batch_join"]


def _as_tensor_list(tensors):
    if isinstance(tensors, dict):
        return [tensors[k] for k in sorted(tensors, key=str)]
    if isinstance(tensors, (list, tuple)):
        return list(tensors)
    return [tensors]


def _as_original_type(original, dequeued):
    if isinstance(original, dict):
        if not isinstance(dequeued, list):
            dequeued = [dequeued]
        return {k: dequeued[i] for i, k in enumerate(sorted(original, key=str))}
    return dequeued


def _validate(tensor_list):
    tensors = [convert_to_tensor(t) for t in tensor_list]
    if not tensors:
        raise ValueError("Expected at least one tensor in batch().")
    return tensors


def _dtypes(tensor_list_list):
    types = [t.dtype for t in tensor_list_list[0]]
    for other in tensor_list_list[1:]:
        if [t.dtype for t in other] != types:
            raise TypeError(f"Expected types to be consistent: {[d.name for d in types]} vs. "
                            f"{[t.dtype.name for t in other]}.")
    return types


def _shapes(tensor_list_list, shapes, enqueue_many, dynamic_pad=False):
    """The queue's component shapes: given, or the tensors' static shapes merged across the lists."""
    if shapes is not None:
        return [as_shape(s) for s in shapes]
    first = tensor_list_list[0]
    out = []
    for i in range(len(first)):
        shape = TensorShape(None)
        for tl in tensor_list_list:
            s = tl[i].shape
            if enqueue_many:
                if s.ndims is not None and s.ndims == 0:
                    raise ValueError(f"Shape must be at least rank 1 to enqueue_many, got {tl[i].name}")
                s = TensorShape(None if s.ndims is None else s.as_tuple()[1:])
            shape = shape.merge_with(s)
        if not dynamic_pad and not shape.is_fully_defined():
            raise ValueError(f"All shapes must be fully defined: {[str(t.shape) for t in first]}")
        out.append(shape)
    return out


def _enqueue_ops(queue, tensor_list_list, enqueue_many, threads):
    """The queue runner: one enqueue op per list (batch: one op, run by `threads` threads)."""
    enqueue = queue.enqueue_many if enqueue_many else queue.enqueue
    ops = [enqueue(tl) for tl in tensor_list_list]
    if len(ops) == 1:
        ops = ops * threads
    queue_runner.add_queue_runner(queue_runner.QueueRunner(queue, ops))


def _dequeue(queue, batch_size, allow_smaller_final_batch, name):
    if allow_smaller_final_batch:
        return queue.dequeue_up_to(batch_size, name=name)
    return queue.dequeue_many(batch_size, name=name)


def _batch(tensors_list, original, batch_size, capacity, enqueue_many, shapes, dynamic_pad,
           allow_smaller_final_batch, shared_name, name, default_name, threads_of_one=1):
    with name_scope(name, default_name) as scope:
        tensor_list_list = [_validate(tl) for tl in tensors_list]
        types = _dtypes(tensor_list_list)
        shapes = _shapes(tensor_list_list, shapes, enqueue_many, dynamic_pad)
        queue_class = PaddingFIFOQueue if dynamic_pad else FIFOQueue
        queue = queue_class(capacity=capacity, dtypes=types, shapes=shapes, shared_name=shared_name)
        _enqueue_ops(queue, tensor_list_list, enqueue_many, threads_of_one)
        dequeued = _dequeue(queue, batch_size, allow_smaller_final_batch, scope or None)
        return _as_original_type(original, dequeued)


def _shuffle_batch(tensors_list, original, batch_size, capacity, min_after_dequeue, seed, enqueue_many, shapes,
                   allow_smaller_final_batch, shared_name, name, default_name, threads_of_one=1):
    with name_scope(name, default_name) as scope:
        tensor_list_list = [_validate(tl) for tl in tensors_list]
        types = _dtypes(tensor_list_list)
        shapes = _shapes(tensor_list_list, shapes, enqueue_many)
        queue = RandomShuffleQueue(capacity=capacity, min_after_dequeue=min_after_dequeue, seed=seed,
                                   dtypes=types, shapes=shapes, shared_name=shared_name)
        _enqueue_ops(queue, tensor_list_list, enqueue_many, threads_of_one)
        dequeued = _dequeue(queue, batch_size, allow_smaller_final_batch, scope or None)
        return _as_original_type(original, dequeued)


def batch(tensors, batch_size, num_threads=1, capacity=32, enqueue_many=False, shapes=None, dynamic_pad=False,
          allow_smaller_final_batch=False, shared_name=None, name=None):
    """Batches of `batch_size` of `tensors`, enqueued by `num_threads` queue-runner threads."""
    return _batch([_as_tensor_list(tensors)], tensors, batch_size, capacity, enqueue_many, shapes, dynamic_pad,
                  allow_smaller_final_batch, shared_name, name, "batch", threads_of_one=num_threads)


def batch_join(tensors_list, batch_size, capacity=32, enqueue_many=False, shapes=None, dynamic_pad=False,
               allow_smaller_final_batch=False, shared_name=None, name=None):
    """Batches drawn from several lists of tensors, one enqueueing thread each."""
    return _batch([_as_tensor_list(t) for t in tensors_list], tensors_list[0], batch_size, capacity,
                  enqueue_many, shapes, dynamic_pad, allow_smaller_final_batch, shared_name, name, "batch_join")


def shuffle_batch(tensors, batch_size, capacity, min_after_dequeue, num_threads=1, seed=None, enqueue_many=False,
                  shapes=None, allow_smaller_final_batch=False, shared_name=None, name=None):
    """Batches of `tensors` in random order, from a queue that keeps min_after_dequeue of them to mix."""
    return _shuffle_batch([_as_tensor_list(tensors)], tensors, batch_size, capacity, min_after_dequeue, seed,
                          enqueue_many, shapes, allow_smaller_final_batch, shared_name, name, "shuffle_batch",
                          threads_of_one=num_threads)


def shuffle_batch_join(tensors_list, batch_size, capacity, min_after_dequeue, seed=None, enqueue_many=False,
                       shapes=None, allow_smaller_final_batch=False, shared_name=None, name=None):
    """shuffle_batch over several lists of tensors, one enqueueing thread each."""
    return _shuffle_batch([_as_tensor_list(t) for t in tensors_list], tensors_list[0], batch_size, capacity,
                          min_after_dequeue, seed, enqueue_many, shapes, allow_smaller_final_batch, shared_name,
                          name, "shuffle_batch_join")
