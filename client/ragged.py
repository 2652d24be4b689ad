"""tg.RaggedTensor: a batch of rows of different lengths, as TF2's tf.RaggedTensor (ragged_rank 1).

A RaggedTensor is its flat `values` (a tensor, or a RaggedTensor for more
ragged dimensions) and int64 `row_splits`: row i is values[row_splits[i]:
row_splits[i + 1]]. It is what tg.strings.split and unicode_decode return.
It travels in structures (Session.run fetches, tg.function results) as its
two tensors; running one gives a RaggedTensorValue, whose `to_list()` gives
the rows as Python lists, as TF1's does.
"""

import numpy as np

from tensorgrid.client import array_ops as ao
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["RaggedTensor", "RaggedTensorValue", "constant"]


def _is_tensor(x):
    return isinstance(x, graph_lib.Tensor) or getattr(x, "_is_eager_tensor", False)


def _rows_of(values, splits):
    return [values[a:b] for a, b in zip(splits[:-1], splits[1:])]


class RaggedTensorValue:
    """What running a RaggedTensor gives: numpy values (or a RaggedTensorValue) and row_splits."""

    def __init__(self, values, row_splits):
        self.values = values
        self.row_splits = np.asarray(row_splits)

    def to_list(self):
        flat = self.values.to_list() if isinstance(self.values, RaggedTensorValue) else np.asarray(self.values).tolist()
        return _rows_of(flat, self.row_splits.tolist())

    def __repr__(self):
        return f"tg.RaggedTensorValue(values={self.values!r}, row_splits={self.row_splits!r})"


