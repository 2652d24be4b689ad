"""TensorArray ops (TF1's TensorArrayV3 family): a list of tensors a step fills and reads.

TensorArrayV3 makes one per run: its handle (a variant holding the array) and a flow, a
float scalar that orders the ops on it (each write gives a new flow; a read takes one).
Every other op takes the handle first and sits on its device. The array is mutable, as
in TF1; what a write, a read and an unwritten element do is TensorFlow 2.21's: a write
to an index written before replaces it (into a gradient array, where several gradients
meet, it adds), a read leaves the element (`clear_after_read` is accepted), an unwritten
element reads as zeros of the element shape, and a `dynamic_size` array grows to fit a
write past its end. TensorArrayGradV3 gives the gradient array of the handle's array for
a `source` (one per gradient computation), made on first use, with the same size and
element shape.
"""

import threading

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.core_ops import to_host
from tensorgrid.ops.registry import register


class TensorArrayState:
    """The array behind a handle: its elements, and the gradient arrays made from it."""

    def __init__(self, name, dtype, size, dynamic_size, element_shape, identical=True, aggregate=False):
        self.name = name
        self.dtype = dtype
        self.items = [None] * size
        self.dynamic_size = dynamic_size
        self.element_shape = element_shape  # TensorShape: known dims (merged with every write when identical)
        self.identical = identical
        self.aggregate = aggregate
        self.grads = {}
        self.closed = False
        self.lock = threading.Lock()

    def where(self, op):
        return f"{op} on TensorArray {self.name}"

    def _check_open(self, op):
        if self.closed:
            raise errors.InvalidArgumentError(None, None, f"{self.where(op)}: the TensorArray has already been closed")

    def write(self, index, value, op, xp):
        with self.lock:
            self._check_open(op)
            if index < 0:
                raise errors.InvalidArgumentError(None, None, f"{self.where(op)}: index {index} is negative")
            if index >= len(self.items):
                if not self.dynamic_size:
                    raise errors.InvalidArgumentError(
                        None, None, f"{self.where(op)}: tried to write to index {index} but array is not resizeable "
                        f"and size is: {len(self.items)}")
                self.items.extend([None] * (index + 1 - len(self.items)))
            shape = tuple(value.shape)
            if not self.element_shape.is_compatible_with(shape):
                raise errors.InvalidArgumentError(
                    None, None, f"{self.where(op)}: could not write to index {index} because the value shape is "
                    f"{list(shape)}, which is incompatible with the TensorArray's element shape: "
                    f"{self.element_shape}")
            if self.identical:
                self.element_shape = self.element_shape.merge_with(TensorShape(shape))
            old = self.items[index]
            self.items[index] = value if old is None or not self.aggregate else old + value

    def read(self, index, op, xp):
        with self.lock:
            self._check_open(op)
            if not 0 <= index < len(self.items):
                raise errors.InvalidArgumentError(
                    None, None, f"{self.where(op)}: tried to read from index {index} but array size is: "
                    f"{len(self.items)}")
            value = self.items[index]
            return self._zeros(index, op, xp) if value is None else value

    def _zeros(self, index, op, xp):
        """An element never written: zeros of the element shape, known from the attr or a written element."""
        shape = self.element_shape
        if not shape.is_fully_defined():
            written = next((v for v in self.items if v is not None), None)
            if written is None:
                raise errors.InvalidArgumentError(
                    None, None, f"{self.where(op)}: could not read from index {index} because it has not yet "
                    f"been written to, and the element shape {self.element_shape} is not fully known")
            shape = TensorShape(written.shape)
        return xp.zeros(shape.as_tuple(), dtype=self.dtype.as_numpy_dtype)

    def size(self):
        with self.lock:
            return len(self.items)


def _describe(node):
    return f"{node.op} '{node.name}' on {node.device}"


def _element(ctx, key="element_shape"):
    shape = ctx.attr(key)
    return None if shape is None else TensorShape(shape).as_tuple()


def _infer_create(ctx):
    return [(dtypes.variant, ()), (dtypes.float32, ())]


def _create_kernel(node):
    dtype = dtypes.as_dtype(node.attr("dtype"))
    shape = TensorShape(node.attr("element_shape"))
    name = node.attr("tensor_array_name") or node.name

    def create(size):
        state = TensorArrayState(name, dtype, int(size), bool(node.attr("dynamic_size", False)), shape,
                                 bool(node.attr("identical_element_shapes", True)))
        return state, np.float32(0)
    return create


register("TensorArrayV3", _infer_create, _create_kernel, stateful=True, num_outputs=2,
         doc="A new TensorArray of `size` elements (attrs dtype, element_shape, dynamic_size, clear_after_read, "
             "identical_element_shapes): its handle and flow.")


def _infer_grad(ctx):
    return [(dtypes.variant, ()), (dtypes.float32, ())]


def _grad_kernel(node):
    source = node.attr("source", "")

    def grad(state, flow):
        with state.lock:
            g = state.grads.get(source)
            if g is None:
                g = state.grads[source] = TensorArrayState(
                    f"{state.name}@{source}", state.dtype, len(state.items), state.dynamic_size,
                    state.element_shape, state.identical, aggregate=True)
        return g, flow
    return grad


register("TensorArrayGradV3", _infer_grad, _grad_kernel, stateful=True, num_outputs=2, colocate_with_input=0,
         doc="The gradient TensorArray of the handle's array for attr source (made on first use; its writes add "
             "up), and a flow.")


