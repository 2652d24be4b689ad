"""Calling a function (runtime.ir.Function) from a kernel.

A kernel whose op takes a function attr (a loop's body, a cond's branch, a
dataset's map function) compiles it once, when the kernel is made, for the
kernel's own device, and calls it as often as it needs within the step that
runs the kernel. The body is pruned like a step: each argument's Placeholder
becomes a _Feed, each result gets a _Fetch, and the control results are
targets, so only what the results and side effects need runs.
"""

from tensorgrid.runtime import prune
from tensorgrid.runtime.ir import split_input
from tensorgrid.worker.executor import DeviceContext, Executable, Step


def device_of(node):
    """The DeviceContext of a kernel's registry.KernelNode, for compiling the functions it calls."""
    return DeviceContext(node.device, node.device_type, node.xp, node.resources, node.allow_pickle)


class CompiledFunction:
    """A Function compiled for one device; calling it runs its body and returns its results."""

    def __init__(self, fn, device):
        self.function = fn
        self.feed_keys = [f"{a}:0" for a in fn.args]
        self.fetch_keys = [f"{name}:{idx}" for name, idx in map(split_input, fn.results)]
        body = prune.prune(fn.graph, self.feed_keys, self.fetch_keys, fn.control_results)
        for node in body:
            if node.op == "_Fetch":  # a result stays in the device's memory, where the caller runs
                body.nodes[node.name] = node.copy(op="_Retval")
        self.executable = Executable(body, device)
        self.empty = not len(body)  # nothing to run: a shard with no part in this phase

    def __call__(self, step, args, rendezvous=None):
        """Runs the body once within `step` (its id, cancellation and deadline, and its rendezvous
        unless `rendezvous` is given: a loop's iteration frame) on `args`, one value per argument,
        and returns the list of result values."""
        if len(args) != len(self.feed_keys):
            raise TypeError(f"function '{self.function.name}' takes {len(self.feed_keys)} arguments, "
                            f"got {len(args)}")
        call = Step(step.step_id, step.rendezvous if rendezvous is None else rendezvous,
                    dict(zip(self.feed_keys, args)), {}, step.cancelled, step.deadline)
        self.executable.run(call)
        fetches = call.fetches
        return [fetches[k] for k in self.fetch_keys]

    def __repr__(self):
        return f"<CompiledFunction {self.function.name} on {self.executable.device.name}>"
