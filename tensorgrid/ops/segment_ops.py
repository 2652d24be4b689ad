"""Segment reductions: Segment{Sum,Mean,Max,Min,Prod} over sorted ids and UnsortedSegment{Max,Min,Prod}.

Row i of a result reduces the slices of `data` whose segment id is i. The
sorted ops take a vector of non-decreasing ids the length of data's first
dimension and make max(id) + 1 rows, an empty segment being 0 (1 for a product); the unsorted
ones take ids shaped like a prefix of data's shape, a num_segments scalar,
drop negative ids, and fill an empty segment with the reduction's identity
(the dtype's lowest value for max, highest for min, 1 for prod), as TF's
kernels do. UnsortedSegmentSum sits with the scatter ops in array_ops.py. The
SparseSegment ops reduce the rows data[indices] by sorted segment ids.
"""

import numpy as np

from tensorgrid.framework import dtypes
from tensorgrid.ops.array_ops import _host, _infer_segment_sum, _invalid, _require_integer
from tensorgrid.ops.registry import register

_UFUNC = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum, "Prod": np.multiply, "Mean": np.add}


def _identity(kind, dtype):
    dt = dtypes.as_dtype(dtype)
    if kind == "Max":
        return dt.min if not dt.is_bool else False
    if kind == "Min":
        return dt.max if not dt.is_bool else True
    return 1 if kind == "Prod" else 0


def _reduce_into(xp, kind, out_rows, data, ids, empty_value):
    """Reduces rows of `data` into `out_rows` rows by the (non-negative) segment ids `ids`."""
    out = xp.full((out_rows,) + data.shape[ids.ndim:], _identity(kind, data.dtype), dtype=data.dtype)
    _UFUNC[kind].at(out, ids, data)
    counts = np.bincount(_host(ids).reshape(-1), minlength=out_rows)[:out_rows]
    shape = (out_rows,) + (1,) * (out.ndim - 1)
    if kind == "Mean":
        out = (out / xp.asarray(np.maximum(counts, 1)).reshape(shape).astype(out.dtype)).astype(data.dtype)
    if empty_value is not None:
        out = xp.where(xp.asarray(counts == 0).reshape(shape), xp.asarray(empty_value, dtype=data.dtype), out)
    return out


def _infer_sorted_segment(ctx):
    _require_integer(ctx, 1, "segment_ids")
    data, ids = ctx.input_shapes
    if ids is not None and len(ids) != 1:
        raise ctx.error(f"segment_ids should be a vector, but has shape {list(ids)}")
    if data is not None and len(data) == 0:
        raise ctx.error("data must be at least rank 1")
    if None not in (data, ids) and None not in (data[0], ids[0]) and data[0] != ids[0]:
        raise ctx.error(f"segment_ids should be the same size as dimension 0 of input: {ids[0]} vs. {data[0]}")
    rows = None
    if ctx.const_values[1] is not None:
        v = np.asarray(ctx.const_values[1])
        rows = int(v[-1]) + 1 if v.size else 0
    return [(ctx.input_dtypes[0], None if data is None else (rows,) + tuple(data[1:]))]


def _sorted_segment_kernel(kind):
    def factory(node):
        xp = node.xp

        def segment_reduce(data, segment_ids):
            data = xp.asarray(data)
            ids = _host(segment_ids).astype(np.int64)
            if ids.ndim != 1 or data.ndim == 0 or ids.shape[0] != data.shape[0]:
                raise _invalid("segment_ids should be the same size as dimension 0 of input.")
            rows = int(ids[-1]) + 1 if ids.size else 0
            if ids.size and ids[0] < 0:
                raise _invalid(f"Segment id {int(ids[0])} out of range [0, {rows}), possibly because "
                               "'segment_ids' input is not sorted.")
            if (np.diff(ids) < 0).any():
                raise _invalid("segment ids are not increasing")
            return _reduce_into(xp, kind, rows, data, xp.asarray(ids), 1 if kind == "Prod" else 0)
        return segment_reduce
    return factory


