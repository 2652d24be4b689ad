"""The dataflow executor: runs one partition as a flat instruction list.

A partition's nodes are grouped by the set of _Recv nodes they depend on
(transitively). Each group is a list of instructions in topological order,
one per node, run by a tight loop that costs little more than the kernel
call itself. A group runs as soon as every receive it depends on has
arrived: the schedule of a dataflow executor without its per-node
bookkeeping, and never a deadlock on a DAG. Every output has a slot in a
per-step value table; a slot is cleared after its last consumer ran.

A NumPy ufunc (Add, Mul, ...) whose one output goes only to a _Send writes
it straight into the memory that send will hand over when the rendezvous
offers any (a shared-memory segment of a same-host worker), so the send
copies nothing.

An asynchronous kernel (registry `is_async`: one device's part of a loop
that spans devices, which waits on the others) is started, on a thread of
its own, by the group that computes its inputs; its outputs then arrive
like a receive's, so the rest of the partition never waits behind it.
"""

import contextlib
import dataclasses
import operator
import queue
import sys
import threading
import time

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.observability import stages
from tensorgrid.ops import registry
from tensorgrid.runtime.ir import functions_of, split_input
from tensorgrid.worker.transport import SHM_MIN_BYTES, delivering, hand_off_reading


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

    def accept(self, value):
        """`value` in this device's memory: a CPU<->GPU copy when it arrived from the other kind."""
        from tensorgrid.ops.core_ops import to_device
        return to_device(self.xp, value)

    def activate(self):
        """A context making this device the calling thread's current CUDA device (CuPy chooses the
        device per thread, so every thread that runs a GPU kernel or copy enters this first); a
        no-op on a CPU."""
        if self.xp is np:
            return contextlib.nullcontext()
        return self.xp.cuda.Device(int(self.name.rsplit(":", 1)[1]))


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
    __slots__ = ("index", "recvs", "prog")


_DONE = object()  # wakes a step's thread after another thread ran its last arrival, or failed


class _Inline(threading.local):
    on = False  # this thread computes on a delivery: another one it makes (a local send) is queued


_inline = _Inline()


class _Waits:
    """One run's state while its receives arrive: what is still missing, and the lock its computing
    thread holds (the step's, or a data-plane reader's: Executable._run_waiting)."""

    __slots__ = ("exe", "step", "trace", "vals", "arrivals", "lock", "missing", "remaining", "failure", "over")

    def __init__(self, exe, step, trace, vals, arrivals):
        self.exe, self.step, self.trace, self.vals, self.arrivals = exe, step, trace, vals, arrivals
        self.lock = threading.Lock()
        self.missing = [len(g.recvs) for g in exe.groups]
        self.remaining = len(exe.recv_keys)
        self.failure = None
        self.over = False

    def arrived(self, r, value, err):
        """Wait r's value (or error), on the thread that delivered it: computed on here when that thread
        is a data-plane reader, the step's thread sleeps and the groups it completes wait on nothing (or the
        reader could hand its reading off first); else queued for the step's thread."""
        if err is None and not _inline.on and delivering() and self.lock.acquire(blocking=False):
            try:
                if (not self.over and self.failure is None
                        and (self.exe.quick_recvs[r] or hand_off_reading())):
                    _inline.on = True
                    try:
                        self._compute(r, value)
                    finally:
                        _inline.on = False
                    return
            finally:
                self.lock.release()
        self.arrivals.put((r, value, err))

    def _compute(self, r, value):
        """Runs the arrival here (lock held); wakes the step's thread when that was its last, or it failed."""
        if stages.ON:
            stages.mark("w.woke")
        exe = self.exe
        try:
            if exe.device.xp is np:
                exe._arrival(self, r, value)
            else:
                with exe.device.activate():
                    exe._arrival(self, r, value)
        except BaseException as e:  # noqa: BLE001 - the step's thread raises it
            self.failure = e
        if self.remaining == 0 or self.failure is not None:
            self.arrivals.put(_DONE)


