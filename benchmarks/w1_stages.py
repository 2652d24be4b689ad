"""W1's step time by stage: where a step's microseconds go between the client, the master and both workers.

    python -m benchmarks.w1_stages              # 500 steps after 50 warm-up ones
    python -m benchmarks.w1_stages --steps 2000

Runs W1 (SPEC section 9: a = x + 1 on worker 0, b = a * 2 on worker 1, b
fetched) on a fresh local cluster with TENSORGRID_STAGES set, so every
process timestamps the points its step passes (tensorgrid/observability/
stages.py; one CLOCK_MONOTONIC for all processes of the host). Each row is
the median, over the steps, of the time between two consecutive points on
the step's critical path; the rows add up to about the median step. The
marks themselves cost about 1 us each (some 17 per step).
"""

import argparse
import glob
import os
import statistics
import sys
import tempfile

# Rows: (label, from (process, mark), to (process, mark)); "A" is worker 0, "B" worker 1. The first rows
# follow the step's critical path end to end, so they add up to the step; the last ones are off it.
RUN_STEP, RUN_GRAPH = "MasterService/RunStep", "WorkerService/RunGraph"
CRITICAL = [
    ("client: Session.run, RunStep request built and sent", ("client", "c.start"), ("client", "call.sent")),
    ("client -> master: wire, master reads the request", ("client", "call.sent"), ("master", "serve.read:RunStep")),
    ("master: RunStep parsed, plan looked up", ("master", "serve.read:RunStep"), ("master", "m.send:0")),
    ("master -> A: RunGraph built, sent, read by A", ("master", "m.send:0"), ("A", "serve.read:RunGraph")),
    ("worker A: parse, step state, a = x + 1", ("A", "serve.read:RunGraph"), ("A", "w.send")),
    ("A -> B: data-plane send, B's reader has a", ("A", "w.send"), ("B", "w.arrived")),
    ("B: reader thread hands a to the step thread", ("B", "w.arrived"), ("B", "w.woke")),
    ("worker B: b = a * 2, step ends", ("B", "w.woke"), ("B", "w.done")),
    ("B: RunGraph response built", ("B", "w.done"), ("B", "serve.reply:RunGraph")),
    ("B -> master: sent, wire, master reads B's reply", ("B", "serve.reply:RunGraph"), ("master", "m.done:1")),
    ("master: the step thread wakes up", ("master", "m.done:1"), ("master", "m.woken")),
    ("master: RunStep response built", ("master", "m.woken"), ("master", "serve.reply:RunStep")),
    ("master -> client: sent, wire, client reads it", ("master", "serve.reply:RunStep"), ("client", "call.read")),
    ("client: response parsed, Session.run returns", ("client", "call.read"), ("client", "c.end")),
]
OFF_PATH = [
    ("(off path) master: RunGraph to B sent after A's", ("master", "m.send:0"), ("master", "m.send:1")),
    ("(off path) B: RunGraph read until B waits for a", ("B", "serve.read:RunGraph"), ("B", "w.wait")),
    ("(off path) A: the send's own time", ("A", "w.send"), ("A", "w.sent")),
    ("(off path) A's reply read by the master", ("A", "serve.read:RunGraph"), ("master", "m.done:0")),
]


def _read_all(directory):
    """Every process's sorted [(ns, name)] marks from the .stages files the cluster's processes wrote."""
    out = []
    for path in glob.glob(os.path.join(directory, "*.stages")):
        with open(path) as f:
            out.append(sorted((int(t), name) for t, name in (line.split(" ", 1) for line in f.read().splitlines())))
    return out


def _read(directory):
    """{process role: sorted [(ns, name)]} of the cluster's processes (master, worker A, worker B)."""
    roles = {}
    for marks in _read_all(directory):
        names = {n for _, n in marks}
        role = ("master" if "m.woken" in names else "A" if "w.send" in names else "B" if "w.arrived" in names
                else None)
        if role is not None:
            roles[role] = marks
    return roles


