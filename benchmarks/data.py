"""Input pipeline throughput: elements/s of typical training inputs, tensorgrid and tf.data.

    python -m benchmarks.data [--epochs 5] [--workload slices|tfrecord|all] [--no-tensorflow]

- slices: `from_tensor_slices((x, y)).shuffle(1000).batch(128).prefetch(1)` over a
  60000x784 float32 array and its int64 labels.
- tfrecord: `TFRecordDataset(file).batch(128).map(parse_example).prefetch(1)` over
  20000 tf.train.Examples of 784 floats and an int64 label (one uncompressed file,
  written once by tensorgrid's writer and read by both systems).

Each pipeline is iterated eagerly in Python as Keras's fit does (elements as eager
tensors). Each system runs in a child process of its own, one after the other, so
they do not share the CPUs. An epoch is timed from creating the iterator to its
last batch; the first epoch is a warm-up and not counted. Prints one JSON line per
system and workload, and the ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, COLS, BATCH, BUFFER = 60000, 784, 128, 1000
RECORDS = 20000
WORKLOADS = {
    "slices": "data: from_tensor_slices.shuffle(1000).batch(128).prefetch(1), 60000x784 f32",
    "tfrecord": "data: TFRecordDataset.batch(128).map(parse_example).prefetch(1), 20000 Examples of 784 f32",
}


def _data():
    rng = np.random.default_rng(0)
    return rng.random((ROWS, COLS), dtype=np.float32), rng.integers(0, 10, ROWS).astype(np.int64)


def _slices(m, path):
    x, y = _data()
    return m.data.Dataset.from_tensor_slices((x, y)).shuffle(BUFFER, seed=1).batch(BATCH).prefetch(1), ROWS


def _tfrecord(m, path):
    spec = {"image": m.io.FixedLenFeature([COLS], m.float32), "label": m.io.FixedLenFeature([], m.int64)}
    ds = m.data.TFRecordDataset(path).batch(BATCH).map(lambda s: m.io.parse_example(s, spec)).prefetch(1)
    return ds.map(lambda e: (e["image"], e["label"])), RECORDS


def write_records(path):
    """RECORDS Examples (784 floats, an int64 label) into one TFRecord file, with tensorgrid's writer."""
    import tensorgrid as tg
    x, y = _data()
    with tg.io.TFRecordWriter(path) as w:
        for i in range(RECORDS):
            w.write(tg.train.Example(features=tg.train.Features(feature={
                "image": tg.train.Feature(float_list=tg.train.FloatList(value=x[i])),
                "label": tg.train.Feature(int64_list=tg.train.Int64List(value=[int(y[i])]))})).SerializeToString())


def _epochs(m, workload, epochs, path):
    """Seconds per epoch of the workload's pipeline built with module m (tensorgrid or tensorflow)."""
    ds, rows = {"slices": _slices, "tfrecord": _tfrecord}[workload](m, path)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        count = 0
        for xb, yb in ds:
            count += int(xb.shape[0])
        times.append(time.perf_counter() - t0)
        assert count == rows, count
    return times[1:], rows


def _child(system, workload, epochs, path):
    if system == "tensorflow":
        import tensorflow as m
    else:
        import tensorgrid as m
    times, rows = _epochs(m, workload, epochs, path)
    xs = sorted(times)
    print(json.dumps({"workload": WORKLOADS[workload], "system": system, "median_s": statistics.median(xs),
                      "p10_s": xs[0], "p90_s": xs[-1], "n": len(xs), "elements_per_s": rows / statistics.median(xs)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workload", choices=sorted(WORKLOADS) + ["all"], default="all")
    parser.add_argument("--no-tensorflow", action="store_true")
    parser.add_argument("--child", choices=["tensorgrid", "tensorflow"], help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.workload, args.epochs, args.records)
        return 0
    systems = ["tensorgrid"] + ([] if args.no_tensorflow else ["tensorflow"])
    workloads = sorted(WORKLOADS) if args.workload == "all" else [args.workload]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "examples.tfrecord")
        if "tfrecord" in workloads:
            write_records(path)
        for workload in workloads:
            results = {}
            for system in systems:
                out = subprocess.run([sys.executable, "-m", "benchmarks.data", "--child", system, "--workload",
                                      workload, "--epochs", str(args.epochs), "--records", path],
                                     cwd=ROOT, env=env, capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return out.returncode
                results[system] = json.loads(out.stdout.strip().splitlines()[-1])
                print(json.dumps(results[system]))
            if "tensorflow" in results:
                ours, theirs = results["tensorgrid"]["elements_per_s"], results["tensorflow"]["elements_per_s"]
                print(f"{workload}: tensorgrid {ours:,.0f} elements/s, tf.data {theirs:,.0f} elements/s: "
                      f"{ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
