"""_FusedElementwise: a chain of elementwise ops evaluated in one kernel (made by runtime/fusion.py).

The node stands for its members, the user's nodes it replaced, in topological
order; the last member is the node itself (it keeps that member's name). Attrs:
`members` (their names), `member_ops` (their op types, each one with a
registry `ufunc` or `elementwise`), `operands` (per member, comma-separated
indices into the node's inputs followed by the earlier members' results),
`sources` (per member, the user's 'file:line' or '') and, for each attr `key`
of member k that is not the runtime's (a name starting with '_'), `m<k>.<key>`
(a Cast's DstT: `m3.DstT`).

The kernel runs the members' elementwise functions back to back: the very
functions their own kernels run (registry.OpDef.elementwise_fn), so the bits
are the same fused or not. The first call for a
combination of input shapes allocates every result and notes which member can
write into a dead intermediate of the same shape and dtype; every later call
with those shapes runs generated code that does so (`out=`), so a linear
chain allocates one array per step whatever its length. When every tensor of
the chain has one element (on a CPU), the code computes on NumPy scalars
instead, whose operators cost a fraction of a ufunc call. Inputs are never
written (a constant's or a variable's array may be one). A member that fails
fails the step with an error naming that member, its op and its line.
"""

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.ops import registry
from tensorgrid.runtime.ir import Node

_MAX_SHAPE_PLANS = 16  # input-shape combinations a kernel keeps generated code for
# Members whose ufunc is exactly this operator on NumPy scalars of one dtype.
_OPERATORS = {"Add": "({} + {})", "Sub": "({} - {})", "Mul": "({} * {})", "RealDiv": "({} / {})",
              "Neg": "(-{})", "Less": "({} < {})", "LessEqual": "({} <= {})", "Greater": "({} > {})",
              "GreaterEqual": "({} >= {})"}


def _infer_fused(ctx):
    raise ctx.error("a _FusedElementwise node is made by the runtime's fusion pass after shapes are known; "
                    "it is not for graphs")


def member_attr_key(k, key):
    """The fused node's attr holding attr `key` of its member k."""
    return f"m{k}.{key}"


def _member_attrs(node, k):
    prefix = member_attr_key(k, "")
    return {key[len(prefix):]: v for key, v in node.attrs.items() if key.startswith(prefix)}


def _member_nodes(node):
    """The ir.Nodes the fused node stands for (name, op, device, source): for error messages."""
    out = []
    for name, op, where in zip(node.attr("members"), node.attr("member_ops"), node.attr("sources")):
        file, _, line = where.rpartition(":")
        out.append(Node(name, op, device=node.device, source=(file, int(line)) if file else None))
    return out