def _first_in(marks, start, end):
    """{name: first time} of the marks in [start, end]."""
    import bisect
    out = {}
    for t, name in marks[bisect.bisect_left(marks, (start, "")):]:
        if t > end:
            break
        out.setdefault(name, t)
    return out


def pct(xs, p):
    """The p-quantile (0..1) of xs, nearest rank."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def step_windows(client_marks):
    """[(start ns, end ns)] of every Session.run in the client's marks."""
    windows, start = [], None
    for t, name in client_marks:
        if name == "c.start":
            start = t
        elif name == "c.end" and start is not None:
            windows.append((start, t))
            start = None
    return windows


def stage_table(client_marks, roles, last_n):
    """Rows (label, median us, p10 us, p90 us) of CRITICAL then OFF_PATH, the median step (us), how many
    steps had every mark, and in how many B waited for a before it arrived."""
    windows = step_windows(client_marks)[-last_n:]
    rows = CRITICAL + OFF_PATH
    diffs = [[] for _ in rows]
    totals, b_ready_first = [], 0
    for start, end in windows:
        seen = {"client": _first_in(client_marks, start, end)}
        for role, marks in roles.items():
            seen[role] = _first_in(marks, start, end)
        at = [(seen.get(a[0], {}).get(a[1]), seen.get(b[0], {}).get(b[1])) for _, a, b in rows]
        if any(t is None for pair in at for t in pair):
            continue
        for d, (t0, t1) in zip(diffs, at):
            d.append((t1 - t0) / 1e3)
        totals.append((end - start) / 1e3)
        if seen["B"]["w.wait"] < seen["B"]["w.arrived"]:
            b_ready_first += 1

    if not totals:
        return [], float("nan"), 0, 0
    table = [(label, statistics.median(d), pct(d, 0.1), pct(d, 0.9)) for (label, _, _), d in zip(rows, diffs)]
    return table, statistics.median(totals), len(totals), b_ready_first


def record(build, steps, warmup):
    """Runs the graph build(tf, worker devices) -> (graph, x, fetch) warmup + steps times on a fresh local
    cluster with TENSORGRID_STAGES set (x fed a 1-element float32); returns (the client's sorted marks,
    the directory of the cluster's .stages files)."""
    directory = tempfile.mkdtemp(prefix="tensorgrid-stages-")
    os.environ["TENSORGRID_STAGES"] = directory   # before tensorgrid is imported: stages.ON is read then
    import numpy as np

    import tensorgrid.compat.v1 as tf
    from tensorgrid.observability import stages
    from tensorgrid.runtime.cluster import LocalCluster
    tf.disable_eager_execution()
    with LocalCluster(num_workers=2, env={"TENSORGRID_STAGES": directory}) as cluster:
        g, x, fetch = build(tf, ["/job:worker/task:0", "/job:worker/task:1"])
        with tf.Session(cluster.target, graph=g) as sess:
            feed = {x: np.ones(1, np.float32)}
            for _ in range(warmup + steps):
                sess.run(fetch, feed)
    return sorted(stages._marks), directory


def parse_args(prog, doc, argv, steps, warmup):
    """--steps and --warmup of a stages script."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=steps, help=f"timed steps (default: {steps})")
    p.add_argument("--warmup", type=int, default=warmup, help=f"steps not counted, first (default: {warmup})")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args("python -m benchmarks.w1_stages", __doc__, argv, 500, 50)
    from benchmarks import workloads
    client_marks, directory = record(workloads._w1_graph, args.steps, args.warmup)
    rows, total, n, b_first = stage_table(client_marks, _read(directory), args.steps)
    print(f"W1 by stage, {n} steps (median, p10, p90 in microseconds; critical path A -> B):")
    for i, (label, med, p10, p90) in enumerate(rows):
        print(f"  {label:<58}{med:>8.1f}{p10:>8.1f}{p90:>8.1f}")
        if i == len(CRITICAL) - 1:
            print(f"  {'sum of the medians above':<58}{sum(r[1] for r in rows[:len(CRITICAL)]):>8.1f}")
    print(f"  {'median step (c.start -> c.end)':<58}{total:>8.1f}")
    print(f"B was waiting before a arrived in {b_first} of {n} steps")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
