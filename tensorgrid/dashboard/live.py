"""LiveView: a running master's dashboard snapshot, rebuilt once a second.

Each refresh reads the master's state (workers and their heartbeats,
sessions, the step observer's running and recent steps, errors and step
signatures) and asks every live worker for its telemetry (CPU, memory,
variables, bytes sent per peer) over ObservabilityService. The snapshot is
a plain dict, the same one the page draws and --history-dir keeps.
"""

import logging
import threading
import time

from tensorgrid.dashboard import history
from tensorgrid.observability import step_observer
from tensorgrid.proto import observability_pb2 as pb

log = logging.getLogger("tensorgrid.dashboard")

POLL_S = 1.0
# How often the master traces a step of each signature on its own, for the timeline panel.
TRACE_EVERY_S = 10.0
STEP_WINDOW_S = 300.0
MAX_STEP_POINTS = 1500
SHOW_ERRORS = 50


def trace_of(sig):
    """The timeline of a signature's latest traced step: one lane per device, times from the step's start."""
    if sig.trace is None:
        return None
    devs = list(sig.trace.dev_stats)
    starts = [ns.all_start_micros for d in devs for ns in d.node_stats]
    t0 = min(starts, default=0)
    lanes = []
    for d in sorted(devs, key=lambda d: d.device):
        nodes = []
        for ns in d.node_stats:
            op = ns.timeline_label.split("= ", 1)[-1].rstrip("()") if ns.timeline_label else ""
            nodes.append([ns.node_name, op, ns.all_start_micros - t0, max(0, ns.all_end_rel_micros)])
        lanes.append({"device": d.device, "nodes": nodes})
    return {"signature": sig.id, "label": sig.label, "step_id": sig.trace_step, "time": sig.trace_time,
            "lanes": lanes}


