"""tg.gradients: symbolic reverse-mode differentiation of a graph.

Walks the ops between `xs` and `ys` in reverse creation order (a graph's
creation order is topological) and calls each op type's registered gradient.
Gradient ops are created under `colocate_with(forward op)`, so they run on
their forward op's device unless a device scope says otherwise.
"""

import contextlib
import enum

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import indexed_slices
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["gradients", "UnconnectedGradients", "tuple_of"]


class UnconnectedGradients(enum.Enum):
    """What the gradient with respect to a source the target does not depend on is: None, or zeros."""

    NONE = "none"
    ZERO = "zero"


def unconnected_value(x):
    """The zeros an unconnected source `x` (a tensor or Variable) gets with UnconnectedGradients.ZERO."""
    from tensorgrid.client import array_ops
    if hasattr(x, "_grad_source") and x.shape.is_fully_defined():
        return array_ops.zeros(x.shape.as_list(), x.dtype)
    return array_ops.zeros_like(x)


def gradient_scope(g, colocate):
    """scope(op): the context each gradient function of graph `g` runs in (op's name scope, colocated with op)."""
    @contextlib.contextmanager
    def scope(op):
        with contextlib.ExitStack() as stack:
            if colocate:
                stack.enter_context(g.colocate_with(op))
            stack.enter_context(g.name_scope(op.name + "_grad"))
            yield
    return scope


def tuple_of(grads, extra_ops=()):
    """`grads` (tensors, IndexedSlices or None) each passed through an identity placed with it that
    waits for all of them and for `extra_ops`, as TF's tf.tuple: none is used before all are made.
    Fewer than two, and no extra ops, are returned as they are."""
    from tensorgrid.client import array_ops, scopes
    present = [g for g in grads if g is not None]
    if len(present) + len(extra_ops) < 2:
        return grads
    slices = indexed_slices.IndexedSlices
    parts = [t for g in present for t in ([g.values, g.indices] if isinstance(g, slices) else [g])]

    def identity(g):
        if isinstance(g, indexed_slices.IndexedSlices):
            return indexed_slices.IndexedSlices(identity(g.values), identity(g.indices), g.dense_shape)
        with scopes.colocate_with(g.op):  # gating moves no tensor to another device
            return array_ops.identity(g, name="control_dependency")
    with scopes.name_scope("tuple"), scopes.control_dependencies(list(extra_ops) + [t.op for t in parts]):
        return [None if g is None else identity(g) for g in grads]


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _source_tensor(x):
    """The tensor to differentiate with respect to: a Variable's handle, else the tensor."""
    if hasattr(x, "_grad_source"):
        return x._grad_source()
    return graph_lib.convert_to_tensor(x)


def aggregate(grads):
    """Sums a list of gradients for one tensor (None when the list is empty).

    As in TF: IndexedSlices only concatenate into one IndexedSlices; with a dense gradient among them,
    they are densified and everything is added.
    """
    grads = [g for g in grads if g is not None]
    if not grads:
        return None
    if len(grads) == 1:
        return grads[0]
    if all(isinstance(g, indexed_slices.IndexedSlices) for g in grads):
        return indexed_slices.concat(grads)
    from tensorgrid.client import math_ops
    return math_ops.add_n([graph_lib.convert_to_tensor(g) for g in grads])


def _differentiable(t):
    return t.dtype.is_floating or t.dtype is dtypes.resource


