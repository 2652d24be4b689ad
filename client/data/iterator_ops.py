"""Iterators over datasets: Python iteration in eager mode, TF1's graph-mode iterators.

Eagerly, `iter(dataset)` gives an OwnedIterator: it walks the runtime
dataset the eager variant holds, in this process, with no op per element.

In graph mode an iterator is a resource op (IteratorV2, or OneShotIterator)
whose state lives in the resource store of the device it is placed on, so
it keeps its position across steps; `get_next()` is an IteratorGetNext op
that raises OutOfRangeError at the end, and on every run after it until
the iterator is initialized again. Iterator ops are colocated with their
datasets, so the whole pipeline runs where the iterator is placed, and its
elements reach consumers on other devices through send/recv.

- `make_initializable_iterator`: IteratorV2 + a MakeIterator initializer
  over the dataset's ops in the graph (placeholders they use are fed when
  the initializer runs).
- `make_one_shot_iterator`: OneShotIterator, whose function attr holds a
  copy of the dataset's ops (captured by value, as TF does: placeholders
  and stateful ops such as variables cannot be, ValueError), run once,
  the first time the iterator is used.
- `Iterator.from_structure` + `make_initializer(dataset)`: one iterator
  reinitialized on datasets of the same structure.
"""

import itertools
import uuid

from tensorgrid.client import context, eager
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.data import structure as structure_lib
from tensorgrid.client.eager import EagerTensor
from tensorgrid.client.function import FuncGraph
from tensorgrid.client.graph import apply_op
from tensorgrid.framework import dtypes, errors
from tensorgrid.ops import registry
from tensorgrid.runtime import ir
from tensorgrid.worker.data.iterator import IteratorState

__all__ = ["IteratorBase", "OwnedIterator", "Iterator", "make_one_shot_iterator", "make_initializable_iterator",
           "get_output_types", "get_output_shapes", "get_output_classes"]

_factory_ids = itertools.count(1)


class IteratorBase(structure_lib.Structured):
    """What every iterator has: element_spec and get_next() (tg.data.Iterator)."""

    def get_next(self, name=None):
        raise NotImplementedError


class OwnedIterator(IteratorBase):
    """An eager iterator over a dataset: elements as eager tensors, StopIteration at the end.

    Its state sits in the eager resource store, so `next(iterator)` inside a
    tg.function it was passed to is an IteratorGetNext op on that state: each
    call of the function takes the next element (OutOfRangeError at the end).
    """

    def __init__(self, dataset):
        if not context.executing_eagerly():
            raise RuntimeError("OwnedIterator is only supported in eager mode.")
        self._structure = dataset._structure
        self._name = f"owned_iterator_{uuid.uuid4().hex[:16]}"
        self._store = eager.resources()
        self._state = self._store.resource(self._name, lambda: IteratorState(("", self._name, "")))
        self._state.initialize(dataset._runtime("Python-style iteration"))

    def __iter__(self):
        return self

    def __next__(self):
        if not context.executing_eagerly():
            return self._traced_next()
        try:
            values = self._state.get_next()
        except errors.OutOfRangeError:
            raise StopIteration from None
        return self._eager(values)

    next = __next__

    def get_next(self, name=None):
        """The next element; OutOfRangeError ("End of sequence") at the end."""
        if not context.executing_eagerly():
            return self._traced_next(name)
        return self._eager(self._state.get_next())

    def _eager(self, values):
        return self._structure.rebuild([EagerTensor(v, s.dtype) for v, s in zip(values, self._structure.specs)])

    def _traced_next(self, name=None):
        g = graph_lib.get_default_graph()
        root = g
        while getattr(root, "outer_graph", None) is not None:
            root = root.outer_graph
        if not isinstance(root, FuncGraph):
            raise RuntimeError("an eager dataset iterator can be advanced in eager code or in a tg.function it "
                               "is passed to, not in a TF1 graph: use make_one_shot_iterator() there")
        s = self._structure
        resource = apply_op("IteratorV2", [], {"shared_name": self._name, "container": "", "output_types": s.types,
                                               "output_shapes": s.shapes}, name="Iterator")
        return _get_next(resource, s, name)

    def __del__(self):
        store = getattr(self, "_store", None)
        if store is not None:
            store.drop(self._name)
            self._state.close()


def _numpy(value):
    """A component as as_numpy_iterator hands it out: 0-d as a NumPy scalar (bytes for strings), arrays writable."""
    if value.ndim == 0:
        return value[()]
    return value if value.flags.writeable else value.copy()


class NumpyIterator(OwnedIterator):
    """Dataset.as_numpy_iterator(): elements as NumPy values."""

    def __next__(self):
        try:
            values = self._state.get_next()
        except errors.OutOfRangeError:
            raise StopIteration from None
        return self._structure.rebuild([_numpy(v) for v in values])

    next = __next__


