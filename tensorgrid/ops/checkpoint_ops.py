"""Checkpoint ops with TF's names, writing and reading tensorgrid's format
(tensorgrid/framework/checkpoint_format.py) on the device they run on.

A sharded Saver puts one SaveV2 and one RestoreV2 on each task that holds
variables, so every task writes and reads its own variables' file and no
value travels to the client; MergeV2Checkpoints then renames the parts and
writes the index. They touch files, so they are CPU-only, and on a
standalone worker only under its --allow-file-access directories
(worker/file_access.py).
"""

import os

import numpy as np

from tensorgrid.framework import checkpoint_format as fmt
from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.core_ops import to_host
from tensorgrid.ops.registry import register
from tensorgrid.worker import file_access


def _where(node):
    return f"{node.op} '{node.name}' on {node.device}"


def _text(value):
    value = to_host(value)
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(value):
    return [_text(v) for v in np.asarray(to_host(value), dtype=object).reshape(-1)]


def _check_string(ctx, index, what):
    if ctx.input_dtypes[index] is not dtypes.string:
        raise ctx.error(f"{what} must be a string tensor, got {ctx.input_dtypes[index].name}")


def _infer_sharded_filename(ctx):
    _check_string(ctx, 0, "basename")
    return [(dtypes.string, ())]


def _sharded_filename_kernel(node):
    return lambda basename, shard, num_shards: np.array(
        f"{_text(basename)}-{int(shard):05d}-of-{int(num_shards):05d}".encode(), dtype=object)


register("ShardedFilename", _infer_sharded_filename, _sharded_filename_kernel, cpu_only=True,
         doc="basename-<shard>-of-<num_shards>, both numbers five digits wide.")


def _infer_save(ctx):
    for i, what in enumerate(["prefix", "tensor_names", "shape_and_slices"]):
        _check_string(ctx, i, what)
    return []


def _save_kernel(node):
    def save(prefix, names, slices, *tensors):
        names, slices = _texts(names), _texts(slices)
        if not len(names) == len(slices) == len(tensors):
            raise errors.InvalidArgumentError(None, None, f"SaveV2: {len(names)} names, {len(slices)} slice specs "
                                                          f"and {len(tensors)} tensors")
        path = file_access.check_path(_text(prefix) + fmt.SUFFIX, "w", _where(node))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fmt.atomic_write(path, fmt.encode_items(
            [(n, to_host(t), s) for n, t, s in zip(names, tensors, slices)]))
    return save


register("SaveV2", _infer_save, _save_kernel, stateful=True, cpu_only=True, num_outputs=0,
         doc="Writes its tensors (by name, with slice specs) to the checkpoint file prefix.tgckpt.")


def _infer_restore(ctx):
    for i, what in enumerate(["prefix", "tensor_names", "shape_and_slices"]):
        _check_string(ctx, i, what)
    return [(dtypes.as_dtype(d), None) for d in ctx.attr("dtypes") or []]


def _restore_kernel(node):
    wanted = [dtypes.as_dtype(d) for d in node.attr("dtypes") or []]

    def restore(prefix, names, slices):
        prefix, names, slices = _text(prefix), _texts(names), _texts(slices)
        # the index and its data files lie side by side: the resolved prefix is where both are read
        prefix = file_access.check_path(prefix, "r", _where(node))
        try:
            reader = fmt.Reader(prefix)
        except FileNotFoundError:
            raise errors.NotFoundError(None, None, f"Failed to find any matching files for {prefix}") from None
        out = []
        for name, spec, dtype in zip(names, slices, wanted):
            entry = reader.entries.get(name)
            if entry is None:
                raise errors.NotFoundError(None, None, f"Key {name} not found in checkpoint {prefix}")
            if dtypes.as_dtype(entry["dtype"]) != dtype:
                raise errors.InvalidArgumentError(
                    None, None, f"tensor_name = {name}; expected dtype {dtype.name} does not equal original dtype "
                                f"{entry['dtype']} in checkpoint {prefix}")
            out.append(reader.read_slice(name, spec))
        return tuple(out) if len(out) != 1 else out[0]
    return restore


register("RestoreV2", _infer_restore, _restore_kernel, stateful=True, cpu_only=True,
         num_outputs=lambda attrs: len(attrs.get("dtypes") or []),
         doc="Reads tensors (by name, or the slice a spec names) from a checkpoint, sharded or not.")


def _infer_merge(ctx):
    _check_string(ctx, 0, "checkpoint_prefixes")
    _check_string(ctx, 1, "destination_prefix")
    return []


def _merge_kernel(node):
    def merge(prefixes, destination):
        parts = [file_access.check_path(p, "w", _where(node)) for p in _texts(prefixes)]
        fmt.merge_shards(parts, file_access.check_path(_text(destination), "w", _where(node)))
    return merge


register("MergeV2Checkpoints", _infer_merge, _merge_kernel, stateful=True, cpu_only=True, num_outputs=0,
         doc="Renames each task's part of a sharded checkpoint to its final name, then writes the index.")
