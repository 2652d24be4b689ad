"""The gradient of a tg.function called under an eager GradientTape.

The call is recorded on the tape as one op whose inputs are the tensor
arguments and the handles of the variables the function reads (watched as
any read of them is), and whose outputs are its results. Its gradient is
a second graph built once per traced function, in the function's own
graph: tg.gradients of the results (seeded by placeholders) with respect
to those inputs. A recorded call fetches, besides its results, every
forward tensor that gradient graph reads, and its gradient runs the
gradient graph with them fed, so the forward computation never runs twice.
"""

import numpy as np

from tensorgrid.client import array_ops, nest
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import gradients as gradients_lib
from tensorgrid.client import tape as tape_lib


class _Backward:
    """The gradient graph of one ConcreteFunction (see the module docstring)."""

    def __init__(self, concrete, variables):
        g = concrete.graph
        forward = set(g.get_operations())
        with g.as_default():
            self.seeds = [array_ops.placeholder(t.dtype, t.shape, name="output_grad") if t.dtype.is_floating
                          else None for t in concrete.outputs]
            ys = [t for t, s in zip(concrete.outputs, self.seeds) if s is not None]
            sources = list(concrete.inputs) + [v._current_handle() for v in variables]
            grads = gradients_lib.gradients(ys, sources, grad_ys=[s for s in self.seeds if s is not None]) \
                if ys else [None] * len(sources)
        self.leaves = []
        self.spec = nest.flatten(grads, lambda t: nest.Keep(None) if t is None else t, self.leaves)
        saved = {}
        for op in g.get_operations():
            if op not in forward:
                saved.update((t.name, t) for t in op.inputs if t.op in forward)
        self.saved = list(saved.values())


def call_recorded(concrete, tensor_args):
    """Calls `concrete` with `tensor_args` and records the call on the eager tapes that watch its inputs;
    returns its flat results, or None (without calling it) when no tape watches them."""
    from tensorgrid.client import eager
    variables = list(concrete.graph.variables_read.values())
    for v in variables:
        tape_lib.variable_accessed(v)
    args = [a if getattr(a, "_is_eager_tensor", False) else eager.EagerTensor(np.asarray(a), ph.dtype)
            for a, ph in zip(tensor_args, concrete.inputs)]
    inputs = args + [v._handle for v in variables]
    feeds = {ph.name: np.asarray(a._value, dtype=ph.dtype.as_numpy_dtype) for ph, a in zip(concrete.inputs, args)}
    if not tape_lib.watches_any(inputs):
        return None
    if concrete._backward is None:
        concrete._backward = _Backward(concrete, variables)
    backward = concrete._backward
    results = concrete._run([t.name for t in concrete.outputs] + [t.name for t in backward.saved], feeds,
                            concrete._targets)
    outputs = [eager.EagerTensor(results[t.name], t.dtype) for t in concrete.outputs]
    saved = {t.name: results[t.name] for t in backward.saved}

    def grad_fn(op, *out_grads):
        grad_feeds = dict(saved)
        for seed, t, g in zip(backward.seeds, concrete.outputs, out_grads):
            if seed is not None:
                value = np.zeros(np.shape(results[t.name]), t.dtype.as_numpy_dtype) if g is None else \
                    np.asarray(graph_lib.convert_to_tensor(g).numpy(), t.dtype.as_numpy_dtype)
                grad_feeds[seed.name] = value
        values = concrete._run([t.name for t in backward.leaves], grad_feeds, [])
        return nest.rebuild(backward.spec, [eager.EagerTensor(values[t.name], t.dtype) for t in backward.leaves])

    tape_lib.record_call(inputs, outputs, grad_fn)
    return outputs
