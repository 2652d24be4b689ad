"""Gradients of If, Case and While.

- If / Case: the gradient is an If / Case on the same selector whose branches differentiate
  the forward branches. A forward branch's intermediate that its gradient needs becomes an
  output of the forward op, wrapped in an Optional (OptionalFromValue in that branch,
  OptionalNone in the others), so the branches keep one signature; the gradient branch
  unwraps it (OptionalGetValue), on its device.
- While: the gradient is a While that runs as many iterations as the forward one did,
  backwards: iteration j differentiates the body at forward iteration n-1-j, given the
  gradients of that iteration's results (its loop variables), and gives those of its
  arguments. A forward value the backward body needs (a body intermediate, or a loop
  variable as it was at some iteration) is kept per iteration: the forward While gets it
  as an extra body result past the loop variables (attr `accumulate`), and its kernel
  keeps each iteration's value and outputs the sequence as a TensorList, which the
  backward body reads at index n-1-j (TensorListGetItem). The forward op is rewritten that
  way when, and only when, a gradient asks for the value, the way TF2's while_v2 adds
  accumulators. A loop-invariant capture (a weight the body reads) needs no keeping: the
  backward body captures the forward op's input, and sums the gradient it gets over the
  iterations as a loop variable of its own.

Both work on the traces the forward op was built from (client/control_flow.py); for an op
that arrived in a GraphDef, the traces are rebuilt from its Functions first.
"""

import contextlib

from tensorgrid.client import array_ops, control_flow, gradients, math_ops
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops import registry
from tensorgrid.runtime import ir

WHILE_OPS = ("While", "StatelessWhile")
IF_OPS = ("If", "StatelessIf")
CASE_OPS = ("Case", "StatelessCase")


def _differentiable(t):
    return t.dtype.is_floating or t.dtype is dtypes.resource


def _zeros(t):
    """Zeros shaped like `t` (of the current graph or one it captures from), from its static
    shape when that is known, so the value itself need not be kept or sent."""
    if t.shape.is_fully_defined():
        return array_ops.zeros(t.shape.as_list(), t.dtype)
    return array_ops.zeros_like(t)


def _variable_zeros(handle, readers):
    """Zeros shaped like the variable behind resource `handle` (of the current graph), from the
    static shape a ReadVariableOp among `readers` knows, else from a read."""
    for op in readers:
        if op.type == "ReadVariableOp":
            shape = TensorShape(op.get_attr("shape"))
            if shape.is_fully_defined():
                return array_ops.zeros(shape.as_list(), op.get_attr("dtype"))
            return array_ops.zeros_like(apply_op("ReadVariableOp", [handle], {"dtype": op.get_attr("dtype"),
                                                                              "shape": shape}))
    return None


def _readers(placeholders):
    """The ops that consume any of `placeholders` (tensors of one body graph)."""
    ids = {id(p) for p in placeholders}
    graph = placeholders[0].graph
    return [op for op in graph.get_operations() if any(id(t) in ids for t in op.inputs)]


def _backprop_graph(graph, xs, ys, seeds, zeros):
    """Differentiates the ops of body `graph` between xs and ys (seeds: {y: [grad]}) in the current
    graph, each gradient function under its op's device and name; returns the grads of xs."""
    order = gradients.ops_between(graph, xs, ys)
    here = graph_lib.get_default_graph()

    @contextlib.contextmanager
    def scope(op):
        with contextlib.ExitStack() as stack:
            if op.device:
                stack.enter_context(here.device(op.device))
            stack.enter_context(here.name_scope(op.name.replace("/", "_") + "_grad"))
            yield
    return gradients.backprop(order, seeds, xs, lambda t: t, zeros, (), scope)


# ---- the traces of an op, rebuilt for one that came in a GraphDef -----------------------------------

def _rebuild_trace(fn, outer, name):
    """A Trace of Function `fn` (an ir.Function) rebuilt as a BodyGraph of `outer`."""
    g = control_flow.BodyGraph(f"{name}_rebuilt", outer)
    created = {}
    body = fn.graph
    with g.as_default():
        for node_name in body.topological_order():
            node = body[node_name]
            inputs = [created[src].outputs[idx] for src, idx in map(ir.split_input, node.inputs)]
            opdef = registry.get(node.op)
            ctx = registry.InferContext(node.op, node.name, [t.dtype for t in inputs],
                                        [t.shape.as_tuple() for t in inputs], dict(node.attrs),
                                        [graph_lib._const_value(t) for t in inputs], node.where())
            with g.device(node.device) if node.device else contextlib.nullcontext():
                created[node.name] = g._create_op(node.op, inputs, dict(node.attrs), node.name + "/",
                                                  opdef.infer(ctx), node.source,
                                                  [created[c] for c in node.control_inputs])
    args = [created[a].outputs[0] for a in fn.args]
    outputs = [created[src].outputs[idx] for src, idx in map(ir.split_input, fn.results)]
    return control_flow.Trace(g, args, outputs, None)