class Executable:
    """A compiled partition. `run(step)` executes it once; thread-safe across steps."""

    def __init__(self, graph, device, kernel_cache=None):
        """Compiles `graph` for `device`. Stateful kernels (random streams) are taken from and
        left in `kernel_cache` ({(node name, op): kernel}, one per session), so a session's
        random ops continue their streams across steps with different fetches."""
        self.device = device
        self.graph = graph
        order = graph.topological_order(_send_first(graph))
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
            cache_key = None
            # not a node calling functions (a loop): a plan places them anew, and a gradient rewrites them
            if kernel_cache is not None and opdef.stateful and not n.op.startswith("_") and not functions_of(n):
                cache_key = (n.name, n.op)
                cached = kernel_cache.get(cache_key)
                if cached is not None:
                    self.kernels.append(cached)
                    continue
            factory = opdef.kernel_for(device.device_type, n.describe())
            knode = registry.KernelNode(n.name, n.op, n.attrs, device.name, device.xp,
                                        device.resources, device.device_type, None, device.allow_pickle)
            try:
                kernel = factory(knode)
            except Exception as e:  # a kernel factory rejecting its attrs
                raise node_error(e, n) from None
            self.kernels.append(kernel)
            if cache_key is not None:
                kernel_cache[cache_key] = kernel
        self._build_groups()

    # ---- compilation ---------------------------------------------------------------
    def _build_groups(self):
        nodes = self.nodes
        index = self._index
        parsed = [[(index[src], idx) for src, idx in map(split_input, n.inputs)] for n in nodes]
        ctrl = [[index[c] for c in n.control_inputs] for n in nodes]
        self._sent_outputs = self._outputs_only_sent(parsed)
        # Waits: receives, and asynchronous kernels, whose outputs arrive the same way.
        recv_ids = [i for i, n in enumerate(nodes) if n.op == "_Recv" or self.opdefs[i].is_async]
        self.recv_ids = recv_ids
        self.recv_keys = [nodes[i].attrs["key"] if nodes[i].op == "_Recv" else None for i in recv_ids]
        self.has_async = any(k is None for k in self.recv_keys)
        recv_pos = {i: k for k, i in enumerate(recv_ids)}
        self._recv_pos = recv_pos
        empty = frozenset()
        deps = []  # per node: the wait positions it depends on
        starts = {}  # per asynchronous node: the wait positions its inputs depend on
        for i in range(len(nodes)):
            s = empty
            for src, _ in parsed[i]:
                if deps[src] is not s:
                    s = s | deps[src]
            for src in ctrl[i]:
                if deps[src] is not s:
                    s = s | deps[src]
            if i in recv_pos:
                if nodes[i].op != "_Recv":
                    starts[i] = s
                s = s | {recv_pos[i]}
            deps.append(s)
        # Slot 0 holds the step; then every output of every node; then a sink; then, with
        # asynchronous kernels, the queue their outputs arrive on.
        self.out_slot = []
        nslots = 1
        for i, n in enumerate(nodes):
            self.out_slot.append(nslots)
            nslots += max(self.opdefs[i].output_count(n.attrs), 1)
        self.sink = nslots
        self.arrivals_slot = nslots + 1
        self.nslots = nslots + 1 + self.has_async
        group_of_set, groups = {}, []
        for i, n in enumerate(nodes):
            if n.op == "_Recv":
                continue
            at = starts.get(i, deps[i])  # an asynchronous kernel starts in the group of its inputs
            g = group_of_set.get(at)
            if g is None:
                g = group_of_set[at] = _Group()
                g.index, g.recvs, g.prog = len(groups), at, []
                groups.append(g)
            g.prog.append(i)
        # A slot is cleared after its last consumer when all its consumers run in one group
        # (groups run in arrival order, not node order); otherwise it lives to the step's end.
        last_use, users = {}, {}
        for g in groups:
            for i in g.prog:
                for src, idx in parsed[i]:
                    slot = self.out_slot[src] + idx
                    last_use[slot] = i
                    users.setdefault(slot, set()).add(g.index)
        frees = {}
        for slot, i in last_use.items():
            if len(users[slot]) == 1:
                frees.setdefault(i, []).append(slot)
        # Constants are computed once, here: each step starts from a copy of this table.
        self.template = [None] * self.nslots
        for g in groups:
            for i in g.prog:
                if self.nodes[i].op == "Const":
                    self.template[self.out_slot[i]] = self.kernels[i]()
            keep = [i for i in g.prog if self.nodes[i].op != "Const"]
            g.prog = [self._instruction(i, parsed[i], tuple(frees.get(i, ()))) for i in keep]
        self.groups = groups
        self.groups_of_recv = [[] for _ in recv_ids]
        for g in groups:
            for r in g.recvs:
                self.groups_of_recv[r].append(g.index)
        self.recv_slot = [self._outputs_slot(i) for i in recv_ids]
        # per wait: whether every group waiting on it runs only kernels that wait on nothing
        quick = [all(_waits_on_nothing(self.opdefs[inst[6]], nodes[inst[6]]) for inst in g.prog) for g in groups]
        self.quick_recvs = [all(quick[gi] for gi in gis) for gis in self.groups_of_recv]

    def _outputs_only_sent(self, parsed):
        """{node index: _Send key} of the ufunc and fused elementwise nodes whose one output goes to one
        _Send and nowhere else."""
        if self.device.xp is not np:
            return {}
        users = {}
        for j, inputs in enumerate(parsed):
            for ref in inputs:
                users.setdefault(ref, []).append(j)
        sent = {}
        for i, kernel in enumerate(self.kernels):
            if (isinstance(kernel, np.ufunc) and kernel.nout == 1) or hasattr(kernel, "result_spec"):
                to = users.get((i, 0), ())
                if len(to) == 1 and self.nodes[to[0]].op == "_Send":
                    sent[i] = self.nodes[to[0]].attrs["key"]
        return sent

    def _instruction(self, i, inputs, frees):
        """(arity code, kernel, a, b, out, frees, node index) for node i.

        Arity code 2: kernel(vals[a], vals[b]); 1: kernel(vals[a]); 0: kernel();
        3: kernel(*a(vals)) with `a` an itemgetter. Inputs of needs_step kernels
        start with slot 0, the step; an asynchronous kernel's instruction starts
        it, with the arrival queue's slot first.
        """
        slots = [self.out_slot[src] + idx for src, idx in inputs]
        if self.opdefs[i].needs_step:
            slots.insert(0, 0)
        kernel = self.kernels[i]
        if i in self._sent_outputs:
            slots.insert(0, 0)
            kernel = _writing_into_send(kernel, self._sent_outputs[i])
        if self.opdefs[i].is_async:
            slots.insert(0, self.arrivals_slot)
            kernel = self._starter(i)
        a = b = None
        if len(slots) == 2:
            code, (a, b) = 2, slots
        elif len(slots) == 1:
            code, a = 1, slots[0]
        elif not slots:
            code = 0
        else:
            code, a = 3, operator.itemgetter(*slots)
        out = self.sink if self.opdefs[i].is_async else self._outputs_slot(i)
        return (code, kernel, a, b, out, frees or None, i)

    def _outputs_slot(self, i):
        """Where node i's outputs go in the value table: a slot, a slice of slots, or the sink."""
        nout = self.opdefs[i].output_count(self.nodes[i].attrs)
        if nout == 0:
            return self.sink
        if nout == 1:
            return self.out_slot[i]
        return slice(self.out_slot[i], self.out_slot[i] + nout)

    def _starter(self, i):
        """The instruction kernel that runs asynchronous node i on a thread of its own; its outputs
        (or its error) go to the step's arrival queue as wait position r's."""
        kernel, node, r = self.kernels[i], self.nodes[i], self._recv_pos[i]

        def start(arrivals, step, *args):
            def work():
                try:
                    with self.device.activate():
                        value = kernel(step, *args)
                except Exception as e:  # noqa: BLE001 - every failure goes to the partition's run
                    arrivals.put((r, None, node_error(e, node)))
                    return
                arrivals.put((r, value, None))
            threading.Thread(target=work, name=f"tg-{node.name}", daemon=True).start()
        return start

    # ---- running ---------------------------------------------------------------------
    def run(self, step, trace=None):
        """Runs the partition for `step`; raises the first node error as an OpError."""
        if self.device.xp is not np:
            with self.device.activate():
                return self._run(step, trace)
        return self._run(step, trace)

    def _run(self, step, trace):
        vals = self.template[:]
        vals[0] = step
        groups = self.groups
        if not self.recv_keys:
            for g in groups:
                self._run_group(g, step, vals, trace)
            return
        if not self.has_async:
            self._run_waiting(_Waits(self, step, trace, vals, queue.SimpleQueue()))
            return
        arrivals = vals[self.arrivals_slot] = queue.SimpleQueue()
        try:
            self._run_waiting(_Waits(self, step, trace, vals, arrivals))
        except BaseException:
            step.cancelled.set()  # this partition failed: its asynchronous kernels stop too
            raise

    def _run_waiting(self, w):
        """Runs the groups that wait for nothing, then each group once its receives have arrived.

        An arrival is computed on by whichever thread holds w.lock: the step's own thread, or a data-plane
        reader that delivered it while the step's thread was asleep (_Waits.arrived), so a tensor from
        another worker wakes no thread to run the kernels it makes ready; the step's thread wakes once,
        when the last arrival is in or a group failed."""
        step, arrivals = w.step, w.arrivals
        w.lock.acquire()
        try:
            for g in self.groups:
                if not g.recvs:
                    self._run_group(g, step, w.vals, w.trace)
            for r, key in enumerate(self.recv_keys):
                if key is not None:
                    step.rendezvous.recv_async(key, lambda v, e, r=r: w.arrived(r, v, e))
            if stages.ON:
                stages.mark("w.wait")
            while w.remaining:
                w.lock.release()
                try:
                    timeout = None if step.deadline is None else max(0.0, step.deadline - time.monotonic())
                    item = arrivals.get(timeout=timeout)
                except queue.Empty:
                    item = None
                finally:
                    w.lock.acquire()
                if w.failure is not None:
                    raise w.failure
                if item is None and w.remaining:
                    raise errors.DeadlineExceededError(
                        None, None, f"step {step.step_id} timed out on {self.device.name} "
                        f"waiting for a tensor from another device or a kernel of its own") from None
                if item is None or item is _DONE:
                    continue  # the last arrival was computed on by a data-plane reader
                if stages.ON:
                    stages.mark("w.woke")
                r, value, err = item
                if err is not None:
                    raise err
                self._arrival(w, r, value)
        finally:
            w.over = True
            w.lock.release()

    def _arrival(self, w, r, value):
        """Takes wait r's value into the value table and runs the groups it completes (w.lock held)."""
        w.remaining -= 1
        trace = w.trace
        start = _now_us() if trace is not None else 0
        if (self.device.xp is not np or type(value).__module__.startswith("cupy")) and self.recv_keys[r]:
            value = self.device.accept(value)
        w.vals[self.recv_slot[r]] = value
        if trace is not None:  # a receive's time is its host<->GPU copy, if any
            n = self.nodes[self.recv_ids[r]]
            trace.append(NodeStats(n.name, n.op, start, _now_us(), *_describe_outputs(value)))
        missing, groups = w.missing, self.groups
        ready = []
        for gi in self.groups_of_recv[r]:
            missing[gi] -= 1
            if missing[gi] == 0:
                ready.append(groups[gi])
        ready.sort(key=lambda g: (len(g.recvs), g.index))
        for g in ready:
            self._run_group(g, w.step, w.vals, trace)

    def _run_group(self, g, step, vals, trace):
        if step.cancelled.is_set():
            raise errors.CancelledError(None, None, f"step {step.step_id} was cancelled")
        inst = None
        try:
            if trace is None:
                for inst in g.prog:
                    code, kern, a, b, out, frees, _ = inst
                    if code == 2:
                        vals[out] = kern(vals[a], vals[b])
                    elif code == 1:
                        vals[out] = kern(vals[a])
                    elif code == 0:
                        vals[out] = kern()
                    else:
                        vals[out] = kern(*a(vals))
                    if frees:
                        for f in frees:
                            vals[f] = None
            else:
                self._run_traced(g, vals, trace)
        except Exception as e:
            node_i = inst[6] if inst is not None and trace is None else getattr(e, "_tg_node_index", None)
            if node_i is None:
                raise errors.from_exception(e) from None
            raise node_error(e, self.nodes[node_i]) from None

    def _run_traced(self, g, vals, trace):
        for code, kern, a, b, out, frees, i in g.prog:
            node = self.nodes[i]
            start = _now_us()
            try:
                if code == 2:
                    result = kern(vals[a], vals[b])
                elif code == 1:
                    result = kern(vals[a])
                elif code == 0:
                    result = kern()
                else:
                    result = kern(*a(vals))
            except Exception as e:
                e._tg_node_index = i
                raise
            vals[out] = result
            shown = result
            if out == self.sink and code in (1, 2):  # no outputs (a _Send): show the tensor it consumed
                shown = vals[b] if code == 2 else vals[a]
            trace.append(NodeStats(node.name, node.op, start, _now_us(), *_describe_outputs(shown)))
            if frees:
                for f in frees:
                    vals[f] = None


