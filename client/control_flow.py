"""tg.cond, tg.case, tg.switch_case and tg.while_loop: control flow with TF1's semantics.

In a graph (TF1 graph mode, or inside tg.function) each builds one functional op whose
branches or body are traced into Functions (tensorgrid/ops/control_flow_ops.py):

- `cond(pred, true_fn, false_fn)` is an If (StatelessIf when no branch holds a stateful op);
  only the taken branch runs, its side effects included. `switch_case` is a Case; `case`
  nests conds, as TF does.
- `while_loop(cond, body, loop_vars)` is a While whose loop variables are, as in TF2's
  while_v2, [iteration counter, maximum_iterations (-1: none), the flattened loop_vars, the
  tensors cond and body capture]; captures pass through the body unchanged. A TensorArray
  loop variable travels as its flow, its handle captured.

Tensors of enclosing graphs read inside a branch or body are captured (client/function.py)
and become the op's inputs. A branch or body shares the collections of the graph it is built
in (variable scopes, UPDATE_OPS), a variable made inside it is made in the graph outside
every branch and body (as TF's init_scope does), and a control dependency on an op outside
becomes a control input of the op. In a TF1 graph, a branch's or body's stateful ops run
only when its results need them (TF prunes the rest); inside tg.function all of them run, as
TF2's automatic control dependencies make them.

Eagerly, cond and while_loop are Python control flow.
"""

import contextlib
import dataclasses
import itertools

import numpy as np

from tensorgrid.client import array_ops, context, math_ops, nest
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.function import FuncGraph, side_effects, trace_function
from tensorgrid.client.tensor_array import TensorArray
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape
from tensorgrid.ops import registry
from tensorgrid.runtime import ir

__all__ = ["cond", "case", "switch_case", "while_loop"]

_ids = itertools.count(1)


class BodyGraph(FuncGraph):
    """A cond branch or loop body being traced, inside the graph `outer_graph` being built."""

    def __init__(self, name, outer_graph):
        super().__init__(name, outer_graph)
        self._collections = outer_graph._collections
        self.outer_control = []  # ops of enclosing graphs that ops here were made to wait for

    def _create_op(self, op_type, inputs, attrs, name, output_specs, source, extra_control=()):
        for c in list(self._current_control_inputs()) + list(extra_control):
            if c.graph is not self and c not in self.outer_control:
                self.outer_control.append(c)
        return super()._create_op(op_type, inputs, attrs, name, output_specs, source, extra_control)


def runs_side_effects(graph):
    """Whether a branch or body built in `graph` runs the stateful ops its results do not need:
    inside tg.function yes (TF2's automatic control dependencies), in a TF1 graph no."""
    while isinstance(graph, BodyGraph):
        graph = graph.outer_graph
    return isinstance(graph, FuncGraph)


@contextlib.contextmanager
def outside_bodies():
    """Makes ops (a variable) in the graph outside every branch and body being traced, with the
    innermost one's name and device scopes and no control dependencies; a no-op elsewhere."""
    inner = graph_lib.get_default_graph()
    if context.executing_eagerly() or not isinstance(inner, BodyGraph):
        yield
        return
    home = inner
    while isinstance(home, BodyGraph):
        home = home.outer_graph
    saved = home._name_stack, home._device_stack
    home._name_stack, home._device_stack = inner._name_stack, list(inner._device_stack)
    try:
        with home.as_default(), home.control_dependencies(None):
            yield
    finally:
        home._name_stack, home._device_stack = saved


# ---- nested structures, TensorArrays included ---------------------------------------------------

@dataclasses.dataclass
class _Flat:
    """A Python structure flattened: its nest spec, its tensors, and the TensorArray each came from."""

    spec: object
    tensors: list
    arrays: list  # per tensor: the TensorArray whose flow it is, or None

    def rebuild(self, values):
        leaves = [v if ta is None else ta._with_flow(v) for v, ta in zip(values, self.arrays)]
        return nest.rebuild(self.spec, leaves)


def _flatten(structure, what):
    """Flattens `structure` into tensors of the current graph (Python values converted, a
    TensorArray by its flow); an Operation becomes a bool tensor that runs it, None stays None."""
    tensors, arrays = [], []

    def leaf(x):
        if x is None:
            return nest.Keep(None)
        array = x if isinstance(x, TensorArray) else None
        if array is not None:
            t = array.flow
        elif isinstance(x, graph_lib.Operation):
            with graph_lib.get_default_graph().control_dependencies([x]):
                t = array_ops.constant(True, name="op_done")
        else:
            try:
                t = graph_lib.convert_to_tensor(x)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{what}: cannot convert {x!r} to a tensor: {e}") from None
        if isinstance(t, graph_lib.Tensor) and t.graph is not graph_lib.get_default_graph():
            t = graph_lib.get_default_graph()._capture(t, what)  # a branch returning an outer tensor
        arrays.append(array)
        return t
    spec = nest.flatten(structure, leaf, tensors)
    return _Flat(spec, tensors, arrays)


