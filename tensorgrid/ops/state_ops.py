"""State ops beyond the core resource-variable ops: reporting which variables are uninitialized."""

import numpy as np

from tensorgrid.framework import dtypes
from tensorgrid.ops.registry import register


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
