"""tg.IndexedSlices: some rows of a dense tensor, as the gradients of gather and embedding_lookup are.

`IndexedSlices(values, indices, dense_shape)` stands for the tensor of
shape dense_shape that is zero except rows indices[i], which are values[i]
(rows named twice add up). Gradients stay in this form through aggregation
(several IndexedSlices concatenate) and reach the optimizers, which update
only those rows; anything else that takes a tensor densifies one (as
tg.convert_to_tensor does), with TF's warning when the dense shape is not
known or has 100M elements or more. `sess.run` gives an IndexedSlicesValue
of numpy arrays.
"""

import collections
import warnings

import numpy as np

from tensorgrid.client import graph as graph_lib

__all__ = ["IndexedSlices", "IndexedSlicesValue"]

# TF warns when densifying gradients this large (ops/indexed_slices.py's threshold).
_LARGE_DENSE_ELEMENTS = 100_000_000

IndexedSlicesValue = collections.namedtuple("IndexedSlicesValue", ["values", "indices", "dense_shape"])
IndexedSlicesValue.__doc__ = "What running an IndexedSlices gives: numpy values, indices and dense_shape."


class IndexedSlices:
    """Rows `indices` of a tensor of shape `dense_shape` are `values` (the rest zero); see the module docstring."""

    def __init__(self, values, indices, dense_shape=None):
        self._values = values
        self._indices = indices
        self._dense_shape = dense_shape

    @property
    def values(self):
        return self._values

    @property
    def indices(self):
        return self._indices

    @property
    def dense_shape(self):
        return self._dense_shape

    @property
    def dtype(self):
        return self._values.dtype

    @property
    def name(self):
        return self._values.name

    @property
    def op(self):
        return self._values.op

    @property
    def graph(self):
        return self._values.graph

    @property
    def device(self):
        return self._values.device

    @property
    def shape(self):
        """The dense tensor's static shape."""
        from tensorgrid.framework.shapes import TensorShape
        known = self._static_dense_shape()
        if known is not None:
            return TensorShape(known)
        rest = self._values.shape
        return TensorShape([None] + (rest.as_list()[1:] if rest.ndims is not None else [])) \
            if rest.ndims is not None else TensorShape(None)

    def get_shape(self):
        return self.shape

    def _static_dense_shape(self):
        if self._dense_shape is None:
            return None
        if getattr(self._dense_shape, "_is_eager_tensor", False):
            value = self._dense_shape.numpy()
        elif isinstance(self._dense_shape, graph_lib.Tensor):
            value = graph_lib._const_value(self._dense_shape)
        else:
            value = self._dense_shape
        return None if value is None else [int(d) for d in np.asarray(value).reshape(-1)]

    def __neg__(self):
        from tensorgrid.client import math_ops
        return IndexedSlices(math_ops.negative(self._values), self._indices, self._dense_shape)

    def _as_tensor(self):
        """The dense tensor (rows of repeated indices summed), as tg.convert_to_tensor gives it."""
        from tensorgrid.client import array_ops
        if self._dense_shape is None:
            raise ValueError(f"Tensor conversion requested for IndexedSlices without dense_shape: {self!r}")
        known = self._static_dense_shape()
        if known is None:
            warnings.warn("Converting sparse IndexedSlices to a dense Tensor of unknown shape. This may consume a "
                          "large amount of memory.", stacklevel=3)
            rows = array_ops.strided_slice(graph_lib.convert_to_tensor(self._dense_shape), [0], [1], [1],
                                           shrink_axis_mask=1)
        else:
            if int(np.prod(known, dtype=np.int64)) >= _LARGE_DENSE_ELEMENTS:
                warnings.warn(f"Converting sparse IndexedSlices to a dense Tensor with {int(np.prod(known))} "
                              f"elements. This may consume a large amount of memory.", stacklevel=3)
            rows = known[0]
        return array_ops.unsorted_segment_sum(self._values, self._indices, rows)

    # ---- nest: an IndexedSlices travels (fetches, function results) as its three tensors
    def _nest_parts(self):
        return [self._values, self._indices, self._dense_shape]

    @staticmethod
    def _from_nest_parts(parts):
        values, indices, dense_shape = parts
        if isinstance(values, graph_lib.Tensor) or getattr(values, "_is_eager_tensor", False):
            return IndexedSlices(values, indices, dense_shape)
        return IndexedSlicesValue(values, indices, dense_shape)

    def __repr__(self):
        return f"IndexedSlices(indices={self._indices!r}, values={self._values!r}, dense_shape={self._dense_shape!r})"


def concat(slices):
    """One IndexedSlices holding the rows of all of `slices` (their sum, once densified), as TF aggregates them."""
    from tensorgrid.client import array_ops, math_ops
    from tensorgrid.framework import dtypes
    mixed = len({s.indices.dtype for s in slices}) > 1     # int32 and int64 indices meet as int64, as in TF
    indices = [array_ops.cast(s.indices, dtypes.int64) if mixed else s.indices for s in slices]
    return IndexedSlices(array_ops.concat([s.values for s in slices], 0), array_ops.concat(indices, 0),
                         slices[0].dense_shape)
