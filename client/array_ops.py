"""Array ops front-end: creation, shapes, slicing, gathering (declared in tensorgrid/ops)."""

import numpy as np

from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["constant", "placeholder", "placeholder_with_default", "identity", "stop_gradient",
           "no_op", "group"]


def constant(value, dtype=None, shape=None, name="Const", verify_shape=False):
    """A tensor holding `value` (converted to `dtype`, broadcast or reshaped to `shape` if given)."""
    if getattr(value, "_is_eager_tensor", False):
        value = value.numpy()
    arr, dt = graph_lib.constant_value_array(value, dtype)
    if shape is not None:
        shape = tuple(TensorShape(shape).as_list())
        if arr.size == 1 and int(np.prod(shape)) != 1:
            arr = np.full(shape, arr.reshape(()), dtype=arr.dtype)
        elif arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        elif verify_shape or arr.size != 1:
            raise TypeError(f"Expected Tensor's shape: {shape}, got {arr.shape}.")
    return apply_op("Const", [], {"value": arr, "dtype": dt}, name=name)


def placeholder(dtype, shape=None, name=None):
    """A value that every run must feed; shape None means any shape."""
    dtype = dtypes.as_dtype(dtype)
    if graph_lib.context.executing_eagerly():
        raise RuntimeError("tg.placeholder() is not compatible with eager execution.")
    return apply_op("Placeholder", [], {"dtype": dtype, "shape": TensorShape(shape)}, name=name or "Placeholder")


def placeholder_with_default(input, shape, name=None):  # noqa: A002 - TF's argument name
    """`input` unless the run feeds a value of shape `shape`."""
    return apply_op("PlaceholderWithDefault", [convert_to_tensor(input)], {"shape": TensorShape(shape)},
                    name=name or "PlaceholderWithDefault")


def identity(input, name=None):  # noqa: A002
    return apply_op("Identity", [input], name=name or "Identity")


def stop_gradient(input, name=None):  # noqa: A002
    return apply_op("StopGradient", [input], name=name or "StopGradient")


def no_op(name=None):
    return apply_op("NoOp", [], name=name or "NoOp")


def group(*inputs, name=None):
    """An op that runs all `inputs` (ops or tensors, possibly in lists)."""
    flat = []

    def walk(x):
        if isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif x is not None:
            flat.append(x)
    walk(inputs)
    if graph_lib.context.executing_eagerly():
        return None
    g = graph_lib.get_default_graph()
    with g.control_dependencies(flat):
        return no_op(name=name or "group_deps")
