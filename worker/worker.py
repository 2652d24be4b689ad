"""A worker's state: its devices and their variables, the graphs registered on it, and its step table.

Plain objects, no network: worker_service.py parses requests and calls
these methods, and tests drive them directly.

Step table: a step gets an entry when its RunGraph starts or when a tensor
for it arrives first from another worker (that tensor is kept until the
RunGraph comes). The entry goes when the RunGraph ends or the master cleans
the step up; the step id is then remembered for FINISHED_TTL_S so tensors
that arrive late are dropped instead of opening a new entry. Entries that
only ever got early tensors are dropped after ORPHAN_TTL_S, and the oldest
of them at once while they hold more than MAX_EARLY_BYTES or the table more
than MAX_STEPS_HELD entries: a step whose early tensors were dropped fails
with CancelledError saying so when its RunGraph comes.
"""

import collections
import concurrent.futures
import itertools
import logging
import os
import random
import threading
import time

from tensorgrid.framework import device_spec, errors
from tensorgrid.observability import stages, worker_metrics
from tensorgrid.runtime import local as local_lib
from tensorgrid.runtime import partition as partition_lib
from tensorgrid.worker import executor as executor_lib
from tensorgrid.worker.remote_rendezvous import RemoteRendezvous
from tensorgrid.worker.resources import ResourceStore

log = logging.getLogger("tensorgrid.worker")

FINISHED_TTL_S = 120.0
FINISHED_MAX = 200_000
ORPHAN_TTL_S = 300.0
# Bytes of tensors kept for steps whose RunGraph has not started here, and step table entries, at most.
MAX_EARLY_BYTES = 1 << 30
MAX_STEPS_HELD = 8192


class _Registration:
    """One RegisterGraph: compiled partitions per device, send routes, the GraphDefs for tracing."""

    __slots__ = ("handle", "session", "executables", "routes", "graph_defs")

    def __init__(self, handle, session, executables, routes, graph_defs):
        self.handle = handle
        self.session = session
        self.executables = executables
        self.routes = routes
        self.graph_defs = graph_defs


class _StepState:
    __slots__ = ("rendezvous", "cancelled", "running", "created", "early_bytes")

    def __init__(self, rendezvous):
        self.rendezvous = rendezvous
        self.cancelled = threading.Event()
        self.running = False
        self.created = time.monotonic()
        self.early_bytes = 0        # bytes delivered before the step started running here


class StepResult:
    """What RunGraph gives back: fetched arrays and, when traced, per-device node stats."""

    __slots__ = ("fetches", "traces", "graph_defs")

    def __init__(self, fetches, traces, graph_defs):
        self.fetches = fetches
        self.traces = traces
        self.graph_defs = graph_defs


def physical_memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def local_devices(which="cpu"):
    """(device_type, index, memory_bytes) of this machine's devices for --devices cpu|gpu|all.

    A CPU device is always there (ops without a GPU kernel need one); "gpu"
    fails when no GPU is usable.
    """
    if which not in ("cpu", "gpu", "all"):
        raise ValueError(f"--devices must be cpu, gpu or all, not {which!r}")
    found = [("CPU", 0, physical_memory_bytes())]
    if which == "cpu":
        return found
    gpus = []
    try:
        import cupy
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            gpus.append(("GPU", i, int(cupy.cuda.runtime.getDeviceProperties(i)["totalGlobalMem"])))
    except Exception as e:  # noqa: BLE001 - no CuPy or no driver: no GPU
        if which == "gpu":
            raise ValueError(f"--devices gpu: no usable GPU ({type(e).__name__}: {e})") from None
    if which == "gpu" and not gpus:
        raise ValueError("--devices gpu: no GPU found")
    return found + gpus


def _array_module(device_type, index):
    if device_type == "GPU":
        import cupy
        cupy.cuda.Device(index).use()
        return cupy
    import numpy
    return numpy