class RaggedTensor:
    """Rows of different lengths: row i of the tensor is values[row_splits[i]:row_splits[i+1]]."""

    def __init__(self, values, row_splits, _internal=False):
        if not _internal:
            raise ValueError("RaggedTensor constructor is private; use a factory method such as "
                             "tg.RaggedTensor.from_row_splits")
        self._values = values
        self._row_splits = row_splits

    @classmethod
    def from_row_splits(cls, values, row_splits, name=None, validate=True):
        values = values if isinstance(values, RaggedTensor) else convert_to_tensor(values)
        splits = convert_to_tensor(row_splits, dtype=dtypes.int64) if not _is_tensor(row_splits) else row_splits
        if splits.dtype is not dtypes.int64:
            splits = ao.cast(splits, dtypes.int64)
        if validate and getattr(splits, "_is_eager_tensor", False):
            s = splits.numpy()
            n = (values.nrows() if isinstance(values, RaggedTensor) else values.shape[0])
            if s.ndim != 1 or s.size == 0 or s[0] != 0 or (np.diff(s) < 0).any() or \
                    (n is not None and int(s[-1]) != int(n)):
                from tensorgrid.framework import errors
                raise errors.InvalidArgumentError(
                    None, None, f"row_splits must start at 0, not decrease and end at the number of values, "
                                f"got {s.tolist()}")
        return cls(values, splits, _internal=True)

    @classmethod
    def from_row_lengths(cls, values, row_lengths, name=None, validate=True):
        lengths = np.asarray(row_lengths.numpy() if hasattr(row_lengths, "numpy") else row_lengths)
        if _is_tensor(row_lengths) and not getattr(row_lengths, "_is_eager_tensor", False):
            raise TypeError("from_row_lengths takes row lengths known now (a list or eager tensor)")
        return cls.from_row_splits(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                                   validate=validate)

    @classmethod
    def from_value_rowids(cls, values, value_rowids, nrows=None, name=None, validate=True):
        ids = convert_to_tensor(value_rowids, dtype=dtypes.int64) if not _is_tensor(value_rowids) else value_rowids
        if nrows is None:   # the last row holding a value
            from tensorgrid.client import math_ops
            nrows = math_ops.reduce_max(ao.concat([ids, ao.constant([-1], dtypes.int64)], 0)) + 1
        splits = apply_op("RaggedRowSplitsFromValueRowIds", [ids, convert_to_tensor(nrows, dtype=dtypes.int64)])
        return cls(values if isinstance(values, RaggedTensor) else convert_to_tensor(values), splits, _internal=True)

    @property
    def values(self):
        return self._values

    @property
    def row_splits(self):
        return self._row_splits

    @property
    def flat_values(self):
        v = self._values
        while isinstance(v, RaggedTensor):
            v = v.values
        return v

    @property
    def ragged_rank(self):
        return 1 + (self._values.ragged_rank if isinstance(self._values, RaggedTensor) else 0)

    @property
    def dtype(self):
        return self._values.dtype

    @property
    def shape(self):
        """[nrows, None, ...the values' inner dims]."""
        n = self._row_splits.shape[0]
        inner = self._values.shape
        rest = inner.as_list()[1:] if inner.ndims is not None else None
        if isinstance(self._values, RaggedTensor):
            rest = [None] + (rest or [])
        return TensorShape(None) if rest is None else TensorShape([None if n is None else n - 1, None] + rest)

    def get_shape(self):
        return self.shape

    def nrows(self, out_type=dtypes.int64):
        return ao.cast(ao.shape(self._row_splits, out_type=dtypes.int64)[0] - 1, out_type)

    def row_lengths(self):
        return self._row_splits[1:] - self._row_splits[:-1]

    def with_values(self, new_values):
        return RaggedTensor(new_values, self._row_splits, _internal=True)

    def to_tensor(self, default_value=None, name=None, shape=None):
        """The dense tensor of the rows padded with default_value (zero, or b"" for strings)."""
        if isinstance(self._values, RaggedTensor):
            raise NotImplementedError("to_tensor of a RaggedTensor with ragged_rank > 1")
        if default_value is None:
            default_value = b"" if self.dtype is dtypes.string else ao.zeros([], self.dtype)
        shape_t = convert_to_tensor(-1 if shape is None else list(shape), dtype=dtypes.int64) \
            if not _is_tensor(shape) else shape
        return apply_op("RaggedTensorToTensor",
                        [shape_t, self._values, convert_to_tensor(default_value, dtype=self.dtype),
                         self._row_splits], {"row_partition_types": ["ROW_SPLITS"]},
                        name=name or "RaggedToTensor")

    def to_list(self):
        """The rows as nested Python lists (eager only)."""
        if not getattr(self._row_splits, "_is_eager_tensor", False):
            raise ValueError("RaggedTensor.to_list() is only available eagerly; run it in a session first")
        return self.numpy_value().to_list()

    def numpy_value(self):
        v = self._values.numpy_value() if isinstance(self._values, RaggedTensor) else self._values.numpy()
        return RaggedTensorValue(v, self._row_splits.numpy())

    def numpy(self):
        """An object array holding each row as a numpy array (eager only)."""
        value = self.numpy_value()
        rows = _rows_of(value.values if not isinstance(value.values, RaggedTensorValue) else value.values.to_list(),
                        value.row_splits.tolist())
        out = np.empty(len(rows), dtype=object)
        out[:] = [np.asarray(r) for r in rows]
        return out

    # ---- nest: travels as its values and row splits
    def _nest_parts(self):
        return [self._values, self._row_splits]

    @staticmethod
    def _from_nest_parts(parts):
        values, splits = parts
        if _is_tensor(splits):
            return RaggedTensor(values, splits, _internal=True)
        return RaggedTensorValue(values, splits)

    def __repr__(self):
        if getattr(self._row_splits, "_is_eager_tensor", False):
            return f"<tg.RaggedTensor {self.to_list()}>"
        return f"tg.RaggedTensor(values={self._values!r}, row_splits={self._row_splits!r})"


def constant(pylist, dtype=None, ragged_rank=None, name=None):
    """A RaggedTensor (ragged_rank 1) of a list of rows of scalars."""
    rows = [list(r) for r in pylist]
    flat = [x for r in rows for x in r]
    if dtype is None and not flat:
        dtype = dtypes.float32
    values = ao.constant(np.asarray(flat, dtype=object) if flat and isinstance(flat[0], (bytes, str)) else flat,
                         dtype=dtype)
    return RaggedTensor.from_row_lengths(values, [len(r) for r in rows])
