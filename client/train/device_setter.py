"""tg.train.replica_device_setter: variables round-robin on parameter-server tasks, the rest on a worker.

Used as `with tg.device(tg.train.replica_device_setter(ps_tasks=2)):`. Each
VarHandleOp (by default; `ps_ops` lists the op types) goes to the ps task
the `ps_strategy` picks (round-robin by default;
`GreedyLoadBalancingStrategy(num_tasks, byte_size_load_fn)` picks the task
with the fewest bytes so far); every other op goes to `worker_device`. A variable's
reads, assigns and slots are colocated with its handle, so they follow it
to its ps task. Device scopes opened inside win field by field, as TF merges
them.
"""

import numpy as np

from tensorgrid.client.train.cluster_spec import ClusterSpec
from tensorgrid.framework import dtypes
from tensorgrid.framework.device_spec import DeviceSpec
from tensorgrid.framework.shapes import TensorShape

__all__ = ["replica_device_setter", "GreedyLoadBalancingStrategy", "byte_size_load_fn"]

STANDARD_PS_OPS = ("VarHandleOp",)


class _RoundRobinStrategy:
    """Hands out ps task indices 0, 1, ..., n-1, 0, ... one per variable."""

    def __init__(self, num_tasks):
        self._num_tasks = num_tasks
        self._next = 0

    def __call__(self, unused_op):
        task = self._next
        self._next = (self._next + 1) % self._num_tasks
        return task


def byte_size_load_fn(op):
    """The bytes of the variable a VarHandleOp makes (its shape and dtype attrs): a ps task's load."""
    shape = TensorShape(op.get_attr("shape"))
    if not shape.is_fully_defined():
        return 0
    return shape.num_elements() * np.dtype(dtypes.as_dtype(op.get_attr("dtype")).as_numpy_dtype).itemsize


class GreedyLoadBalancingStrategy:
    """A ps_strategy that puts each variable on the ps task with the least load so far (the lowest index
    among equals), the load of a variable being load_fn(op) (default: its bytes)."""

    def __init__(self, num_tasks, load_fn=None):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be positive, got {num_tasks}")
        self._num_tasks = num_tasks
        self._load_fn = load_fn or byte_size_load_fn
        self._loads = [0] * num_tasks

    def __call__(self, op):
        task = min(range(self._num_tasks), key=lambda i: self._loads[i])
        self._loads[task] += self._load_fn(op)
        return task


class _ReplicaDeviceChooser:
    """The device function replica_device_setter returns."""

    def __init__(self, ps_tasks, ps_device, worker_device, merge_devices, ps_ops, ps_strategy):
        self._ps_tasks = ps_tasks
        self._ps_device = ps_device
        self._worker_device = worker_device
        self._merge_devices = merge_devices
        self._ps_ops = ps_ops
        self._ps_strategy = ps_strategy

    def device_function(self, op):
        if not self._merge_devices and op.device:
            return op.device
        current = DeviceSpec.from_string(op.device or "")
        if self._ps_tasks and self._ps_device and op.type in self._ps_ops:
            ps = DeviceSpec.from_string(self._ps_device)
            if ps.job and (not current.job or current.job == ps.job):
                ps = DeviceSpec(ps.job, ps.replica, self._ps_strategy(op), ps.device_type, ps.device_index)
            return ps.merge_from(current).to_string()
        return DeviceSpec.from_string(self._worker_device or "").merge_from(current).to_string()


def replica_device_setter(ps_tasks=0, ps_device="/job:ps", worker_device="/job:worker", merge_devices=True,
                          cluster=None, ps_ops=None, ps_strategy=None):
    """A device function placing variables on ps tasks (round-robin) and other ops on `worker_device`.

    With `cluster` (a ClusterSpec or dict), the number of ps tasks is the size of
    the ps job there. Returns None (no placement) when there are no ps tasks.
    """
    if cluster is not None:
        spec = ClusterSpec(cluster).as_dict()
        ps_job = DeviceSpec.from_string(ps_device).job
        if ps_job not in spec or spec[ps_job] is None:
            return None
        ps_tasks = len(spec[ps_job])
    if ps_tasks == 0:
        return None
    if ps_ops is None:
        ps_ops = list(STANDARD_PS_OPS)
    if ps_strategy is None:
        ps_strategy = _RoundRobinStrategy(ps_tasks)
    if not callable(ps_strategy):
        raise TypeError("ps_strategy must be callable")
    return _ReplicaDeviceChooser(ps_tasks, ps_device, worker_device, merge_devices, ps_ops,
                                 ps_strategy).device_function
