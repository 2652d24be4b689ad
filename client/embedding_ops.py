"""tg.nn.embedding_lookup: rows of an embedding table, one tensor or variable or a list of shards of one.

A single table is a gather (of a variable: its sparse_read, where it
lives, with an IndexedSlices gradient). A table in shards params[0..n-1]
splits the ids among the shards as TF does, gathers each shard's ids next
to that shard and stitches the rows back in the order of the ids:
- "mod": id i lives in shard i % n, as its row i // n;
- "div": the ids are cut into n contiguous ranges, the first
  (total rows % n) of them one row longer.
tg.nn.embedding_lookup is TF2's ("div"); tensorgrid.compat.v1's nn takes
TF1's partition_strategy argument, "mod" by default.
"""

from tensorgrid.client import array_ops, context, math_ops, scopes
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.framework import dtypes


def _colocated(p):
    """Ops created inside run where shard `p` (a tensor or variable) lives."""
    if context.executing_eagerly():
        return scopes.colocate_with(None)
    return scopes.colocate_with(p.handle.op if hasattr(p, "sparse_read") else convert_to_tensor(p).op)


def _clip(rows, ids, max_norm):
    """Rows whose L2 norm exceeds max_norm scaled down to it (each row: the dims after ids' rank)."""
    if max_norm is None:
        return rows
    ids_rank, rows_rank = ids.shape.ndims, rows.shape.ndims
    if ids_rank is None or rows_rank is None:
        raise ValueError(f"embedding_lookup with max_norm needs ids and params of known rank, got {ids.shape} "
                         f"and {rows.shape}")
    return math_ops.clip_by_norm(rows, max_norm, axes=list(range(ids_rank, rows_rank)))


def _shard_of(flat_ids, params, strategy):
    """(shard of each id, its row in that shard)."""
    n = len(params)
    if strategy == "mod":
        return flat_ids % n, flat_ids // n
    sizes = [p.shape[0] for p in params]
    if all(s is not None for s in sizes):
        total = array_ops.constant(sum(sizes), flat_ids.dtype)
    else:
        total = math_ops.add_n([array_ops.cast(array_ops.shape(convert_to_tensor(p))[0], flat_ids.dtype)
                                for p in params])
    per_shard = total // n
    extras = total % n
    shard = math_ops.maximum(flat_ids // (per_shard + 1), (flat_ids - extras) // per_shard)
    in_longer = array_ops.cast(math_ops.less(shard, extras), flat_ids.dtype)
    row = in_longer * (flat_ids % (per_shard + 1)) + (1 - in_longer) * ((flat_ids - extras) % per_shard)
    return shard, row


def embedding_lookup(params, ids, partition_strategy="mod", name=None, validate_indices=True, max_norm=None):
    """params[ids]: the rows of the table `params` (a tensor or variable, or a list of its shards) at `ids`.

    The result has shape ids.shape + params[0].shape[1:]; see the module docstring for the shards.
    `validate_indices` is accepted for TF programs (ids are always checked).
    """
    if hasattr(params, "_get_variable_list"):       # a partitioned variable: its shards
        params = params._get_variable_list()
    if not isinstance(params, (list, tuple)):
        params = [params]
    if not params:
        raise ValueError("Need at least one param")
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"Unrecognized partition strategy: {partition_strategy}")
    with scopes.name_scope(name, "embedding_lookup"):
        ids = convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"embedding_lookup: ids must be integers, not {ids.dtype.name}")
        if len(params) == 1:
            with _colocated(params[0]):
                return array_ops.identity(_clip(array_ops.gather(params[0], ids), ids, max_norm))
        flat_ids = array_ops.reshape(ids, [-1])
        positions = array_ops.range(array_ops.size(flat_ids))
        shard, row = _shard_of(flat_ids, params, partition_strategy)
        shard = array_ops.cast(shard, dtypes.int32)
        rows_of = array_ops.dynamic_partition(row, shard, len(params))
        positions_of = array_ops.dynamic_partition(positions, shard, len(params))
        gathered = []
        for p, rows in zip(params, rows_of):
            with _colocated(p):
                gathered.append(array_ops.gather(p, rows))
        stitched = array_ops.dynamic_stitch(positions_of, gathered)
        element = params[0].shape[1:]
        for p in params[1:]:
            element = element.merge_with(p.shape[1:])
        if ids.shape.is_fully_defined() and element.is_fully_defined():
            shape = ids.shape.as_list() + element.as_list()
        else:
            shape = array_ops.concat([array_ops.shape(ids), array_ops.shape(stitched)[1:]], 0)
        return _clip(array_ops.reshape(stitched, shape), ids, max_norm)


def embedding_lookup_v2(params, ids, max_norm=None, name=None):
    """TF2's tg.nn.embedding_lookup: embedding_lookup with the "div" partition strategy."""
    return embedding_lookup(params, ids, "div", name, max_norm=max_norm)
