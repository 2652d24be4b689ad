"""The in-process backend of tg.Session (target ""): plans a step exactly as the
cluster master does, then runs every partition on a local virtual device, one
thread per device, tensors crossing devices through an in-memory rendezvous."""

import concurrent.futures
import itertools
import threading
import time

from tensorgrid.framework import device_spec, errors
from tensorgrid.runtime import fusion
from tensorgrid.runtime import plan as plan_lib
from tensorgrid.runtime import tracing
from tensorgrid.worker import executor as executor_lib
from tensorgrid.worker.rendezvous import LocalRendezvous

LOCAL_JOB = "localhost"


class LocalBackend:
    """Runs steps of one client Graph on `device_count` virtual CPU devices of this process."""

    def __init__(self, config=None, resources=None):
        count = 1
        soft = False
        if config is not None:
            dc = getattr(config, "device_count", None)
            if dc is not None and "CPU" in dc:
                count = max(1, int(dc["CPU"]))
            soft = bool(getattr(config, "allow_soft_placement", False))
        self.allow_soft_placement = soft
        self.fuse = fusion.enabled(config)
        self.devices = [device_spec.full_name(LOCAL_JOB, 0, "CPU", i) for i in range(count)]
        from tensorgrid.worker.resources import ResourceStore
        # One variable store per session, shared by its devices' kernels (tg.function: the eager one).
        self._store = resources if resources is not None else ResourceStore()
        self._owner = object()  # this session, as the owner of its private resources (queues)
        view = self._store.view(self._owner)
        self.contexts = {d: executor_lib.DeviceContext(d, "CPU", resources=view) for d in self.devices}
        self._kernel_caches = {d: {} for d in self.devices}
        self._plans = {}
        self._lock = threading.Lock()
        self._step_ids = itertools.count(1)
        self._pool = None
        self._running = {}  # step id -> Step in flight
        self.closed = False

    def list_devices(self):
        return [(d, "CPU", 0) for d in self.devices]

    def _plan(self, graph, feeds, fetches, targets):
        key = (graph.version, feeds, fetches, targets)
        entry = self._plans.get(key)
        if entry is None:
            with self._lock:
                entry = self._plans.get(key)
                if entry is None:
                    plan = plan_lib.plan_step(graph.to_ir(), feeds, fetches, targets, self.devices,
                                              allow_soft_placement=self.allow_soft_placement, fuse=self.fuse)
                    exes = {d: executor_lib.Executable(p, self.contexts[d], self._kernel_caches[d]) for d, p in plan.partitions.items()}
                    entry = (plan, exes)
                    if len(self._plans) > 256:
                        self._plans.clear()
                    self._plans[key] = entry
        return entry

    def run(self, graph, feeds, fetches, targets, timeout_ms=0, trace=False):
        """Runs one step; feeds: {tensor name: array}; returns ({tensor name: array}, trace or None)."""
        plan, exes = self._plan(graph, tuple(sorted(feeds)), tuple(fetches), tuple(targets))
        self._last_plan = plan
        step = executor_lib.Step(next(self._step_ids), LocalRendezvous(), feeds, {})
        step.rendezvous.step_id = step.step_id
        if timeout_ms and timeout_ms > 0:
            step.deadline = time.monotonic() + timeout_ms / 1000.0
        traces = {d: [] for d in exes} if trace else None
        items = list(exes.items())
        with self._lock:
            self._running[step.step_id] = step
        try:
            if not items:    # nothing to compute (a function of no outputs, or all of them fed)
                pass
            elif len(items) == 1:
                dev, exe = items[0]
                exe.run(step, traces[dev] if trace else None)
            else:
                self._run_parallel(step, items, traces)
        finally:
            with self._lock:
                self._running.pop(step.step_id, None)
        stats = None
        if trace:
            stats = tracing.step_stats(traces, plan.partitions)
        return step.fetches, stats

    def _run_parallel(self, step, items, traces):
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(4, len(self.devices)),
                                                               thread_name_prefix="tg-device")
        errors_seen = []
        lock = threading.Lock()

        def run_one(dev, exe):
            try:
                exe.run(step, traces[dev] if traces is not None else None)
            except BaseException as e:  # noqa: B902 - every failure must cancel the step
                with lock:
                    errors_seen.append(e)
                step.cancelled.set()
                step.rendezvous.abort(e)

        futures = [self._pool.submit(run_one, d, e) for d, e in items[1:]]
        run_one(*items[0])
        for f in futures:
            f.result()
        if errors_seen:
            raise root_error(errors_seen)

    def last_partitions(self):
        """The partitions the last step ran, {device: GraphIR}."""
        return self._last_plan.partitions

    def close(self):
        """Ends the session: steps still running (a blocked dequeue) are cancelled, private resources go."""
        self.closed = True
        with self._lock:
            running = list(self._running.values())
        for step in running:
            step.cancelled.set()
            step.rendezvous.abort(errors.CancelledError(None, None, "the session was closed"))
        self._store.drop_owner(self._owner)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._plans.clear()


def root_error(errs):
    """The first error that is not a consequence of cancellation."""
    for e in errs:
        if not isinstance(e, errors.CancelledError):
            return e
    return errs[0]
