"""tg.GradientTape: records eager ops and differentiates them with the registry's gradients."""

from tensorgrid.client import context
from tensorgrid.client.gradients import backprop

__all__ = ["GradientTape"]


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


def record(opdef, inputs, attrs, outputs):
    """Called by eager.execute for every op while a tape records."""
    for tape in context.tapes():
        if tape._recording:
            tape._records.append(_Record(opdef, inputs, attrs, outputs))


class GradientTape:
    """Records eager ops run inside `with tape:`; `tape.gradient(target, sources)` differentiates them."""

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = persistent
        self._watch_accessed = watch_accessed_variables
        self._records = []
        self._recording = False
        self._used = False

    def __enter__(self):
        context.tapes().append(self)
        self._recording = True
        return self

    def __exit__(self, *exc):
        self._recording = False
        if self in context.tapes():
            context.tapes().remove(self)
        return False

    def watch(self, tensor):
        """Kept for TF compatibility: every tensor a recorded op reads is differentiable here."""

    def watched_variables(self):
        """The Variables this tape saw read, in the order of their first read."""
        from tensorgrid.client import variables
        seen = {}
        for r in self._records:
            if r.type == "ReadVariableOp":
                v = variables.variable_for_handle(r.inputs[0])
                if v is not None:
                    seen.setdefault(id(v), v)
        return list(seen.values())

    def stop_recording(self):
        tape = self

        class _Pause:
            def __enter__(self):
                tape._recording = False

            def __exit__(self, *a):
                tape._recording = True
                return False
        return _Pause()

    def reset(self):
        self._records = []

    def gradient(self, target, sources, output_gradients=None):
        """d(sum(target))/d(source) for each source (a tensor or Variable); None where unconnected."""
        if self._used and not self._persistent:
            raise RuntimeError("A non-persistent GradientTape can only be used to compute one set of gradients")
        self._used = True
        from tensorgrid.client import array_ops
        single = not isinstance(sources, (list, tuple))
        srcs = [sources] if single else list(sources)
        keys = [s._grad_source() if hasattr(s, "_grad_source") else s for s in srcs]
        targets = target if isinstance(target, (list, tuple)) else [target]
        outs = output_gradients if isinstance(output_gradients, (list, tuple)) else [output_gradients] * len(targets)
        was = self._recording
        self._recording = False
        try:
            seeds = {}
            for t, og in zip(targets, outs):
                if og is None:
                    og = array_ops.ones_like(t)
                seeds.setdefault(id(t), []).append(og)
            res = backprop(list(reversed(self._records)), seeds, keys, id, array_ops.zeros_like)
        finally:
            self._recording = was
        return res[0] if single else res