_QUICK_STEP_OPS = frozenset(("_Send", "_Feed", "_Fetch", "_Retval"))
# stateful ops that only read or update a variable, under its lock at most
_VARIABLE_OPS = ("ResourceApply", "ResourceSparseApply", "AssignVariableOp", "AssignAddVariableOp",
                 "AssignSubVariableOp", "ReadVariableOp", "VarHandleOp", "VarIsInitializedOp", "ResourceGather",
                 "ResourceScatter")


def _waits_on_nothing(opdef, node):
    """Whether node's kernel returns without waiting on another thread, step or process (queues, loops,
    accumulators, input pipelines and Python functions may; a _Send's own waits are the data plane's to
    handle)."""
    if node.op in _QUICK_STEP_OPS or node.op.startswith(_VARIABLE_OPS):
        return True
    return not (opdef.stateful or opdef.needs_step or opdef.is_async or node.op.startswith("PyFunc")
                or functions_of(node))


def _send_first(graph):
    """{node name: priority} for a partition whose _Sends the master ranked (partition.prioritize_sends),
    else None: each node's is the highest of the sends it leads to, less its distance to them, or its
    longest path to the partition's end where it leads to none; so the ready nodes on the way to the
    send the rest of the step waits on most run first."""
    sends = {n.name: n.attrs["_priority"] for n in graph if n.op == "_Send" and "_priority" in n.attrs}
    if not sends:
        return None
    consumers = graph.dependencies()[1]
    priority = {}
    for name in reversed(graph.topological_order()):
        priority[name] = sends[name] if name in sends else \
            max((priority[c] + 1 for c in consumers[name]), default=0)
    return priority


