"""What the master tells about its steps: Prometheus metrics, and for the dashboard the steps running
now, the recent ones, their errors, and per step signature its latest plan and traced step.

The master (runtime/master.py) calls step_started/step_ended around every
RunStep, planned() when it plans a signature, run_graph_done() when a
worker answers and traced() after a traced step. Each call is a few
counter increments and a deque append; nothing here blocks a step.
"""

import collections
import dataclasses
import re
import threading
import time

from tensorgrid import metrics

KEEP_STEPS = 2000
KEEP_ERRORS = 100
KEEP_SIGNATURES = 64

_NODE = re.compile(r"'([^']+)'")
_DEVICE = re.compile(r"(/job:[\w-]+(?:/replica:\d+)?(?:/task:\d+)?(?:/device:[A-Z]+:\d+)?)")
_WHERE = re.compile(r"created at ([^)\s]+)")


class StepRecord:
    """One RunStep in flight: its session, start time, and once known its signature and step id."""

    __slots__ = ("session", "started", "wall_started", "signature", "step_id")

    def __init__(self, session, started, wall_started):
        self.session = session
        self.started = started
        self.wall_started = wall_started
        self.signature = ""
        self.step_id = 0


@dataclasses.dataclass(eq=False)
class Signature:
    """A step signature of a session (its feeds, fetches and targets): its latest plan, counts, last trace."""

    id: str
    session: str
    label: str
    partitions: dict                # device -> GraphIR of the latest plan
    plan_version: int = 1
    steps: int = 0
    failed: int = 0
    total_s: float = 0.0
    last_s: float = 0.0
    last_time: float = 0.0
    trace: object = None            # StepStats of the latest traced step
    trace_time: float = 0.0
    trace_step: int = 0


def signature_label(feeds, fetches, targets):
    """'loss:0, train_op <- x:0, y:0': what a person recognises a step by."""
    outs = ", ".join(list(fetches) + list(targets)) or "(nothing)"
    return f"{outs} <- {', '.join(feeds)}" if feeds else outs


def error_record(err, when, session="", step_id=0, signature=""):
    """A dict the dashboard shows for a failed step: class, message, node, device, file:line."""
    message = getattr(err, "message", None) or str(err)
    node = getattr(err, "node_name", None) or ""
    if not node:
        m = _NODE.search(message)
        node = m.group(1) if m else ""
    device = _DEVICE.search(message)
    where = _WHERE.search(message)
    return {"time": when, "session": session, "step_id": step_id, "signature": signature,
            "error": type(err).__name__, "message": message, "node": node,
            "device": device.group(1) if device else "", "location": where.group(1) if where else ""}


class StepObserver:
    """The master's step counters and recent history."""

    def __init__(self, registry=None, clock=time.monotonic, wall=time.time):
        self.registry = registry if registry is not None else metrics.Registry()
        r = self.registry
        self.started = r.counter("tensorgrid_steps_started_total", "Steps (RunStep calls) the master started.")
        self.finished = r.counter("tensorgrid_steps_finished_total", "Steps that ended without an error.")
        self.failed = r.counter("tensorgrid_steps_failed_total", "Steps that ended with an error, by its class.",
                                ["error"])
        self.duration = r.histogram("tensorgrid_step_duration_seconds",
                                    "RunStep latency on the master: planning, registration and every RunGraph.")
        self.run_graph = r.histogram("tensorgrid_master_run_graph_duration_seconds",
                                     "From the master issuing a RunGraph to the worker's answer.", ["worker"])
        self.plans = r.counter("tensorgrid_plans_total", "Step signatures planned (prune, place, partition).")
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._running = set()
        self.recent = collections.deque(maxlen=KEEP_STEPS)   # (wall end, seconds, session, signature, error)
        self.errors = collections.deque(maxlen=KEEP_ERRORS)
        self._signatures = collections.OrderedDict()          # signature id -> Signature
        self._ids = {}                                        # (session, feeds, fetches, targets) -> id
        # Seconds between the steps the master traces on its own per signature, for the dashboard's
        # timeline; None: only the steps the client traces.
        self.trace_every_s = None

    # ---- the master's calls --------------------------------------------------------------------
    def step_started(self, session):
        record = StepRecord(session, self._clock(), self._wall())
        self.started.inc()
        with self._lock:
            self._running.add(record)
        return record

    def step_ended(self, record, error=None):
        seconds = self._clock() - record.started
        end = record.wall_started + seconds
        with self._lock:
            self._running.discard(record)
            sig = self._signatures.get(record.signature)
            if sig is not None:
                sig.steps += 1
                sig.failed += error is not None
                sig.total_s += seconds
                sig.last_s = seconds
                sig.last_time = end
        self.recent.append((end, seconds, record.session, record.signature,
                            type(error).__name__ if error is not None else ""))
        if error is None:
            self.finished.inc()
            self.duration.observe(seconds)
            return
        self.failed.labels(type(error).__name__).inc()
        self.errors.append(error_record(error, end, record.session, record.step_id, record.signature))

    def run_graph_done(self, worker, seconds):
        self.run_graph.labels(worker).observe(seconds)

    def planned(self, session, feeds, fetches, targets, partitions):
        """Records a new plan of a signature; returns the signature's id."""
        self.plans.inc()
        key = (session, tuple(feeds), tuple(fetches), tuple(targets))
        with self._lock:
            sig_id = self._ids.get(key)
            sig = self._signatures.get(sig_id) if sig_id else None
            if sig is None:
                sig_id = f"{session}/{len(self._ids) + 1}"
                self._ids[key] = sig_id
                sig = Signature(sig_id, session, signature_label(feeds, fetches, targets), partitions)
                self._signatures[sig_id] = sig
                while len(self._signatures) > KEEP_SIGNATURES:
                    old, _ = self._signatures.popitem(last=False)
                    self._ids = {k: v for k, v in self._ids.items() if v != old}
            else:
                sig.partitions = partitions
                sig.plan_version += 1
                self._signatures.move_to_end(sig_id)
        return sig_id

    def wants_trace(self, signature):
        """Whether the master should trace this step of `signature` for the dashboard's timeline."""
        every = self.trace_every_s
        if every is None:
            return False
        sig = self._signatures.get(signature)
        return sig is not None and self._wall() - sig.trace_time >= every

    def traced(self, signature, step_id, step_stats):
        with self._lock:
            sig = self._signatures.get(signature)
            if sig is None:
                return
            sig.trace, sig.trace_time, sig.trace_step = step_stats, self._wall(), step_id

    # ---- what the dashboard reads ------------------------------------------------------------------
    def running(self):
        """[(step id, session, signature, seconds so far)] of the steps in flight, longest first."""
        now = self._clock()
        with self._lock:
            records = list(self._running)
        return sorted(((r.step_id, r.session, r.signature, now - r.started) for r in records),
                      key=lambda t: -t[3])

    def signatures(self):
        with self._lock:
            return list(self._signatures.values())

    def signature(self, sig_id):
        with self._lock:
            return self._signatures.get(sig_id)
