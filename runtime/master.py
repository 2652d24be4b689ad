"""The master's state machine: worker registry and health, sessions, the plan cache, step orchestration.

No network here: workers are reached through client objects made by the
`connect(address, step_address)` callable the master is built with (gRPC ones in
master_service.py; tests pass in-process ones), so a test can drive every
decision below without a socket.

A worker client offers, each returning a future with `.result(timeout)`:
    register_graph(session, {device: GraphDef}, {device: data address}) -> graph handle
    run_graph(handle, step_id, feeds [(name, tensor)], trace, timeout_ms) -> RunGraphResult
    cleanup_step(step_id, reason), deregister_graph(handle), reset(), get_status() -> dict
and close(). A future whose `driven` is true is read by the thread that waits
for it: the step's thread calls `type(fut).drive_all(futures, stop_event,
timeout)` (step_channel.AsyncCall), which runs their callbacks there. Tensors
are opaque to the master: whatever the client took from RunStep (TensorProtos,
for the gRPC one) goes to the workers untouched.

Per step signature (graph version, feeds, fetches, targets, and the set of
devices the cluster has) the master plans once (runtime/plan.plan_step over
every registered device) and registers each
worker's partitions on it once; it registers again, on every worker of the
plan, when one of them restarted (new incarnation: its graphs are gone, and
the others' routes name its old data address). A step is then one RunGraph
per involved worker, issued together; the first error cancels the step on
the others (CleanupStep) and is what the client gets.
"""

import dataclasses
import itertools
import logging
import random
import re
import threading
import time

from tensorgrid import security
from tensorgrid.framework import device_spec, errors
from tensorgrid.observability import stages, step_observer
from tensorgrid.ops import registry
from tensorgrid.proto import config_pb2, convert
from tensorgrid.runtime import ir
from tensorgrid.runtime import fusion
from tensorgrid.runtime import plan as plan_lib
from tensorgrid.runtime import replication as replication_lib

log = logging.getLogger("tensorgrid.master")

DEFAULT_JOB = "worker"
# After a step failed, how long the other workers get to end their part before the master stops waiting.
ABORT_GRACE_S = 5.0
# Plans kept per session; beyond this the cache starts over (a client cycling signatures).
MAX_PLANS_PER_SESSION = 512
# A plan dropped from the cache (the graph grew, the devices changed) stays registered this long for the
# steps that may still run it.
RETIRE_AFTER_S = 30.0


# TF's rule for the node names of a client's graph (a leading '_' is left to the runtime), and a cap.
NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/>]*\Z")
MAX_NODE_NAME = 4096
# The longest step timeout a client may ask for (ten years): past it, the clocks' arithmetic overflows.
MAX_TIMEOUT_MS = 10 * 365 * 24 * 3600 * 1000
# Handles of expired sessions remembered, to tell their clients what happened.
MAX_EXPIRED = 10_000
# Master.heartbeat's `key` when the caller is in this process (a static cluster's probe), not a remote call.
LOCAL = object()
# A session handle: s<number>-<the tag of the master process that made it>.
_HANDLE = re.compile(r"s[0-9]+-[0-9a-f]{8}\Z")


def check_client_graph(nodes, where="the graph", _seen=None):
    """InvalidArgumentError for a node name TF would not accept, or a runtime-internal op ('_Recv', '_Send',
    ...: the master puts those in partitions, a client may not), here or in any function body."""
    _seen = set() if _seen is None else _seen
    for node in nodes:
        name = node.name
        if len(name) > MAX_NODE_NAME or not NODE_NAME.match(name):
            shown = repr(name[:60]) + (f"... ({len(name)} characters)" if len(name) > 60 else "")
            raise errors.InvalidArgumentError(
                None, None, f"{where}: node name {shown} is not valid: a node name matches "
                f"[A-Za-z0-9.][A-Za-z0-9_.\\-/>]* and has at most {MAX_NODE_NAME} characters")
        if node.op.startswith("_"):
            raise errors.InvalidArgumentError(
                None, None, f"{where}: node '{name}' uses op '{node.op}', which is internal to the runtime "
                "(ops starting with '_' are made by the master, not by clients)")
        for fn in ir.functions_of(node) if node.attrs else ():
            if id(fn) not in _seen:
                _seen.add(id(fn))
                check_client_graph(fn.graph.nodes.values(), f"function '{fn.name}'", _seen)


def check_timeout(timeout_ms, what):
    """timeout_ms, or InvalidArgumentError when it is past MAX_TIMEOUT_MS (0 and negatives: none)."""
    if timeout_ms > MAX_TIMEOUT_MS:
        raise errors.InvalidArgumentError(None, None, f"{what} {timeout_ms} is out of range: at most "
                                          f"{MAX_TIMEOUT_MS} (ten years); 0 means no timeout")
    return timeout_ms