class Worker:
    """A worker's devices, resource stores, registered graphs and step table."""

    def __init__(self, devices=(("CPU", 0, 0),), allow_pickle=False, incarnation=None):
        self.incarnation = incarnation if incarnation is not None else random.getrandbits(63) | 1
        self.device_specs = list(devices)
        self.allow_pickle = allow_pickle
        self.plane = None  # data plane: send(peer, step_id, key, array), release_step(step_id), stats()
        self.data_address = ""   # where the data plane and the step channel listen, as others reach them
        self.step_address = ""
        self.job = None
        self.task = None
        self.contexts = {}  # full device name -> DeviceContext
        self._graphs = {}
        self._steps = {}
        self._finished = collections.OrderedDict()  # step id -> (time, abort reason or None)
        self._lock = threading.Lock()
        self._handles = itertools.count(1)
        self._pool = None
        self._last_sweep = time.monotonic()
        self.dropped_late_tensors = 0
        self.dropped_early_steps = 0
        self._early_bytes = 0       # sum of early_bytes over the step table
        self.metrics = worker_metrics.WorkerMetrics(self)   # served by --metrics-port

    # ---- identity -----------------------------------------------------------------------
    def set_identity(self, job, task):
        """Names the devices /job:<job>/replica:0/task:<task>/...; keeps their variables if unchanged."""
        names = {device_spec.full_name(job, task, t, i): (t, i) for t, i, _ in self.device_specs}
        if set(names) == set(self.contexts):
            self.job, self.task = job, task
            return
        with self._lock:
            self._graphs.clear()
            self.contexts = {
                name: executor_lib.DeviceContext(name, t, _array_module(t, i), ResourceStore(), self.allow_pickle)
                for name, (t, i) in names.items()}
            self.job, self.task = job, task

    @property
    def task_name(self):
        return f"/job:{self.job}/task:{self.task}"

    def device_attributes(self):
        """(full name, type, index, memory bytes) of every device."""
        return [(device_spec.full_name(self.job, self.task, t, i) if self.job is not None else "", t, i, m)
                for t, i, m in self.device_specs]

    # ---- graphs ------------------------------------------------------------------------------
    def register_graph(self, session, partitions, device_address, graph_defs=None):
        """Compiles {device: GraphIR} partitions; returns the graph handle RunGraph names."""
        if self.job is None:
            raise errors.FailedPreconditionError(None, None, "this worker is not registered with a master yet")
        if not partitions:
            raise errors.InvalidArgumentError(None, None, "RegisterGraph with no partitions")
        executables, routes = {}, {}
        for dev, graph in partitions.items():
            ctx = self.contexts.get(dev)
            if ctx is None:
                raise errors.InvalidArgumentError(
                    None, None, f"RegisterGraph: device {dev} is not on this worker ({self.task_name}: "
                    f"{', '.join(sorted(self.contexts))})")
            graph.validate()
            for key, dst in partition_lib.sends(graph):
                if dst in self.contexts:
                    continue
                address = device_address.get(dst)
                if not address:
                    raise errors.InvalidArgumentError(
                        None, None, f"RegisterGraph: {dev} sends {key!r} to {dst}, "
                        "whose data address the request does not give")
                routes[key] = address
            # The session's view of the device's resources: its private queues are its own (worker/resources.py).
            session_ctx = executor_lib.DeviceContext(ctx.name, ctx.device_type, ctx.xp,
                                                     ctx.resources.view(session), ctx.allow_pickle)
            executables[dev] = executor_lib.Executable(graph, session_ctx)
        handle = f"g{next(self._handles)}-{self.incarnation & 0xffff:04x}"
        with self._lock:
            self._graphs[handle] = _Registration(handle, session, executables, routes, graph_defs or {})
        log.info("registered graph %s for session %s: %s", handle, session,
                 {d: len(p) for d, p in partitions.items()})
        return handle

    def deregister_graph(self, handle):
        """Forgets graph `handle`; the resources private to its session go with the session's last graph."""
        with self._lock:
            reg = self._graphs.pop(handle, None)
            ended = reg is not None and not any(r.session == reg.session for r in self._graphs.values())
        if ended:
            self._drop_private(reg.session)

    def drop_graphs(self):
        """Forgets every registered graph (their master is gone) and their sessions' private resources;
        variables and shared resources stay."""
        with self._lock:
            sessions = {r.session for r in self._graphs.values()}
            self._graphs.clear()
        for session in sessions:
            self._drop_private(session)

    def _drop_private(self, session):
        for ctx in self.contexts.values():
            ctx.resources.drop_owner(session)

    # ---- steps --------------------------------------------------------------------------------
    def run_graph(self, handle, step_id, feeds, trace=False, timeout_ms=0):
        """Runs every partition of `handle` for step `step_id`; returns a StepResult.

        Partitions run concurrently; the first error aborts the step's
        rendezvous, so the others end at once, and is the one raised.
        """
        reg = self._graphs.get(handle)
        if reg is None:
            raise errors.NotFoundError(None, None, f"graph handle {handle!r} is not registered on {self.task_name} "
                                       "(the worker restarted or the session was closed)")
        started = time.monotonic()
        if stages.ON:
            stages.mark("w.run")
        state = self._begin(step_id)
        rendezvous = state.rendezvous
        rendezvous.routes = reg.routes
        step = executor_lib.Step(step_id, rendezvous, feeds, {}, state.cancelled)
        if timeout_ms and timeout_ms > 0:
            step.deadline = time.monotonic() + timeout_ms / 1000.0
        traces = {d: [] for d in reg.executables} if trace else None
        failure = None
        try:
            items = list(reg.executables.items())
            if len(items) == 1:
                dev, exe = items[0]
                exe.run(step, traces[dev] if trace else None)
            else:
                self._run_parallel(step, items, traces)
        except BaseException as e:
            failure = e
            rendezvous.abort(errors.from_exception(e))
            raise
        finally:
            self._end(step_id, failure)
            self.metrics.run_graph_done(time.monotonic() - started, failure)
        if stages.ON:
            stages.mark("w.done")
        return StepResult(step.fetches, traces, reg.graph_defs if trace else None)

    def _run_parallel(self, step, items, traces):
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8 * len(self.contexts),
                                                               thread_name_prefix="tg-partition")
        seen = []

        def run_one(dev, exe):
            try:
                exe.run(step, traces[dev] if traces is not None else None)
            except BaseException as e:  # noqa: B902 - every failure must end the step's other partitions
                seen.append(e)
                step.cancelled.set()
                step.rendezvous.abort(errors.from_exception(e))

        futures = [self._pool.submit(run_one, d, e) for d, e in items[1:]]
        run_one(*items[0])
        for f in futures:
            f.result()
        if seen:
            raise local_lib.root_error(seen)

    def _begin(self, step_id):
        with self._lock:
            done = self._finished.get(step_id)
            if done is not None:
                reason = done[1]
                if reason is not None:
                    raise errors.CancelledError(None, None, f"step {step_id} was cancelled: {reason}")
                raise errors.AlreadyExistsError(None, None, f"step {step_id} already ran on {self.task_name}")
            state = self._steps.get(step_id)
            if state is None:
                state = self._steps[step_id] = _StepState(RemoteRendezvous(step_id, self.plane))
            elif state.running:
                raise errors.AlreadyExistsError(None, None, f"step {step_id} is already running on {self.task_name}")
            state.running = True
            self._early_bytes -= state.early_bytes
            state.early_bytes = 0
            return state

    def _end(self, step_id, failure):
        with self._lock:
            self._steps.pop(step_id, None)
            self._remember(step_id, None)
        if self.plane is not None:
            self.plane.release_step(step_id)
        if failure is not None and log.isEnabledFor(logging.INFO):
            log.info("step %d failed on %s: %s", step_id, self.task_name, failure)

    def _remember(self, step_id, reason):
        """Marks a step finished (lock held); forgets old marks and orphaned early arrivals."""
        now = time.monotonic()
        finished = self._finished
        if step_id not in finished or reason is not None:
            finished[step_id] = (now, reason)
        while finished:
            oldest = next(iter(finished.values()))[0]
            if now - oldest < FINISHED_TTL_S and len(finished) <= FINISHED_MAX:
                break
            finished.popitem(last=False)
        if now - self._last_sweep > 10.0:
            self._last_sweep = now
            for sid in [s for s, st in self._steps.items() if not st.running and now - st.created > ORPHAN_TTL_S]:
                self._pop_state(sid).rendezvous.abort(errors.AbortedError(None, None, f"step {sid} never ran here"))

    def _pop_state(self, step_id):
        """Removes a step table entry (lock held), and its early bytes from the count."""
        state = self._steps.pop(step_id)
        self._early_bytes -= state.early_bytes
        return state

    def _evict_early(self):
        """Drops the oldest steps that only got early tensors (lock held) while over the caps."""
        evicted = []
        while self._early_bytes > MAX_EARLY_BYTES or len(self._steps) > MAX_STEPS_HELD:
            sid = next((k for k, st in self._steps.items() if not st.running), None)
            if sid is None:
                break
            reason = (f"its tensors arrived before its RunGraph and were dropped ({self.task_name} keeps at most "
                      f"{MAX_EARLY_BYTES} bytes for at most {MAX_STEPS_HELD} steps)")
            evicted.append((self._pop_state(sid), reason))
            self._remember(sid, reason)
            self.dropped_early_steps += 1
        return evicted

    def cleanup_step(self, step_id, reason=""):
        """Ends step `step_id` here: aborts it if it runs, drops its state, drops its later tensors."""
        reason = reason or "cleaned up by the master"
        with self._lock:
            state = self._steps.get(step_id)
            if state is not None and not state.running:
                self._pop_state(step_id)
            self._remember(step_id, reason)
        if state is not None:
            state.cancelled.set()
            state.rendezvous.abort(errors.CancelledError(None, None, f"step {step_id} was cancelled: {reason}"))
            log.info("step %d aborted on %s: %s", step_id, self.task_name, reason)

    def deliver(self, step_id, key, value):
        """A tensor another worker sent for step `step_id`; kept until the step's RunGraph reads it."""
        if stages.ON:
            stages.mark("w.arrived")
        with self._lock:
            state = self._steps.get(step_id)
            if state is None:
                if step_id in self._finished:
                    self.dropped_late_tensors += 1
                    return
                state = self._steps[step_id] = _StepState(RemoteRendezvous(step_id, self.plane))
            evicted = ()
            if not state.running:
                nbytes = getattr(value, "nbytes", 0)
                state.early_bytes += nbytes
                self._early_bytes += nbytes
                if self._early_bytes > MAX_EARLY_BYTES or len(self._steps) > MAX_STEPS_HELD:
                    evicted = self._evict_early()
        for dropped, reason in evicted:
            dropped.rendezvous.abort(errors.CancelledError(None, None, reason))
        if any(d is state for d, _ in evicted):
            return
        try:
            state.rendezvous.deliver(key, value)
        except errors.InternalError as e:
            log.warning("step %d: %s", step_id, e)

    # ---- whole worker -------------------------------------------------------------------------------
    def reset(self, containers=None):
        """Clears every registered graph and the resources of `containers` (all when None), and aborts
        running steps."""
        with self._lock:
            self._graphs.clear()
            states = list(self._steps.items())
            for ctx in self.contexts.values():
                ctx.resources.clear(containers)
        for step_id, _ in states:
            self.cleanup_step(step_id, "the cluster was reset")
        log.info("reset %s", self.task_name)

    def abort_all(self, reason):
        """Aborts every step this worker holds state for (the worker is stopping)."""
        with self._lock:
            step_ids = list(self._steps)
        for step_id in step_ids:
            self.cleanup_step(step_id, reason)

    def status(self):
        with self._lock:
            steps = list(self._steps.values())
            return {
                "active_steps": len(steps),
                "rendezvous_entries": sum(s.rendezvous.pending() for s in steps),
                "registered_graphs": len(self._graphs),
                "resources": sum(len(c.resources) for c in self.contexts.values()),
                "finished_steps_remembered": len(self._finished),
                "dropped_late_tensors": self.dropped_late_tensors,
                "transport": self.plane.stats() if self.plane is not None else {},
            }

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False)
