"""State ops beyond the core resource-variable ops: reporting which variables are uninitialized,
counting a variable up to a limit (TF1's input epochs)."""

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.registry import register
from tensorgrid.worker import resources as res


def _infer_uninitialized_names(ctx):
    names = ctx.attr("names") or []
    if len(names) != len(ctx.input_dtypes):
        raise ctx.error(f"has {len(ctx.input_dtypes)} inputs but {len(names)} names")
    return [(dtypes.string, (None,))]


def _uninitialized_names_kernel(node):
    names = [n.encode() if isinstance(n, str) else n for n in node.attr("names") or []]

    def report(*initialized):
        out = np.empty(sum(1 for flag in initialized if not flag), dtype=object)
        out[:] = [n for n, flag in zip(names, initialized) if not flag]
        return out
    return report


register("UninitializedNames", _infer_uninitialized_names, _uninitialized_names_kernel, cpu_only=True,
         doc="The names (attr 'names', bytes) whose matching bool input is False, as a string vector.")


def _infer_count_up_to(ctx):
    return [(dtypes.as_dtype(ctx.attr("T")), ())]


def _count_up_to_kernel(node):
    limit = int(node.attr("limit"))
    desc = f"{node.op} '{node.name}' on {node.device}"

    def count_up_to(var):
        with var.lock:
            old = res.read(var, desc)
            if old >= limit:
                raise errors.OutOfRangeError(None, None, f"Reached limit of {limit}")
            var.value = np.asarray(old + 1, dtype=old.dtype)
        return old
    return count_up_to


register("ResourceCountUpTo", _infer_count_up_to, _count_up_to_kernel, stateful=True, cpu_only=True,
         colocate_with_input=0,
         doc="Adds 1 to an integer variable and outputs its old value; OutOfRangeError once it reached 'limit'.")