class Iterator(IteratorBase):
    """TF1's graph-mode iterator (tf.compat.v1.data.Iterator): a resource op and its initializer."""

    def __init__(self, iterator_resource, initializer, structure):
        self._iterator_resource = iterator_resource
        self._initializer = initializer
        self._structure = structure

    @staticmethod
    def from_structure(output_types, output_shapes=None, shared_name=None, output_classes=None):
        """An uninitialized iterator for elements of this structure; initialize it with make_initializer."""
        s = structure_lib.from_types_and_shapes(output_types, output_shapes)
        return Iterator(_iterator_op(s, shared_name), None, s)

    @property
    def initializer(self):
        """The op that (re)starts this iterator on its dataset."""
        if self._initializer is None:
            raise ValueError("The iterator does not have an initializer. This means it was likely created using "
                             "`tf.data.Dataset.make_one_shot_iterator()`. For an initializable iterator, use "
                             "`tf.data.Dataset.make_initializable_iterator()` instead.")
        return self._initializer

    def make_initializer(self, dataset, name=None):
        """An op that starts this iterator on `dataset`, whose elements must have its structure."""
        theirs = dataset._structure
        mine = self._structure
        if not mine.same_nest(theirs):
            raise TypeError(f"The two structures don't have the same nested structure.\n\nFirst structure: "
                            f"{self.output_types}\n\nSecond structure: {dataset.output_types}")
        if mine.types != theirs.types:
            raise TypeError(f"Expected output types {_show(mine.rebuild(mine.types))} but got dataset with output "
                            f"types {_show(theirs.rebuild(theirs.types))}.")
        if not all(a.is_compatible_with(b) for a, b in zip(mine.shapes, theirs.shapes)):
            raise TypeError(f"Expected output shapes compatible with {mine.rebuild(mine.shapes)} but got dataset "
                            f"with output shapes {theirs.rebuild(theirs.shapes)}.")
        return apply_op("MakeIterator", [dataset._variant_tensor, self._iterator_resource], name=name or "MakeIterator")

    def get_next(self, name=None):
        """The next element: tensors of an IteratorGetNext op, which raises OutOfRangeError at the end."""
        return _get_next(self._iterator_resource, self._structure, name)

    def string_handle(self, name=None):
        """A string tensor naming this iterator, for Iterator.from_string_handle (feedable iterators)."""
        return apply_op("IteratorToStringHandle", [self._iterator_resource], name=name or "IteratorToStringHandle")

    @staticmethod
    def from_string_handle(string_handle, output_types, output_shapes=None, output_classes=None):
        """An iterator that is, at each run, whichever iterator the fed `string_handle` names.

        The iterators it switches between must be on the device it is placed
        on (InvalidArgumentError naming both otherwise).
        """
        s = structure_lib.from_types_and_shapes(output_types, output_shapes)
        handle = graph_lib.convert_to_tensor(string_handle, dtype=dtypes.string)
        resource = apply_op("IteratorFromStringHandleV2", [handle], {"output_types": s.types, "output_shapes": s.shapes},
                            name="IteratorFromStringHandleV2")
        return Iterator(resource, None, s)


def _get_next(resource, structure, name=None):
    out = apply_op("IteratorGetNext", [resource], {"output_types": structure.types, "output_shapes": structure.shapes},
                   name=name or "IteratorGetNext")
    return structure.rebuild(list(out) if isinstance(out, (list, tuple)) else [out])


def _show(types):
    return repr(types) if isinstance(types, dtypes.DType) else types


def _iterator_op(structure, shared_name, op_type="IteratorV2", attrs=None):
    """The iterator resource op: its session's own, or shared by the sessions naming `shared_name`."""
    a = {"shared_name": shared_name or "", "container": "",
         "output_types": structure.types, "output_shapes": structure.shapes}
    a.update(attrs or {})
    return apply_op(op_type, [], a, name="Iterator" if op_type == "IteratorV2" else op_type)


def make_initializable_iterator(dataset, shared_name=None):
    """TF1: an Iterator whose `initializer` (re)starts it on `dataset` (tf.compat.v1.data.make_initializable_iterator)."""
    if context.executing_eagerly():
        raise RuntimeError("dataset.make_initializable_iterator is not supported when eager execution is enabled. "
                           "Use `for element in dataset` instead.")
    s = dataset._structure
    resource = _iterator_op(s, shared_name)
    it = Iterator(resource, None, s)
    it._initializer = it.make_initializer(dataset)
    return it


def make_one_shot_iterator(dataset):
    """TF1: an Iterator that starts itself on first use (tf.compat.v1.data.make_one_shot_iterator); eagerly, iter(dataset)."""
    if context.executing_eagerly():
        return OwnedIterator(dataset)
    factory = _dataset_factory(dataset)
    resource = _iterator_op(dataset._structure, None, "OneShotIterator", {"dataset_factory": factory})
    return Iterator(resource, None, dataset._structure)


# Stateful ops a one-shot iterator's dataset may still hold: they run in the iterator's own pass.
_BY_VALUE_STATEFUL = {"GeneratorDataset"}


def _dataset_factory(dataset):
    """A Function of no arguments holding a copy of the ops that make `dataset`, returning its variant."""
    variant = dataset._variant_tensor
    g = variant.graph
    needed, stack = set(), [variant.op]
    while stack:
        op = stack.pop()
        if op.name in needed:
            continue
        if op.type in ("Placeholder", "PlaceholderWithDefault"):
            raise ValueError(f"Cannot capture a placeholder (name:{op.name}, type:{op.type}) by value.")
        if registry.get(op.type).stateful and op.type not in _BY_VALUE_STATEFUL:
            raise ValueError(
                f"Cannot capture a stateful node (name:{op.name}, type:{op.type}) by value.: A likely cause of this "
                "error is that the dataset for which you are calling `make_one_shot_iterator()` captures a stateful "
                "object, such as a `tf.Variable` or `tf.lookup.StaticHashTable`, which is not supported. Use "
                "`make_initializable_iterator()` instead.")
        needed.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    body = ir.GraphIR()
    for op in g.get_operations():
        if op.name in needed:
            body.add(op._node.copy(device=""))
    return ir.Function(f"make_dataset_{next(_factory_ids)}", body, [], [variant.name], [(dtypes.variant, ())])


def get_output_types(dataset_or_iterator):
    return dataset_or_iterator.output_types


def get_output_shapes(dataset_or_iterator):
    return dataset_or_iterator.output_shapes


def get_output_classes(dataset_or_iterator):
    return dataset_or_iterator.output_classes

