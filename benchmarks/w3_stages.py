"""W3's hops by stage: where each cross-worker hop of a step's chain spends its microseconds.

    python -m benchmarks.w3_stages              # 300 steps after 30 warm-up ones
    python -m benchmarks.w3_stages --steps 1000

Runs W3 (SPEC section 9: 1000 ops y = y * 1.0001 + 0.5 in blocks of 100
alternating between the two workers, so 9 hops a step) on a fresh local
cluster with TENSORGRID_STAGES set, as benchmarks/w1_stages.py does for W1,
and splits every hop from one worker's block to the other's into the stages
its marks bound: the sending kernel's own time, the data plane until the
receiver's reader has the tensor, the hand-off until a thread computes on
it, and that block's kernels until its own send. Each row is the median
(p10, p90) over every hop of every step.
"""

import bisect
import statistics
import sys

from benchmarks.w1_stages import _read_all, parse_args, pct, record, step_windows

STAGES = [
    ("A: the send's own time (w.send -> w.sent)", "send"),
    ("A -> B: data plane, until B's reader has it (w.send -> w.arrived)", "wire"),
    ("B: hand-off until a thread computes on it (w.arrived -> w.woke)", "handoff"),
    ("B: the block's kernels, until its send (w.woke -> w.send)", "compute"),
]


def hop_stages(client_marks, workers, last_n):
    """({stage: [us]}, [median step us], hops per step) over the last `last_n` steps: `workers` is a list of
    the two workers' sorted (ns, name) marks."""
    windows = step_windows(client_marks)
    out = {key: [] for _, key in STAGES}
    totals, hops = [], []
    for start, end in windows[-last_n:]:
        merged = []
        for w, marks in enumerate(workers):
            lo, hi = bisect.bisect_left(marks, (start, "")), bisect.bisect_right(marks, (end, "\uffff"))
            merged += [(t, w, name) for t, name in marks[lo:hi]]
        merged.sort()
        n = 0
        for i, (t, w, name) in enumerate(merged):
            if name != "w.send":
                continue
            rest = merged[i + 1:]
            sent = next((u for u, v, m in rest if v == w and m == "w.sent"), None)
            arrived = next((u for u, v, m in rest if v != w and m == "w.arrived"), None)
            if sent is None or arrived is None:
                continue
            woke = next((u for u, v, m in rest if v != w and m == "w.woke" and u >= arrived), None)
            if woke is None:
                continue
            out["send"].append((sent - t) / 1e3)
            out["wire"].append((arrived - t) / 1e3)
            out["handoff"].append((woke - arrived) / 1e3)
            after = next((u for u, v, m in rest if v != w and m == "w.send" and u >= woke), None)
            if after is not None:
                out["compute"].append((after - woke) / 1e3)
            n += 1
        totals.append((end - start) / 1e3)
        hops.append(n)
    return out, totals, hops


def main(argv=None):
    args = parse_args("python -m benchmarks.w3_stages", __doc__, argv, 300, 30)
    from benchmarks import workloads
    client_marks, directory = record(workloads._w3_graph, args.steps, args.warmup)
    workers = [marks for marks in _read_all(directory) if any(name == "w.run" for _, name in marks)]
    stats, totals, hops = hop_stages(client_marks, workers, args.steps)
    if not totals or not stats["wire"]:
        print("no complete hops were recorded")
        return 1
    print(f"W3 by hop stage, {len(totals)} steps, {statistics.median(hops):.0f} hops a step "
          "(median, p10, p90 in microseconds):")
    for label, key in STAGES:
        d = stats[key]
        print(f"  {label:<70}{statistics.median(d):>8.1f}{pct(d, 0.1):>8.1f}{pct(d, 0.9):>8.1f}")
    hop = statistics.median(stats["wire"]) + statistics.median(stats["handoff"])
    print(f"  {'one hop, send to compute (data plane + hand-off medians)':<70}{hop:>8.1f}")
    print(f"  {'median step (c.start -> c.end)':<70}{statistics.median(totals):>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
