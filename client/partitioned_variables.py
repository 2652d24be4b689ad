"""Partitioned variables: tf.compat.v1.get_variable(..., partitioner=...) and the partitioners.

A partitioner maps (shape, dtype) to the number of parts along each
dimension (only one dimension may be split). get_variable then makes one
variable per part, `<name>/part_<i>`, the first `dim % n` parts one row
longer than the rest (as TF), each remembering its place in the whole
(`_save_slice_info`), and returns a `PartitionedVariable`: iterable over its
parts, `as_tensor()` (their concat), usable where a tensor is, and by
`tg.nn.embedding_lookup` as a list of shards ("div" rows per part). Under
`replica_device_setter` each part is a variable of its own, so the parts
spread over the ps tasks. A Saver saves the parts under the whole
variable's name with TF's slice specs, so a checkpoint restores into any
other partitioning, or into an unpartitioned variable.
"""

import math

import numpy as np

from tensorgrid.client import array_ops
from tensorgrid.framework import checkpoint_format
from tensorgrid.framework import dtypes as dtypes_lib
from tensorgrid.framework.shapes import TensorShape, as_shape

__all__ = ["PartitionedVariable", "fixed_size_partitioner", "min_max_variable_partitioner",
           "variable_axis_size_partitioner"]


class SaveSliceInfo:
    """Where a part sits in its whole variable: full name and shape, offset and shape of the part."""

    def __init__(self, full_name, full_shape, var_offset, var_shape):
        self.full_name = full_name
        self.full_shape = list(full_shape)
        self.var_offset = list(var_offset)
        self.var_shape = list(var_shape)

    @property
    def spec(self):
        """TF's slice spec of the part: "10 4 0,5:0,4"."""
        return checkpoint_format.format_slice(self.full_shape, self.var_offset, self.var_shape)

    def __repr__(self):
        return f"SaveSliceInfo({self.full_name!r}, {self.spec!r})"


class _PartitionInfo:
    """What an initializer gets as partition_info: the full shape and this part's offset."""

    def __init__(self, full_shape, var_offset):
        self.full_shape = list(full_shape)
        self.var_offset = list(var_offset)

    def single_offset(self, shape):
        return next((o for o, d, f in zip(self.var_offset, shape, self.full_shape) if d != f), 0)


class PartitionedVariable:
    """A variable stored as parts along one axis (what get_variable with a partitioner returns)."""

    def __init__(self, name, shape, dtype, variable_list, partitions):
        self._name = name
        self._shape = as_shape(shape)
        self._dtype = dtypes_lib.as_dtype(dtype)
        self._variable_list = sorted(variable_list, key=lambda v: v._save_slice_info.var_offset)
        self._partitions = list(partitions)

    def __iter__(self):
        return iter(self._variable_list)

    def __len__(self):
        return len(self._variable_list)

    @property
    def name(self):
        return self._name

    @property
    def dtype(self):
        return self._dtype

    @property
    def shape(self):
        return self._shape

    def get_shape(self):
        return self._shape

    @property
    def graph(self):
        return self._variable_list[0].graph

    def _get_variable_list(self):
        return list(self._variable_list)

    def _get_partitions(self):
        return list(self._partitions)

    def _axis(self):
        return next((i for i, n in enumerate(self._partitions) if n > 1), 0)

    def as_tensor(self):
        """The parts concatenated along the partitioned axis."""
        if len(self._variable_list) == 1:
            return array_ops.identity(self._variable_list[0].read_value())
        return array_ops.concat([v.read_value() for v in self._variable_list], self._axis(),
                                name=f"{self._name}/ConcatPartitions/concat")

    def _as_tensor(self):
        return self.as_tensor()

    def assign(self, value, use_locking=None, name=None, read_value=True):
        """Assigns each part its slice of `value`; returns the grouped assigns."""
        value = array_ops.split(value, [v.shape.as_list()[self._axis()] for v in self._variable_list],
                                axis=self._axis()) if len(self._variable_list) > 1 else [value]
        return array_ops.group(*[v.assign(x, read_value=False) for v, x in zip(self._variable_list, value)],
                               name=name)

    def __repr__(self):
        return (f"<tf.PartitionedVariable '{self._name}' shape={self._shape} dtype={self._dtype.name} "
                f"parts={len(self._variable_list)}>")


