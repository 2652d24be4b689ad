"""The GPU checks, as one script for a machine with an NVIDIA GPU (CuPy installed):

    pip install --no-deps -e . && python benchmarks/gpu.py [--skip-tests] [--budget-s 480]

(a) the GPU tests (tests/test_gpu.py) and the op battery on a GPU (the `gpu` executor of
    tests/conftest.py: every op test's ops placed on GPU:0 of a local cluster, checked against NumPy);
(b) the demo MLP with its layers on GPU:0 and CPU:0 of two tasks against the CPU-only run (a test of
    tests/test_gpu.py, so it runs in (a));
(c) benchmarks: a chain of 20 float32 4096x4096 matmuls on GPU:0 through tensorgrid against the same
    chain in CuPy directly (target >= 0.9x CuPy's speed), and the bandwidth of a 256 MiB CPU->GPU and
    GPU->CPU send/recv between devices of one worker (the receiving _Recv's time in the step's trace,
    which is its one host<->GPU copy) against cupy.asarray / cupy.asnumpy and a pinned-memory copy of the same
    array (target >= 0.8x the pinned copy).

Each part prints what it measured and goes on when another part fails; the last line is one JSON
object with every figure. Without a GPU it says so and exits 2.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATTERY = ["tests/test_math_ops.py", "tests/test_array_ops.py", "tests/test_nn_ops.py",
           "tests/test_random_ops.py", "tests/test_misc_ops.py", "tests/test_scatter_ops.py",
           "tests/test_embedding_ops.py", "tests/test_control_flow.py"]
N, CHAIN = 4096, 20
TRANSFER_BYTES = 256 << 20
GPU = "/job:worker/task:0/device:GPU:0"
CPU = "/job:worker/task:0/device:CPU:0"


def _timed(fn, n, warmup=2):
    """(median, p10, p90) seconds of fn over n runs after warm-up."""
    from benchmarks.workloads import _timed as samples
    out = samples(fn, n, warmup)
    return float(np.median(out)), float(np.percentile(out, 10)), float(np.percentile(out, 90))


def run_tests(budget_s):
    """(a)+(b): pytest over the GPU tests and the battery's gpu executor; returns the summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_gpu.py",
           *BATTERY, "-k", "gpu"]
    print("$", " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget_s)
    except subprocess.TimeoutExpired as e:
        print((e.stdout or b"")[-4000:] if isinstance(e.stdout, str) else "", flush=True)
        return f"timed out after {budget_s} s"
    tail = proc.stdout.strip().splitlines()
    print("\n".join(tail[-60:]), flush=True)
    return tail[-1] if tail else f"pytest exited {proc.returncode} with no output: {proc.stderr[-2000:]}"


def cupy_chain(cp):
    rng = cp.random.default_rng(0)
    x = rng.standard_normal((N, N), dtype=cp.float32)
    w = rng.standard_normal((N, N), dtype=cp.float32) / np.float32(np.sqrt(N))

    def step():
        y = x
        for _ in range(CHAIN):
            y = y @ w
        float(y[0, 0])  # fetch one number, as the tensorgrid step does
    return _timed(step, 10)


def tensorgrid_chain(target):
    import tensorgrid.compat.v1 as tf
    g = tf.Graph()
    with g.as_default(), tf.device(GPU):
        x = tf.Variable(tf.random.normal([N, N], seed=1), name="x")
        w = tf.Variable(tf.random.normal([N, N], seed=2) / np.sqrt(N), name="w")
        y = x
        for _ in range(CHAIN):
            y = tf.matmul(y, w)
        first = y[0, 0]
        with tf.Session(target, graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            result = _timed(lambda: sess.run(first), 10)
        tf.Session.reset(target)
    return result


def reference_copies(cp):
    """Seconds for 256 MiB: pageable asarray / asnumpy, and pinned host<->device copies."""
    host = np.ones(TRANSFER_BYTES // 4, np.float32)
    dev = cp.asarray(host)
    out = {}
    out["cupy.asarray (pageable H2D)"] = _timed(lambda: (cp.asarray(host), cp.cuda.Device().synchronize()), 5)
    out["cupy.asnumpy (pageable D2H)"] = _timed(lambda: cp.asnumpy(dev), 5)
    mem = cp.cuda.alloc_pinned_memory(TRANSFER_BYTES)
    pinned = np.frombuffer(mem, np.float32, TRANSFER_BYTES // 4)
    pinned[:] = 1.0
    stream = cp.cuda.Stream(non_blocking=True)

    def h2d():
        dev.set(pinned, stream=stream)
        stream.synchronize()

    def d2h():
        dev.get(out=pinned, stream=stream)
        stream.synchronize()
    out["pinned H2D"] = _timed(h2d, 5)
    out["pinned D2H"] = _timed(d2h, 5)
    return out


def tensorgrid_copies(target):
    """Seconds of a 256 MiB CPU->GPU and GPU->CPU send/recv within one worker, from the step's trace:
    the receiving _Recv's time, which is its host<->GPU copy. Each step makes a new tensor on one
    device (`v + 0.0`, so nothing is cached) and reads one element of it on the other; the whole
    step's time is reported beside it."""
    import tensorgrid.compat.v1 as tf
    out = {}
    for name, src, dst in (("CPU->GPU", CPU, GPU), ("GPU->CPU", GPU, CPU)):
        g = tf.Graph()
        with g.as_default():
            with tf.device(src):
                v = tf.Variable(tf.ones([TRANSFER_BYTES // 4]), name="v")
                moved = v + 0.0
            with tf.device(dst):
                far = tf.identity(moved)[0]
            with tf.Session(target, graph=g) as sess:
                sess.run(tf.global_variables_initializer())
                assert sess.run(far) == 1.0
                copies = []

                def traced_step():
                    meta = tf.RunMetadata()
                    sess.run(far, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=meta)
                    copies.append(_recv_seconds(meta, dst))
                steps = _timed(traced_step, 10)
            tf.Session.reset(target)
        copies = np.array(copies[2:])  # after the warm-up steps, as _timed's
        out[f"tensorgrid step with the {name} send/recv"] = steps
        out[f"tensorgrid send/recv {name}"] = (float(np.median(copies)), float(np.percentile(copies, 10)),
                                               float(np.percentile(copies, 90)))
    return out


def _recv_seconds(meta, device):
    """The traced time of the one large _Recv on `device` in a step's RunMetadata."""
    for dev in meta.step_stats.dev_stats:
        if dev.device.replace("/replica:0", "") != device:
            continue
        for ns in dev.node_stats:
            if "_Recv" in ns.timeline_label and ns.output and \
                    ns.output[0].tensor_description.allocation_description.requested_bytes == TRANSFER_BYTES:
                return ns.op_end_rel_micros * 1e-6
    raise RuntimeError(f"no {TRANSFER_BYTES >> 20} MiB _Recv on {device} in the step's trace")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/gpu.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-tests", action="store_true", help="only the benchmarks (c)")
    p.add_argument("--budget-s", type=int, default=420, help="time limit for the tests (a)+(b)")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    try:
        import cupy as cp
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - no CuPy or no driver
        print(f"no GPU: {type(e).__name__}: {e}")
        return 2
    if not count:
        print("no GPU: CuPy sees no device")
        return 2
    props = cp.cuda.runtime.getDeviceProperties(0)
    report = {"gpus": count, "gpu0": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
              "cupy": cp.__version__}
    print(json.dumps(report), flush=True)
    if not args.skip_tests:
        report["tests"] = run_tests(args.budget_s)
    from tensorgrid.runtime.cluster import LocalCluster
    try:
        with LocalCluster(num_workers=1, extra_worker_args=["--devices", "all"]) as cluster:
            flops = 2.0 * N ** 3 * CHAIN
            for name, fn in (("cupy matmul chain", lambda: cupy_chain(cp)),
                             ("tensorgrid matmul chain", lambda: tensorgrid_chain(cluster.target))):
                try:
                    med, p10, p90 = fn()
                    report[name] = {"median_s": med, "p10_s": p10, "p90_s": p90, "tflops": flops / med / 1e12}
                    print(f"{name:<36} {med * 1e3:9.2f} ms (p10 {p10 * 1e3:.2f}, p90 {p90 * 1e3:.2f}) "
                          f"{flops / med / 1e12:6.1f} TFLOP/s", flush=True)
                except Exception as e:  # noqa: BLE001 - report and go on
                    report[name] = f"failed: {type(e).__name__}: {e}"
                    print(name, report[name], flush=True)
            for name, fn in (("references", lambda: reference_copies(cp)),
                             ("tensorgrid", lambda: tensorgrid_copies(cluster.target))):
                try:
                    for k, (med, p10, p90) in fn().items():
                        report[k] = {"median_s": med, "p10_s": p10, "p90_s": p90, "GB_s": TRANSFER_BYTES / med / 1e9}
                        print(f"{k:<52} {med * 1e3:9.2f} ms {TRANSFER_BYTES / med / 1e9:7.2f} GB/s", flush=True)
                except Exception as e:  # noqa: BLE001
                    report[name + " copies"] = f"failed: {type(e).__name__}: {e}"
                    print(name, report[name + " copies"], flush=True)
    except Exception as e:  # noqa: BLE001 - the cluster did not start
        report["cluster"] = f"failed: {type(e).__name__}: {e}"
    ratios = {}

    def ratio(name, ours, theirs, key):
        if isinstance(report.get(ours), dict) and isinstance(report.get(theirs), dict):
            a, b = report[ours][key], report[theirs][key]
            ratios[name] = b / a if key == "median_s" else a / b  # ours against theirs: > 1 is faster
    ratio("matmul chain vs CuPy (target >= 0.9)", "tensorgrid matmul chain", "cupy matmul chain", "median_s")
    for d, ref in (("CPU->GPU", "pinned H2D"), ("GPU->CPU", "pinned D2H")):
        ratio(f"send/recv {d} vs {ref} (target >= 0.8)", f"tensorgrid send/recv {d}", ref, "GB_s")
    report["ratios"] = ratios
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