class LiveView:
    """The dashboard's view of a running master (runtime/master.Master)."""

    live = True

    def __init__(self, master, address, peers, history_dir=None, poll_s=POLL_S, trace_every_s=TRACE_EVERY_S):
        self.master = master
        self.address = address
        self.peers = peers                  # observability.service.PeerChannels
        self.poll_s = poll_s
        master.observer.trace_every_s = trace_every_s
        self.history = history.HistoryWriter(history_dir) if history_dir else None
        self._cond = threading.Condition()
        self._snapshot = None
        self.version = 0
        self._stop = threading.Event()
        self._cpu = {}                      # worker name -> (time, cpu seconds)
        self._bytes = {}                    # (from, to) -> (time, bytes)
        self._svgs = {}                     # signature id -> (plan version, svg)
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="tg-dashboard", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def closed(self):
        return self._stop.is_set()

    def _loop(self):
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the dashboard must keep refreshing
                log.exception("dashboard refresh failed")

    # ---- the snapshot ---------------------------------------------------------------------------------
    def refresh(self):
        snapshot = self._build()
        with self._cond:
            self._snapshot = snapshot
            self.version += 1
            self._cond.notify_all()
        if self.history is not None:
            self.history.write(snapshot, self)

    def snapshot(self):
        with self._cond:
            return self._snapshot

    def wait(self, version, timeout):
        """(version, snapshot) once the snapshot is newer than `version`, or after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > version or self._stop.is_set(), timeout)
            return self.version, self._snapshot

    def _build(self):
        now = time.time()
        obs = self.master.observer
        ages = self.master.worker_ages()
        alive = [r for r, _ in ages if r.alive]
        answers = self.peers.call_all([r.address for r in alive], "GetTelemetry", pb.GetTelemetryRequest(),
                                      timeout=max(0.5, self.poll_s * 2))
        names = [r.name for r, _ in ages]
        by_data = {r.data_address: r.name for r, _ in ages}
        workers, sent = [], {}
        for rec, age in ages:
            info = {"name": rec.name, "address": rec.address, "health": "alive" if rec.alive else "dead",
                    "dead_reason": rec.dead_reason, "heartbeat_age_s": age,
                    "devices": [{"name": n, "type": t, "memory_bytes": m} for n, t, _, m in rec.devices],
                    "reachable": False}
            t = answers.get(rec.address) if rec.alive else None
            if isinstance(t, pb.GetTelemetryResponse):
                info.update(reachable=True, pid=t.pid, rss_bytes=t.rss_bytes, cpu_seconds=t.cpu_seconds,
                            cpu_percent=self._rate(self._cpu, rec.name, now, t.cpu_seconds) * 100.0,
                            threads=t.threads, uptime_s=t.uptime_s, variables=t.variables,
                            variable_bytes=t.variable_bytes, active_steps=t.active_steps,
                            registered_graphs=t.registered_graphs, run_graphs=t.run_graphs,
                            bytes_received=dict(t.bytes_received))
                for p in t.peer:
                    key = (rec.name, by_data.get(p.peer, p.peer))
                    sent[key] = sent.get(key, 0) + p.bytes_sent
            elif t is not None:
                info["telemetry_error"] = t.message
            workers.append(info)
        for key in sent:
            if key[1] not in names:
                names.append(key[1])
        matrix = {"workers": names,
                  "bytes": [[sent.get((a, b), 0) for b in names] for a in names],
                  "rate": [[self._rate(self._bytes, (a, b), now, sent[(a, b)]) if (a, b) in sent else 0.0
                            for b in names] for a in names]}
        recent = [s for s in list(obs.recent) if s[0] >= now - STEP_WINDOW_S][-MAX_STEP_POINTS:]
        sigs = {s.id: s for s in obs.signatures()}
        return {
            "live": True, "time": now, "master": self.address,
            "workers": workers,
            "sessions": [{"handle": h, "nodes": n, "plans": p, "steps": st} for h, n, p, st in self.master.sessions()],
            "running": [{"step_id": i, "session": s, "signature": g, "label": sigs[g].label if g in sigs else "",
                         "seconds": sec} for i, s, g, sec in obs.running()],
            "steps": [[round(t, 4), sec, g, e] for t, sec, _, g, e in recent],
            "totals": {"started": obs.started.value, "finished": obs.finished.value,
                       "failed": sum(v for _, _, v in obs.failed.family().samples),
                       "steps_per_s": sum(1 for s in recent if s[0] >= now - 10.0) / 10.0},
            "matrix": matrix,
            "signatures": [{"id": s.id, "session": s.session, "label": s.label, "steps": s.steps, "failed": s.failed,
                            "mean_s": s.total_s / s.steps if s.steps else 0.0, "last_s": s.last_s,
                            "last_time": s.last_time, "devices": sorted(s.partitions),
                            "nodes": sum(len(g) for g in s.partitions.values()), "plan_version": s.plan_version,
                            "trace_step": s.trace_step, "trace_time": s.trace_time}
                           for s in sorted(sigs.values(), key=lambda s: -s.last_time)],
            "errors": list(reversed(list(obs.errors)))[:SHOW_ERRORS],
        }

    @staticmethod
    def _rate(memory, key, now, value):
        """Per-second increase of `value` since the last call for `key` (0 the first time, or after a restart)."""
        before = memory.get(key)
        memory[key] = (now, value)
        if before is None or now <= before[0] or value < before[1]:
            return 0.0
        return (value - before[1]) / (now - before[0])

    # ---- per signature ------------------------------------------------------------------------------
    def graph_svg(self, sig_id):
        """The SVG picture of the signature's latest plan, or None for an unknown signature."""
        from tensorgrid.runtime import visualize
        sig = self.master.observer.signature(sig_id)
        if sig is None:
            return None
        cached = self._svgs.get(sig_id)
        if cached is None or cached[0] != sig.plan_version:
            if len(self._svgs) > 2 * step_observer.KEEP_SIGNATURES:
                self._svgs.clear()
            cached = self._svgs[sig_id] = (sig.plan_version, visualize.partition_svg(sig.partitions, title=sig.label))
        return cached[1]

    def trace(self, sig_id):
        sig = self.master.observer.signature(sig_id)
        return trace_of(sig) if sig is not None else None
