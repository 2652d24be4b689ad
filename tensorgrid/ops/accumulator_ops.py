"""TF1's gradient accumulators as stateful resource ops: ResourceConditionalAccumulator and
SparseConditionalAccumulator, and the ops that apply to, take from, count and step them.

An accumulator sums gradients for one variable. Each gradient comes with the
`local_step` its replica computed it at; one older than the accumulator's
global step is stale and dropped, as in TensorFlow. A take waits until
`num_required` gradients are in, gives their mean (reduction_type "MEAN") or
sum ("SUM"), empties the accumulator and moves its global step on by one. A
sparse accumulator holds rows by index: its mean divides each row by the
number of gradients that had that row, and gives the indices sorted. A
waiting take ends with CancelledError when its step is cancelled (the
session closed, a worker of the step died) or the accumulator is removed,
and with DeadlineExceededError at the step's deadline, like a queue's
dequeue. Like queues, accumulators live in their device's resource store
(shared by `shared_name`) and hold host arrays, so their kernels are CPU-only.
"""

import logging
import threading

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.core_ops import to_host
from tensorgrid.ops.queue_ops import wait_for
from tensorgrid.ops.registry import register
from tensorgrid.worker.resources import resource_for

log = logging.getLogger("tensorgrid.accumulator")

_KINDS = {"ResourceConditionalAccumulator": "ConditionalAccumulator",
          "SparseConditionalAccumulator": "SparseConditionalAccumulator"}