def _check_outputs(graph, feeds, fetches):
    """InvalidArgumentError for a fed or fetched tensor 'n:k' whose node has no output k."""
    for ref in list(feeds) + list(fetches):
        name, index = ir.split_input(ref)
        node = graph.nodes.get(name)
        op = registry.OPS.get(node.op) if node is not None else None
        if op is None:
            continue
        try:
            count = op.output_count(node.attrs)
        except Exception:  # noqa: BLE001 - attrs the kernel will refuse with a message of its own
            continue
        if not 0 <= index < count:
            raise errors.InvalidArgumentError(
                None, None, f"tensor '{ref}': node '{name}' ({node.op}) has {count} output"
                f"{'' if count == 1 else 's'}, so no output {index}")


@dataclasses.dataclass
class RunGraphResult:
    """One worker's answer to RunGraph: fetched tensors, and when traced its DeviceStepStats and graphs."""

    fetches: list                       # [(tensor name, tensor)]
    dev_stats: list = dataclasses.field(default_factory=list)
    partition_graphs: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class WorkerRecord:
    """What the master knows about one worker task."""

    job: str
    task: int
    address: str
    data_address: str
    incarnation: int
    devices: list                       # [(full name, device type, index, memory bytes)]
    client: object
    last_heartbeat: float
    step_address: str = ""
    alive: bool = True
    dead_reason: str = ""
    # The key the worker registered with (None: registered by this process, a static cluster's probe): only
    # a call that carries it may heartbeat for the task or register it again under its incarnation.
    secret: str | None = dataclasses.field(default=None, repr=False)

    @property
    def key(self):
        return (self.job, self.task)

    @property
    def name(self):
        return f"/job:{self.job}/task:{self.task}"

    def __repr__(self):
        state = "alive" if self.alive else f"dead ({self.dead_reason})"
        return f"<worker {self.name} at {self.address} incarnation {self.incarnation:x} {state}>"


class _PlanEntry:
    """A planned step signature and its registrations on the workers."""

    def __init__(self, plan, worker_of_device):
        self.plan = plan
        self.lock = threading.Lock()
        self.graph_defs = {d: convert.graph_ir_to_proto(p) for d, p in plan.partitions.items()}
        self.devices_of = {}            # worker key -> [device]
        for dev in plan.partitions:
            self.devices_of.setdefault(worker_of_device[dev], []).append(dev)
        self.workers = list(self.devices_of)
        self.feeds_for = {}             # worker key -> fed tensor names its partitions read
        for name, devs in plan.feed_devices.items():
            for w in {worker_of_device[d] for d in devs}:
                self.feeds_for.setdefault(w, set()).add(name)
        self.epoch = None               # (incarnation, data address) of each worker when registered
        self.handles = {}               # worker key -> graph handle
        self.signature = ""             # the observer's id of this step signature


class _Session:
    def __init__(self, handle, graph, config):
        self.handle = handle
        self.graph = graph
        self.version = 1
        self.plans = {}
        self.lock = threading.Lock()
        self.steps_run = 0
        self.soft_placement = bool(config is not None and config.allow_soft_placement)
        self.fuse = fusion.enabled(config)
        self.timeout_ms = int(config.operation_timeout_in_ms) if config is not None else 0
        self.device_count = dict(config.device_count) if config is not None else {}
        self.device_filters = [device_spec.DeviceSpec.from_string(f) for f in config.device_filters] \
            if config is not None else []
        self.closed = False
        self.retired = []               # (time, _PlanEntry) no longer planned for, deregistered later
        self.last_used = 0.0            # clock time of its last call; an idle session expires (session_gc_s)


class _RunningStep:
    """A step in flight: the workers it runs on, their RunGraph futures, and its first (root) error."""

    __slots__ = ("step_id", "records", "futures", "error", "fallback", "lock", "aborted", "pending", "done",
                 "session", "started", "entry", "fetches", "trace", "traced", "deadline", "record", "on_done")

    def __init__(self, step_id, records, session=None, started=0.0):
        self.step_id = step_id
        self.started = started
        self.session = session          # the handle of the session that runs it
        self.records = records          # worker key -> WorkerRecord
        self.futures = {}
        self.error = None
        self.fallback = None            # a CancelledError, raised only if no root error comes
        self.lock = threading.Lock()
        self.aborted = False
        self.pending = 0
        self.done = threading.Event()   # every RunGraph answered, or the step failed
        self.entry = None               # the _PlanEntry it runs
        self.fetches = ()
        self.trace = self.traced = False    # the client asked for metadata; the step runs traced
        self.deadline = None            # clock time it fails at, or None
        self.record = None              # the observer's record of it
        self.on_done = None             # Master.start_step's callback, called once when `done` is set


