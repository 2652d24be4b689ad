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

A call costs little more than its members' ufunc calls: the kernel is
generated with the node's arity and calls the code of the last input shapes
seen, which checks those shapes itself (other shapes go to their own code);
and it turns NumPy's floating-point warnings off (TF's silent inf and nan)
only when a member's own kernel does, since that costs about one small ufunc
call. Fused or not, a chain gives the same bits and the same warnings.
"""

import numpy as np

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


def _member_kernel(node, k, opdef):
    """Member k's own kernel, as its unfused node would have it."""
    member = registry.KernelNode(node.attr("members")[k], opdef.name, _member_attrs(node, k), node.device, node.xp,
                                 node.resources, node.device_type, node.seed_base, node.allow_pickle)
    return opdef.kernel_for(node.device_type)(member)


def _input_count(operands):
    """The fused node's number of inputs: every input, and every member's result but the last, is some
    member's operand."""
    return len({i for ops in operands for i in ops}) - (len(operands) - 1)


def _fused_kernel(node):
    xp = node.xp
    members = _member_nodes(node)
    opdefs = [registry.get(m.op) for m in members]
    fns = [d.elementwise_fn(xp, _member_attrs(node, k)) for k, d in enumerate(opdefs)]
    operands = [tuple(int(i) for i in spec.split(",")) for spec in node.attr("operands")]
    scalars_ok = xp is np
    plans = {}  # input shapes -> generated code
    specs = {}  # input shapes -> (shape, dtype) of the result, for result_spec

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

    def recover(args, out):
        """What generated code that raised gives: the failing member's error, or (a transient
        failure) the result computed anew."""
        result = plain(args)[-1]
        if out is None:
            return result
        out[...] = result
        return out

    def other(args, out):
        """The call for inputs of other shapes than the current plan's: that plan, made on first use."""
        key = tuple(a.shape for a in args)  # an input's dtype is fixed by the graph; its shape is not
        prog = plans.get(key)
        if prog is None:
            return first(key, args, out)
        entry["current"] = prog
        return prog(*args, out=out)

    def first(key, args, out):
        vals = plain(args)
        if len(plans) >= _MAX_SHAPE_PLANS:
            plans.clear()
            specs.clear()
        scalar = scalars_ok and all(getattr(v, "size", 2) == 1 for v in vals)
        body = _scalar_source(members, args, vals, operands) if scalar else \
            _buffer_source(operands, args, vals, xp)
        entry["current"] = plans[key] = _compile(node.name, fns, key, body, other, recover)
        if isinstance(vals[-1], xp.ndarray):
            specs[key] = (vals[-1].shape, vals[-1].dtype)
        if out is None:
            return vals[-1]
        out[...] = vals[-1]
        return out

    # The kernel calls the current plan (the last input shapes' code) with no *args to pack: a fixed arity.
    params = "".join(f"a{i}, " for i in range(_input_count(operands)))
    entry = {"current": lambda *call: other(call[:-1], call[-1])}  # the inputs, then out
    exec(f"def run({params}out=None):\n    return current({params}out)\n", entry)  # noqa: S102
    run = entry["run"]
    if xp is np and any(registry.quiets_fp(_member_kernel(node, k, d)) for k, d in enumerate(opdefs)):
        run = registry.quiet_fp(run)  # as those members' own kernels: TF returns inf and nan silently

    def result_spec(args):
        """(shape, dtype) of the result for inputs `args` once a step with their shapes has run, else
        None: the executor then offers `out=` (memory the result is sent from) on the next call."""
        return specs.get(tuple(getattr(a, "shape", None) for a in args))
    run.result_spec = result_spec
    return run


def _compile(name, fns, shapes, body, other, recover):
    """The generated function for inputs of `shapes`: it checks them (inputs of other shapes go to
    `other(args, out)`) and runs `body` (lines that return the result), whose failure goes to
    `recover(args, out)`."""
    args = ", ".join(f"a{i}" for i in range(len(shapes)))
    tupled = f"({args},)" if shapes else "()"
    guard = " or ".join(f"a{i}.shape != _s{i}" for i in range(len(shapes))) or "False"
    source = "\n".join([f"def fused({args}{', ' if shapes else ''}out=None):",
                         f"    if {guard}:", f"        return _other({tupled}, out)", "    try:"]
                        + ["    " + line for line in body]
                        + ["    except Exception:", f"        return _recover({tupled}, out)"]) + "\n"
    scope = {f"f{k}": fn for k, fn in enumerate(fns)}
    scope.update({f"_s{i}": s for i, s in enumerate(shapes)}, _np=np, _other=other, _recover=recover)
    exec(compile(source, f"<fused {name}>", "exec"), scope)  # noqa: S102 - our own generated code
    return scope["fused"]


def _buffer_source(operands, args, vals, xp):
    """Lines that write each member's result into a dead intermediate of its shape and dtype."""
    nargs = len(args)
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
    return lines + ["    return out"]


def _scalar_source(members, args, vals, operands):
    """Lines for one-element tensors: NumPy scalars, whose arithmetic operators give the ufuncs'
    results (same dtype, same rounding) at a fraction of a ufunc call's cost."""
    nargs = len(args)
    lines = [f"    b{i} = a{i}[{', '.join(['0'] * a.ndim) or '()'}]" for i, a in enumerate(args)
             if isinstance(a, np.ndarray)]
    var = [f"b{i}" if isinstance(a, np.ndarray) else f"a{i}" for i, a in enumerate(args)]
    for k, ops in enumerate(operands):
        names = [var[i] for i in ops]
        form = _OPERATORS.get(members[k].op)
        lines.append(f"    t{k} = " + (form.format(*names) if form else f"f{k}({', '.join(names)})"))
        var.append(f"t{k}")
    result = vals[-1]
    if isinstance(result, np.ndarray):
        # every input has one element, so the result's shape is (1,) * its rank
        lines.append(f"    {var[-1]} = _np.array({var[-1]}, ndmin={result.ndim})")
    return lines + ["    if out is None:", f"        return {var[-1]}", f"    out[...] = {var[-1]}", "    return out"]


def _same_buffer(buf, result, xp):
    """Whether `result` can be written into `buf` (an intermediate): both arrays of one shape and dtype."""
    return (isinstance(buf, xp.ndarray) and isinstance(result, xp.ndarray) and buf.ndim > 0
            and buf.shape == result.shape and buf.dtype == result.dtype)


registry.register("_FusedElementwise", _infer_fused, _fused_kernel,
                  doc="A chain of elementwise ops in one kernel (the runtime's fusion pass makes it).")