def _fused_kernel(node):
    xp = node.xp
    members = _member_nodes(node)
    fns = [registry.get(m.op).elementwise_fn(xp, _member_attrs(node, k)) for k, m in enumerate(members)]
    operands = [tuple(int(i) for i in spec.split(",")) for spec in node.attr("operands")]
    quiet = xp is np
    plans = {}

    def plain(args):
        """Every member's result, each in an array of its own; the failing member's error."""
        vals = list(args)
        for k, (fn, ops) in enumerate(zip(fns, operands)):
            try:
                vals.append(fn(*[vals[i] for i in ops]))
            except Exception as e:
                from tensorgrid.worker.executor import node_error
                raise node_error(e, members[k]) from None
        return vals

    specs = {}  # input shapes -> (shape, dtype) of the result, for result_spec

    def run(*args, out=None):
        key = tuple(a.shape for a in args)  # an input's dtype is fixed by the graph; its shape is not
        prog = plans.get(key)
        return prog(*args, out=out) if prog is not None else _first(key, args, out)
    if quiet:
        run = registry.quiet_fp(run)  # as the members' own kernels: TF returns inf and nan silently

    def result_spec(args):
        """(shape, dtype) of the result for inputs `args` once a step with their shapes has run, else
        None: the executor then offers `out=` (memory the result is sent from) on the next call."""
        return specs.get(tuple(getattr(a, "shape", None) for a in args))
    run.result_spec = result_spec

    def _first(key, args, out):
        vals = plain(args)
        if len(plans) >= _MAX_SHAPE_PLANS:
            plans.clear()
            specs.clear()
        scalar = quiet and all(getattr(v, "size", 2) == 1 for v in vals)
        plans[key] = _checked(_scalar_source(args, vals) if scalar else _buffer_source(len(args), vals))
        if isinstance(vals[-1], xp.ndarray):
            specs[key] = (vals[-1].shape, vals[-1].dtype)
        if out is None:
            return vals[-1]
        out[...] = vals[-1]
        return out

    def _buffer_source(nargs, vals):
        """Code that writes each member's result into a dead intermediate of its shape and dtype."""
        last_use = {}
        for k, ops in enumerate(operands):
            for i in ops:
                last_use[i] = k
        var = [f"a{i}" for i in range(nargs)]
        lines = []
        for k, ops in enumerate(operands):
            call = f"f{k}(" + ", ".join(var[i] for i in ops)
            reuse = next((i for i in ops if i >= nargs and last_use[i] == k
                          and _same_buffer(vals[i], vals[nargs + k], xp)), None)
            if reuse is None:
                var.append(f"t{k}")
                lines.append(f"    t{k} = {call})")
            else:  # the result is in var[reuse] (a ufunc's) or a new array (a function may allocate)
                var.append(var[reuse])
                lines.append(f"    {var[reuse]} = {call}, out={var[reuse]})")
            if k == len(operands) - 1:  # the last member writes into `out` when it is given
                lines[-1:] = ["    if out is None:", "    " + lines[-1], f"        return {var[-1]}",
                              f"    r = {call}, out=out)", "    if r is not out:", "        out[...] = r"]
        return nargs, lines, "    return out"

    def _scalar_source(args, vals):
        """Code for one-element tensors: NumPy scalars, whose arithmetic operators give the ufuncs'
        results (same dtype, same rounding) at a fraction of a ufunc call's cost."""
        nargs = len(args)
        lines = [f"    a{i} = a{i}[{', '.join(['0'] * a.ndim) or '()'}]" for i, a in enumerate(args)
                 if isinstance(a, np.ndarray)]
        var = [f"a{i}" for i in range(nargs)]
        for k, ops in enumerate(operands):
            names = [var[i] for i in ops]
            form = _OPERATORS.get(members[k].op)
            lines.append(f"    t{k} = " + (form.format(*names) if form else f"f{k}({', '.join(names)})"))
            var.append(f"t{k}")
        result = vals[-1]
        if isinstance(result, np.ndarray):
            # every input has one element, so the result's shape is (1,) * its rank
            lines.append(f"    {var[-1]} = _np.array({var[-1]}, ndmin={result.ndim})")
        lines += ["    if out is None:", f"        return {var[-1]}", f"    out[...] = {var[-1]}"]
        return nargs, lines, "    return out"

    def _checked(generated):
        nargs, lines, ret = generated
        source = f"def fused({''.join(f'a{i}, ' for i in range(nargs))}out=None):\n" + "\n".join(lines + [ret]) + "\n"
        scope = {f"f{k}": fn for k, fn in enumerate(fns)}
        scope["_np"] = np
        exec(compile(source, f"<fused {node.name}>", "exec"), scope)  # noqa: S102 - our own generated code
        fused = scope["fused"]

        def checked(*args, out=None):
            try:
                return fused(*args, out=out)
            except Exception:
                result = plain(args)[-1]  # raises naming the member that failed; else a transient error
                if out is None:
                    return result
                out[...] = result
                return out
        return checked

    return run


def _same_buffer(buf, result, xp):
    """Whether `result` can be written into `buf` (an intermediate): both arrays of one shape and dtype."""
    return (isinstance(buf, xp.ndarray) and isinstance(result, xp.ndarray) and buf.ndim > 0
            and buf.shape == result.shape and buf.dtype == result.dtype)


registry.register("_FusedElementwise", _infer_fused, _fused_kernel,
                  doc="A chain of elementwise ops in one kernel (the runtime's fusion pass makes it).")
