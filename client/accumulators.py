"""TF1's gradient accumulators: tf.compat.v1.ConditionalAccumulator and SparseConditionalAccumulator.

An accumulator is a stateful resource on its device (ops:
tensorgrid/ops/accumulator_ops.py), shared by every session that gives it the
same `shared_name` there (the chief and the other replicas of
SyncReplicasOptimizer meet in one per variable on its ps task). Gradients
older than its global step are dropped; `take_grad(n)` waits for n fresh
ones and gives their mean. Every op on it is colocated with it.
"""

from tensorgrid.client import array_ops, context
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.indexed_slices import IndexedSlices
from tensorgrid.client.scopes import current_container
from tensorgrid.framework import dtypes as dtypes_lib
from tensorgrid.framework.shapes import TensorShape, as_shape

__all__ = ["ConditionalAccumulatorBase", "ConditionalAccumulator", "SparseConditionalAccumulator"]


def _int64(value):
    t = convert_to_tensor(value)
    return t if t.dtype == dtypes_lib.int64 else array_ops.cast(t, dtypes_lib.int64)


class ConditionalAccumulatorBase:
    """What both accumulators share: the handle, the count, and the global step."""

    def __init__(self, dtype, shape, accumulator_ref):
        self._dtype = dtype
        self._shape = shape
        self._accumulator_ref = accumulator_ref
        self._eager = context.executing_eagerly()
        self._name = "accumulator" if self._eager else accumulator_ref.op.name.split("/")[-1]

    @property
    def accumulator_ref(self):
        """The accumulator's resource handle tensor."""
        return self._accumulator_ref

    @property
    def name(self):
        return self._name if self._eager else self._accumulator_ref.op.name

    @property
    def dtype(self):
        return self._dtype

    def num_accumulated(self, name=None):
        """The number of gradients in the accumulator (int32)."""
        return apply_op(self._num_op, [self._accumulator_ref], {}, name=name or f"{self._name}_NumAccumulated")

    def set_global_step(self, new_global_step, name=None):
        """Sets the accumulator's global step: gradients with an older local step are dropped from then on."""
        return apply_op(self._set_step_op, [self._accumulator_ref, _int64(new_global_step)], {}, name=name)


def _make(op_type, dtype, shape, shared_name, name, reduction_type):
    attrs = {"dtype": dtype, "shape": shape, "container": current_container() or "",
             "shared_name": shared_name or "", "reduction_type": reduction_type}
    return apply_op(op_type, [], attrs, name=name)


class ConditionalAccumulator(ConditionalAccumulatorBase):
    """Averages dense gradients for one variable, dropping stale ones."""

    _num_op = "ResourceAccumulatorNumAccumulated"
    _set_step_op = "ResourceAccumulatorSetGlobalStep"

    def __init__(self, dtype, shape=None, shared_name=None, name="conditional_accumulator", reduction_type="MEAN"):
        dtype = dtypes_lib.as_dtype(dtype)
        shape = as_shape(shape) if shape is not None else TensorShape(None)
        ref = _make("ResourceConditionalAccumulator", dtype, shape, shared_name, name, reduction_type)
        super().__init__(dtype, shape, ref)

    def apply_grad(self, grad, local_step=0, name=None):
        """Adds `grad`, computed at `local_step`, unless that is older than the accumulator's global step."""
        grad = convert_to_tensor(grad, dtype=self._dtype)
        if not grad.shape.is_compatible_with(self._shape):
            raise ValueError(f"Shapes {grad.shape} and {self._shape} are incompatible")
        return apply_op("ResourceAccumulatorApplyGradient", [self._accumulator_ref, _int64(local_step), grad],
                        {"dtype": self._dtype}, name=name)

    def take_grad(self, num_required, name=None):
        """Waits for `num_required` gradients and gives their mean; the accumulator empties and steps on."""
        n = convert_to_tensor(num_required, dtype=dtypes_lib.int32, name="num_required")
        out = apply_op("ResourceAccumulatorTakeGradient", [self._accumulator_ref, n], {"dtype": self._dtype},
                       name=name)
        if not self._eager:
            out.set_shape(self._shape)
        return out


class SparseConditionalAccumulator(ConditionalAccumulatorBase):
    """Averages sparse (IndexedSlices) gradients row by row, dropping stale ones."""

    _num_op = "AccumulatorNumAccumulated"
    _set_step_op = "AccumulatorSetGlobalStep"

    def __init__(self, dtype, shape=None, shared_name=None, name="sparse_conditional_accumulator",
                 reduction_type="MEAN"):
        dtype = dtypes_lib.as_dtype(dtype)
        shape = as_shape(shape) if shape is not None else TensorShape(None)
        ref = _make("SparseConditionalAccumulator", dtype, shape, shared_name, name, reduction_type)
        super().__init__(dtype, shape, ref)

    def apply_indexed_slices_grad(self, grad, local_step=0, name=None):
        """Adds an IndexedSlices gradient computed at `local_step` (unless stale)."""
        return self.apply_grad(grad.indices, grad.values, grad.dense_shape, local_step, name=name)

    def apply_grad(self, grad_indices, grad_values, grad_shape=None, local_step=0, name=None):
        """Adds the rows `grad_values` at `grad_indices` (of a tensor of shape grad_shape, if given)."""
        values = convert_to_tensor(grad_values, dtype=self._dtype)
        indices = _int64(grad_indices)
        known = grad_shape is not None
        shape = _int64(grad_shape if known else [])
        return apply_op("SparseAccumulatorApplyGradient", [self._accumulator_ref, _int64(local_step), indices,
                                                            values, shape],
                        {"dtype": self._dtype, "has_known_shape": known}, name=name)

    def take_grad(self, num_required, name=None):
        """Waits for `num_required` gradients; gives (indices, values, shape) of their row-wise mean."""
        n = convert_to_tensor(num_required, dtype=dtypes_lib.int32, name="num_required")
        indices, values, shape = apply_op("SparseAccumulatorTakeGradient", [self._accumulator_ref, n],
                                          {"dtype": self._dtype}, name=name)
        if not self._eager and self._shape.ndims is not None:
            values.set_shape(TensorShape([None] + self._shape.as_list()[1:]))
        return indices, values, shape

    def take_indexed_slices_grad(self, num_required, name=None):
        """take_grad as an IndexedSlices."""
        indices, values, shape = self.take_grad(num_required, name=name)
        return IndexedSlices(values, indices, shape)
