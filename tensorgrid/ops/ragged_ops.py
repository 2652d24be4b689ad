"""Kernels behind tg.RaggedTensor (client/ragged.py): rows of different lengths as flat values + row_splits.

RaggedTensorToTensor has TF's name, inputs (shape, values, default_value,
row_partition_tensors) and attr row_partition_types, for the one row
partition TF's ragged_rank-1 tensors use ("ROW_SPLITS"). TF builds row
splits from value row ids out of DenseBincount and Cumsum; here that is one
op, RaggedRowSplitsFromValueRowIds.
"""

import numpy as np

from tensorgrid.framework import dtypes
from tensorgrid.ops.array_ops import _host, _invalid
from tensorgrid.ops.registry import register


def _infer_to_tensor(ctx):
    types = ctx.attr("row_partition_types", ["ROW_SPLITS"])
    if list(types) != ["ROW_SPLITS"]:
        raise ctx.error(f"row_partition_types must be ['ROW_SPLITS'], got {list(types)}")
    values = ctx.input_shapes[1]
    shape = ctx.const_values[0]
    if shape is not None and np.ndim(shape) == 1:
        return [(ctx.input_dtypes[1], tuple(None if d < 0 else int(d) for d in np.asarray(shape)))]
    splits = ctx.input_shapes[3]
    rows = None if splits is None or splits[0] is None else splits[0] - 1
    return [(ctx.input_dtypes[1], None if values is None else (rows, None) + tuple(values[1:]))]


def _to_tensor_kernel(node):
    xp = node.xp

    def ragged_tensor_to_tensor(shape, values, default_value, row_splits):
        splits = _host(row_splits).astype(np.int64)
        values = xp.asarray(values)
        if splits.ndim != 1 or splits.size == 0 or splits[0] != 0 or (np.diff(splits) < 0).any() \
                or splits[-1] != values.shape[0]:
            raise _invalid(f"row_splits must start at 0, not decrease and end at the number of values "
                           f"({values.shape[0]}), got {splits.tolist()}")
        lengths = np.diff(splits)
        rows, width = len(lengths), int(lengths.max()) if lengths.size else 0
        want = [int(d) for d in np.asarray(_host(shape)).reshape(-1)] if np.ndim(shape) == 1 else []
        if want:
            rows = rows if want[0] < 0 else want[0]
            width = width if want[1] < 0 else want[1]
        out = xp.full((rows, width) + values.shape[1:], default_value, dtype=values.dtype)
        for i in range(min(rows, len(lengths))):
            n = min(int(lengths[i]), width)
            out[i, :n] = values[splits[i]:splits[i] + n]
        return out
    return ragged_tensor_to_tensor


register("RaggedTensorToTensor", _infer_to_tensor, _to_tensor_kernel, cpu_only=True,
         doc="A dense tensor of a ragged one (values, row_splits), default_value where rows are short.")


def _infer_splits_from_rowids(ctx):
    n = ctx.const_values[1]
    return [(dtypes.int64, (None if n is None else int(n) + 1,))]


def _splits_from_rowids_kernel(node):
    xp = node.xp

    def ragged_row_splits(value_rowids, nrows):
        ids = _host(value_rowids).astype(np.int64).reshape(-1)
        n = int(_host(nrows))
        if ids.size and ((np.diff(ids) < 0).any() or ids[0] < 0 or ids[-1] >= n):
            raise _invalid(f"value_rowids must be sorted and in [0, {n}), got {ids.tolist()[:20]}")
        return xp.asarray(np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=n))]).astype(np.int64))
    return ragged_row_splits


register("RaggedRowSplitsFromValueRowIds", _infer_splits_from_rowids, _splits_from_rowids_kernel, cpu_only=True,
         doc="The row_splits of nrows rows given each value's (sorted) row id.")