def _unsorted_segment_kernel(kind):
    def factory(node):
        xp = node.xp

        def unsorted_segment_reduce(data, segment_ids, num_segments):
            data = xp.asarray(data)
            n = int(_host(num_segments).reshape(-1)[0])
            ids = _host(segment_ids).astype(np.int64)
            if data.shape[:ids.ndim] != ids.shape:
                raise _invalid(f"data.shape = {list(data.shape)} does not start with segment_ids.shape = "
                               f"{list(ids.shape)}")
            big = np.nonzero(ids.reshape(-1) >= n)[0]
            if big.size:
                raise _invalid(f"segment_ids[{int(big[0])}] = {int(ids.reshape(-1)[big[0]])} is out of range "
                               f"[0, {n})")
            keep = ids >= 0  # negative ids are dropped, as in TF
            return _reduce_into(xp, kind, n, data[xp.asarray(keep)], xp.asarray(ids[keep]), None)
        return unsorted_segment_reduce
    return factory


for _kind in ("Sum", "Mean", "Max", "Min", "Prod"):
    register(f"Segment{_kind}", _infer_sorted_segment, _sorted_segment_kernel(_kind), cpu_only=True,
             doc=f"Segment{_kind} of the rows of data by sorted segment ids (module docstring).")
for _kind in ("Max", "Min", "Prod"):
    register(f"UnsortedSegment{_kind}", _infer_segment_sum, _unsorted_segment_kernel(_kind), cpu_only=True,
             doc=f"{_kind} of the slices of data into num_segments rows by segment ids (module docstring).")


# ---- sparse segment reductions: rows data[indices] reduced by sorted segment ids ---------------------------


def _infer_sparse_segment(ctx):
    for i, what in ((1, "indices"), (2, "segment_ids")):
        _require_integer(ctx, i, what)
        if ctx.input_shapes[i] is not None and len(ctx.input_shapes[i]) != 1:
            raise ctx.error(f"{what} should be a vector, but has shape {list(ctx.input_shapes[i])}")
    data = ctx.input_shapes[0]
    rows = None
    if len(ctx.input_dtypes) == 4:
        _require_integer(ctx, 3, "num_segments")
        rows = None if ctx.const_values[3] is None else int(np.asarray(ctx.const_values[3]).reshape(-1)[0])
    elif ctx.const_values[2] is not None:
        v = np.asarray(ctx.const_values[2])
        rows = int(v[-1]) + 1 if v.size else 0
    return [(ctx.input_dtypes[0], None if data is None else (rows,) + tuple(data[1:]))]


def _sparse_segment_kernel(kind):
    def factory(node):
        xp = node.xp

        def sparse_segment_reduce(data, indices, segment_ids, num_segments=None):
            data = xp.asarray(data)
            idx = _host(indices).astype(np.int64)
            ids = _host(segment_ids).astype(np.int64)
            if idx.shape != ids.shape:
                raise _invalid(f"segment_ids and indices should have same size: {ids.size} vs. {idx.size}")
            bad = np.nonzero((idx < 0) | (idx >= data.shape[0]))[0]
            if bad.size:
                raise _invalid(f"Bad: indices[{int(bad[0])}] == {int(idx[bad[0]])} out of range "
                               f"[0, {data.shape[0]})")
            if ids.size and (ids[0] < 0 or (np.diff(ids) < 0).any()):
                raise _invalid("segment ids are not increasing")
            rows = int(_host(num_segments).reshape(-1)[0]) if num_segments is not None else \
                (int(ids[-1]) + 1 if ids.size else 0)
            if ids.size and ids[-1] >= rows:
                raise _invalid(f"segment ids must be < num_segments ({rows}), got {int(ids[-1])}")
            out = _reduce_into(xp, "Sum", rows, data[xp.asarray(idx)], xp.asarray(ids), 0)
            if kind != "Sum":
                counts = np.maximum(np.bincount(ids, minlength=rows)[:rows], 1).astype(np.float64)
                scale = counts if kind == "Mean" else np.sqrt(counts)
                out = (out / xp.asarray(scale).reshape((rows,) + (1,) * (out.ndim - 1))).astype(data.dtype)
            return out
        return sparse_segment_reduce
    return factory


for _kind in ("Sum", "Mean", "SqrtN"):
    register(f"SparseSegment{_kind}", _infer_sparse_segment, _sparse_segment_kernel(_kind), cpu_only=True,
             doc=f"Segment{_kind} of the rows data[indices] by sorted segment ids (a sqrt_n divides the sum "
                 "by the square root of the count).")
    register(f"SparseSegment{_kind}WithNumSegments", _infer_sparse_segment, _sparse_segment_kernel(_kind),
             cpu_only=True, doc=f"SparseSegment{_kind} into num_segments rows.")