def backprop(ops_in_reverse, seeds, xs, key, zeros_like, stop=(), scope=None, gate=None):
    """The reverse-mode core shared by tg.gradients and GradientTape.

    ops_in_reverse: op records, last-run first, each with .type, .inputs,
    .outputs; seeds: {key(tensor): [grad, ...]}; scope(op) a context manager
    each gradient function runs in; gate(in_grads), where given, rewrites the
    gradients an op gives its inputs (tg.gradients' gate_gradients). Returns
    [grad or None for each x in xs].
    """
    grads = {k: list(v) for k, v in seeds.items()}
    stop = {key(s) for s in stop}
    for op in ops_in_reverse:
        out_grads = [aggregate(grads.get(key(t), [])) for t in op.outputs]
        if all(g is None for g in out_grads):
            continue
        grad_fn = getattr(op, "grad_fn", None)     # a recorded tg.function call brings its own
        if grad_fn is None:
            grad_fn = registry.get(op.type).grad
            if grad_fn is None:     # worded as TF's: a graph op by its name, an eager (tape) record by its type
                if scope is None and not hasattr(op, "graph"):
                    raise LookupError(f"gradient registry has no entry for: {op.type}")
                raise LookupError(f"No gradient defined for operation '{getattr(op, 'name', op.type)}' "
                                  f"(op type: {op.type})")
            if grad_fn is registry.NO_GRADIENT:
                continue
        with scope(op) if scope else contextlib.nullcontext():
            out_grads = [zeros_like(t) if g is None and t.dtype.is_floating else g
                         for g, t in zip(out_grads, op.outputs)]
            in_grads = _as_list(grad_fn(op, *out_grads))
            if gate is not None:
                in_grads = gate(in_grads)
        if len(in_grads) != len(op.inputs):
            raise ValueError(f"gradient of {op.type} returned {len(in_grads)} values for {len(op.inputs)} inputs")
        for t, g in zip(op.inputs, in_grads):
            if g is not None and key(t) not in stop and _differentiable(t):
                grads.setdefault(key(t), []).append(g)
    return [aggregate(grads.get(key(x), [])) for x in xs]


def ops_between(graph, xs, ys):
    """The ops of `graph` on a path from a tensor of xs to one of ys, last created first."""
    consumers = {}
    for op in graph.get_operations():
        for t in op.inputs:
            consumers.setdefault(t.op, []).append(op)
    forward, frontier = set(), [t.op for t in xs]
    while frontier:
        op = frontier.pop()
        if op not in forward:
            forward.add(op)
            frontier.extend(consumers.get(op, []))
    between, frontier = set(), [y.op for y in ys]
    while frontier:
        op = frontier.pop()
        if op not in between and op in forward:
            between.add(op)
            frontier.extend(t.op for t in op.inputs)
    return [op for op in reversed(graph.get_operations()) if op in between]


def gradients(ys, xs, grad_ys=None, name="gradients", colocate_gradients_with_ops=True,
              gate_gradients=False, aggregation_method=None, stop_gradients=None,
              unconnected_gradients=UnconnectedGradients.NONE):
    """Symbolic d(sum(ys))/d(x) for each x in xs; None (or zeros) for an x that ys do not depend on."""
    if context.executing_eagerly():
        raise RuntimeError("tg.gradients is not supported when eager execution is enabled. "
                           "Use tg.GradientTape instead.")
    from tensorgrid.client import array_ops
    unconnected = UnconnectedGradients(unconnected_gradients)
    xs = _as_list(xs)
    ys = [graph_lib.convert_to_tensor(y) for y in _as_list(ys)]
    xs_t = [_source_tensor(x) for x in xs]
    grad_ys = _as_list(grad_ys) or [None] * len(ys)
    stops = [graph_lib.convert_to_tensor(s) for s in _as_list(stop_gradients)]
    g = ys[0].graph
    order = ops_between(g, xs_t, ys)

    with g.name_scope(name):
        seeds = {}
        for y, gy in zip(ys, grad_ys):
            gy = array_ops.ones_like(y, name="grad_ys") if gy is None else graph_lib.convert_to_tensor(gy, dtype=y.dtype)
            seeds.setdefault(y, []).append(gy)
        grads = backprop(order, seeds, xs_t, lambda t: t, array_ops.zeros_like, stops,
                         gradient_scope(g, colocate_gradients_with_ops),
                         tuple_of if gate_gradients else None)
        if unconnected is UnconnectedGradients.ZERO:
            grads = [unconnected_value(x) if gr is None else gr for gr, x in zip(grads, xs)]
        return grads
