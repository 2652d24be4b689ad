"""A soak run: concurrent clients stepping on a local cluster while its workers are killed and restarted.

    python -m benchmarks.soak                      # 8 clients x 2000 steps, 4 worker kills
    python -m benchmarks.soak --clients 4 --steps 500 --kills 2 --json

Each client runs its own session on one graph that crosses both workers
(x fed, x * 2 on task 0, + 1 on task 1) and checks every answer it gets: a
wrong result is one that is not 2x + 1 for the x it fed (0 allowed). At
evenly spaced points of the run one worker, picked in turn, is SIGKILLed
and started again as the same task; steps caught by a kill fail (counted by
error class) and the clients go on after a short pause. The report: steps that succeeded and
failed, wrong results, errors by class, p50 / p99 latency of the successful
steps, and every process's RSS before and after (a killed worker's new
process reports its own).

Not part of the test suite: it runs for minutes on a small machine.
"""

import argparse
import collections
import json
import statistics
import sys
import threading
import time

import numpy as np

# A client's pause after a failed step, before the next one.
RETRY_PAUSE_S = 0.05


def _rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def _processes(cluster):
    out = {"master": cluster.master.popen.pid}
    for i in range(cluster.num_workers):
        out[f"worker{i}"] = cluster.worker_info(i)["pid"]
    return out


class _Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.wrong = 0
        self.errors = collections.Counter()
        self.latencies = []
        self.examples = {}

    @property
    def done(self):
        return self.ok + self.failed


def _client(tf, tg, target, index, steps, tally):
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [16], name="x")
        with tg.device("/job:worker/task:0"):
            doubled = x * 2.0
        with tg.device("/job:worker/task:1"):
            y = doubled + 1.0
    rng = np.random.default_rng(index)
    with tg.Session(target, graph=g) as sess:
        for _ in range(steps):
            value = rng.standard_normal(16).astype(np.float32)
            started = time.perf_counter()
            try:
                got = sess.run(y, {x: value})
            except tg.errors.OpError as e:
                with tally.lock:
                    tally.failed += 1
                    tally.errors[type(e).__name__] += 1
                    tally.examples.setdefault(type(e).__name__, e.message[:200])
                time.sleep(RETRY_PAUSE_S)  # as a client would before trying again
                continue
            elapsed = time.perf_counter() - started
            with tally.lock:
                tally.ok += 1
                tally.latencies.append(elapsed)
                if not np.array_equal(got, value * np.float32(2.0) + np.float32(1.0)):
                    tally.wrong += 1


def _killer(cluster, total, kills, tally, stop, log):
    for k in range(kills):
        mark = total * (k + 1) // (kills + 1)
        while tally.done < mark and not stop.is_set():
            time.sleep(0.01)
        if stop.is_set():
            return
        victim = k % cluster.num_workers
        cluster.kill_worker(victim)
        started = time.monotonic()
        cluster.restart_worker(victim)
        log.append({"after_steps": tally.done, "worker": victim, "restart_s": round(time.monotonic() - started, 2)})
    # the restarted workers die with the thread that started them (PR_SET_PDEATHSIG): it waits for the end
    stop.wait()


def run(clients=8, steps=2000, kills=4, heartbeat_timeout=10.0):
    import tensorgrid as tg
    from tensorgrid.runtime.cluster import LocalCluster
    tf = tg.compat.v1
    tally = _Tally()
    kill_log = []
    with LocalCluster(num_workers=2, heartbeat_timeout=heartbeat_timeout, heartbeat_interval=0.2) as cluster:
        before = {name: _rss_mib(pid) for name, pid in _processes(cluster).items()}
        stop = threading.Event()
        killer = threading.Thread(target=_killer, args=(cluster, clients * steps, kills, tally, stop, kill_log),
                                  daemon=True)
        threads = [threading.Thread(target=_client, args=(tf, tg, cluster.target, i, steps, tally), daemon=True)
                   for i in range(clients)]
        started = time.monotonic()
        killer.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        after = {name: _rss_mib(pid) for name, pid in _processes(cluster).items()}
        status = cluster.status()
        stop.set()
        killer.join()
    lat = sorted(tally.latencies)

    def pct(p):
        return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))] * 1000 if lat else None
    return {
        "clients": clients, "steps_per_client": steps, "kills": kill_log, "wall_s": round(wall, 1),
        "steps_ok": tally.ok, "steps_failed": tally.failed, "wrong_results": tally.wrong,
        "errors": dict(tally.errors), "error_examples": tally.examples,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "mean_ms": statistics.mean(lat) * 1000 if lat else None,
        "rss_mib_before": before, "rss_mib_after": after,
        "active_steps_after": status.active_steps,
        "workers_after": [(w.task, w.health) for w in status.worker],
    }


def _print(report):
    print(f"soak: {report['clients']} clients x {report['steps_per_client']} steps, "
          f"{len(report['kills'])} worker kills, {report['wall_s']} s")
    print(f"  steps ok {report['steps_ok']}, failed {report['steps_failed']}, wrong results {report['wrong_results']}")
    for name, count in sorted(report["errors"].items()):
        print(f"  {name}: {count}   e.g. {report['error_examples'][name]}")
    if report["p50_ms"] is not None:
        print(f"  latency p50 {report['p50_ms']:.2f} ms, p99 {report['p99_ms']:.2f} ms")
    for name in report["rss_mib_before"]:
        print(f"  {name} RSS {report['rss_mib_before'][name]} MiB -> {report['rss_mib_after'].get(name)} MiB")
    for k in report["kills"]:
        print(f"  killed worker {k['worker']} after {k['after_steps']} steps; back in {k['restart_s']} s")
    print(f"  after: {report['active_steps_after']} steps in flight, workers {report['workers_after']}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--steps", type=int, default=2000, help="steps per client")
    p.add_argument("--kills", type=int, default=4, help="worker kills spread over the run")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line too")
    args = p.parse_args(argv)
    report = run(args.clients, args.steps, args.kills)
    _print(report)
    if args.json:
        print(json.dumps(report))
    return 0 if report["wrong_results"] == 0 and report["steps_ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