class Master:
    """Registry of workers, sessions and running steps, and the rules that tie them together."""

    def __init__(self, connect, heartbeat_timeout=10.0, heartbeat_interval=1.0, clock=time.monotonic,
                 local_task=None, observer=None, session_gc_s=0.0):
        self._connect = connect
        # Step counters and recent history for --metrics-port and the dashboard (observability/step_observer.py).
        self.observer = observer if observer is not None else step_observer.StepObserver(clock=clock)
        # (job, task) of the task this master runs in (tg.train.Server): unpinned nodes default to its CPU.
        self.local_task = local_task
        # A static cluster (runtime/static_cluster.py) whose tasks a step waits for before it is planned.
        self.static = None
        self.heartbeat_timeout = heartbeat_timeout
        self.heartbeat_interval = heartbeat_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._workers = {}              # (job, task) -> WorkerRecord
        self._sessions = {}
        # A session no call used for this long is closed (0: never), as TF's master garbage-collects
        # sessions: the client may be gone without a CloseSession (SIGKILLed).
        self.session_gc_s = session_gc_s
        self._expired = {}              # handle -> why, of sessions closed as idle (the latest MAX_EXPIRED)
        self._steps = {}                # step id -> _RunningStep
        self._session_ids = itertools.count(1)
        self._step_ids = itertools.count((random.getrandbits(30) << 24) + 1)
        self._tag = f"{random.getrandbits(32):08x}"
        self._device_epoch = 0          # bumped when the set of device names changes; part of every plan key
        self.replication = replication_lib.Replication()   # --replicas tasks (runtime/replication.py)

    # ---- workers ---------------------------------------------------------------------------------
    def register_worker(self, address, data_address, job, task, incarnation, devices, step_address="", replicas=0,
                        key=None):
        """Adds (or re-adds) a worker; returns its WorkerRecord. devices: [(type, index, memory)].

        A task already held by a live worker of another incarnation is only
        taken over when that worker no longer answers (it was restarted); one
        registered under the same incarnation only by a call with the same
        `key` (the worker's own, which this master presents on its calls).
        """
        job = job or DEFAULT_JOB
        if not address:
            raise errors.InvalidArgumentError(None, None, "RegisterWorker needs the worker's address")
        if task is not None and task < 0:
            raise errors.InvalidArgumentError(None, None, f"task must be >= 0, got {task}")
        for t, i, _ in devices:
            if t not in ("CPU", "GPU") or i < 0:
                raise errors.InvalidArgumentError(None, None, f"bad device {t}:{i} (types are CPU and GPU)")
        if not devices:
            raise errors.InvalidArgumentError(None, None, "a worker needs at least one device")
        with self._lock:
            if task is None:
                task = self._free_task(job, incarnation, address)
            old = self._workers.get((job, task))
        if old is not None and old.incarnation == incarnation and old.secret is not None and \
                not security.same_secret(key, old.secret):
            raise errors.PermissionDeniedError(
                None, None, f"{old.name} is registered under incarnation {incarnation:x} with another key: only "
                "that worker may register it again")
        if old is not None and old.incarnation != incarnation and old.alive and self._still_serving(old):
            raise errors.AlreadyExistsError(
                None, None, f"{old.name} is served by a live worker at {old.address}; "
                "stop it or ask for another --task")
        names = [(device_spec.full_name(job, task, t, i), t, i, m) for t, i, m in devices]
        with self._lock:
            old = self._workers.get((job, task))
            if old is not None and old.incarnation == incarnation and old.address == address and old.secret == key:
                client = old.client
            else:
                client = self._connect(address, step_address, key)
            rec = WorkerRecord(job, task, address, data_address or address, incarnation, names, client,
                               self._clock(), step_address, secret=key)
            if old is None or [n for n, *_ in old.devices] != [n for n, *_ in names]:
                self._device_epoch += 1
            self._workers[(job, task)] = rec
        if old is not None and old.client is not client:
            if old.incarnation != incarnation:
                self._fail_steps_of(old, f"{old.name} restarted (new incarnation)")
            old.client.close()
        log.info("worker %s registered at %s (data %s), incarnation %x, devices %s",
                 rec.name, address, rec.data_address, incarnation, [n for n, *_ in names])
        if replicas:
            self.replication.add_primary(rec.key)
        return rec

    def connect_worker(self, address, step_address=""):
        """A new client of the worker at `address` (made the way this master reaches every worker)."""
        return self._connect(address, step_address)

    def worker(self, job, task):
        """The WorkerRecord of /job:<job>/task:<task>, or None when no worker ever registered as it."""
        with self._lock:
            return self._workers.get((job, task))

    def _free_task(self, job, incarnation, address):
        """The task of this incarnation if known, else the task last served at `address`, else the lowest
        index of `job` with no live worker.

        A worker restarted in place (by a container's restart policy, say) comes back at its old address
        before its old self misses a heartbeat, and so takes its old task back: no two processes listen on
        one address at once, and register_worker still checks that the old one no longer answers there.
        """
        for rec in self._workers.values():
            if rec.job == job and rec.incarnation == incarnation:
                return rec.task
        for rec in self._workers.values():
            if rec.job == job and rec.address == address:
                return rec.task
        for i in itertools.count():
            rec = self._workers.get((job, i))
            if rec is None or not rec.alive:
                return i

    def _still_serving(self, rec):
        try:
            status = rec.client.get_status().result(timeout=min(2.0, self.heartbeat_timeout))
        except Exception:  # noqa: BLE001 - any failure to answer means it is gone
            return False
        return status.get("incarnation") == rec.incarnation

    def heartbeat(self, job, task, incarnation, shutting_down=False, key=LOCAL):
        """Records a heartbeat; False when this worker is unknown under this incarnation.

        `key` is what a remote call carried (security.caller_key): PermissionDeniedError unless it is the
        key the task registered with. LOCAL: a caller in this process (a static cluster's probe).
        """
        with self._lock:
            rec = self._workers.get((job, task))
            if rec is None or rec.incarnation != incarnation:
                return False
            if key is not LOCAL and not security.same_secret(key, rec.secret):
                raise errors.PermissionDeniedError(
                    None, None, f"Heartbeat for {rec.name}: the call does not carry the key that task registered "
                    "with; only the worker itself may heartbeat for it")
            rec.last_heartbeat = self._clock()
            if not rec.alive and not shutting_down:
                rec.alive = True
                rec.dead_reason = ""
                log.warning("worker %s is back", rec.name)
        if shutting_down:
            self._mark_dead(rec, "it shut down")
        return True

    def check_health(self):
        """Marks dead every worker whose last heartbeat is older than the timeout; returns them."""
        now = self._clock()
        with self._lock:
            late = [r for r in self._workers.values()
                    if r.alive and now - r.last_heartbeat > self.heartbeat_timeout]
        for rec in late:
            self._mark_dead(rec, f"no heartbeat for {now - rec.last_heartbeat:.1f} s "
                                 f"(timeout {self.heartbeat_timeout:g} s)")
        return late

    def _mark_dead(self, rec, reason):
        with self._lock:
            if not rec.alive:
                return
            rec.alive = False
            rec.dead_reason = reason
        log.warning("worker %s at %s is dead: %s", rec.name, rec.address, reason)
        replica = self.replication.promote(rec.key)
        if replica is not None:
            with self._lock:
                self._device_epoch += 1   # plans move the dead task's nodes to its replica
            reason += (f"; its replica /job:{replica[0]}/task:{replica[1]}, which holds every update of the steps "
                       "that succeeded, serves its variables from now on: run the step again")
            log.warning("promoted /job:%s/task:%d to serve the variables of %s", *replica, rec.name)
        self._fail_steps_of(rec, reason)

    def _fail_steps_of(self, rec, reason):
        with self._lock:
            steps = [s for s in self._steps.values() if s.records.get(rec.key) is rec]
        for step in steps:
            self._fail(step, errors.UnavailableError(
                None, None, f"worker {rec.name} ({rec.address}) is unavailable: {reason}"), rec.key)

    def workers(self):
        with self._lock:
            return list(self._workers.values())

    def list_devices(self):
        """(name, type, memory bytes) of every device of a live worker."""
        with self._lock:
            return [(n, t, m) for r in sorted(self._workers.values(), key=lambda r: r.key) if r.alive
                    for n, t, _, m in r.devices]

    def _all_devices(self):
        with self._lock:
            return {n: r for r in self._workers.values() for n, *_ in r.devices}

    # ---- sessions --------------------------------------------------------------------------------
    def create_session(self, graph, config=None):
        """Opens a session on `graph` (a GraphIR); returns (handle, graph version)."""
        check_client_graph(graph.nodes.values())
        graph.validate(registry.OPS)
        if config is not None:
            check_timeout(config.operation_timeout_in_ms, "operation_timeout_in_ms")
        handle = f"s{next(self._session_ids)}-{self._tag}"
        try:
            sess = _Session(handle, graph, config)
        except ValueError as e:  # a device filter that is no device spec
            raise errors.InvalidArgumentError(None, None, f"CreateSession: ConfigProto.device_filters: {e}") from None
        sess.last_used = self._clock()
        with self._lock:
            self._sessions[handle] = sess
        log.info("session %s created with %d nodes", handle, len(graph))
        return handle, 1

    def _session(self, handle):
        sess = self._sessions.get(handle)
        if sess is None:
            if handle in self._expired:
                raise errors.NotFoundError(None, None, f"session {handle!r} was {self._expired[handle]}; "
                                           "recreate the session")
            if _HANDLE.match(handle) and not handle.endswith(f"-{self._tag}"):
                raise errors.NotFoundError(None, None, f"session {handle!r} was {security.MASTER_RESTARTED}; "
                                           "recreate the session")
            raise errors.NotFoundError(None, None, f"session {handle!r} does not exist (closed, reset, or "
                                       "the master restarted)")
        sess.last_used = self._clock()
        return sess

    def collect_idle_sessions(self):
        """Closes the sessions idle past session_gc_s with no step running; returns their handles."""
        if self.session_gc_s <= 0:
            return []
        now = self._clock()
        with self._lock:
            busy = {s.session for s in self._steps.values()}
            idle = [h for h, sess in self._sessions.items()
                    if h not in busy and now - sess.last_used > self.session_gc_s]
        for handle in idle:
            with self._lock:
                self._expired[handle] = (f"{security.SESSION_EXPIRED} after {self.session_gc_s:g} s without a "
                                         "call (--session-gc-seconds)")
                while len(self._expired) > MAX_EXPIRED:
                    del self._expired[next(iter(self._expired))]
            log.info("session %s expired: idle for over %g s", handle, self.session_gc_s)
            self.close_session(handle)
        return idle

    def extend_session(self, handle, nodes, current_version):
        """Adds `nodes` to the session's graph (replacing nodes of the same name); returns the new version."""
        sess = self._session(handle)
        check_client_graph(nodes)
        with sess.lock:
            if current_version and current_version != sess.version:
                raise errors.FailedPreconditionError(
                    None, None, f"session {handle} is at graph version {sess.version}, the request extends "
                    f"version {current_version}")
            graph = ir.GraphIR()
            graph.nodes = dict(sess.graph.nodes)
            for node in nodes:
                graph.nodes[node.name] = node
            graph.validate(registry.OPS)
            sess.graph = graph
            sess.version += 1
            self._retire(sess, list(sess.plans))
            return sess.version

    def close_session(self, handle):
        """Ends a session: its steps still running (a dequeue waiting on a queue) are cancelled."""
        with self._lock:
            sess = self._sessions.pop(handle, None)
            steps = [s for s in self._steps.values() if s.session == handle]
        if sess is None:
            return
        sess.closed = True
        for step in steps:
            self._fail(step, errors.CancelledError(None, None, f"session {handle} was closed"), None)
        self._deregister_plans(sess)
        log.info("session %s closed after %d steps", handle, sess.steps_run)

    def _deregister_plans(self, sess):
        with sess.lock:
            entries = list(sess.plans.values()) + [e for _, e in sess.retired]
            sess.plans, sess.retired = {}, []
        for entry in entries:
            self._deregister(entry)

    def _retire(self, sess, keys):
        """Drops plans from the cache (lock held); their graphs leave the workers once no step can still use
        them, RETIRE_AFTER_S later."""
        now = self._clock()
        sess.retired.extend((now, sess.plans.pop(k)) for k in keys)
        while sess.retired and now - sess.retired[0][0] > RETIRE_AFTER_S:
            self._deregister(sess.retired.pop(0)[1])

    def _deregister(self, entry):
        with self._lock:
            current = dict(self._workers)
        for key, handle in entry.handles.items():
            rec = current.get(key)
            if rec is not None and rec.alive and entry.epoch and (rec.incarnation, rec.data_address) in entry.epoch:
                rec.client.deregister_graph(handle)
        entry.handles = {}

    def reset(self, containers=None):
        """Closes every session and clears the resources of `containers` (all when None) on every live
        worker."""
        with self._lock:
            sessions = list(self._sessions)
            steps = list(self._steps.values())
        for step in steps:
            self._fail(step, errors.CancelledError(None, None, "the cluster was reset"), None)
        for handle in sessions:
            self.close_session(handle)
        pending = [(r, r.client.reset(containers)) for r in self.workers() if r.alive]
        for rec, fut in pending:
            try:
                fut.result(timeout=30)
            except Exception as e:  # noqa: BLE001
                raise errors.UnavailableError(None, None, f"cannot reset {rec.name} at {rec.address}: {e}") from None
        log.info("cluster reset: %d sessions closed, %d workers cleared", len(sessions), len(pending))

    # ---- steps -------------------------------------------------------------------------------------
    def run_step(self, handle, feeds, fetches, targets, timeout_ms=0, trace=False):
        """Runs one step; feeds: [(tensor name, tensor)]; returns ([(name, tensor)] in fetch order,
        a RunMetadata or None, step id)."""
        step = self.start_step(handle, feeds, fetches, targets, timeout_ms, trace)
        try:
            self._wait(step)
            if stages.ON:
                stages.mark("m.woken")
        except BaseException as e:
            self._forget(step)
            self.observer.step_ended(step.record, e)
            raise
        return self.end_step(step)

    def start_step(self, handle, feeds, fetches, targets, timeout_ms=0, trace=False, on_done=None):
        """Starts one step without waiting for it, and returns it: `on_done(step)` is called once, from the
        thread that ends it (a RunGraph's callback, a failure, `expire`), after which `end_step(step)` gives
        what run_step would return, or raises its error.

        For worker clients whose futures complete on their own (gRPC's): a step
        channel's `driven` futures need run_step's waiting thread. The caller
        arranges for `expire(step)` at step.deadline (clock time) when it has one.
        """
        record = self.observer.step_started(handle)
        try:
            return self._start(record, handle, feeds, fetches, targets, timeout_ms, trace, on_done)
        except BaseException as e:
            self.observer.step_ended(record, e)
            raise

    def expire(self, step):
        """Fails `step` for running past its deadline, unless it has ended."""
        if not step.done.is_set():
            self._fail(step, errors.DeadlineExceededError(None, None, f"step {step.step_id} ran past its deadline"),
                       None)

    def seconds_left(self, step):
        """Seconds until `step`'s deadline (0 when past it)."""
        return max(0.0, step.deadline - self._clock())

    def end_step(self, step):
        """The outcome of a started step that has ended (its on_done was called): run_step's result, or its
        error raised."""
        try:
            self._forget(step)
            result = self._finish(step, self._results(step))
        except BaseException as e:
            self.observer.step_ended(step.record, e)
            raise
        self.observer.step_ended(step.record)
        return result

    def _start(self, record, handle, feeds, fetches, targets, timeout_ms, trace, on_done=None):
        """Plans the step and sends its RunGraphs, whose callbacks end it; returns the _RunningStep, which
        is in the step table until `_forget`."""
        sess = self._session(handle)
        feed_names = tuple(sorted(name for name, _ in feeds))
        if len(set(feed_names)) != len(feed_names):
            raise errors.InvalidArgumentError(None, None, f"a tensor is fed twice: {list(feed_names)}")
        timeout_ms = check_timeout(timeout_ms or sess.timeout_ms, "timeout_in_ms")
        deadline = self._clock() + timeout_ms / 1000.0 if timeout_ms > 0 else None
        key = (sess.version, self._device_epoch, feed_names, tuple(fetches), tuple(targets))
        entry = sess.plans.get(key)
        if entry is None:
            if self.static is not None:
                self._wait_for_tasks(sess, feed_names, fetches, targets, deadline)
                key = (sess.version, self._device_epoch) + key[2:]
            entry = self._plan(sess, key)
        records = self._registered(sess, entry)
        step = _RunningStep(next(self._step_ids), records, handle, self._clock())
        step.entry, step.fetches, step.trace, step.deadline, step.record = entry, fetches, trace, deadline, record
        step.on_done = on_done
        record.signature, record.step_id = entry.signature, step.step_id
        # the dashboard's timeline samples a traced step now and then; the client gets metadata only if it asked
        step.traced = trace or self.observer.wants_trace(entry.signature)
        sess.steps_run += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("step %d of session %s on %s", step.step_id, handle, [records[k].name for k in entry.workers])
        if not entry.workers:
            self._wake(step)
            return step
        feed_of = dict(feeds)
        step.pending = len(entry.workers)
        with self._lock:
            self._steps[step.step_id] = step
        try:
            for wkey in entry.workers:
                rec = records[wkey]
                if stages.ON:
                    stages.mark(f"m.send:{wkey[1]}")
                wfeeds = [(n, feed_of[n]) for n in entry.feeds_for.get(wkey, ())]
                remaining = 0 if deadline is None else max(1, int((deadline - self._clock()) * 1000))
                try:
                    fut = rec.client.run_graph(entry.handles[wkey], step.step_id, wfeeds, step.traced, remaining)
                except errors.OpError as e:
                    self._fail(step, e, wkey)
                    break
                step.futures[wkey] = fut
                fut.add_done_callback(lambda f, k=wkey: self._on_done(step, k, f))
        except BaseException:
            self._forget(step)
            raise
        return step

    def _forget(self, step):
        with self._lock:
            self._steps.pop(step.step_id, None)

    def _finish(self, step, results):
        """What run_step returns for a step whose RunGraphs all answered with `results`."""
        out, metadata, step_id = self._collect(step, step.entry, step.fetches, results, step.traced)
        if not self.replication.internal(step.session):
            self.replication.after_step(self, step.entry)
        if step.traced:
            self.observer.traced(step.entry.signature, step_id, metadata.step_stats)
        return out, metadata if step.trace else None, step_id

    def _wait_for_tasks(self, sess, feeds, fetches, targets, deadline):
        """Waits for the tasks of the static cluster that this step's nodes name and that were never up."""
        from tensorgrid.runtime import prune, static_cluster
        pruned = prune.prune(sess.graph, feeds, fetches, targets)
        filters = [f.to_string() for f in sess.device_filters]
        self.static.wait_for(static_cluster.tasks_named(pruned, self.static.tasks, filters), deadline,
                             f"session {sess.handle}")

    def _plan(self, sess, key):
        version, _, feeds, fetches, targets = key
        with sess.lock:
            entry = sess.plans.get(key)
            if entry is not None:
                return entry
            if sess.version != version:
                raise errors.AbortedError(None, None, "the session's graph changed while the step was planned; "
                                          "run it again")
            _check_outputs(sess.graph, feeds, fetches)
            owners = self._all_devices()
            devices = self._session_devices(sess, owners)
            graph = replication_lib.retarget(sess.graph, self.replication.aliases)
            plan = plan_lib.plan_step(graph, feeds, fetches, targets, devices,
                                      default_device=self._default_device(devices, self.local_task),
                                      allow_soft_placement=sess.soft_placement, known_ops=registry.OPS,
                                      fuse=sess.fuse)
            entry = _PlanEntry(plan, {d: owners[d].key for d in plan.partitions})
            entry.signature = self.observer.planned(sess.handle, feeds, fetches, targets, plan.partitions)
            stale = [k for k in sess.plans if k[1] != key[1]]
            self._retire(sess, list(sess.plans) if len(sess.plans) >= MAX_PLANS_PER_SESSION else stale)
            sess.plans[key] = entry
        log.info("session %s: planned %s", sess.handle, plan)
        return entry

    @staticmethod
    def _session_devices(sess, owners):
        names = sorted(owners)
        if sess.device_filters:
            names = [n for n in names if any(f.matches(n) for f in sess.device_filters)]
        if not sess.device_count:
            return names
        kept, seen = [], {}
        for name in names:
            spec = device_spec.DeviceSpec.from_string(name)
            limit = sess.device_count.get(spec.device_type)
            count_key = (spec.job, spec.task, spec.device_type)
            if limit is not None and seen.get(count_key, 0) >= limit:
                continue
            seen[count_key] = seen.get(count_key, 0) + 1
            kept.append(name)
        return kept

    @staticmethod
    def _default_device(devices, local_task=None):
        """The first CPU of this master's own task when it has one (tg.train.Server), else of the lowest
        task of job 'worker' (of any job when there is none)."""
        def rank(name):
            spec = device_spec.DeviceSpec.from_string(name)
            return (spec.device_type != "CPU", (spec.job, spec.task) != local_task, spec.job != DEFAULT_JOB,
                    spec.job or "", spec.task or 0, spec.device_index or 0)
        return min(devices, key=rank) if devices else None

    def _registered(self, sess, entry):
        """The live worker records of the plan, with the plan registered on each of them."""
        with self._lock:
            records = {k: self._workers.get(k) for k in entry.workers}
        for key, rec in records.items():
            if rec is None:
                raise errors.UnavailableError(None, None, f"worker /job:{key[0]}/task:{key[1]} is not registered")
            if not rec.alive:
                raise errors.UnavailableError(
                    None, None, f"worker {rec.name} ({rec.address}) is unavailable: {rec.dead_reason}")
        epoch = tuple((records[k].incarnation, records[k].data_address) for k in entry.workers)
        if entry.epoch == epoch:
            return records
        with entry.lock:
            if entry.epoch != epoch:
                if entry.epoch is not None:
                    self._deregister(entry)
                addresses = {d: records[k].data_address for k, devs in entry.devices_of.items() for d in devs}
                pending = {k: records[k].client.register_graph(
                    sess.handle, {d: entry.graph_defs[d] for d in entry.devices_of[k]}, addresses)
                    for k in entry.workers}
                handles, failure = {}, None
                for k, fut in pending.items():
                    try:
                        handles[k] = fut.result()
                    except errors.OpError as e:
                        if getattr(e, "in_transit", False):
                            e = errors.UnavailableError(
                                None, None, f"worker {records[k].name} ({records[k].address}) is unavailable: "
                                f"{e.message}")
                        failure = failure or e
                if failure is not None:
                    for k, h in handles.items():
                        records[k].client.deregister_graph(h)
                    raise failure
                entry.handles = handles
                entry.epoch = epoch
        return records

    def _on_done(self, step, key, fut):
        if stages.ON:
            stages.mark(f"m.done:{key[1]}")
        self.observer.run_graph_done(step.records[key].name, self._clock() - step.started)
        if not fut.cancelled():
            err = fut.exception()
            if err is not None:
                rec = step.records[key]
                if getattr(err, "in_transit", False):
                    # The RunGraph call itself failed, not a node on the worker: the worker is gone.
                    reason = f"its RunGraph call failed: {err.message}"
                    err = errors.UnavailableError(None, None, f"worker {rec.name} ({rec.address}) is unavailable: "
                                                  f"{reason}")
                    self._fail(step, err, key)
                    self._mark_dead(rec, reason)
                else:
                    self._fail(step, err, key)
        with step.lock:
            step.pending -= 1
            last = step.pending == 0
        if last:
            self._wake(step)

    def _fail(self, step, err, source):
        """Records `err` for `step` (the first error that is not a cancellation is the root),
        cancels the step on every other worker and wakes the step's waiter."""
        err = errors.from_exception(err)
        with step.lock:
            if isinstance(err, errors.CancelledError):
                if step.fallback is None:
                    step.fallback = err
            elif step.error is None:
                step.error = err
            if step.aborted:
                return
            step.aborted = True
        origin = step.records[source].name if source in step.records else "the master"
        reason = f"{type(err).__name__} on {origin}: {err.message}"
        log.info("step %d failed: %s", step.step_id, reason)
        for key, rec in step.records.items():
            if key != source and rec.alive:
                rec.client.cleanup_step(step.step_id, reason)
        self._wake(step)

    @staticmethod
    def _wake(step):
        """Marks `step` ended (every RunGraph answered, or it failed) and calls its on_done, once."""
        with step.lock:
            step.done.set()
            on_done, step.on_done = step.on_done, None
        if on_done is not None:
            on_done(step)

    def _wait(self, step):
        """Waits until `step` ends (reading its driven futures' replies itself), failing it at its deadline."""
        deadline = step.deadline
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        driven = [f for f in step.futures.values() if getattr(f, "driven", False)]
        if driven:
            type(driven[0]).drive_all(driven, step.done, timeout)
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
        if not step.done.wait(timeout):
            self.expire(step)

    @staticmethod
    def _results(step):
        """The RunGraph results of every worker of an ended step, or its root error."""
        if step.aborted:
            for fut in step.futures.values():
                if not fut.done():
                    fut.cancel()
            raise step.error if step.error is not None else step.fallback
        return {key: fut.result() for key, fut in step.futures.items()}

    def _collect(self, step, entry, fetches, results, trace):
        produced = {}
        for res in results.values():
            for name, tensor in res.fetches:
                produced[name] = tensor
        missing = [f for f in fetches if f not in produced and plan_lib.tensor_name(f) not in produced]
        if missing:
            raise errors.InternalError(None, None, f"step {step.step_id} did not produce {missing}")
        out = [(f, produced.get(f, produced.get(plan_lib.tensor_name(f)))) for f in fetches]
        metadata = None
        if trace:
            metadata = config_pb2.RunMetadata()
            for res in results.values():
                metadata.step_stats.dev_stats.extend(res.dev_stats)
                metadata.partition_graphs.extend(res.partition_graphs)
        return out, metadata, step.step_id

    # ---- status ----------------------------------------------------------------------------------------
    def worker_ages(self):
        """[(WorkerRecord, seconds since its last heartbeat)] by job and task, without asking any worker."""
        now = self._clock()
        return [(r, now - r.last_heartbeat) for r in sorted(self.workers(), key=lambda r: r.key)]

    def sessions(self):
        """[(handle, graph nodes, cached plans, steps run)] of the open sessions, without asking any worker."""
        with self._lock:
            return [(s.handle, len(s.graph), len(s.plans), s.steps_run) for s in self._sessions.values()]

    def cluster_status(self):
        """Workers (with their live step-table sizes), sessions and steps in flight, as plain dicts."""
        now = self._clock()
        recs = sorted(self.workers(), key=lambda r: r.key)
        asks = {}
        for rec in recs:
            if rec.alive:
                try:
                    asks[rec.key] = rec.client.get_status()
                except Exception:  # noqa: BLE001 - its channel closed meanwhile (the worker registered again)
                    pass
        workers = []
        for rec in recs:
            info = {"job": rec.job, "task": rec.task, "address": rec.address, "data_address": rec.data_address,
                    "incarnation": rec.incarnation, "health": "alive" if rec.alive else "dead",
                    "dead_reason": rec.dead_reason, "last_heartbeat_age_s": now - rec.last_heartbeat,
                    "devices": rec.devices, "reachable": False}
            fut = asks.get(rec.key)
            if fut is not None:
                try:
                    info.update(fut.result(timeout=2.0))
                    info["reachable"] = True
                except Exception:  # noqa: BLE001 - an unreachable worker shows as such
                    pass
            workers.append(info)
        with self._lock:
            sessions = [{"session_handle": s.handle, "graph_version": s.version, "graph_nodes": len(s.graph),
                         "cached_plans": len(s.plans), "steps_run": s.steps_run} for s in self._sessions.values()]
            active = len(self._steps)
        return {"workers": workers, "sessions": sessions, "active_steps": active}

    def close(self):
        """Fails the steps in flight (the master is stopping) and closes the channels to the workers."""
        with self._lock:
            steps = list(self._steps.values())
        for step in steps:
            self._fail(step, errors.UnavailableError(None, None, "the master is stopping"), None)
        for rec in self.workers():
            rec.client.close()
