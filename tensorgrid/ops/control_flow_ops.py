"""Control flow ops: functional If, Case and While (TF2's op names), whose branches and bodies
are runtime.ir.Functions called by the kernel, and the values their gradients keep.

- If / StatelessIf (inputs: cond, then the branches' arguments): runs `then_branch` when the
  scalar cond is true, else `else_branch`; only the branch taken runs, side effects included.
- Case / StatelessCase (inputs: branch_index, arguments): runs `branches[index]`; an index out
  of range runs the last branch (the default).
- While / StatelessWhile (inputs: the loop variables): while `cond(vars)` is true, vars =
  `body(vars)`. The body's results past the loop variables (attr `accumulate` of them) are
  not loop variables: the value each iteration gives is kept, and the loop outputs each
  such sequence as a TensorList after the loop variables (what a loop's gradient reads its
  forward values from). Between iterations the kernel checks the step's cancellation and
  deadline, so an endless loop still ends with its step.
- _WhileShard / _CaseShard: one device's part of a While / If / Case whose body spans devices
  (runtime/control_flow.py makes them; see its docstring for the protocol). They block on
  other devices, so they are asynchronous kernels (registry `is_async`): the executor runs
  them on a thread of their own and keeps running the rest of the partition.
- TensorListGetItem / TensorListLength / TensorListStack read TensorLists; OptionalFromValue /
  OptionalNone / OptionalGetValue / OptionalHasValue wrap an If's intermediates for its
  gradient. Variant values never leave their device: the ops reading them sit with them.

The "Stateless" variants hold no stateful op in their bodies; the others do (and so are
ordered among a tg.function's stateful ops).
"""

import threading
import time

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.registry import register


def _shapes(ctx, key, count):
    shapes = ctx.attr(key)
    if not shapes:
        return [None] * count
    return [TensorShape(s).as_tuple() for s in shapes]


def truth(value, where):
    """The bool a cond's scalar predicate stands for (TF's If: numbers are true when nonzero)."""
    if getattr(value, "ndim", 0) != 0:
        raise errors.InvalidArgumentError(
            None, None, f"{where}: the predicate must be a scalar, but it has shape {list(value.shape)}")
    return bool(value)


def branch_index(value, count):
    """The branch a Case's index picks: out of [0, count) means the last one, the default."""
    i = int(value)
    return i if 0 <= i < count else count - 1


def check_step(step, where, iterations):
    """CancelledError or DeadlineExceededError when `step` has ended, for a loop between iterations."""
    if step.cancelled.is_set() or (step.rendezvous is not None and step.rendezvous.aborted):
        raise errors.CancelledError(None, None, f"step {step.step_id} was cancelled while {where} ran "
                                    f"({iterations} iterations done)")
    if step.deadline is not None and time.monotonic() > step.deadline:
        raise errors.DeadlineExceededError(
            None, None, f"step {step.step_id} ran past its deadline in {where} after {iterations} iterations")


def pack(values):
    """A kernel's return value for a list of outputs: None, the value itself, or a tuple."""
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _describe(node):
    return f"{node.op} '{node.name}' on {node.device}"


def _compile(fn, node):
    from tensorgrid.worker.functions import CompiledFunction, device_of
    return CompiledFunction(fn, device_of(node))


# ---- If / Case ------------------------------------------------------------------------------

def _infer_branches(ctx):
    tout = [dtypes.as_dtype(t) for t in ctx.attr("Tout")]
    return list(zip(tout, _shapes(ctx, "output_shapes", len(tout))))


def _if_kernel(node):
    where = _describe(node)
    then_fn = _compile(node.attr("then_branch"), node)
    else_fn = _compile(node.attr("else_branch"), node)

    def run(step, pred, *args):
        fn = then_fn if truth(pred, where) else else_fn
        return pack(fn(step, list(args)))
    return run


def _case_kernel(node):
    branches = [_compile(f, node) for f in node.attr("branches")]

    def run(step, index, *args):
        return pack(branches[branch_index(index, len(branches))](step, list(args)))
    return run


def _branch_outputs(attrs):
    return len(attrs["Tout"])


for _name, _stateful in (("If", True), ("StatelessIf", False)):
    register(_name, _infer_branches, _if_kernel, needs_step=True, stateful=_stateful, num_outputs=_branch_outputs,
             doc="Runs function attr then_branch on the inputs after the first when that scalar is true, else "
                 "else_branch; attr Tout lists the output dtypes.")
for _name, _stateful in (("Case", True), ("StatelessCase", False)):
    register(_name, _infer_branches, _case_kernel, needs_step=True, stateful=_stateful, num_outputs=_branch_outputs,
             doc="Runs branches[index] (the last branch for an index out of range) on the inputs after the "
                 "int32 index; attr Tout lists the output dtypes.")


