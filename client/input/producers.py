"""TF1's input producers: queues of inputs that queue runners refill, epoch after epoch.

`input_producer` and its friends return a FIFOQueue (slice_input_producer
returns the dequeued slices) and add its QueueRunner to the graph; once
`num_epochs` (a local variable counting epochs, so run
`local_variables_initializer()`) is reached the queue closes, and dequeues
raise OutOfRangeError after the last element.
"""

from tensorgrid.client import array_ops, random_ops, variables
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.input import queue_runner
from tensorgrid.client.queues import FIFOQueue
from tensorgrid.client.scopes import control_dependencies, name_scope
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["limit_epochs", "input_producer", "string_input_producer", "range_input_producer",
           "slice_input_producer"]


def limit_epochs(tensor, num_epochs=None, name=None):
    """`tensor`, but each evaluation counts one epoch; OutOfRangeError after num_epochs of them."""
    if num_epochs is None:
        return tensor
    if num_epochs <= 0:
        raise ValueError(f"num_epochs must be > 0 not {num_epochs}.")
    with name_scope(name, "limit_epochs") as scope:
        epochs = variables.Variable(convert_to_tensor(0, dtype=dtypes.int64), name="epochs", trainable=False,
                                    collections=[variables.GraphKeys.LOCAL_VARIABLES])
        counter = epochs.count_up_to(num_epochs)
        with control_dependencies([counter]):
            return array_ops.identity(tensor, name=scope or None)


def input_producer(input_tensor, element_shape=None, num_epochs=None, shuffle=True, seed=None, capacity=32,
                   shared_name=None, summary_name=None, name=None, cancel_op=None):
    """A FIFOQueue that a QueueRunner fills with the rows of `input_tensor`, shuffled each epoch if asked."""
    with name_scope(name, "input_producer"):
        input_tensor = convert_to_tensor(input_tensor, name="input_tensor")
        element_shape = TensorShape(input_tensor.shape.as_tuple()[1:] if input_tensor.shape.ndims else None) \
            .merge_with(TensorShape(element_shape))
        if not element_shape.is_fully_defined():
            raise ValueError("Either `input_tensor` must have a fully defined shape or `element_shape` must be "
                             "specified")
        if shuffle:
            input_tensor = random_ops.random_shuffle(input_tensor, seed=seed)
        input_tensor = limit_epochs(input_tensor, num_epochs)
        queue = FIFOQueue(capacity=capacity, dtypes=[input_tensor.dtype], shapes=[element_shape],
                          shared_name=shared_name, name=name)
        enq = queue.enqueue_many([input_tensor])
        queue_runner.add_queue_runner(queue_runner.QueueRunner(queue, [enq], cancel_op=cancel_op))
        return queue


def string_input_producer(string_tensor, num_epochs=None, shuffle=True, seed=None, capacity=32,
                          shared_name=None, name=None, cancel_op=None):
    """A queue of the strings (file names, usually) of `string_tensor`."""
    with name_scope(name, "input_producer") as scope:
        string_tensor = convert_to_tensor(string_tensor, dtype=dtypes.string)
        if string_tensor.shape.is_fully_defined() and string_tensor.shape.num_elements() == 0:
            raise ValueError("string_input_producer requires a non-null input tensor")
        return input_producer(string_tensor, [], num_epochs, shuffle, seed, capacity, shared_name,
                              "fraction_of_%d_full" % capacity, scope or None, cancel_op)


def range_input_producer(limit, num_epochs=None, shuffle=True, seed=None, capacity=32, shared_name=None,
                         name=None):
    """A queue of the integers 0 .. limit-1."""
    with name_scope(name, "input_producer") as scope:
        range_tensor = array_ops.range(limit)
        return input_producer(range_tensor, [], num_epochs, shuffle, seed, capacity, shared_name,
                              "fraction_of_%d_full" % capacity, scope or None)


def slice_input_producer(tensor_list, num_epochs=None, shuffle=True, seed=None, capacity=32, shared_name=None,
                         name=None):
    """One row of every tensor in `tensor_list` per evaluation (the same row of each), epoch after epoch."""
    with name_scope(name, "input_producer"):
        tensor_list = [convert_to_tensor(t) for t in tensor_list]
        if not tensor_list:
            raise ValueError("Expected at least one tensor in slice_input_producer().")
        range_size = array_ops.shape(tensor_list[0])[0]
        queue = range_input_producer(range_size, num_epochs=num_epochs, shuffle=shuffle, seed=seed,
                                     capacity=capacity, shared_name=shared_name)
        index = queue.dequeue()
        return [array_ops.gather(t, index) for t in tensor_list]
