"""tg.GradientTape: records the ops run or built under it and differentiates them with the registry's gradients.

A tape records in the context where it was entered. Eagerly, each executed
op that reads a watched tensor is recorded and its outputs become watched.
While a graph is being built (a tg.function trace, or TF1 graph mode) the
tape notes which stretches of the graph's op list were created while it
recorded; `gradient` differentiates those of them that lie downstream of a
watched tensor, the same symbolic gradient tg.gradients builds, restricted to
the recorded ops. As in TF2, a trainable variable read under a tape that
watches accessed variables is watched, and nothing else is unless `watch`ed:
the gradient with respect to an unwatched tensor is None. A tg.function
called under an eager tape is recorded as one op (client/function_grad.py).
"""

import numpy as np

from tensorgrid.client import context, nest
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.gradients import UnconnectedGradients, backprop, gradient_scope, unconnected_value

__all__ = ["GradientTape", "UnconnectedGradients"]


class _Record:
    """One eagerly executed op, as a gradient function sees it."""

    __slots__ = ("type", "name", "inputs", "outputs", "attrs")

    def __init__(self, opdef, inputs, attrs, outputs):
        self.type = opdef.name
        self.name = opdef.name
        self.inputs = tuple(inputs)
        self.outputs = list(outputs)
        self.attrs = attrs

    def get_attr(self, name):
        return self.attrs[name]


def _current_graph():
    """The graph ops go into now, or None when they run eagerly."""
    return None if context.executing_eagerly() else graph_lib.get_default_graph()


def record(opdef, inputs, attrs, outputs):
    """Called by eager.execute for every op: each eager tape recording keeps it if it reads a watched tensor."""
    rec = None
    for tape in context.tapes():
        if tape._recording and tape._graph is None and any(id(t) in tape._watched for t in inputs):
            rec = rec or _Record(opdef, inputs, attrs, outputs)
            tape._records.append(rec)
            tape._watched.update((id(t), t) for t in outputs)


def variable_accessed(variable):
    """Called by every read of `variable`: the recording tapes of this context that watch accessed variables
    watch it, and a tg.function being traced notes it (for a tape around a call of it)."""
    graph, graphs = _current_graph(), []
    while graph is not None:           # a read in a loop's or cond's body counts for the graph it sits in
        graphs.append(graph)
        graph = getattr(graph, "outer_graph", None)
    if graphs and hasattr(graphs[-1], "variables_read") and variable._eager():
        graphs[-1].variables_read.setdefault(id(variable), variable)
    tapes = context.tapes()
    if not tapes or not variable.trainable:
        return
    for tape in tapes:
        if tape._recording and tape._watch_accessed and (tape._graph in graphs if graphs else tape._graph is None):
            tape._watch_variable(variable)


def watches_any(tensors):
    """Whether an eager tape records now and watches one of `tensors`."""
    return any(t._recording and t._graph is None and any(id(x) in t._watched for x in tensors)
               for t in context.tapes())


class _CallRecord(_Record):
    """A tg.function call as one recorded op, with its own gradient function."""

    __slots__ = ("grad_fn",)

    def __init__(self, inputs, outputs, grad_fn):
        self.type = self.name = "tg.function call"
        self.inputs, self.outputs, self.attrs, self.grad_fn = tuple(inputs), list(outputs), {}, grad_fn


def record_call(inputs, outputs, grad_fn):
    """Records a tg.function call on each eager tape that watches one of its inputs; grad_fn(op, *out_grads)
    gives the gradients of its inputs."""
    rec = _CallRecord(inputs, outputs, grad_fn)
    for tape in context.tapes():
        if tape._recording and tape._graph is None and any(id(t) in tape._watched for t in inputs):
            tape._records.append(rec)
            tape._watched.update((id(t), t) for t in outputs)


def recording_in(graph):
    """Whether some tape records ops built into `graph` now (a variable read then gets an op of its own)."""
    return any(t._recording and t._graph is graph for t in context.tapes())


class _Pause:
    def __init__(self, tape):
        self._tape = tape

    def __enter__(self):
        self._was = self._tape._recording
        if self._was:
            self._tape._stop()

    def __exit__(self, *exc):
        if self._was:
            self._tape._start()
        return False


