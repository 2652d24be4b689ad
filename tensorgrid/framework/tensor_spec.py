"""TensorSpec: the dtype and static shape a tensor must have (TF's tf.TensorSpec)."""

from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape


class TensorSpec:
    """Describes a tensor by its shape (partial shapes allowed), dtype and an optional name."""

    __slots__ = ("_shape", "_dtype", "_name")

    def __init__(self, shape, dtype=dtypes.float32, name=None):
        self._shape = as_shape(shape)
        self._dtype = dtypes.as_dtype(dtype)
        self._name = name

    @classmethod
    def from_tensor(cls, tensor, name=None):
        """The spec of `tensor` (a Tensor, EagerTensor or Variable); its name unless `name` is given."""
        if name is None:
            try:
                name = tensor.op.name
            except AttributeError:  # eager tensors and variables have no op
                name = None
        return cls(tensor.shape, tensor.dtype, name)

    @classmethod
    def from_spec(cls, spec, name=None):
        return cls(spec.shape, spec.dtype, spec.name if name is None else name)

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def name(self):
        return self._name

    def is_compatible_with(self, spec_or_tensor):
        """True when the dtypes are equal and the shapes compatible (a tensor counts by its spec)."""
        return self._dtype == spec_or_tensor.dtype and self._shape.is_compatible_with(spec_or_tensor.shape)

    def most_specific_compatible_type(self, other):
        """The spec both fit: equal dtypes required, dims that differ become unknown."""
        if self._dtype != other.dtype:
            raise ValueError(f"No TypeSpec is compatible with both {self} and {other}")
        return TensorSpec(most_specific_compatible_shape(self._shape, other.shape), self._dtype)

    def __eq__(self, other):
        return (type(other) is type(self) and self._dtype == other._dtype and self._shape == other._shape
                and self._name == other._name)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self._shape, self._dtype, self._name))

    def __repr__(self):
        return f"TensorSpec(shape={self._shape}, dtype={self._dtype!r}, name={self._name!r})"

    def __reduce__(self):
        return (TensorSpec, (self._shape.as_tuple(), self._dtype.name, self._name))


def most_specific_compatible_shape(a, b):
    """The shape of rank a and b share, with each dim they disagree on unknown (unknown rank if ranks differ)."""
    a, b = as_shape(a), as_shape(b)
    if a.ndims is None or b.ndims is None or a.ndims != b.ndims:
        return TensorShape(None)
    return TensorShape([x if x == y else None for x, y in zip(a.as_tuple(), b.as_tuple())])
