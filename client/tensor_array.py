"""tg.TensorArray: TF1's TensorArray, a list of tensors a step writes and reads by index.

Built on the TensorArrayV3 ops (tensorgrid/ops/tensor_array_ops.py): `handle` names the
array and `flow`, a float scalar, orders the ops on it; `write`, `scatter`, `unstack` and
`split` return a TensorArray with the new flow (use that one, as in TF1). A TensorArray may
be a while_loop variable: it travels as its flow and its handle is captured. With
`infer_shape` the static element shape is merged from every write, shared by the arrays
one write makes from another. Eagerly the same ops run at once. Gradients flow through
reads, writes, stacks and their inverses (client/tensor_array_grad.py).
"""

from tensorgrid.client import array_ops, context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape

__all__ = ["TensorArray"]


class TensorArray:
    """A list of `size` tensors of `dtype` (growing past it with dynamic_size)."""

    def __init__(self, dtype, size=None, dynamic_size=None, clear_after_read=None, tensor_array_name=None,
                 handle=None, flow=None, infer_shape=True, element_shape=None, colocate_with_first_write_call=True,
                 name=None):
        self._dtype = dtypes.as_dtype(dtype)
        self._dynamic_size = bool(dynamic_size)
        self._clear_after_read = True if clear_after_read is None else bool(clear_after_read)
        self._infer_shape = infer_shape
        self._shape = [TensorShape(None) if element_shape is None else as_shape(element_shape)]
        if handle is not None:
            if flow is None:
                raise ValueError("flow must not be None if handle is not None.")
            if size is not None:
                raise ValueError("Cannot provide both a handle and size at the same time")
            self._handle, self._flow = handle, flow
            return
        if size is None:
            raise ValueError("Size must be provided if handle is not provided")
        if flow is not None:
            raise ValueError("Cannot provide both a flow and size at the same time")
        attrs = {"dtype": self._dtype, "element_shape": self._shape[0], "dynamic_size": self._dynamic_size,
                 "clear_after_read": self._clear_after_read, "identical_element_shapes": bool(infer_shape),
                 "tensor_array_name": tensor_array_name or ""}
        size = convert_to_tensor(size, dtype=dtypes.int32)
        self._handle, self._flow = apply_op("TensorArrayV3", [size], attrs, name=name or "TensorArray")

    # ---- identity -------------------------------------------------------------------------
    @property
    def handle(self):
        return self._handle

    @property
    def flow(self):
        return self._flow

    @property
    def dtype(self):
        return self._dtype

    @property
    def dynamic_size(self):
        return self._dynamic_size

    @property
    def element_shape(self):
        return self._shape[0]

    def _with_flow(self, flow):
        """The same array after the op that gave `flow` (a loop's, a write's)."""
        ta = TensorArray.__new__(TensorArray)
        ta.__dict__.update(self.__dict__)
        ta._flow = flow
        return ta

    def _merge_shape(self, shape):
        if not self._infer_shape:
            return
        shape = as_shape(shape)
        if not self._shape[0].is_compatible_with(shape):
            raise ValueError(f"Inconsistent shapes: saw {shape} but expected {self._shape[0]} "
                             f"(and infer_shape=True)")
        self._shape[0] = self._shape[0].merge_with(shape)

    def _value(self, value, name):
        return convert_to_tensor(value, dtype=self._dtype, name=name)

    def _element_attrs(self):
        return {"dtype": self._dtype, "element_shape": self._shape[0]}

    # ---- reading ---------------------------------------------------------------------------
    def read(self, index, name=None):
        """Element `index`."""
        return apply_op("TensorArrayReadV3", [self._handle, _index(index), self._flow], self._element_attrs(),
                        name=name or "TensorArrayReadV3")

    def gather(self, indices, name=None):
        """The elements at `indices`, stacked along a new first axis."""
        return apply_op("TensorArrayGatherV3", [self._handle, _index(indices), self._flow], self._element_attrs(),
                        name=name or "TensorArrayGatherV3")

    def stack(self, name=None):
        """Every element, stacked along a new first axis."""
        with _scope(name, "TensorArrayStack"):
            return self.gather(array_ops.range(0, self.size()))

    def concat(self, name=None):
        """Every element, concatenated along their first axis."""
        dims = self._shape[0].as_tuple()
        rest = TensorShape(None) if dims is None else TensorShape(list(dims[1:]))
        value, _ = apply_op("TensorArrayConcatV3", [self._handle, self._flow],
                            {"dtype": self._dtype, "element_shape_except0": rest},
                            name=name or "TensorArrayConcatV3")
        return value

    def size(self, name=None):
        """The number of elements (an int32 scalar)."""
        return apply_op("TensorArraySizeV3", [self._handle, self._flow], name=name or "TensorArraySizeV3")

    # ---- writing ---------------------------------------------------------------------------
    def write(self, index, value, name=None):
        """Writes element `index`; returns the array after the write."""
        value = self._value(value, "value")
        self._merge_shape(value.shape)
        flow = apply_op("TensorArrayWriteV3", [self._handle, _index(index), value, self._flow],
                        name=name or "TensorArrayWriteV3")
        return self._with_flow(flow)

    def scatter(self, indices, value, name=None):
        """Writes row k of `value` to element indices[k]; returns the array after the writes."""
        value = self._value(value, "value")
        if value.shape.ndims:
            self._merge_shape(TensorShape(value.shape.as_list()[1:]))
        flow = apply_op("TensorArrayScatterV3", [self._handle, _index(indices), value, self._flow],
                        name=name or "TensorArrayScatterV3")
        return self._with_flow(flow)

    def unstack(self, value, name=None):
        """Writes row k of `value` to element k; returns the array after the writes."""
        with _scope(name, "TensorArrayUnstack"):
            value = self._value(value, "value")
            return self.scatter(array_ops.range(0, array_ops.shape(value)[0]), value)

    def split(self, value, lengths, name=None):
        """Writes consecutive row blocks of `value`, of the given lengths, to the elements."""
        value = self._value(value, "value")
        lengths = convert_to_tensor(lengths, dtype=dtypes.int64)
        if value.shape.ndims:
            dims = value.shape.as_list()
            self._merge_shape(TensorShape([None] + dims[1:]))
        flow = apply_op("TensorArraySplitV3", [self._handle, value, lengths, self._flow],
                        name=name or "TensorArraySplitV3")
        return self._with_flow(flow)

    def identity(self):
        """The same array, its flow through an Identity (to order reads after ops outside)."""
        return self._with_flow(array_ops.identity(self._flow))

    def close(self, name=None):
        """Frees the elements."""
        return apply_op("TensorArrayCloseV3", [self._handle], name=name or "TensorArrayCloseV3")

    def grad(self, source, flow=None, name=None):
        """The gradient array of this one for gradient computation `source`."""
        handle, gflow = apply_op("TensorArrayGradV3", [self._handle, self._flow if flow is None else flow],
                                 {"source": source}, name=name or "TensorArrayGrad")
        return TensorArray(self._dtype, handle=handle, flow=gflow, infer_shape=self._infer_shape,
                           element_shape=self._shape[0])

    def __repr__(self):
        return f"<tg.TensorArray dtype={self._dtype.name} element_shape={self._shape[0]}>"


def _index(value):
    return convert_to_tensor(value, dtype=dtypes.int32)


def _scope(name, default):
    from tensorgrid.client import scopes
    if context.executing_eagerly():
        return scopes.name_scope(None)
    return graph_lib.get_default_graph().name_scope(name or default)


from tensorgrid.client import tensor_array_grad  # noqa: E402,F401 - registers the TensorArray ops' gradients