def _partitioned_axis(partitions, shape, name):
    if len(partitions) != len(shape):
        raise ValueError(f"Partitioner returned a partition list {partitions} that does not match the variable "
                         f"{name}'s rank: shape {shape}")
    if any(p < 1 for p in partitions):
        raise ValueError(f"Partitioner returned zero partitions for some axes: {partitions} (variable {name})")
    split = [i for i, p in enumerate(partitions) if p > 1]
    if len(split) > 1:
        raise ValueError(f"Can only slice a variable along one dimension: shape: {shape}, partitioning: "
                         f"{partitions} (variable {name})")
    return split[0] if split else 0


def part_shapes(shape, partitions, name):
    """[(offset, shape)] of each part: the first dim % n parts one longer along the split axis, as TF."""
    axis = _partitioned_axis(partitions, shape, name)
    n, dim = partitions[axis], shape[axis]
    if n > dim:
        n = dim
    base, extra = divmod(dim, n)
    out, offset = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        part_offset = [0] * len(shape)
        part_offset[axis] = offset
        part_shape = list(shape)
        part_shape[axis] = size
        out.append((part_offset, part_shape))
        offset += size
    return out


def _element_bytes(dtype, bytes_per_string_element):
    dtype = dtypes_lib.as_dtype(dtype)
    return bytes_per_string_element if dtype == dtypes_lib.string else np.dtype(dtype.as_numpy_dtype).itemsize


def fixed_size_partitioner(num_shards, axis=0):
    """A partitioner that splits `axis` into num_shards parts."""
    def _partitioner(shape, dtype):
        shape = as_shape(shape)
        if axis >= shape.ndims:
            raise ValueError(f"Cannot partition variable along axis {axis} when shape is only {shape}")
        partitions = [1] * shape.ndims
        partitions[axis] = num_shards
        return partitions
    return _partitioner


def min_max_variable_partitioner(max_partitions=1, axis=0, min_slice_size=256 << 10, bytes_per_string_element=16):
    """A partitioner giving every part at least min_slice_size bytes, and at most max_partitions parts."""
    def _partitioner(shape, dtype):
        shape = as_shape(shape)
        if axis >= shape.ndims:
            raise ValueError(f"Can not partition variable along axis {axis} when shape is only {shape}")
        total = shape.num_elements() * _element_bytes(dtype, bytes_per_string_element)
        partitions = [1] * shape.ndims
        partitions[axis] = max(1, min(shape.as_list()[axis], max_partitions, int(math.ceil(total / min_slice_size))))
        return partitions
    return _partitioner


def variable_axis_size_partitioner(max_shard_bytes, axis=0, bytes_per_string_element=16, max_shards=None):
    """A partitioner splitting `axis` so that no part exceeds max_shard_bytes (one slice at the least)."""
    if max_shard_bytes < 1 or bytes_per_string_element < 1:
        raise ValueError("Both max_shard_bytes and bytes_per_string_element must be positive. "
                         f"Currently, max_shard_bytes is {max_shard_bytes} and bytes_per_string_element is "
                         f"{bytes_per_string_element}")
    if max_shards and max_shards < 1:
        raise ValueError("max_shards must be positive.")

    def _partitioner(shape, dtype):
        shape = as_shape(shape)
        if not shape.is_fully_defined():
            raise ValueError(f"shape is not fully defined: {shape}")
        dims = shape.as_list()
        slice_bytes = shape.num_elements() / dims[axis] * _element_bytes(dtype, bytes_per_string_element)
        slices_per_shard = max(1, math.floor(max_shard_bytes / slice_bytes))
        shards = int(math.ceil(dims[axis] / slices_per_shard))
        if max_shards:
            shards = min(max_shards, shards)
        partitions = [1] * len(dims)
        partitions[axis] = shards
        return partitions
    return _partitioner


def make_partitioned(name, shape, dtype, partitions, make_part):
    """The PartitionedVariable `name` whose i-th part is make_part(part name, shape, partition info)."""
    shape = list(shape)
    parts = []
    for i, (offset, part_shape) in enumerate(part_shapes(shape, list(partitions), name)):
        v = make_part(f"{name}/part_{i}", part_shape, _PartitionInfo(shape, offset))
        v._save_slice_info = SaveSliceInfo(name, shape, offset, part_shape)
        parts.append(v)
    return PartitionedVariable(name, TensorShape(shape), dtype, parts, partitions)