class Accumulator:
    """The running sum of one variable's fresh gradients, safe for concurrent steps."""

    def __init__(self, kind, name, dtype, shape, reduction_type):
        self.kind = kind
        self.name = name
        self.dtype = dtype
        # TensorShape, possibly partly unknown; a sparse one of rank 0 (SyncReplicasOptimizer's) is unknown, as in TF
        self.shape = TensorShape(None) if kind == "SparseConditionalAccumulator" and shape.ndims == 0 else shape
        self.reduction_type = reduction_type
        self.global_step = 0
        self.count = 0
        self._sum = None                    # dense: an array; sparse: {index: [row sum, times seen]}
        self._grad_shape = None             # the first gradient's shape (a sparse one's dense shape)
        self._cond = threading.Condition()
        self._released = False

    def describe(self):
        return f"{self.kind} '{self.name}'"

    def check_compatible(self, kind, dtype, shape):
        """A shared accumulator looked up again by another node must have been declared alike."""
        if kind != self.kind or dtype != self.dtype or not (shape.ndims == 0 or shape.is_compatible_with(self.shape)):
            raise errors.InvalidArgumentError(
                None, None, f"Shared accumulator '{self.name}' is a {self.kind} of {self.dtype.name} {self.shape}, "
                f"but a {kind} of {dtype.name} {shape} was requested")

    def _check_shape(self, shape, what):
        if not self.shape.is_compatible_with(shape) or (self._grad_shape is not None
                                                        and tuple(self._grad_shape) != tuple(shape)):
            expected = self._grad_shape if self._grad_shape is not None else self.shape
            raise errors.InvalidArgumentError(
                None, None, f"Shape mismatch in {what} of {self.describe()}: expected {list(expected)}, "
                f"got {list(shape)}")

    # ---- apply ---------------------------------------------------------------------------------
    def _fresh(self, local_step):
        """Whether a gradient computed at local_step counts (the caller holds the condition)."""
        if self._released:
            raise errors.CancelledError(None, None, f"{self.describe()} was removed (its session ended or "
                                        "the cluster was reset)")
        if local_step < self.global_step:
            log.debug("%s: dropped a stale gradient (local step %d < global step %d)", self.describe(),
                      local_step, self.global_step)
            return False
        return True

    def apply_dense(self, local_step, grad):
        grad = np.asarray(to_host(grad), dtype=self.dtype.as_numpy_dtype)
        with self._cond:
            if not self._fresh(local_step):
                return
            self._check_shape(grad.shape, "a gradient")
            self._grad_shape = grad.shape
            self._sum = grad.copy() if self._sum is None else self._sum + grad
            self.count += 1
            self._cond.notify_all()

    def apply_sparse(self, local_step, indices, values, dense_shape):
        indices = np.asarray(to_host(indices), dtype=np.int64).reshape(-1)
        values = np.asarray(to_host(values), dtype=self.dtype.as_numpy_dtype)
        if values.ndim == 0 or len(values) != len(indices):
            raise errors.InvalidArgumentError(
                None, None, f"{self.describe()}: a sparse gradient needs one row of values per index, got "
                f"{len(indices)} indices and values of shape {list(values.shape)}")
        with self._cond:
            if not self._fresh(local_step):
                return
            if dense_shape is not None:
                self._check_shape(tuple(int(d) for d in dense_shape), "a sparse gradient's dense shape")
                self._grad_shape = tuple(int(d) for d in dense_shape)
            row_shape = (self._grad_shape[1:] if self._grad_shape is not None
                         else tuple(self.shape.as_list()[1:]) if self.shape.ndims else None)
            if row_shape is not None and None not in row_shape and tuple(values.shape[1:]) != tuple(row_shape):
                raise errors.InvalidArgumentError(
                    None, None, f"Shape mismatch in a sparse gradient of {self.describe()}: rows of shape "
                    f"{list(row_shape)} expected, got {list(values.shape[1:])}")
            rows = self._sum if self._sum is not None else {}
            seen = set()
            for i, row in zip(indices.tolist(), values):
                entry = rows.get(i)
                if entry is None:
                    rows[i] = [row.copy(), 1]
                else:
                    entry[0] = entry[0] + row
                    entry[1] += i not in seen
                seen.add(i)
            self._sum = rows
            self.count += 1
            self._cond.notify_all()

    # ---- take ----------------------------------------------------------------------------------
    def take(self, num_required, step, deadline=None):
        """Waits for num_required gradients; returns their mean (or sum) and starts the next global step."""
        if num_required < 1:
            raise errors.InvalidArgumentError(None, None, f"Argument num_required must be positive, but was "
                                                          f"{num_required}")
        with self._cond:
            wait_for(self, self._cond, lambda: self.count >= num_required, step, deadline,
                     f"a take of {num_required} gradients ({self.count} in)")
            total, count = self._sum, self.count
            self._sum, self.count = None, 0
            self.global_step += 1
        if self.kind == "SparseConditionalAccumulator":
            return self._sparse_result(total)
        return self._reduce(total, count)

    def _reduce(self, total, count):
        if self.reduction_type == "SUM":
            return total
        return (total / count).astype(total.dtype, copy=False)

    def _sparse_result(self, rows):
        order = sorted(rows)
        row_shape = self._grad_shape[1:] if self._grad_shape is not None else tuple(
            d if d is not None else 0 for d in (self.shape.as_list()[1:] if self.shape.ndims else []))
        values = np.zeros((len(order),) + tuple(row_shape), dtype=self.dtype.as_numpy_dtype)
        for k, i in enumerate(order):
            values[k] = self._reduce(*rows[i])
        if self._grad_shape is not None:
            shape = self._grad_shape
        elif self.shape.is_fully_defined():
            shape = tuple(self.shape.as_list())
        else:
            shape = (-1,) + tuple(row_shape)
        return np.asarray(order, dtype=np.int64), values, np.asarray(shape, dtype=np.int64)

    # ---- state ---------------------------------------------------------------------------------
    def set_global_step(self, new_global_step):
        with self._cond:
            if new_global_step < self.global_step:
                log.warning("Attempt to set the global step of %s to a smaller value: %d >= %d", self.describe(),
                            self.global_step, new_global_step)
            self.global_step = int(new_global_step)

    def num_accumulated(self):
        with self._cond:
            return self.count

    def release(self):
        """The accumulator left its store: every take still waiting on it ends with CancelledError."""
        with self._cond:
            self._released = True
            self._cond.notify_all()


# ---------------------------------------------------------------- the accumulator (handle) ops

def _dtype(ctx_or_node):
    return dtypes.as_dtype(ctx_or_node.attr("dtype"))


def _shape(ctx_or_node):
    shape = ctx_or_node.attr("shape")
    return TensorShape(None) if shape is None else TensorShape(shape)


def _infer_accumulator(ctx):
    reduction = ctx.attr("reduction_type", "MEAN")
    if reduction not in ("MEAN", "SUM"):
        raise ctx.error(f"reduction_type must be 'MEAN' or 'SUM', got {reduction!r}")
    if not _dtype(ctx).is_numeric:
        raise ctx.error(f"an accumulator holds numbers, not {_dtype(ctx).name}")
    return [(dtypes.resource, ())]


