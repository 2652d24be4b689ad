"""benchmarks/w1_stages.py: the stage table from marks, and a real run over a local cluster."""

import os
import subprocess
import sys

from benchmarks import w1_stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _step(t0, procs):
    """Marks of one step starting at t0 ns: every CRITICAL and OFF_PATH point, 1 us apart along CRITICAL."""
    at = {}
    for i, (_, a, b) in enumerate(w1_stages.CRITICAL):
        at.setdefault(a, t0 + 1000 * i)
        at.setdefault(b, t0 + 1000 * (i + 1))
    for _, a, b in w1_stages.OFF_PATH:
        at.setdefault(a, t0 + 500)
        at.setdefault(b, t0 + 700)
    at[("B", "w.wait")] = at[("B", "w.arrived")] - 100
    for (proc, name), t in at.items():
        procs.setdefault(proc, []).append((t, name))


def test_the_table_follows_the_critical_path_from_the_marks():
    procs = {}
    for k in range(5):
        _step(10**9 * (k + 1), procs)
    client = sorted(procs.pop("client"))
    rows, total, n, b_first = w1_stages.stage_table(client, {p: sorted(m) for p, m in procs.items()}, 3)
    assert n == 3 and b_first == 3
    assert [r[0] for r in rows] == [label for label, _, _ in w1_stages.CRITICAL + w1_stages.OFF_PATH]
    assert [r[1] for r in rows[:len(w1_stages.CRITICAL)]] == [1.0] * len(w1_stages.CRITICAL)
    assert total == float(len(w1_stages.CRITICAL))


def test_a_run_on_a_local_cluster_prints_every_stage():
    out = subprocess.run([sys.executable, "-m", "benchmarks.w1_stages", "--steps", "30", "--warmup", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout   # 0: some steps had every mark
    for label, _, _ in w1_stages.CRITICAL + w1_stages.OFF_PATH:
        assert label in out.stdout