def _branch_info(op):
    info = getattr(op, "_control_flow", None)
    if info is None:
        fns = [op.get_attr("then_branch"), op.get_attr("else_branch")] if op.type in IF_OPS \
            else list(op.get_attr("branches"))
        traces = [_rebuild_trace(fn, op.graph, fn.name) for fn in fns]
        info = op._control_flow = control_flow.BranchInfo(traces, [t.args for t in traces])
    return info


def _loop_info(op):
    info = getattr(op, "_control_flow", None)
    if info is None:
        cond = _rebuild_trace(op.get_attr("cond"), op.graph, "while_cond")
        body = _rebuild_trace(op.get_attr("body"), op.graph, "while_body")
        info = op._control_flow = control_flow.LoopInfo(cond, body, cond.args, body.args, body.outputs)
    return info


def _set_attrs(op, **changes):
    """Replaces attrs of `op` (a new dict: passes share attr dicts between copies of a node)."""
    op._node.attrs = dict(op._node.attrs, **changes)
    op.graph._bump_version()


def _add_output(op, dtype, shape):
    op.outputs.append(graph_lib.Tensor(op, len(op.outputs), dtype, shape))
    return op.outputs[-1]


# ---- If / Case ----------------------------------------------------------------------------------------

class _GradBranchGraph(control_flow.BodyGraph):
    """A gradient branch: a tensor of its forward branch it reads is the forward op's input (for a
    branch argument) or an intermediate the forward op now outputs."""

    def __init__(self, name, outer_graph, forward_op, branch):
        super().__init__(name, outer_graph)
        self._name_stack = outer_graph.get_name_scope()  # a TensorArray's gradient is named by its scope
        self.forward_op = forward_op
        self.branch = branch
        self._forward_values = {}

    def _capture(self, tensor, op_type):
        info = _branch_info(self.forward_op)
        trace = info.traces[self.branch]
        if tensor.graph is not trace.graph:
            return super()._capture(tensor, op_type)
        value = self._forward_values.get(id(tensor))
        if value is None:
            args = info.inputs[self.branch]
            at = next((k for k, a in enumerate(args) if a is tensor), None)
            if at is not None:
                value = super()._capture(self.forward_op.inputs[1 + at], op_type)
            else:
                opt = super()._capture(_branch_intermediate(self.forward_op, self.branch, tensor), op_type)
                with self.as_default(), self.control_dependencies(None):
                    value = apply_op("OptionalGetValue", [opt], {"output_types": [tensor.dtype],
                                                                  "output_shapes": [tensor.shape]})
            self._forward_values[id(tensor)] = value
        return value


def _branch_intermediate(op, branch, tensor):
    """The output of If/Case `op` that carries `tensor` of branch `branch` (wrapped in an Optional),
    added on first use."""
    info = _branch_info(op)
    kept = info.__dict__.setdefault("intermediates", {})
    if id(tensor) in kept:
        return op.outputs[kept[id(tensor)]]
    keys = ["then_branch", "else_branch"] if op.type in IF_OPS else None
    fns = [op.get_attr(k) for k in keys] if keys else list(op.get_attr("branches"))
    new_fns = []
    for b, (t, fn) in enumerate(zip(info.traces, fns)):
        with t.graph.as_default(), t.graph.control_dependencies(None), t.graph.device(None):
            wrapped = apply_op("OptionalFromValue", [tensor]) if b == branch else apply_op("OptionalNone", [])
        t.outputs.append(wrapped)
        new_fns.append(ir.Function(fn.name, t.graph.to_ir(), fn.args, fn.results + [wrapped.name],
                                   fn.result_specs + [(dtypes.variant, ())], fn.control_results))
    changes = dict(zip(keys, new_fns)) if keys else {"branches": new_fns}
    _set_attrs(op, Tout=list(op.get_attr("Tout")) + [dtypes.variant],
               output_shapes=list(op.get_attr("output_shapes")) + [TensorShape([])], **changes)
    kept[id(tensor)] = len(op.outputs)
    return _add_output(op, dtypes.variant, ())


def _branches_grad(op, grads):
    info = _branch_info(op)
    inputs = op.inputs[1:]
    wanted = [k for k, t in enumerate(inputs) if _differentiable(t)]
    grads = list(grads)[:len(info.traces[0].outputs)]
    if not wanted or all(g is None for g in grads):
        return [None] * len(op.inputs)
    outer = graph_lib.get_default_graph()

    def branch_fn(b):
        def fn():
            trace = info.traces[b]
            args = info.inputs[b]
            ys = [y for y, g in zip(trace.outputs, grads) if g is not None and _differentiable(y)]
            seeds = {}
            for y, g in zip(trace.outputs, grads):
                if g is not None and _differentiable(y):
                    seeds.setdefault(y, []).append(g)
            found = _backprop_graph(trace.graph, [args[k] for k in wanted], ys, seeds, _zeros) if ys else \
                [None] * len(wanted)
            out = []
            for k, g in zip(wanted, found):
                if g is None:
                    t = inputs[k]
                    if t.dtype is dtypes.resource:
                        g = _variable_zeros(t, _readers([a[k] for a in info.inputs]))
                    else:
                        g = _zeros(t)
                out.append(g)
            return out
        return fn

    op_types = IF_OPS if op.type in IF_OPS else CASE_OPS
    with outer.name_scope("cond") as scope:
        traces = [control_flow.trace(branch_fn(b), f"grad_branch{b}", outer,
                                     graph_cls=lambda name, g, b=b: _GradBranchGraph(name, g, op, b))
                  for b in range(len(info.traces))]
        found = control_flow.branches_op(op_types, op.inputs[0], traces, scope, f"gradient of {op.name}")
    result = [None] * len(op.inputs)
    for k, g in zip(wanted, found):
        result[1 + k] = g
    return result