def _accumulator_kernel(node):
    kind, dtype, shape = _KINDS[node.op], _dtype(node), _shape(node)
    shared = node.attr("shared_name", "") or ""

    def create():
        return Accumulator(kind, shared or node.name, dtype, shape, node.attr("reduction_type", "MEAN"))
    accumulator = resource_for(node.resources, node.attr("container", ""), shared, node.name, create)
    accumulator.check_compatible(kind, dtype, shape)
    return lambda: accumulator


for _op, _doc in [
        ("ResourceConditionalAccumulator", "An accumulator of dense gradients (attrs dtype, shape, container, "
                                           "shared_name, reduction_type)."),
        ("SparseConditionalAccumulator", "An accumulator of sparse (IndexedSlices) gradients, averaged row by "
                                         "row.")]:
    register(_op, _infer_accumulator, _accumulator_kernel, stateful=True, cpu_only=True, doc=_doc)


# ---------------------------------------------------------------- ops on an accumulator

def _check_handle(ctx):
    if ctx.input_dtypes[0] is not dtypes.resource:
        raise ctx.error(f"the first input must be an accumulator handle, got a {ctx.input_dtypes[0].name} tensor")


def _check_int(ctx, index, what):
    if not ctx.input_dtypes[index].is_integer:
        raise ctx.error(f"{what} must be an integer, got {ctx.input_dtypes[index].name}")


def _infer_apply(ctx):
    _check_handle(ctx)
    _check_int(ctx, 1, "local_step")
    return []


def _apply_dense_kernel(node):
    return lambda accumulator, local_step, grad: accumulator.apply_dense(int(local_step), grad)


def _apply_sparse_kernel(node):
    known = bool(node.attr("has_known_shape", False))

    def apply(accumulator, local_step, indices, values, shape):
        accumulator.apply_sparse(int(local_step), indices, values, np.asarray(shape) if known else None)
    return apply


register("ResourceAccumulatorApplyGradient", _infer_apply, _apply_dense_kernel, stateful=True, cpu_only=True,
         colocate_with_input=0, num_outputs=0,
         doc="Adds a gradient to an accumulator unless its local_step is older than the accumulator's global step.")
register("SparseAccumulatorApplyGradient", _infer_apply, _apply_sparse_kernel, stateful=True, cpu_only=True,
         colocate_with_input=0, num_outputs=0,
         doc="Adds a sparse gradient (indices, values, dense shape) to a sparse accumulator unless it is stale.")


def _infer_take_dense(ctx):
    _check_handle(ctx)
    _check_int(ctx, 1, "num_required")
    return [(_dtype(ctx), None)]


def _infer_take_sparse(ctx):
    _check_handle(ctx)
    _check_int(ctx, 1, "num_required")
    return [(dtypes.int64, (None,)), (_dtype(ctx), None), (dtypes.int64, (None,))]


def _take_kernel(node):
    return lambda step, accumulator, num_required: accumulator.take(int(num_required), step)


register("ResourceAccumulatorTakeGradient", _infer_take_dense, _take_kernel, stateful=True, needs_step=True,
         cpu_only=True, colocate_with_input=0,
         doc="Waits for num_required gradients in an accumulator and gives their mean; the accumulator starts "
             "its next global step.")
register("SparseAccumulatorTakeGradient", _infer_take_sparse, _take_kernel, stateful=True, needs_step=True,
         cpu_only=True, colocate_with_input=0, num_outputs=3,
         doc="As ResourceAccumulatorTakeGradient, for a sparse accumulator: (indices, values, dense shape).")


def _infer_set_global_step(ctx):
    _check_handle(ctx)
    _check_int(ctx, 1, "new_global_step")
    return []


# TF names the sparse accumulator's count and step ops without "Resource" (its handle is a ref there).
for _op in ("ResourceAccumulatorNumAccumulated", "AccumulatorNumAccumulated"):
    register(_op, lambda ctx: _check_handle(ctx) or [(dtypes.int32, ())],
             lambda node: lambda accumulator: np.int32(accumulator.num_accumulated()), stateful=True,
             cpu_only=True, colocate_with_input=0, doc="The number of gradients in an accumulator (int32).")
for _op in ("ResourceAccumulatorSetGlobalStep", "AccumulatorSetGlobalStep"):
    register(_op, _infer_set_global_step,
             lambda node: lambda accumulator, new_step: accumulator.set_global_step(int(new_step)), stateful=True,
             cpu_only=True, colocate_with_input=0, num_outputs=0,
             doc="Sets an accumulator's global step: gradients of older local steps are dropped from now on.")