_ARRAYS = (np.ndarray, np.generic)


def _writing_into_send(kernel, key):
    """The kernel kernel(*inputs) (a ufunc, or a _FusedElementwise kernel, which has `result_spec`) for
    an output sent under `key` and used nowhere else: it writes into the rendezvous's send buffer for
    the key where there is one, so the _Send copies nothing."""
    spec = getattr(kernel, "result_spec", None) or (lambda xs: _ufunc_result(kernel, xs))

    def run(step, *xs):
        out = _send_buffer(step, key, spec(xs))
        if out is None:
            return kernel(*xs)
        try:
            return kernel(*xs, out=out)
        except BaseException:
            step.rendezvous.unstage(key, out)
            raise
    return run


def _ufunc_result(ufunc, xs):
    """(shape, dtype) of ufunc(*xs)'s result, or None: inputs that are not arrays of one dtype (the
    ufunc then raises or promotes as it always does)."""
    x = xs[0]
    if not isinstance(x, _ARRAYS) or any(not isinstance(v, _ARRAYS) or v.dtype != x.dtype for v in xs[1:]):
        return None
    bound = x.nbytes  # the result's bytes at most, whatever the broadcast
    for v in xs[1:]:
        bound *= v.size
    if bound < SHM_MIN_BYTES:
        return None  # cheaper to copy than to work out
    try:
        return np.broadcast_shapes(*(v.shape for v in xs)), ufunc.resolve_dtypes((x.dtype,) * len(xs) + (None,))[-1]
    except (ValueError, TypeError):
        return None  # the ufunc itself raises its own error


def _send_buffer(step, key, spec):
    """The send buffer for a result of spec (shape, dtype) as an array of that dtype and shape, or None:
    no spec, a result under the size that travels through shared memory, or a rendezvous with no buffer
    for the key."""
    if spec is None:
        return None
    shape, dtype = spec
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize < SHM_MIN_BYTES:
        return None
    offer = getattr(step.rendezvous, "send_buffer", None)  # only a rendezvous that reaches other workers
    if offer is None:
        return None
    buf = offer(key, count * dtype.itemsize)
    return None if buf is None else buf.view(dtype).reshape(shape)


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


if sys.version_info < (3, 10):  # pragma: no cover
    raise RuntimeError("tensorgrid needs Python 3.10 or newer")