for _name in IF_OPS + CASE_OPS:
    registry.register_gradient(_name)(lambda op, *grads: _branches_grad(op, grads))


# ---- While --------------------------------------------------------------------------------------------

class _GradBodyGraph(control_flow.BodyGraph):
    """A backward loop body: a tensor of the forward body it reads is the forward op's input (a
    loop-invariant capture), or that tensor's value at the forward iteration `index` (kept by the
    forward op, read back from its TensorList)."""

    def __init__(self, name, outer_graph, forward_op):
        super().__init__(name, outer_graph)
        self._name_stack = outer_graph.get_name_scope()
        self.forward_op = forward_op
        self.index = None  # set by the backward body before it differentiates
        self._forward_values = {}

    def _capture(self, tensor, op_type):
        info = _loop_info(self.forward_op)
        if tensor.graph is not info.body.graph:
            return super()._capture(tensor, op_type)
        value = self._forward_values.get(id(tensor))
        if value is None:
            k = next((k for k, a in enumerate(info.body_args) if a is tensor), None)
            if k is not None and info.body_results[k] is tensor:  # a loop invariant
                value = super()._capture(self.forward_op.inputs[k], op_type)
            else:
                kept = super()._capture(_accumulator(self.forward_op, tensor), op_type)
                with self.as_default(), self.control_dependencies(None):
                    value = apply_op("TensorListGetItem", [kept, self.index],
                                     {"element_dtype": tensor.dtype, "element_shape": tensor.shape})
            self._forward_values[id(tensor)] = value
        return value


def _accumulator(op, tensor):
    """The output of While `op` holding the value `tensor` (of its body) took in each iteration,
    added on first use."""
    info = _loop_info(op)
    kept = info.__dict__.setdefault("accumulated", {})
    if id(tensor) in kept:
        return op.outputs[kept[id(tensor)]]
    body = op.get_attr("body")
    fn = ir.Function(body.name, body.graph, body.args, body.results + [tensor.name],
                     body.result_specs + [(tensor.dtype, tensor.shape.as_tuple())], body.control_results)
    _set_attrs(op, body=fn, accumulate=op.get_attr("accumulate") + 1)
    kept[id(tensor)] = len(op.outputs)
    return _add_output(op, dtypes.variant, ())


def _while_grad(op, *grads):
    info = _loop_info(op)
    nvars = len(op.get_attr("T"))
    wanted = [k for k in range(nvars) if _differentiable(op.inputs[k])]
    grads = list(grads)[:nvars]
    if not wanted or all(grads[k] is None for k in wanted):
        return [None] * len(op.inputs)
    outer = graph_lib.get_default_graph()
    args, results = info.body_args, info.body_results
    init = []
    for k in wanted:
        g = grads[k]
        if g is None:
            if op.inputs[k].dtype is dtypes.resource:
                g = _variable_zeros(op.inputs[k], _readers([args[k]]))
                if g is None:  # the body does not read the variable: nothing flows to it
                    g = array_ops.zeros([], dtypes.float32)
            else:
                g = _zeros(op.outputs[k])
        init.append(g)

    def body(i, n, values):
        # the forward iteration this backward one differentiates
        graph_lib.get_default_graph().index = math_ops.subtract(math_ops.subtract(n, 1), i, name="forward_iteration")
        seeds = {}
        for k, v in zip(wanted, values):
            seeds.setdefault(results[k], []).append(v)
        found = _backprop_graph(info.body.graph, [args[k] for k in wanted], [results[k] for k in wanted],
                                seeds, _zeros)
        return [array_ops.zeros_like(v) if f is None else f for f, v in zip(found, values)]

    flat = control_flow._flatten(init, "while gradient")
    shapes = [TensorShape(args[k].shape) if op.inputs[k].dtype is not dtypes.resource else t.shape
              for k, t in zip(wanted, flat.tensors)]
    with outer.name_scope("while") as scope:
        _, outs = control_flow.build_while(lambda values: array_ops.constant(True), body, flat, shapes,
                                           op.outputs[0], scope, with_counter=True,
                                           body_graph=lambda name, g: _GradBodyGraph(name, g, op))
    result = [None] * len(op.inputs)
    for k, g in zip(wanted, outs[2:]):
        result[k] = g
    return result


for _name in WHILE_OPS:
    registry.register_gradient(_name)(_while_grad)
registry.not_differentiable("TensorListGetItem", "TensorListLength", "TensorListStack", "OptionalFromValue",
                            "OptionalNone", "OptionalHasValue", "OptionalGetValue")