def _same_structure(a, b, check_types=True):
    if a[0] != b[0] and not (not check_types and {a[0], b[0]} <= {"seq", "namedtuple"}):
        return False
    kind = a[0]
    if kind in ("leaf", "const"):
        return True
    if kind == "dict":
        return [k for k, _ in a[2]] == [k for k, _ in b[2]] and all(
            _same_structure(x, y, check_types) for (_, x), (_, y) in zip(a[2], b[2]))
    if check_types and a[1] is not b[1]:
        return False
    return len(a[2]) == len(b[2]) and all(_same_structure(x, y, check_types) for x, y in zip(a[2], b[2]))


def _shape_text(shape):
    dims = TensorShape(shape).as_tuple()
    if dims is None:
        return "<unknown>"
    return "(" + ", ".join("None" if d is None else str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _most_specific_compatible(shapes):
    dims = [TensorShape(s).as_tuple() for s in shapes]
    if any(d is None for d in dims) or len({len(d) for d in dims}) != 1:
        return TensorShape(None)
    return TensorShape([ds[0] if len(set(ds)) == 1 else None for ds in zip(*dims)])


# ---- tracing branches and bodies -------------------------------------------------------------------

@dataclasses.dataclass
class Trace:
    """One traced branch or body: its graph, argument placeholders, flat result tensors, result
    structure, and the outer tensors it captured with their placeholders."""

    graph: BodyGraph
    args: list
    outputs: list
    flat: _Flat

    @property
    def captures(self):
        return [outer for outer, _ in self.graph.captures]

    def placeholder_of(self, outer):
        for o, ph in self.graph.captures:
            if o is outer:
                return ph
        return None


def trace(python_fn, name, outer, arg_specs=(), arg_names=None, graph_cls=BodyGraph, wrap=None):
    """Traces python_fn(*placeholders) into a BodyGraph of `outer`; `wrap(placeholders, value)`
    may turn the Python value into the flat list of result tensors itself."""
    g = graph_cls(f"{name}_{next(_ids)}", outer)
    box = {}

    def flat_fn(*placeholders):
        value = python_fn(*placeholders)
        if wrap is not None:
            return wrap(placeholders, value)
        box["flat"] = _flatten(value, name)
        return box["flat"].tensors
    traced = trace_function(flat_fn, list(arg_specs), name, outer, arg_names, func_graph=g)
    placeholders = [g.get_operation_by_name(a).outputs[0] for a in traced.function.args[:len(arg_specs)]]
    return Trace(g, placeholders, list(traced.outputs), box.get("flat"))


def match_captures(traces):
    """The union of the traces' captured outer tensors, in first-capture order, and per trace the
    placeholders that stand for them (a new, unused one where a trace captured none)."""
    union, seen = [], set()
    for t in traces:
        for outer in t.captures:
            if id(outer) not in seen:
                seen.add(id(outer))
                union.append(outer)
    per_trace = []
    for t in traces:
        phs = []
        for outer in union:
            ph = t.placeholder_of(outer)
            if ph is None:
                with t.graph.as_default(), t.graph.control_dependencies(None), t.graph.device(None):
                    ph = graph_lib.apply_op("Placeholder", [], {"dtype": outer.dtype, "shape": outer.shape},
                                            name="unused_capture")
            phs.append(ph)
        per_trace.append(phs)
    return union, per_trace


def make_function(t, args, results, extra_control=()):
    """The ir.Function of trace `t` with these argument placeholders and result tensors."""
    g = t.graph
    control = list(extra_control)
    if runs_side_effects(g.outer_graph):
        control += [c for c in side_effects(g) if c not in control]
    return ir.Function(g.name, g.to_ir(), [a.op.name for a in args], [r.name for r in results],
                       [(r.dtype, r.shape.as_tuple()) for r in results], control)


def _stateful(graphs):
    for g in graphs:
        for op in g.get_operations():
            if registry.get(op.type).stateful:
                return True
    return False


def _outer_control(traces):
    ops = []
    for t in traces:
        ops.extend(c for c in t.graph.outer_control if c not in ops)
    return ops


def _op_of(result):
    if isinstance(result, graph_lib.Operation):
        return result
    return (result[0] if isinstance(result, list) else result).op


# ---- cond, switch_case, case ---------------------------------------------------------------------------

def branches_op(op_types, selector, traces, scope, what):
    """Builds the If / Case op over `traces` (all branch traces) selected by `selector`; returns the
    branches' result structure holding the op's outputs, each through an Identity named as TF names it."""
    first = traces[0]
    for i, t in enumerate(traces[1:], 1):
        if not _same_structure(first.flat.spec, t.flat.spec) or len(first.outputs) != len(t.outputs):
            raise ValueError(f"{what}: the branches must return the same number, type, and overall structure of "
                             f"values; branch 0 returns {nest.rebuild(first.flat.spec, first.outputs)!r}, "
                             f"branch {i} returns {nest.rebuild(t.flat.spec, t.outputs)!r}")
        for a, b in zip(first.outputs, t.outputs):
            if a.dtype != b.dtype:
                raise TypeError(f"{what}: the branches must return the same number, type, and overall structure "
                                f"of values; branch 0 output {a!r} and branch {i} output {b!r} differ in dtype")
    union, phs = match_captures(traces)
    fns = [make_function(t, p, t.outputs) for t, p in zip(traces, phs)]
    shapes = [_most_specific_compatible([t.outputs[k].shape for t in traces]) for k in range(len(first.outputs))]
    attrs = {"Tin": [u.dtype for u in union], "Tout": [o.dtype for o in first.outputs], "output_shapes": shapes}
    if op_types[0] == "If":
        attrs.update(Tcond=selector.dtype, then_branch=fns[0], else_branch=fns[1])
    else:
        attrs["branches"] = fns
    op_type = op_types[0] if _stateful([t.graph for t in traces]) else op_types[1]
    op = _op_of(graph_lib.apply_op(op_type, [selector] + union, attrs, name=scope,
                                   control_inputs=_outer_control(traces)))
    op._control_flow = BranchInfo(traces, phs)
    outputs = [array_ops.identity(o, name="Identity") for o in op.outputs]
    return first.flat.rebuild(outputs)


@dataclasses.dataclass
class BranchInfo:
    """What an If / Case op's gradient needs of its branches: their traces and, per trace, the
    placeholders for the op's inputs after the selector."""

    traces: list
    inputs: list


def _eager_truth(value):
    if hasattr(value, "_as_tensor"):
        value = value._as_tensor()
    return bool(np.asarray(getattr(value, "_value", value)))


def _unpack_singleton(value):
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value


def _check_callable(fn, what):
    if not callable(fn):
        raise TypeError(f"'{what}' must be callable.")


def cond(pred, true_fn=None, false_fn=None, strict=False, name=None, fn1=None, fn2=None):
    """true_fn() if pred else false_fn(): in a graph, an If op that runs only the branch taken.

    `fn1`/`fn2` are TF1's old names of true_fn/false_fn. Both branches must
    return the same structure of tensors with the same dtypes; the result's
    static shapes are the most specific both fit. Eagerly, a singleton list
    result is unpacked unless `strict` (as TF's eager cond does).
    """
    if fn1 is not None:
        if true_fn is not None:
            raise TypeError("cond(): 'true_fn' and 'fn1' may not be set simultaneously.")
        true_fn = fn1
    if fn2 is not None:
        if false_fn is not None:
            raise TypeError("cond(): 'false_fn' and 'fn2' may not be set simultaneously.")
        false_fn = fn2
    if true_fn is None:
        raise TypeError("cond(): 'true_fn' argument required")
    if false_fn is None:
        raise TypeError("cond(): 'false_fn' argument required")
    _check_callable(true_fn, "true_fn")
    _check_callable(false_fn, "false_fn")
    if context.executing_eagerly():
        result = true_fn() if _eager_truth(pred) else false_fn()
        return result if strict else _unpack_singleton(result)
    if isinstance(pred, (bool, np.bool_)):
        raise TypeError("pred must not be a Python bool", pred)
    g = graph_lib.get_default_graph()
    with g.name_scope(name or "cond") as scope:
        pred = graph_lib.convert_to_tensor(pred)
        if not (pred.dtype.is_bool or pred.dtype.is_integer or pred.dtype.is_floating):
            raise TypeError(f"cond: pred must be a bool (or numeric) scalar tensor, got {pred!r}")
        traces = [trace(true_fn, "cond_true", g), trace(false_fn, "cond_false", g)]
        return branches_op(("If", "StatelessIf"), pred, traces, scope, "tf.cond")


def _branch_list(branch_fns):
    if isinstance(branch_fns, dict):
        pairs = sorted(branch_fns.items(), key=lambda kv: kv[0])
    elif branch_fns and all(isinstance(b, (list, tuple)) for b in branch_fns):
        pairs = sorted(branch_fns, key=lambda kv: kv[0])
    else:
        return list(branch_fns)
    keys = [k for k, _ in pairs]
    if keys != list(range(len(keys))):
        raise ValueError(f"branch indices (keys) must form contiguous range of [0 to {len(keys)}) but found "
                         f"{{{','.join(str(k) for k in keys)}}}")
    return [fn for _, fn in pairs]


def switch_case(branch_index, branch_fns, default=None, name="switch_case"):
    """branch_fns[branch_index](), default() (or the last branch) when the index is out of range:
    in a graph, one Case op running only the branch taken."""
    fns = _branch_list(branch_fns)
    if not fns:
        raise ValueError("Must provide at least one item in branch_fns")
    for i, fn in enumerate(fns):
        _check_callable(fn, f"branch_fns[{i}]")
    if default is not None:
        _check_callable(default, "default")
        fns = fns + [default]
    if context.executing_eagerly():
        index = int(np.asarray(getattr(branch_index, "_value", branch_index)))
        return fns[index if 0 <= index < len(fns) else len(fns) - 1]()
    g = graph_lib.get_default_graph()
    with g.name_scope(name):
        index = graph_lib.convert_to_tensor(branch_index)
        if not index.dtype.is_integer:
            raise TypeError(f"'branch_index' must be an integer Tensor, got {index.dtype!r}")
        if index.dtype != dtypes.int32:
            index = array_ops.cast(index, dtypes.int32)
        with g.name_scope("indexed_case") as scope:
            traces = [trace(fn, f"branch{i}", g) for i, fn in enumerate(fns)]
            return branches_op(("Case", "StatelessCase"), index, traces, scope, "tf.switch_case")


def case(pred_fn_pairs, default=None, exclusive=False, strict=False, name="case"):
    """The fn of the first (pred, fn) pair whose pred is true, else default(): nested conds, as TF
    builds them. Without a default the last pair's fn is it, and no true pred at all fails the
    step with InvalidArgumentError; with `exclusive`, so do two true preds (among the others)."""
    pairs = list(pred_fn_pairs.items()) if isinstance(pred_fn_pairs, dict) else list(pred_fn_pairs)
    for p in pairs:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise TypeError(f"Each entry in pred_fn_pairs must be a 2-tuple, got {p!r}")
        _check_callable(p[1], "fn")
    if default is not None:
        _check_callable(default, "default")
    elif not pairs:
        raise ValueError("pred_fn_pairs must not be empty when there is no default")
    if context.executing_eagerly():
        truths = [_eager_truth(p) for p, _ in pairs]
        others = truths if default is not None else truths[:-1]
        if (exclusive and sum(others) > 1) or (default is None and not any(truths)):
            from tensorgrid.framework import errors
            what = "more than 1 conditions" if any(truths) else "None of conditions"
            raise errors.InvalidArgumentError(None, None, f"Input error: {what} evaluated as True")
        taken = [fn for (_, fn), t in zip(pairs, truths) if t]
        return (taken[0] if taken else default)()
    g = graph_lib.get_default_graph()
    with g.name_scope(name):
        preds = [graph_lib.convert_to_tensor(p) for p, _ in pairs]
        fns = [f for _, f in pairs]
        if default is None:
            last_pred, last_fn = preds.pop(), fns.pop()

            def default():
                check = _assert(last_pred, preds + [last_pred], "Input error: None of conditions evaluated as True:")
                with graph_lib.get_default_graph().control_dependencies([check]):
                    return last_fn()
        fn = default
        for pred, branch in reversed(list(zip(preds, fns))):
            fn = (lambda p, t, f: lambda: cond(p, t, f, strict=strict))(pred, branch, fn)
        if exclusive and len(preds) > 1:
            count = math_ops.reduce_sum(array_ops.cast(array_ops.stack(preds), dtypes.int32))
            check = _assert(math_ops.less_equal(count, 1), preds,
                            f"Input error: exclusive=True: more than 1 conditions "
                            f"({', '.join(p.name for p in preds)}) evaluated as True:")
            with g.control_dependencies([check]):
                return fn()
        return fn()


def _assert(condition, data, message):
    return graph_lib.apply_op("Assert", [condition, array_ops.stack(data)],
                              {"message": message, "labels": [], "summarize": 3}, name="Assert")


# ---- while_loop ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class LoopInfo:
    """What a While op's gradient needs: its cond and body traces, and the placeholders each
    takes for the op's inputs (the loop variables) and the body's result per loop variable."""

    cond: Trace
    body: Trace
    cond_args: list
    body_args: list
    body_results: list


def _loop_result(flat, values, return_same_structure):
    result = flat.rebuild(values)
    if not return_same_structure and len(flat.tensors) == 1:
        return flat.arrays[0]._with_flow(values[0]) if flat.arrays[0] is not None else values[0]
    return result


def _check_loop_vars(loop_vars):
    if not isinstance(loop_vars, (list, tuple)):
        raise TypeError(f"loop_vars must be a (possibly nested) tuple, namedtuple or list of tensors, "
                        f"got {type(loop_vars).__name__}")


def _body_structure(out):
    return out if isinstance(out, (list, tuple, dict)) else [out]


def _eager_while(cond, body, loop_vars, maximum_iterations, return_same_structure):
    values = loop_vars
    start = _flatten(loop_vars, "while_loop")
    done = 0
    while (maximum_iterations is None or done < int(maximum_iterations)) and _eager_truth(cond(*values)):
        out = _body_structure(body(*values))
        if not _same_structure(_flatten(out, "while_loop body").spec, start.spec, check_types=False):
            raise ValueError(f"The two structures don't have the same nested structure: the body returned {out!r} "
                             f"for loop variables {values!r}")
        values = out
        done += 1
    flat = _flatten(values, "while_loop")
    return _loop_result(flat, flat.tensors, return_same_structure)


def _invariants(shape_invariants, loop_vars, flat):
    if shape_invariants is None:
        return [t.shape for t in flat.tensors]
    shapes = []
    nest.flatten(shape_invariants, lambda s: as_shape(s) if s is not None else TensorShape(None), shapes)
    if len(shapes) != len(flat.tensors):
        raise ValueError(f"shape_invariants {shape_invariants!r} do not match the structure of loop_vars {loop_vars!r}")
    out = []
    for t, s, ta in zip(flat.tensors, shapes, flat.arrays):
        if ta is not None:
            out.append(t.shape)
            continue
        if not s.is_compatible_with(t.shape):
            raise ValueError(f"The shape invariant specified for {t.name} is not compatible with the initial shape "
                             f"of the loop variable. It enters the loop with shape {_shape_text(t.shape)}, but the "
                             f"specified shape invariant is {_shape_text(s)}.")
        out.append(s)
    return out


def build_while(cond, body, flat, shapes, maximum_iterations, scope, back_prop=True, parallel_iterations=10,
                body_graph=BodyGraph, with_counter=False):
    """Builds the While op for loop variables `flat` (a _Flat) with these shape invariants, in the
    current graph under name scope `scope`; returns its op and the Identity tensors of the loop
    variables. cond(values) and body(values) see the loop variables rebuilt; with `with_counter`
    body(i, n, values) also gets the iteration counter and maximum_iterations. `body_graph` is the
    BodyGraph class the body is traced into (a gradient's, which reads forward values)."""
    counter = array_ops.constant(0, dtypes.int32, name="loop_counter")
    limit = array_ops.constant(-1, dtypes.int32, name="maximum_iterations") if maximum_iterations is None else \
        graph_lib.convert_to_tensor(maximum_iterations, dtype=dtypes.int32, name="maximum_iterations")
    specs = [(dtypes.int32, ()), (dtypes.int32, ())] + [(t.dtype, s.as_tuple()) for t, s in zip(flat.tensors, shapes)]
    names = ["loop_counter", "maximum_iterations"] + [f"loop_var_{i}" for i in range(len(flat.tensors))]
    g = graph_lib.get_default_graph()

    def cond_fn(i, n, *values):
        pred = graph_lib.convert_to_tensor(cond(flat.rebuild(list(values))))
        if pred.dtype != dtypes.bool_ or pred.shape.ndims not in (None, 0):
            raise TypeError(f"while_loop: cond must return a boolean scalar tensor, got {pred!r}")
        if maximum_iterations is not None:
            pred = math_ops.logical_and(math_ops.less(i, n), pred)
        return [pred]

    def body_fn(i, n, *values):
        values = flat.rebuild(list(values))
        return i, n, body(i, n, values) if with_counter else body(values)

    def body_wrap(placeholders, value):
        i, n, out = value
        out = _body_structure(out)
        got = _flatten(out, "while_loop body")
        if not _same_structure(got.spec, flat.spec, check_types=False) or len(got.tensors) != len(flat.tensors):
            raise ValueError(f"The two structures don't have the same nested structure: the body returned "
                             f"{out!r} for loop variables {flat.rebuild(flat.tensors)!r}")
        for t, new, ph in zip(flat.tensors, got.tensors, placeholders[2:]):
            if new.dtype != t.dtype:
                raise TypeError(f"Loop var {t.name} enters the loop with type {t.dtype!r} but has type "
                                f"{new.dtype!r} after 1 iteration. {t.name} type should remain constant.")
            if not new.shape.is_compatible_with(ph.shape):
                raise ValueError(f"Input tensor `{t.name}` enters the loop with shape {_shape_text(ph.shape)}, but "
                                 f"has shape {_shape_text(new.shape)} after one iteration. To allow the shape to "
                                 "vary across iterations, use the `shape_invariants` argument of tf.while_loop "
                                 "to specify a less-specific shape.")
        return [math_ops.add(i, 1, name="next_iteration"), n] + got.tensors

    cond_trace = trace(cond_fn, "while_cond", g, specs, names, wrap=lambda placeholders, pred: pred)
    body_trace = trace(body_fn, "while_body", g, specs, names, graph_cls=body_graph, wrap=body_wrap)
    union, (cond_phs, body_phs) = match_captures([cond_trace, body_trace])
    cond_ir = make_function(cond_trace, cond_trace.args + cond_phs, cond_trace.outputs)
    body_ir = make_function(body_trace, body_trace.args + body_phs, body_trace.outputs + body_phs)
    inputs = [counter, limit] + flat.tensors + union
    attrs = {"T": [t.dtype for t in inputs], "cond": cond_ir, "body": body_ir,
             "output_shapes": [TensorShape(s) for _, s in specs] + [u.shape for u in union],
             "parallel_iterations": int(parallel_iterations), "accumulate": 0}
    op_type = "While" if _stateful([cond_trace.graph, body_trace.graph]) else "StatelessWhile"
    op = _op_of(graph_lib.apply_op(op_type, inputs, attrs, name=scope,
                                   control_inputs=_outer_control([cond_trace, body_trace])))
    op._control_flow = LoopInfo(cond_trace, body_trace, cond_trace.args + cond_phs, body_trace.args + body_phs,
                                body_trace.outputs + body_phs)
    pass_on = array_ops.identity if back_prop else array_ops.stop_gradient
    return op, [pass_on(op.outputs[k], name="Identity") for k in range(2 + len(flat.tensors))]


def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10, back_prop=True,
               swap_memory=False, maximum_iterations=None, return_same_structure=False, name=None):
    """Repeats `loop_vars = body(*loop_vars)` while `cond(*loop_vars)`: in a graph, one While op.

    loop_vars is a (nested) list, tuple or namedtuple structure of tensors
    and TensorArrays; body returns the same structure (a single tensor for a
    single loop variable). `shape_invariants` relaxes the shapes a loop
    variable may take across iterations; `maximum_iterations` bounds the
    iterations; `back_prop=False` stops gradients through the loop.
    parallel_iterations and swap_memory are accepted: iterations run one
    after another and every value stays in its device's memory. The result
    has loop_vars' structure, or is the single tensor when there is one and
    not `return_same_structure`.
    """
    _check_callable(cond, "cond")
    _check_callable(body, "body")
    if not isinstance(parallel_iterations, (int, np.integer)) or parallel_iterations < 1:
        raise TypeError("'parallel_iterations' must be a positive integer.")
    _check_loop_vars(loop_vars)
    if context.executing_eagerly():
        return _eager_while(cond, body, loop_vars, maximum_iterations, return_same_structure)
    g = graph_lib.get_default_graph()
    with g.name_scope(name or "while") as scope:
        flat = _flatten(loop_vars, "while_loop")
        shapes = _invariants(shape_invariants, loop_vars, flat)
        _, outs = build_while(lambda values: cond(*values), lambda values: body(*values), flat, shapes,
                              maximum_iterations, scope, back_prop, parallel_iterations)
        return _loop_result(flat, outs[2:], return_same_structure)


from tensorgrid.client import control_flow_grad  # noqa: E402,F401 - registers the gradients of If, Case, While