class GradientTape:
    """Records the ops run (or built) inside `with tape:`; `tape.gradient(target, sources)` differentiates them."""

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = persistent
        self._watch_accessed = watch_accessed_variables
        self._watched = {}       # id -> watched tensor (kept alive, so ids stay unique)
        self._variables = {}     # id -> watched Variable, in the order first watched
        self._records = []       # eager records, in execution order
        self._graph = None       # the graph this tape records in (None: eager)
        self._spans = []         # graph mode: (start, end) ranges of the graph's op list recorded
        self._span_start = None
        self._recording = False
        self._used = False

    # ---- recording -------------------------------------------------------------------
    def __enter__(self):
        if self._recording:
            raise ValueError("Tape is still recording, This can happen if you try to re-enter an already-active tape.")
        graph = _current_graph()
        if (self._records or self._spans) and graph is not self._graph:
            raise ValueError("a GradientTape records in one graph (or eagerly): it was entered in another before")
        self._graph = graph
        context.tapes().append(self)
        self._start()
        return self

    def __exit__(self, *exc):
        if self._recording:
            self._stop()
        if self in context.tapes():
            context.tapes().remove(self)
        return False

    def _start(self):
        self._recording = True
        if self._graph is not None:
            self._span_start = len(self._graph.get_operations())

    def _stop(self):
        self._recording = False
        if self._graph is not None:
            self._spans.append((self._span_start, len(self._graph.get_operations())))

    def stop_recording(self):
        """A context in which ops are not recorded (such as the gradient's own computation)."""
        if not self._recording:
            raise RuntimeError("Trying to stop recording a tape which is not recording.")
        return _Pause(self)

    def reset(self):
        """Forgets everything recorded and watched so far (recording goes on if it was on)."""
        self._records, self._watched, self._variables, self._spans = [], {}, {}, []
        if self._recording and self._graph is not None:
            self._span_start = len(self._graph.get_operations())

    # ---- watching -----------------------------------------------------------------------
    def watch(self, tensor):
        """Makes the gradient flow to `tensor` (a tensor, a Variable, or a nested structure of them)."""
        leaves = []
        nest.flatten(tensor, lambda x: x, leaves)
        for t in leaves:
            if hasattr(t, "_grad_source"):
                self._watch_variable(t)
            elif isinstance(t, graph_lib.Tensor) or getattr(t, "_is_eager_tensor", False):
                self._watched[id(t)] = t
            else:
                raise ValueError(f"Passed in object {t!r} of type {type(t).__name__!r}, not tf.Tensor or "
                                 f"tf.Variable or ExtensionType.")

    def _watch_variable(self, variable):
        self._variables.setdefault(id(variable), variable)
        handle = self._local(variable._grad_source())
        self._watched[id(handle)] = handle

    def _local(self, handle):
        """A variable's handle as this tape's graph sees it: in a function nested in a trace (a dataset
        loop's body), the capture of the trace's handle that the function's reads take."""
        if self._graph is None or getattr(handle, "graph", self._graph) is self._graph:
            return handle
        return self._graph._capture(handle, "GradientTape")

    def watched_variables(self):
        """The Variables this tape watches (explicitly or because they were read), in the order first watched."""
        return list(self._variables.values())

    # ---- differentiating ---------------------------------------------------------------------
    def _graph_ops_in_reverse(self):
        """(The recorded graph ops downstream of a watched tensor, last created first; the ids of every tensor
        watched or computed from one)."""
        ops = self._graph.get_operations()
        spans = self._spans + ([(self._span_start, len(ops))] if self._recording else [])
        watched = set(self._watched)
        on_tape = []
        for start, end in spans:
            for op in ops[start:end]:
                if any(id(t) in watched for t in op.inputs):
                    on_tape.append(op)
                    watched.update(id(t) for t in op.outputs)
        return list(reversed(on_tape)), watched

    def _backprop(self, targets, sources, output_gradients):
        """[d(sum of targets . output_gradients)/d(source) or None] for flat lists of targets and sources."""
        from tensorgrid.client import array_ops
        keys = [self._local(s._grad_source()) if hasattr(s, "_grad_source") else s for s in sources]
        seeds = {}
        for t, og in zip(targets, output_gradients):
            if og is None:
                og = array_ops.ones_like(t)
            elif t.dtype.name != "resource":    # a Variable target's seed has the variable's dtype already
                og = graph_lib.convert_to_tensor(og, dtype=t.dtype)
            seeds.setdefault(id(t), []).append(og)
        if self._graph is None:
            ops, watched, scope = list(reversed(self._records)), self._watched, None
        else:
            (ops, watched), scope = self._graph_ops_in_reverse(), gradient_scope(self._graph, colocate=True)
        grads = backprop(ops, seeds, keys, id, array_ops.zeros_like, scope=scope)
        # a source the tape never watched gets None, even where a recorded op read it; a source that is itself
        # a target (a Variable given as both, as TF's tape compares their handles) gets its seed
        return [g if id(k) in watched or id(k) in seeds else None for g, k in zip(grads, keys)]

    def _check_use(self):
        if self._used and not self._persistent:
            raise RuntimeError("A non-persistent GradientTape can only be used to compute one set of gradients "
                               "(or jacobians)")
        self._used = True

    def _context_check(self, what):
        if _current_graph() is not self._graph:
            raise ValueError(f"GradientTape.{what} must be called where the tape recorded "
                             f"({'eagerly' if self._graph is None else 'in the graph it recorded in'})")

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients=UnconnectedGradients.NONE):
        """d(sum(target))/d(source) for each source, in the structure of `sources`.

        `target` and `sources` may be nested structures (lists, tuples, dicts) of tensors; sources may hold
        Variables. An unconnected source gets None, or zeros with unconnected_gradients="zero".
        """
        self._check_use()
        self._context_check("gradient")
        unconnected = UnconnectedGradients(unconnected_gradients)
        raw, flat_sources = [], []
        nest.flatten(target, lambda x: x, raw)
        spec = nest.flatten(sources, _source_leaf, flat_sources)
        # a Variable target is keyed by the tensor its sources are keyed by, so a Variable that is both target
        # and source gets ones (TF's tape compares their handles: `tape.gradient(v, v)` is 1)
        targets = [self._local(t._grad_source()) if hasattr(t, "_grad_source") else graph_lib.convert_to_tensor(t)
                   for t in raw]
        if output_gradients is None:
            from tensorgrid.client import array_ops
            outs = [array_ops.ones(t.shape, t.dtype) if hasattr(t, "_grad_source") else None for t in raw]
        else:
            outs = []
            nest.flatten(output_gradients, lambda x: x, outs)
            if len(outs) != len(targets):
                raise ValueError(f"output_gradients has {len(outs)} entries for {len(targets)} targets")
            outs = [graph_lib.convert_to_tensor(o, dtype=t.dtype) if o is not None and hasattr(t, "_grad_source")
                    else o for o, t in zip(outs, raw)]
        with _Pause(self):
            grads = self._backprop(targets, flat_sources, outs)
            if unconnected is UnconnectedGradients.ZERO:
                grads = [unconnected_value(s) if g is None else g for g, s in zip(grads, flat_sources)]
        return nest.rebuild(spec, grads)

    def jacobian(self, target, sources, unconnected_gradients=UnconnectedGradients.NONE, parallel_iterations=None,
                 experimental_use_pfor=True):
        """d(target[i...])/d(source[j...]) for each source, shaped target.shape + source.shape.

        Built as one gradient per element of `target`, so the target's shape must be known.
        """
        self._check_use()
        self._context_check("jacobian")
        from tensorgrid.client import array_ops
        target = graph_lib.convert_to_tensor(target)
        n = _static_size(target, "jacobian", target.shape)
        flat_sources = []
        spec = nest.flatten(sources, _source_leaf, flat_sources)
        unconnected = UnconnectedGradients(unconnected_gradients)
        with _Pause(self):
            rows = [self._backprop([target], flat_sources, [_unit(target, i, n)]) for i in range(n)]
            out = []
            for j, s in enumerate(flat_sources):
                column = [row[j] for row in rows]
                shape = target.shape.as_list() + s.shape.as_list()
                if all(g is None for g in column):
                    out.append(None if unconnected is UnconnectedGradients.NONE
                               else array_ops.zeros(shape, s.dtype))
                    continue
                column = [graph_lib.convert_to_tensor(g) if g is not None else unconnected_value(s) for g in column]
                out.append(array_ops.reshape(array_ops.stack(column), shape))
        return nest.rebuild(spec, out)

    def batch_jacobian(self, target, source, unconnected_gradients=UnconnectedGradients.NONE,
                       parallel_iterations=None, experimental_use_pfor=True):
        """d(target[b, i...])/d(source[b, j...]) for every batch row b, shaped [b] + target.shape[1:] + source.shape[1:].

        As in TF, row b of the target must depend only on row b of the source.
        """
        self._check_use()
        self._context_check("batch_jacobian")
        from tensorgrid.client import array_ops
        target = graph_lib.convert_to_tensor(target)
        src = _source_leaf(source)
        if target.shape.ndims is None or target.shape.ndims < 1:
            raise ValueError(f"batch_jacobian needs a target of rank >= 1, got shape {target.shape}")
        m = _static_size(target, "batch_jacobian", target.shape[1:])
        unconnected = UnconnectedGradients(unconnected_gradients)
        with _Pause(self):
            ones = array_ops.reshape(array_ops.ones_like(target), [-1, m])
            cols = []
            for j in range(m):
                mask = np.zeros([m], target.dtype.as_numpy_dtype)
                mask[j] = 1
                og = array_ops.reshape(ones * mask, array_ops.shape(target))
                cols.append(self._backprop([target], [src], [og])[0])
            if all(g is None for g in cols):
                if unconnected is UnconnectedGradients.NONE:
                    return None
                cols = [unconnected_value(src)] * m
            cols = [unconnected_value(src) if g is None else graph_lib.convert_to_tensor(g) for g in cols]
            out = array_ops.stack(cols, axis=1)
            batch = array_ops.shape(target)[:1]
            shape = array_ops.concat([batch, target.shape.as_list()[1:] + src.shape.as_list()[1:]], 0)
            return array_ops.reshape(out, shape)


def _source_leaf(x):
    if hasattr(x, "_grad_source") or isinstance(x, graph_lib.Tensor) or getattr(x, "_is_eager_tensor", False):
        return x
    raise ValueError(f"GradientTape sources must be tensors or Variables, got {x!r} of type {type(x).__name__}")


def _static_size(target, what, shape):
    if not shape.is_fully_defined():
        raise ValueError(f"GradientTape.{what} needs the target's shape to be known: {target!r} has shape "
                         f"{target.shape}")
    return int(np.prod(shape.as_list(), dtype=np.int64))


def _unit(target, i, n):
    """An output gradient that picks element i of `target`."""
    e = np.zeros([n], target.dtype.as_numpy_dtype)
    e[i] = 1
    return e.reshape(target.shape.as_list())

