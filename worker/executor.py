"""The dataflow executor: compiles one partition into straight-line Python and runs it.

A partition's nodes are grouped by the set of _Recv nodes they depend on
(transitively). Each group becomes one generated function that calls the
kernels in topological order, so running a node costs one kernel call. A
group runs as soon as every receive it depends on has arrived, which is the
schedule of a dataflow executor without its per-node bookkeeping, and never
deadlocks on a DAG. Values needed by later groups live in a per-step slot
table; every other value dies after its last consumer (`del`).
"""

import dataclasses
import queue
import sys
import threading
import time

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.ops import registry
from tensorgrid.runtime.ir import split_input


@dataclasses.dataclass
class Step:
    """Everything a step gives kernels that need it (needs_step=True)."""

    step_id: int
    rendezvous: object
    feeds: dict = dataclasses.field(default_factory=dict)
    fetches: dict = dataclasses.field(default_factory=dict)
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() value


@dataclasses.dataclass
class NodeStats:
    """One node's timing in a traced run (microseconds since the epoch, and its output bytes)."""

    node_name: str
    op: str
    start_us: int
    end_us: int
    output_bytes: list
    output_shapes: list
    output_dtypes: list


class DeviceContext:
    """What kernels on one device share: its name, type, array module and resource store."""

    def __init__(self, name, device_type="CPU", xp=np, resources=None, allow_pickle=True):
        from tensorgrid.worker.resources import ResourceStore
        self.name = name
        self.device_type = device_type
        self.xp = xp
        self.resources = resources if resources is not None else ResourceStore()
        self.allow_pickle = allow_pickle


def node_error(exc, node):
    """Wraps a kernel's exception into an OpError naming the node, device and creating line."""
    if isinstance(exc, errors.OpError):
        if exc.node_def is not None:
            return exc
        cls = type(exc)
        msg = str(exc)
    elif isinstance(exc, (ValueError, IndexError, TypeError, FloatingPointError, ZeroDivisionError, KeyError)):
        cls, msg = errors.InvalidArgumentError, f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, MemoryError):
        cls, msg = errors.ResourceExhaustedError, f"out of memory: {exc}"
    else:
        cls, msg = errors.InternalError, f"{type(exc).__name__}: {exc}"
    if node.name not in msg:
        msg = f"{node.describe()}: {msg}"
    elif node.device and node.device not in msg:
        msg = f"{msg} [node {node.describe()}]"
    err = cls(node, node.name, msg)
    err.node_name = node.name
    return err


class _Group:
    __slots__ = ("index", "recvs", "fn", "traced_fn", "line_to_node", "nodes", "source")