# ---- While ----------------------------------------------------------------------------------

def _infer_while(ctx):
    types = [dtypes.as_dtype(t) for t in ctx.attr("T")]
    if [t for t in ctx.input_dtypes] != types:
        raise ctx.error(f"loop variables of dtypes {[t.name for t in ctx.input_dtypes]} but attr T lists "
                        f"{[t.name for t in types]}")
    specs = list(zip(types, _shapes(ctx, "output_shapes", len(types))))
    return specs + [(dtypes.variant, ())] * ctx.attr("accumulate", 0)


def _while_outputs(attrs):
    return len(attrs["T"]) + attrs.get("accumulate", 0)


class TensorList:
    """A list of tensors that travels as one variant value: what a loop kept of each iteration."""

    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items

    def __repr__(self):
        return f"<TensorList of {len(self.items)}>"


def _while_kernel(node):
    where = _describe(node)
    cond = _compile(node.attr("cond"), node)
    body = _compile(node.attr("body"), node)
    nvars = len(node.attr("T"))
    nacc = node.attr("accumulate", 0)

    def run(step, *values):
        values = list(values)
        kept = [[] for _ in range(nacc)]
        done = 0
        while True:
            check_step(step, where, done)
            if not truth(cond(step, values)[0], where):
                break
            out = body(step, values)
            if nacc:
                for seq, v in zip(kept, out[nvars:]):
                    seq.append(v)
                out = out[:nvars]
            values = out
            done += 1
        return pack(values + [TensorList(seq) for seq in kept])
    return run


for _name, _stateful in (("While", True), ("StatelessWhile", False)):
    register(_name, _infer_while, _while_kernel, needs_step=True, stateful=_stateful, num_outputs=_while_outputs,
             doc="While function attr cond gives true on the loop variables, replaces them by what function "
                 "attr body gives; attr T lists their dtypes, attr accumulate how many more body results "
                 "are kept per iteration and output as TensorLists.")


# ---- shards: one device's part of a loop or branch that spans devices --------------------------

def _frame(step, suffix):
    from tensorgrid.worker.rendezvous import FrameRendezvous
    return FrameRendezvous(step.rendezvous, suffix)


def _receive(rendezvous, key, step, where, iterations):
    """The value sent under `key`, waiting no longer than the step lives."""
    box = []
    done = threading.Event()

    def arrived(value, err):
        box.append((value, err))
        done.set()
    rendezvous.recv_async(key, arrived)
    while not done.wait(0.1 if step.deadline is None else max(0.0, min(0.1, step.deadline - time.monotonic()))):
        check_step(step, where, iterations)
    value, err = box[0]
    if err is not None:
        raise err
    return value


def _while_shard_kernel(node):
    where = _describe(node)
    cond = _compile(node.attr("cond"), node)
    body = _compile(node.attr("body"), node)
    cond_args, body_args = list(node.attr("cond_args")), list(node.attr("body_args"))
    nvars, nacc = node.attr("num_vars"), node.attr("accumulate", 0)
    frame = node.attr("frame")
    pred_keys, pred_key = list(node.attr("pred_keys")), node.attr("pred_key")
    computes_pred = not pred_key

    def run(step, *state):
        state = list(state)
        kept = [[] for _ in range(nacc)]
        done = 0
        while True:
            check_step(step, where, done)
            rv = _frame(step, f"|{frame}:{done}c")
            if not cond.empty:
                out = cond(step, [state[i] for i in cond_args], rv)
            if computes_pred:
                pred = truth(out[0], where)
                flag = np.bool_(pred)
                for key in pred_keys:
                    rv.send(key, flag)
            else:
                pred = bool(_receive(rv, pred_key, step, where, done))
            if not pred:
                break
            if not body.empty:
                out = body(step, [state[i] for i in body_args], _frame(step, f"|{frame}:{done}b"))
                state[:nvars] = out[:nvars]
                for seq, v in zip(kept, out[nvars:]):
                    seq.append(v)
            done += 1
        return pack(state[:nvars] + [TensorList(seq) for seq in kept])
    return run


def _infer_while_shard(ctx):
    types = [dtypes.as_dtype(t) for t in ctx.attr("T")][:ctx.attr("num_vars")]
    return [(t, None) for t in types] + [(dtypes.variant, ())] * ctx.attr("accumulate", 0)


register("_WhileShard", _infer_while_shard, _while_shard_kernel, needs_step=True, stateful=True, is_async=True,
         num_outputs=lambda attrs: attrs["num_vars"] + attrs.get("accumulate", 0),
         doc="One device's part of a While spanning devices (see runtime/control_flow.py): inputs the loop "
             "variables it homes, then the invariants it reads; outputs the former's final values.")


