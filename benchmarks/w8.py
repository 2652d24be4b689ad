"""W8: data-parallel training of the demo's MLP on 1, 2 and 4 worker processes, parameter server vs all-reduce.

Each configuration starts its own processes (benchmarks/w8_worker.py): for "ps" a ps task and N
worker tasks, each worker its own client (TF1 between-graph replication, asynchronous steps); for
"all-reduce" N workers under MultiWorkerMirroredStrategy (synchronous steps, gradients all-reduced).
A sample is one worker's step time divided by N: seconds per step of the whole cluster, whose
inverse is the cluster's steps per second (every worker step trains on a batch of 64).
The worker processes get OPENBLAS_NUM_THREADS=1 unless it is set.
"""

import json
import os
import subprocess
import sys

from tensorgrid.runtime.cluster import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = (1, 2, 4)
MODES = ("ps", "all-reduce")


def run_config(system, mode, n, steps=30, timeout=600):
    """[cluster seconds per step] of one configuration (empty when it failed, with the reason on stderr)."""
    ports = iter(free_ports(n + 1))
    cluster = {"worker": [f"localhost:{next(ports)}" for _ in range(n)]}
    if mode == "ps":
        cluster["ps"] = [f"localhost:{next(ports)}"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    # one BLAS thread per process: numpy's multithreaded OpenBLAS spin-waits when processes share the
    # cores (a 64x64 @ 64x128 matmul took 4 ms instead of 0.15 ms on a loaded 2-core machine, and one
    # all-reduce worker ran 8 steps/s with 2 threads, 1313 with 1); TensorFlow's kernels (Eigen) are
    # not affected by it
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    worker_mode = "ps" if mode == "ps" else "allreduce"

    def start(job, i):
        return subprocess.Popen([sys.executable, "-m", "benchmarks.w8_worker", system, worker_mode, json.dumps(cluster),
                                 job, str(i), str(steps)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    ps = start("ps", 0) if mode == "ps" else None
    workers = [start("worker", i) for i in range(n)]
    samples = []
    try:
        for i, w in enumerate(workers):
            try:
                out, err = w.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                w.kill()
                out, err = w.communicate()
            line = next((x for x in out.splitlines() if x.startswith("STEPS ")), None)
            if line is None:
                print(f"warning: W8 {system} {mode} {n} workers: worker {i} exited {w.returncode}: "
                      f"{err.strip().splitlines()[-1:] or ''}", file=sys.stderr)
                return []
            samples += [s / n for s in json.loads(line[len("STEPS "):])]
    finally:
        for p in workers + ([ps] if ps else []):
            if p.poll() is None:
                p.kill()
            p.communicate()
    return samples


def run(system, modes=MODES, workers=WORKERS):
    """{"W8 <mode> <n> workers": samples} for every mode and worker count."""
    out = {}
    for mode in modes:
        for n in workers:
            samples = run_config(system, mode, n)
            if samples:
                out[f"W8 {mode} {n} workers"] = samples
    return out


def report(results):
    """The scaling table (cluster steps per second) and the issue's target line."""
    import statistics
    print(f"\nW8 cluster steps/s (median; batch 64 per worker step){'':<6}" +
          "".join(f"{n:>10} w" for n in WORKERS))
    rates = {}
    for system, res in results.items():
        for mode in MODES:
            row = []
            for n in WORKERS:
                s = res.get(f"W8 {mode} {n} workers")
                rate = 1.0 / statistics.median(s) if s else None
                rates[(system, mode, n)] = rate
                row.append(f"{rate:>12.1f}" if rate else f"{'-':>12}")
            print(f"  {system + ' ' + mode:<56}" + "".join(row))
    ours, theirs = rates.get(("tensorgrid", "all-reduce", 4)), rates.get(("tensorflow", "ps", 4))
    if ours and theirs:
        print(f"W8 target: tensorgrid all-reduce / TensorFlow ps at 4 workers = {ours / theirs:.2f}x (target >= 1.5x)")
