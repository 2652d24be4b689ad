"""A static cluster (tg.train.Server): the master finds each task of a ClusterSpec at its address.

Workers of a CLI cluster register with their master and heartbeat
(worker_service.MasterLink). The tasks of a ClusterSpec are known by address
instead, so here the master does that work itself: it asks a task for its
status (WorkerService.GetStatus: job, task, incarnation, devices, data plane
and step channel addresses), registers it under the job and task the
ClusterSpec names, and takes every later answer as a heartbeat. A task that
answers with a new incarnation was restarted and is registered again, which
fails its steps in flight and re-registers the graphs it ran
(runtime/master.py). A task that stops answering is marked dead by the
master's heartbeat timeout, or at once when a RunGraph call to it fails in
transit.

Before it plans a step, the master waits (`wait_for`) for the tasks the
step's graph names that were never up yet (tasks may start in any order),
logging which task, at which address, why, and for how long so far. A task
that was up and has gone away is not waited for: the step fails at once
with UnavailableError naming it, and steps that do not need it run. Only the
tasks some step asked for are polled afterwards, so a task that only serves
(a ps that calls join()) polls nobody.

No network here either: workers are reached through the master's
`connect(address, step_address)` clients, so tests drive this with fakes.
"""

import logging
import threading
import time

from tensorgrid.framework import device_spec, errors

log = logging.getLogger("tensorgrid.master")

# How long one GetStatus may take before the task counts as not answering.
PROBE_TIMEOUT_S = 2.0
# While waiting for a task, how often to ask again, and how often to say so in the log.
RETRY_S = 0.25
LOG_EVERY_S = 10.0


def tasks_named(graph, spec_tasks, device_filters=()):
    """The (job, task) keys of `spec_tasks` that the devices of `graph`'s nodes name (a device naming
    only a job names every task of it), less those `device_filters` rules out."""
    filters = [device_spec.DeviceSpec.from_string(f) for f in device_filters]
    by_job = {}
    for job, task in spec_tasks:
        by_job.setdefault(job, []).append(task)
    named = set()
    for device in {node.device for node in graph}:
        if not device:
            continue
        spec = device_spec.DeviceSpec.from_string(device)
        if spec.job not in by_job:
            continue
        named.update((spec.job, t) for t in by_job[spec.job] if spec.task is None or spec.task == t)
    if filters:
        named = {k for k in named if any(_filter_admits(f, k) for f in filters)}
    return named


def _filter_admits(spec, key):
    return (spec.job is None or spec.job == key[0]) and (spec.task is None or spec.task == key[1])