def _case_shard_kernel(node):
    branches = [_compile(f, node) for f in node.attr("branches")]
    flat, counts = list(node.attr("branch_args")), list(node.attr("branch_arg_counts"))
    starts = [sum(counts[:b]) for b in range(len(counts))]
    args_of = [flat[s:s + c] for s, c in zip(starts, counts)]
    frame, is_if = node.attr("frame"), node.attr("is_if")
    where = _describe(node)
    nout = len(node.attr("Tout"))

    def run(step, selector, *args):
        b = (0 if truth(selector, where) else 1) if is_if else branch_index(selector, len(branches))
        if branches[b].empty:
            return pack([None] * nout)
        return pack(branches[b](step, [args[i] for i in args_of[b]], _frame(step, f"|{frame}:{b}")))
    return run


register("_CaseShard", _infer_branches, _case_shard_kernel, needs_step=True, stateful=True, is_async=True,
         num_outputs=_branch_outputs,
         doc="One device's part of an If or Case spanning devices (see runtime/control_flow.py): inputs the "
             "predicate or index, then the arguments it reads; outputs the results it homes.")


# ---- TensorLists ------------------------------------------------------------------------------

def _element_shape(ctx):
    shape = ctx.attr("element_shape")
    return None if shape is None else TensorShape(shape).as_tuple()


def _infer_get_item(ctx):
    return [(dtypes.as_dtype(ctx.attr("element_dtype")), _element_shape(ctx))]


def _get_item_kernel(node):
    where = _describe(node)

    def get(tlist, index):
        i = int(index)
        if not 0 <= i < len(tlist.items):
            raise errors.InvalidArgumentError(
                None, None, f"{where}: index {i} is out of range for a list of {len(tlist.items)}")
        return tlist.items[i]
    return get


register("TensorListGetItem", _infer_get_item, _get_item_kernel, colocate_with_input=0,
         doc="Item `index` of a TensorList; attr element_dtype is its dtype.")
register("TensorListLength", lambda ctx: [(dtypes.int32, ())],
         lambda node: lambda tlist: np.int32(len(tlist.items)), colocate_with_input=0,
         doc="The number of items of a TensorList.")


def _infer_list_stack(ctx):
    shape = _element_shape(ctx)
    return [(dtypes.as_dtype(ctx.attr("element_dtype")), None if shape is None else (None,) + shape)]


def _list_stack_kernel(node):
    xp = node.xp
    dt = dtypes.as_dtype(node.attr("element_dtype")).as_numpy_dtype
    shape = node.attr("element_shape")

    def stack(tlist):
        if not tlist.items:
            dims = TensorShape(shape).as_tuple() if shape is not None else None
            if dims is None or any(d is None for d in dims):
                raise errors.InvalidArgumentError(
                    None, None, f"{_describe(node)}: cannot stack an empty list of unknown element shape")
            return xp.zeros((0,) + tuple(dims), dtype=dt)
        return xp.stack(tlist.items)
    return stack


register("TensorListStack", _infer_list_stack, _list_stack_kernel, colocate_with_input=0,
         doc="The items of a TensorList stacked along a new first axis.")


# ---- Optionals ----------------------------------------------------------------------------------

class Optional:
    """A value, or none: what an If outputs for a branch's intermediate (none when the other branch ran)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


_NONE = Optional(None)

register("OptionalFromValue", lambda ctx: [(dtypes.variant, ())], lambda node: lambda v: Optional(v),
         colocate_with_input=0, doc="An optional holding its input.")
register("OptionalNone", lambda ctx: [(dtypes.variant, ())], lambda node: lambda: _NONE,
         doc="An optional holding nothing.")
register("OptionalHasValue", lambda ctx: [(dtypes.bool_, ())],
         lambda node: lambda opt: np.bool_(opt.value is not None), colocate_with_input=0,
         doc="Whether an optional holds a value.")


def _infer_get_value(ctx):
    shapes = ctx.attr("output_shapes")
    return [(dtypes.as_dtype(ctx.attr("output_types")[0]),
             TensorShape(shapes[0]).as_tuple() if shapes else None)]


def _get_value_kernel(node):
    where = _describe(node)

    def get(opt):
        if opt.value is None:
            raise errors.InvalidArgumentError(None, None, f"{where}: the optional holds no value")
        return opt.value
    return get


register("OptionalGetValue", _infer_get_value, _get_value_kernel, colocate_with_input=0,
         doc="The value an optional holds (InvalidArgumentError when it holds none).")
