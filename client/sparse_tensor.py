"""tg.SparseTensor: a tensor stored as the coordinates and values of its non-default elements.

`SparseTensor(indices, values, dense_shape)` is three tensors: int64
`indices` [N, rank], `values` [N] and int64 `dense_shape` [rank]; the
elements not listed are zero. It flattens to those three wherever tensors
travel in a structure (Session.run fetches and feeds, tg.function results,
dataset elements), so `sess.run` gives a SparseTensorValue of numpy arrays
and a SparseTensorValue (or a 3-tuple) can be fed for one. Ops on it are
`tg.sparse.*` (client/sparse_ops.py).
"""

import collections

import numpy as np

from tensorgrid.client import graph as graph_lib
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["SparseTensor", "SparseTensorValue"]

SparseTensorValue = collections.namedtuple("SparseTensorValue", ["indices", "values", "dense_shape"])
SparseTensorValue.__doc__ = "What running a SparseTensor gives: numpy indices, values and dense_shape."


def _is_tensor(x):
    return isinstance(x, graph_lib.Tensor) or getattr(x, "_is_eager_tensor", False)


class SparseTensor:
    """Elements `values[i]` at `indices[i]` of a tensor of shape `dense_shape`, zero elsewhere."""

    def __init__(self, indices, values, dense_shape, *, _static_shape=None):
        from tensorgrid.client import scopes
        with scopes.name_scope(None, "SparseTensor"):
            self._indices = graph_lib.convert_to_tensor(indices, dtype=dtypes.int64, name="indices") \
                if not _is_tensor(indices) else indices
            self._values = values if _is_tensor(values) else graph_lib.convert_to_tensor(values, name="values")
            self._dense_shape = graph_lib.convert_to_tensor(dense_shape, dtype=dtypes.int64, name="dense_shape") \
                if not _is_tensor(dense_shape) else dense_shape
        for what, t in (("indices", self._indices), ("dense_shape", self._dense_shape)):
            if t.dtype is not dtypes.int64:
                raise TypeError(f"SparseTensor {what} must be int64, not {t.dtype.name}")
        ishape, vshape, sshape = self._indices.shape, self._values.shape, self._dense_shape.shape
        if ishape.ndims is not None and ishape.ndims != 2:
            raise ValueError(f"SparseTensor indices must be a matrix, got shape {ishape}")
        if vshape.ndims is not None and vshape.ndims != 1:
            raise ValueError(f"SparseTensor values must be a vector, got shape {vshape}")
        if sshape.ndims is not None and sshape.ndims != 1:
            raise ValueError(f"SparseTensor dense_shape must be a vector, got shape {sshape}")
        self._static_shape = _static_shape

    @classmethod
    def from_value(cls, sparse_tensor_value):
        """A SparseTensor of a SparseTensorValue (or a SparseTensor, returned as it is)."""
        if isinstance(sparse_tensor_value, SparseTensor):
            return sparse_tensor_value
        return cls(sparse_tensor_value.indices, sparse_tensor_value.values, sparse_tensor_value.dense_shape)

    @property
    def indices(self):
        return self._indices

    @property
    def values(self):
        return self._values

    @property
    def dense_shape(self):
        return self._dense_shape

    @property
    def dtype(self):
        return self._values.dtype

    @property
    def op(self):
        return self._values.op

    @property
    def graph(self):
        return self._values.graph

    @property
    def shape(self):
        """The dense tensor's static shape (known when dense_shape is a constant)."""
        if self._static_shape is not None:
            return TensorShape(self._static_shape)
        if getattr(self._dense_shape, "_is_eager_tensor", False):
            return TensorShape([int(d) for d in self._dense_shape.numpy()])
        value = graph_lib._const_value(self._dense_shape)
        if value is not None:
            return TensorShape([int(d) for d in np.asarray(value).reshape(-1)])
        n = self._dense_shape.shape
        return TensorShape([None] * n[0]) if n.ndims == 1 and n[0] is not None else TensorShape(None)

    def get_shape(self):
        return self.shape

    def with_values(self, new_values):
        """A SparseTensor of the same indices and dense_shape holding `new_values`."""
        return SparseTensor(self._indices, new_values, self._dense_shape, _static_shape=self._static_shape)

    def eval(self, feed_dict=None, session=None):
        from tensorgrid.client import session as session_lib
        return session_lib.default_session_for(self.graph, session).run(self, feed_dict)

    def consumers(self):
        return [op for t in (self._indices, self._values, self._dense_shape) for op in t.consumers()]

    # ---- nest: a SparseTensor travels (fetches, feeds, function results) as its three tensors
    def _nest_parts(self):
        return [self._indices, self._values, self._dense_shape]

    @staticmethod
    def _from_nest_parts(parts):
        indices, values, dense_shape = parts
        if _is_tensor(values):
            return SparseTensor(indices, values, dense_shape)
        return SparseTensorValue(indices, values, dense_shape)

    def __repr__(self):
        # as TF's: the parts' str()
        return f"SparseTensor(indices={self._indices}, values={self._values}, dense_shape={self._dense_shape})"


def feed_parts(key, value):
    """[(tensor, value)] for feeding `value` (a SparseTensorValue or 3-tuple) to SparseTensor `key`."""
    try:
        parts = list(value)
    except TypeError:
        raise TypeError(f"a SparseTensor is fed a SparseTensorValue or an (indices, values, dense_shape) "
                        f"tuple, not {type(value).__name__}") from None
    if len(parts) != 3:
        raise TypeError(f"a SparseTensor is fed (indices, values, dense_shape), got {len(parts)} values")
    return list(zip(key._nest_parts(), parts))