class StaticCluster:
    """The tasks of one ClusterSpec as a master sees them; `wait_for` before planning, `poll` periodically."""

    def __init__(self, master, tasks, clock=time.monotonic, sleep=None):
        self.master = master
        self.tasks = dict(tasks)                # (job, task) -> "host:port"
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._lock = threading.Lock()
        self._probes = {}                       # key -> worker client used to ask for status
        self._watched = set()                   # keys some step needed: polled from then on
        self._last_error = {}                   # key -> why the last probe found no server
        self._mismatch_logged = set()

    def __repr__(self):
        return f"<StaticCluster {sorted(self.tasks)} watched={sorted(self._watched)}>"

    def name(self, key):
        return f"/job:{key[0]}/task:{key[1]} at {self.tasks[key]}"

    # ---- probing ---------------------------------------------------------------------------
    def _client(self, key):
        with self._lock:
            client = self._probes.get(key)
            if client is None:
                client = self._probes[key] = self.master.connect_worker(self.tasks[key])
            return client

    def probe(self, keys):
        """Asks each task of `keys` for its status at once; registers or heartbeats those that answer.
        Returns the keys that answered as the task the ClusterSpec says they are."""
        asks = {}
        for key in keys:
            try:
                asks[key] = self._client(key).get_status()
            except errors.OpError as e:
                self._last_error[key] = e.message
        up = set()
        for key, fut in asks.items():
            try:
                status = fut.result(timeout=PROBE_TIMEOUT_S)
            except TimeoutError:
                self._last_error[key] = f"no answer to GetStatus in {PROBE_TIMEOUT_S:g} s"
                continue
            except errors.OpError as e:
                self._last_error[key] = _reason(e)
                continue
            if self._admit(key, status):
                up.add(key)
        return up

    def _admit(self, key, status):
        job, task = key
        if status.get("job") != job or status.get("task") != task:
            reason = (f"the server at {self.tasks[key]} is /job:{status.get('job')}/task:{status.get('task')}, "
                      f"not /job:{job}/task:{task} as the ClusterSpec says")
            self._last_error[key] = reason
            if key not in self._mismatch_logged:
                self._mismatch_logged.add(key)
                log.error("%s", reason)
            return False
        rec = self.master.worker(job, task)
        incarnation = status["incarnation"]
        if rec is not None and rec.incarnation == incarnation and rec.address == self.tasks[key]:
            return self.master.heartbeat(job, task, incarnation)
        devices = [(t, i, m) for _, t, i, m in status["devices"]]
        try:
            self.master.register_worker(self.tasks[key], status.get("data_address", ""), job, task, incarnation,
                                        devices, status.get("step_address", ""))
        except errors.OpError as e:
            self._last_error[key] = e.message
            log.warning("cannot register %s: %s", self.name(key), e.message)
            return False
        self._last_error.pop(key, None)
        return True

    def watch(self, keys):
        """Polls the tasks of `keys` from now on."""
        with self._lock:
            self._watched.update(k for k in keys if k in self.tasks)

    def poll(self):
        """Asks every watched task for its status once (the heartbeat of a static cluster)."""
        with self._lock:
            keys = sorted(self._watched)
        if keys:
            self.probe(keys)

    def start(self, interval):
        """Polls the watched tasks every `interval` seconds on a thread of its own, until close()."""
        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - the poller must keep running
                    log.exception("polling the static cluster failed")
        threading.Thread(target=loop, name="tg-static-cluster", daemon=True).start()

    # ---- waiting ----------------------------------------------------------------------------------
    def wait_for(self, keys, deadline=None, what="a step"):
        """Returns once every task of `keys` that was never up has been found (registered); tasks that
        were up before are not waited for. DeadlineExceededError at `deadline` (a clock() time)."""
        keys = {k for k in keys if k in self.tasks}
        self.watch(keys)
        pending = sorted(k for k in keys if self.master.worker(*k) is None)
        start = self._clock()
        next_log = start
        while pending:
            self.probe(pending)
            pending = [k for k in pending if self.master.worker(*k) is None]
            if not pending or self._stop.is_set():
                break
            now = self._clock()
            waiting = "; ".join(f"{self.name(k)} ({self._last_error.get(k, 'no answer yet')})" for k in pending)
            if deadline is not None and now >= deadline:
                raise errors.DeadlineExceededError(
                    None, None, f"{what} needs tasks that are not up after {now - start:.1f} s: {waiting}")
            if now >= next_log:
                log.warning("%s is waiting for %s, %s so far (tasks may start in any order)", what, waiting,
                            _seconds(now - start))
                next_log = now + LOG_EVERY_S
            self._sleep(RETRY_S if deadline is None else max(0.0, min(RETRY_S, deadline - now)))
        if self._stop.is_set() and pending:
            raise errors.CancelledError(None, None, "the master is stopping")
        if self._clock() - start > 1.0:
            log.warning("%s: every task it needs is up after %s", what, _seconds(self._clock() - start))

    def close(self):
        """Ends waits (CancelledError) and closes the status channels."""
        self._stop.set()
        with self._lock:
            probes, self._probes = list(self._probes.values()), {}
        for client in probes:
            client.close()


def _reason(err):
    """A short reason for a failed status call: gRPC's connection errors are long."""
    message = err.message or type(err).__name__
    for known in ("Connection refused", "Deadline Exceeded", "No route to host", "DNS resolution failed"):
        if known.lower() in message.lower():
            return known.lower()
    return message.splitlines()[0]


def _seconds(s):
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