def _write_kernel(node):
    op, xp = _describe(node), node.xp

    def write(state, index, value, flow):
        state.write(int(index), value, op, xp)
        return np.float32(0)
    return write


register("TensorArrayWriteV3", lambda ctx: [(dtypes.float32, ())], _write_kernel, stateful=True,
         colocate_with_input=0, doc="Writes element `index`; outputs the new flow.")


def _infer_read(ctx):
    return [(dtypes.as_dtype(ctx.attr("dtype")), _element(ctx))]


def _read_kernel(node):
    op, xp = _describe(node), node.xp

    def read(state, index, flow):
        return state.read(int(index), op, xp)
    return read


register("TensorArrayReadV3", _infer_read, _read_kernel, stateful=True, colocate_with_input=0,
         doc="Element `index` (attr dtype, element_shape).")


def _infer_gather(ctx):
    element = _element(ctx)
    return [(dtypes.as_dtype(ctx.attr("dtype")), None if element is None else (None,) + element)]


def _stacked(values, state, op, xp):
    if not values:
        if not state.element_shape.is_fully_defined():
            raise errors.InvalidArgumentError(
                None, None, f"{state.where(op)}: cannot gather no elements of unknown shape {state.element_shape}")
        return xp.zeros((0,) + state.element_shape.as_tuple(), dtype=state.dtype.as_numpy_dtype)
    try:
        return xp.stack(values)
    except ValueError:
        raise errors.InvalidArgumentError(
            None, None, f"{state.where(op)}: cannot stack elements of shapes "
            f"{sorted({tuple(v.shape) for v in values})}") from None


def _gather_kernel(node):
    op, xp = _describe(node), node.xp

    def gather(state, indices, flow):
        rows = np.asarray(to_host(indices)).reshape(-1)
        return _stacked([state.read(int(i), op, xp) for i in rows], state, op, xp)
    return gather


register("TensorArrayGatherV3", _infer_gather, _gather_kernel, stateful=True, colocate_with_input=0,
         doc="The elements at `indices`, stacked (attrs dtype, element_shape).")


def _scatter_kernel(node):
    op, xp = _describe(node), node.xp

    def scatter(state, indices, value, flow):
        idx = np.asarray(to_host(indices)).reshape(-1)
        if len(idx) != value.shape[0]:
            raise errors.InvalidArgumentError(
                None, None, f"{state.where(op)}: {len(idx)} indices but the value has {value.shape[0]} rows")
        for k, i in enumerate(idx):
            state.write(int(i), value[k], op, xp)
        return np.float32(0)
    return scatter


register("TensorArrayScatterV3", lambda ctx: [(dtypes.float32, ())], _scatter_kernel, stateful=True,
         colocate_with_input=0, doc="Writes row k of `value` to element indices[k]; outputs the new flow.")


def _infer_concat(ctx):
    rest = _element(ctx, "element_shape_except0")
    return [(dtypes.as_dtype(ctx.attr("dtype")), None if rest is None else (None,) + rest), (dtypes.int64, (None,))]


def _concat_kernel(node):
    op, xp = _describe(node), node.xp

    def concat(state, flow):
        values = [state.read(i, op, xp) for i in range(state.size())]
        lengths = np.array([v.shape[0] for v in values], dtype=np.int64)
        if not values:
            rest = state.element_shape.as_tuple()
            if rest is None or any(d is None for d in rest[1:]):
                raise errors.InvalidArgumentError(None, None, f"{state.where(op)}: cannot concat no elements "
                                                  f"of unknown shape")
            return xp.zeros((0,) + tuple(rest[1:]), dtype=state.dtype.as_numpy_dtype), lengths
        return xp.concatenate(values, axis=0), lengths
    return concat


register("TensorArrayConcatV3", _infer_concat, _concat_kernel, stateful=True, num_outputs=2, colocate_with_input=0,
         doc="The elements concatenated along their first axis, and each one's length there.")


def _split_kernel(node):
    op, xp = _describe(node), node.xp

    def split(state, value, lengths, flow):
        lengths = np.asarray(to_host(lengths)).reshape(-1)
        if int(lengths.sum()) != value.shape[0]:
            raise errors.InvalidArgumentError(
                None, None, f"{state.where(op)}: lengths sum to {int(lengths.sum())} but the value has "
                f"{value.shape[0]} rows")
        start = 0
        for i, n in enumerate(lengths):
            state.write(i, value[start:start + int(n)], op, xp)
            start += int(n)
        return np.float32(0)
    return split


register("TensorArraySplitV3", lambda ctx: [(dtypes.float32, ())], _split_kernel, stateful=True,
         colocate_with_input=0, doc="Writes consecutive row blocks of `value`, of the given lengths, to the "
                                    "elements; outputs the new flow.")
register("TensorArraySizeV3", lambda ctx: [(dtypes.int32, ())],
         lambda node: lambda state, flow: np.int32(state.size()), stateful=True, colocate_with_input=0,
         doc="The number of elements.")


def _close_kernel(node):
    def close(state):
        with state.lock:
            state.closed = True
            state.items = []
    return close


register("TensorArrayCloseV3", lambda ctx: [], _close_kernel, stateful=True, num_outputs=0, colocate_with_input=0,
         doc="Frees the elements; later ops on the array fail.")
