"""Input pipeline throughput: elements/s of a typical training input, tensorgrid and tf.data.

    python -m benchmarks.data [--epochs 5] [--no-tensorflow]

The pipeline is `from_tensor_slices((x, y)).shuffle(1000).batch(128).prefetch(1)`
over a 60000x784 float32 array and its int64 labels, iterated eagerly in Python
as Keras's fit does (elements as eager tensors). Each system runs in a child
process of its own, one after the other, so they do not share the CPUs. An epoch
is timed from creating the iterator to its last batch; the first epoch is a
warm-up and not counted. Prints one JSON line per system and the ratio.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, COLS, BATCH, BUFFER = 60000, 784, 128, 1000


def _data():
    rng = np.random.default_rng(0)
    return rng.random((ROWS, COLS), dtype=np.float32), rng.integers(0, 10, ROWS).astype(np.int64)


def _epochs(m, epochs):
    """Seconds per epoch of the pipeline built with module m (tensorgrid or tensorflow)."""
    x, y = _data()
    ds = m.data.Dataset.from_tensor_slices((x, y)).shuffle(BUFFER, seed=1).batch(BATCH).prefetch(1)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        count = 0
        for xb, yb in ds:
            count += int(xb.shape[0])
        times.append(time.perf_counter() - t0)
        assert count == ROWS, count
    return times[1:]


def _child(system, epochs):
    if system == "tensorflow":
        import tensorflow as m
    else:
        import tensorgrid as m
    times = _epochs(m, epochs)
    xs = sorted(times)
    print(json.dumps({"workload": "data: from_tensor_slices.shuffle(1000).batch(128).prefetch(1), 60000x784 f32",
                      "system": system, "median_s": statistics.median(xs), "p10_s": xs[0], "p90_s": xs[-1],
                      "n": len(xs), "elements_per_s": ROWS / statistics.median(xs)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--no-tensorflow", action="store_true")
    parser.add_argument("--child", choices=["tensorgrid", "tensorflow"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.epochs)
        return 0
    systems = ["tensorgrid"] + ([] if args.no_tensorflow else ["tensorflow"])
    results = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for system in systems:
        out = subprocess.run([sys.executable, "-m", "benchmarks.data", "--child", system, "--epochs",
                              str(args.epochs)], cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return out.returncode
        line = json.loads(out.stdout.strip().splitlines()[-1])
        results[system] = line
        print(json.dumps(line))
    if "tensorflow" in results:
        ratio = results["tensorgrid"]["elements_per_s"] / results["tensorflow"]["elements_per_s"]
        print(f"tensorgrid {results['tensorgrid']['elements_per_s']:,.0f} elements/s, tf.data "
              f"{results['tensorflow']['elements_per_s']:,.0f} elements/s: {ratio:.2f}x")
    return 0

if __name__ == "__main__":
    sys.exit(main())