class Executable:
    """A compiled partition. `run(step)` executes it once; thread-safe across steps."""

    def __init__(self, graph, device):
        self.device = device
        self.graph = graph
        order = graph.topological_order()
        self.nodes = [graph[n] for n in order]
        index = {n.name: i for i, n in enumerate(self.nodes)}
        self._index = index
        self.opdefs = []
        self.kernels = []
        for n in self.nodes:
            opdef = registry.get(n.op)
            self.opdefs.append(opdef)
            if n.op == "_Recv":
                self.kernels.append(None)
                continue
            factory = opdef.kernel_for(device.device_type, n.describe())
            knode = registry.KernelNode(n.name, n.op, n.attrs, device.name, device.xp,
                                        device.resources, device.device_type, None, device.allow_pickle)
            try:
                self.kernels.append(factory(knode))
            except errors.OpError as e:
                raise node_error(e, n) from None
            except Exception as e:  # a kernel factory rejecting its attrs
                raise node_error(e, n) from None
        self._build_groups()

    # ---- compilation ---------------------------------------------------------------
    def _build_groups(self):
        nodes = self.nodes
        recv_ids = [i for i, n in enumerate(nodes) if n.op == "_Recv"]
        self.recv_ids = recv_ids
        self.recv_keys = [nodes[i].attrs["key"] for i in recv_ids]
        recv_pos = {i: k for k, i in enumerate(recv_ids)}
        deps = []  # per node: frozenset of recv positions it depends on
        empty = frozenset()
        for i, n in enumerate(nodes):
            s = empty
            for ref in n.inputs:
                s = s | deps[self._index[split_input(ref)[0]]]
            for c in n.control_inputs:
                s = s | deps[self._index[c]]
            if i in recv_pos:
                s = s | {recv_pos[i]}
            deps.append(s)
        group_of_set = {}
        groups = []
        node_group = []
        for i, n in enumerate(nodes):
            s = deps[i]
            if n.op == "_Recv":
                node_group.append(None)
                continue
            g = group_of_set.get(s)
            if g is None:
                g = _Group()
                g.index = len(groups)
                g.recvs = s
                g.nodes = []
                group_of_set[s] = g
                groups.append(g)
            g.nodes.append(i)
            node_group.append(g.index)
        self.groups = groups
        self.groups_of_recv = [[] for _ in recv_ids]
        for g in groups:
            for r in g.recvs:
                self.groups_of_recv[r].append(g.index)
        # Slots: every output consumed outside the group that produced it (recv outputs included).
        self.slot_of = {}
        for i, n in enumerate(nodes):
            for ref in n.inputs:
                src = self._index[split_input(ref)[0]]
                if node_group[src] != node_group[i] or node_group[src] is None:
                    key = (src, split_input(ref)[1])
                    if key not in self.slot_of:
                        self.slot_of[key] = len(self.slot_of)
        self.recv_slot = [self.slot_of.get((i, 0)) for i in recv_ids]
        for g in groups:
            self._compile_group(g, node_group)

    def _compile_group(self, g, node_group):
        nodes = self.nodes
        members = set(g.nodes)
        lines = []
        line_to_node = {}
        last_use = {}
        for i in g.nodes:
            for ref in nodes[i].inputs:
                src, idx = split_input(ref)
                last_use[(self._index[src], idx)] = i
        loaded = set()
        for i in g.nodes:
            for ref in nodes[i].inputs:
                src, idx = split_input(ref)
                key = (self._index[src], idx)
                if key[0] not in members and key not in loaded:
                    lines.append(f"    v{key[0]}_{key[1]} = env[{self.slot_of[key]}]")
                    loaded.add(key)
        header = len(lines)
        for i in g.nodes:
            n = nodes[i]
            opdef = self.opdefs[i]
            args = ["step"] if opdef.needs_step else []
            for ref in n.inputs:
                src, idx = split_input(ref)
                args.append(f"v{self._index[src]}_{idx}")
            call = f"k[{i}]({', '.join(args)})"
            nout = self._num_outputs(i)
            if nout == 0:
                stmt = call
            elif nout == 1:
                stmt = f"v{i}_0 = {call}"
            else:
                stmt = f"_o = {call}; " + "; ".join(f"v{i}_{j} = _o[{j}]" for j in range(nout))
            lines.append(f"    {stmt}")
            line_to_node[len(lines) + 1] = i  # +1: the def line
            for j in range(max(nout, 1)):
                if (i, j) in self.slot_of:
                    lines.append(f"    env[{self.slot_of[(i, j)]}] = v{i}_{j}")
            for ref in n.inputs:
                src, idx = split_input(ref)
                key = (self._index[src], idx)
                if last_use.get(key) == i and key[0] in members and key not in self.slot_of:
                    lines.append(f"    del v{key[0]}_{key[1]}")
                    last_use.pop(key)
        body = "\n".join(lines) or "    pass"
        src = f"def group(step, env, k):\n{body}\n"
        code = compile(src, f"<partition {self.device.name} group {g.index}>", "exec")
        ns = {}
        exec(code, ns)
        g.fn = ns["group"]
        g.line_to_node = line_to_node
        g.source = src
        g.traced_fn = None

    def _num_outputs(self, i):
        return self.opdefs[i].output_count(self.nodes[i].attrs)

    # ---- running ---------------------------------------------------------------------
    def run(self, step, trace=None):
        """Runs the partition for `step`; raises the first node error as an OpError."""
        env = [None] * len(self.slot_of)
        k = self.kernels
        groups = self.groups
        if not self.recv_keys:
            for g in groups:
                self._run_group(g, step, env, k, trace)
            return
        missing = [len(g.recvs) for g in groups]
        for g in groups:
            if not g.recvs:
                self._run_group(g, step, env, k, trace)
        arrivals = queue.SimpleQueue()
        for r, key in enumerate(self.recv_keys):
            step.rendezvous.recv_async(key, lambda v, e, r=r: arrivals.put((r, v, e)))
        remaining = len(self.recv_keys)
        while remaining:
            timeout = None if step.deadline is None else max(0.0, step.deadline - time.monotonic())
            try:
                r, value, err = arrivals.get(timeout=timeout)
            except queue.Empty:
                raise errors.DeadlineExceededError(
                    None, None, f"step {step.step_id} timed out on {self.device.name} "
                    f"waiting for a tensor from another device") from None
            if err is not None:
                raise err
            remaining -= 1
            slot = self.recv_slot[r]
            if slot is not None:
                env[slot] = value
            ready = []
            for gi in self.groups_of_recv[r]:
                missing[gi] -= 1
                if missing[gi] == 0:
                    ready.append(groups[gi])
            if trace is not None:
                now = _now_us()
                n = self.nodes[self.recv_ids[r]]
                trace.append(NodeStats(n.name, n.op, now, now, *_describe_outputs(value)))
            ready.sort(key=lambda g: (len(g.recvs), g.index))
            for g in ready:
                self._run_group(g, step, env, k, trace)

    def _run_group(self, g, step, env, k, trace):
        if step.cancelled.is_set():
            raise errors.CancelledError(None, None, f"step {step.step_id} was cancelled")
        fn = g.fn
        if trace is not None:
            if g.traced_fn is None:
                g.traced_fn = _traced_variant(g, self)
            fn = g.traced_fn
            k = _TracingKernels(self, trace)
        try:
            fn(step, env, k)
        except Exception as e:
            raise self._error_from(e, g) from None

    def _error_from(self, exc, g):
        tb = exc.__traceback__
        node_i = None
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "group" and tb.tb_frame.f_code.co_filename.startswith("<partition"):
                node_i = g.line_to_node.get(tb.tb_lineno)
            tb = tb.tb_next
        if node_i is None:
            return errors.from_exception(exc)
        return node_error(exc, self.nodes[node_i])


def _now_us():
    return int(time.time() * 1e6)


def _describe_outputs(value):
    values = value if isinstance(value, tuple) else (() if value is None else (value,))
    sizes, shapes, dts = [], [], []
    for v in values:
        sizes.append(int(getattr(v, "nbytes", 0)))
        shapes.append(tuple(getattr(v, "shape", ())))
        dts.append(str(getattr(v, "dtype", "")))
    return sizes, shapes, dts


class _TracingKernels:
    """Kernel table stand-in for a traced run: times each call and records its outputs."""

    def __init__(self, ex, trace):
        self.ex = ex
        self.trace = trace

    def __getitem__(self, i):
        kern = self.ex.kernels[i]
        node = self.ex.nodes[i]
        trace = self.trace

        def timed(*args):
            start = _now_us()
            out = kern(*args)
            trace.append(NodeStats(node.name, node.op, start, _now_us(), *_describe_outputs(out)))
            return out
        return timed


def _traced_variant(g, ex):
    return g.fn  # the same code: tracing swaps the kernel table, not the code


if sys.version_info < (3, 10):  # pragma: no cover
    raise RuntimeError("tensorgrid needs Python 3.10 or newer")
