"""Data types, with TF's DataType enum numbers so GraphDefs read the same."""

import numpy as np


class DType:
    """One element type: its name, its numpy dtype and its wire enum value."""

    __slots__ = ("name", "as_numpy_dtype", "as_datatype_enum")

    def __init__(self, name, np_dtype, enum):
        self.name = name
        self.as_numpy_dtype = np_dtype
        self.as_datatype_enum = enum

    @property
    def is_floating(self):
        return self in (float16, float32, float64)

    @property
    def is_integer(self):
        return self in (int8, int16, int32, int64, uint8)

    @property
    def is_complex(self):
        return self in (complex64, complex128)

    @property
    def is_bool(self):
        return self is bool_

    @property
    def is_numeric(self):
        return self.is_floating or self.is_integer

    @property
    def base_dtype(self):
        return self

    @property
    def real_dtype(self):
        return {"complex64": float32, "complex128": float64}.get(self.name, self)

    @property
    def min(self):
        return np.finfo(self.as_numpy_dtype).min if self.is_floating else np.iinfo(self.as_numpy_dtype).min

    @property
    def max(self):
        return np.finfo(self.as_numpy_dtype).max if self.is_floating else np.iinfo(self.as_numpy_dtype).max

    def __repr__(self):
        return f"tg.{self.name}"

    def __str__(self):
        return f"<dtype: '{self.name}'>"     # TF's str() of a DType

    def __eq__(self, other):
        if isinstance(other, DType):
            return self is other
        try:
            return self is as_dtype(other)
        except TypeError:
            return False

    def __hash__(self):
        return hash(self.name)

    def __reduce__(self):
        return (as_dtype, (self.name,))


float16 = DType("float16", np.float16, 19)
float32 = DType("float32", np.float32, 1)
float64 = DType("float64", np.float64, 2)
int8 = DType("int8", np.int8, 6)
int16 = DType("int16", np.int16, 5)
int32 = DType("int32", np.int32, 3)
int64 = DType("int64", np.int64, 9)
uint8 = DType("uint8", np.uint8, 4)
bool_ = DType("bool", np.bool_, 10)
complex64 = DType("complex64", np.complex64, 8)
complex128 = DType("complex128", np.complex128, 18)
string = DType("string", np.object_, 7)
resource = DType("resource", np.object_, 20)
variant = DType("variant", np.object_, 21)  # TensorArray lists, datasets, iterators: one device's Python objects

half = float16
double = float64

ALL = (float16, float32, float64, int8, int16, int32, int64, uint8, bool_, complex64, complex128, string, resource,
       variant)
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "bool_": bool_, "str": string})
_BY_ENUM = {d.as_datatype_enum: d for d in ALL}
_BY_NUMPY = {np.dtype(d.as_numpy_dtype): d for d in ALL if d.as_numpy_dtype is not np.object_}


def as_dtype(value):
    """Converts a DType, numpy dtype, Python type, enum number or TF1 name to a DType."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        if value in _BY_NAME:
            return _BY_NAME[value]
        raise TypeError(f"unknown dtype name {value!r}; expected one of {sorted(_BY_NAME)}")
    if isinstance(value, int) and not isinstance(value, bool) and value in _BY_ENUM:
        return _BY_ENUM[value]
    if value is float:
        return float32
    if value is int:
        return int32
    if value is bool:
        return bool_
    if value is complex:
        return complex128
    if value is str or value is bytes:
        return string
    if hasattr(value, "as_numpy_dtype"):
        return as_dtype(value.as_numpy_dtype)
    try:
        npd = np.dtype(value)
    except TypeError:
        raise TypeError(f"cannot convert {value!r} to a tensorgrid dtype") from None
    if npd in _BY_NUMPY:
        return _BY_NUMPY[npd]
    if npd.kind in "OSU":
        return string
    raise TypeError(f"numpy dtype {npd} has no tensorgrid equivalent")


def from_enum(enum):
    """The DType for a wire DataType number."""
    try:
        return _BY_ENUM[enum]
    except KeyError:
        raise TypeError(f"unknown DataType enum {enum}") from None
