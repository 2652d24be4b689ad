"""The structure of dataset elements: nests of components, each described by a TensorSpec.

An element is a nest (tuples, dicts, namedtuples) of tensors; a dataset op
sees its flat list of components. A `Structure` holds the nest spec (the
format of client/nest.py) and one TensorSpec per component, and rebuilds
elements from flat values. As in TF, Python lists in a dataset's input are
tensors (packed), while a list a function returns is a tuple.
"""

from tensorgrid.client import graph as graph_lib
from tensorgrid.client import nest
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape
from tensorgrid.framework.tensor_spec import TensorSpec, most_specific_compatible_shape


class DatasetSpec(TensorSpec):
    """A component that is itself a dataset (window's): a variant scalar, with its elements' Structure."""

    __slots__ = ("structure",)

    def __init__(self, structure):
        super().__init__([], dtypes.variant)
        self.structure = structure

    @property
    def element_spec(self):
        return self.structure.element_spec

    def __eq__(self, other):
        return type(other) is DatasetSpec and repr(other.structure) == repr(self.structure)

    def __hash__(self):
        return hash(repr(self.structure))

    def __repr__(self):
        return f"DatasetSpec({self.element_spec!r}, TensorShape([]))"


def _as_dataset(value, spec):
    """A dataset component's tensor as a Dataset of its structure (other values as they are)."""
    if not (isinstance(value, graph_lib.Tensor) or getattr(value, "_is_eager_tensor", False)):
        return value
    from tensorgrid.client.data.dataset_ops import Dataset
    return Dataset(value, spec.structure)


class Structure:
    """An element's nest spec and its components' TensorSpecs (DatasetSpecs for dataset components)."""

    __slots__ = ("nest", "specs")

    def __init__(self, nest_spec, specs):
        self.nest = nest_spec
        self.specs = list(specs)

    @classmethod
    def from_element_spec(cls, element_spec):
        """The structure an element_spec (a nest of TensorSpecs) describes."""
        specs = []

        def leaf(x):
            if not isinstance(x, TensorSpec):
                raise TypeError(f"an element spec holds tg.TensorSpec leaves, not {x!r}")
            return x
        spec = nest.flatten(element_spec, leaf, specs)
        return cls(spec, specs)

    @property
    def element_spec(self):
        return nest.rebuild(self.nest, self.specs)

    @property
    def types(self):
        return [s.dtype for s in self.specs]

    @property
    def shapes(self):
        return [s.shape for s in self.specs]

    def arg_specs(self):
        """(dtype, shape tuple) per component: the arguments of a function over elements."""
        return [(s.dtype, s.shape.as_tuple()) for s in self.specs]

    def rebuild(self, values):
        """The element of these component values (the tensors of dataset components as Datasets)."""
        if any(type(s) is DatasetSpec for s in self.specs):
            values = [_as_dataset(v, s) if type(s) is DatasetSpec else v for v, s in zip(values, self.specs)]
        return nest.rebuild(self.nest, values)

    def same_nest(self, other):
        return _shape_of(self.nest) == _shape_of(other.nest)

    def __repr__(self):
        return repr(self.element_spec)


class Structured:
    """element_spec and TF1's output_types / output_shapes / output_classes, from `self._structure`."""

    @property
    def element_spec(self):
        """The structure of an element: a nest of tg.TensorSpec."""
        return self._structure.element_spec

    @property
    def output_types(self):
        """TF1's name: the nest of component dtypes."""
        return self._structure.rebuild(self._structure.types)

    @property
    def output_shapes(self):
        """TF1's name: the nest of component TensorShapes."""
        return self._structure.rebuild(self._structure.shapes)

    @property
    def output_classes(self):
        """TF1's name: the nest of component classes (tg.Tensor)."""
        return self._structure.rebuild([graph_lib.Tensor] * len(self._structure.specs))


def _shape_of(spec):
    """The nest spec's structure without leaf numbers, to compare two structures."""
    kind = spec[0]
    if kind == "leaf":
        return "leaf"
    if kind == "const":
        return ("const", spec[1])
    if kind == "dict":
        return ("dict", tuple(sorted((k, _shape_of(v)) for k, v in spec[2])))
    return (kind, spec[1], tuple(_shape_of(v) for v in spec[2]))


def _flatten_input(value, leaves):
    """flatten() of a dataset input: tuples, dicts and namedtuples are structure, anything else a tensor."""
    if isinstance(value, dict):
        return ("dict", type(value), [(k, _flatten_input(v, leaves)) for k, v in value.items()])
    if isinstance(value, tuple):
        kind = "namedtuple" if hasattr(value, "_fields") else "seq"
        return (kind, type(value), [_flatten_input(v, leaves) for v in value])
    leaves.append(value)
    return ("leaf", len(leaves) - 1)


def tensors_of(value):
    """(nest spec, tensors) of a dataset input (from_tensors, from_tensor_slices, initial states)."""
    leaves = []
    spec = _flatten_input(value, leaves)
    if not leaves:
        raise ValueError(f"a dataset element needs at least one tensor, got {value!r}")
    return spec, [graph_lib.convert_to_tensor(v) for v in leaves]


def results_of(value, what):
    """A function's return value with lists as tuples and every leaf a tensor (the traced results)."""
    if value is None:
        raise TypeError(f"the function passed to {what} returned None; it must return a tensor or a nest of them")
    if isinstance(value, dict):
        return type(value)((k, results_of(v, what)) for k, v in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[results_of(v, what) for v in value])
    if isinstance(value, (list, tuple)):
        return tuple(results_of(v, what) for v in value)
    if hasattr(value, "_nest_parts"):
        return value  # a composite (a SparseTensor): its parts are the results
    from tensorgrid.client import array_ops
    t = graph_lib.convert_to_tensor(value)
    # A result that is an argument itself gets a node of its own to fetch.
    return array_ops.identity(t) if t.op.type == "Placeholder" else t


def from_tensors(spec, tensors, sliced=False):
    """The Structure of an element made of `tensors` (their slices along dim 0 if `sliced`)."""
    specs = []
    for t in tensors:
        shape = t.shape
        if sliced:
            if shape.ndims == 0:
                raise ValueError("Unbatching a tensor is only supported for rank >= 1")
            shape = TensorShape(None) if shape.ndims is None else TensorShape(shape.as_tuple()[1:])
        specs.append(TensorSpec(shape, t.dtype))
    return Structure(spec, specs)


def from_types_and_shapes(output_types, output_shapes=None, what="iterator"):
    """The Structure TF1's (output_types, output_shapes) pair describes; shapes unknown when omitted."""
    type_leaves = []
    spec = nest.flatten(output_types, lambda t: dtypes.as_dtype(t), type_leaves)
    if output_shapes is None:
        shapes = [TensorShape(None)] * len(type_leaves)
    else:
        try:
            shapes = [as_shape(s) for s in nest.flatten_up_to(spec, output_shapes, f"{what}: output_shapes")]
        except TypeError as e:
            raise TypeError(f"{e}; output_shapes must have the structure of output_types ({output_types!r})") from None
    return Structure(spec, [TensorSpec(s, t) for s, t in zip(shapes, type_leaves)])


def compatible(a, b, what):
    """The Structure both `a` and `b` fit (dims that differ unknown); TypeError when they do not match."""
    if not a.same_nest(b) or a.types != b.types:
        raise TypeError(f"Incompatible dataset elements in {what}:\n  {a.element_spec}\nvs.\n  {b.element_spec}")
    return Structure(a.nest, [TensorSpec(most_specific_compatible_shape(x.shape, y.shape), x.dtype)
                              for x, y in zip(a.specs, b.specs)])
