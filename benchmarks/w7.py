"""W7: Keras `fit` throughput of an MLP 784-256-256-10 (batch 128, Adam), samples per second.

Three configurations, each in a process of its own, in one run:
- tensorgrid in-process: `tg.keras` fit, the train step one tg.function on this process's CPU;
- tensorgrid on a cluster (a master and two worker processes of this machine): connected with
  `tg.config.experimental_connect_to_host`, the model's variables made under
  `tg.device("/job:worker/task:0")` and fit called under `tg.device("/job:worker/task:1")`, so each
  step reads the weights from worker 0, computes forward and backward on worker 1 and sends the
  gradients back to worker 0 for Adam's update;
- tf.keras (Keras 3 on TensorFlow) in-process, where TensorFlow is installed.
A sample is the time of one train step in the second and later epochs (a callback's
on_train_batch_end to on_train_batch_end), so tracing and the first epoch are excluded. For the
cluster, one extra traced step (RunMetadata) says where the step's time goes: per device, the sum of
its kernels' times, and the time spent waiting in _Recv.
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 128
STEPS_PER_EPOCH = 30
EPOCHS = 4
CONFIGS = (("tensorgrid", "in-process"), ("tensorgrid", "cluster"), ("tensorflow", "in-process"))


def _model(keras):
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)])


def _data():
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.random((BATCH * STEPS_PER_EPOCH, 784), dtype=np.float32)
    y = rng.integers(0, 10, BATCH * STEPS_PER_EPOCH).astype(np.int32)
    return x, y


def _timed_fit(keras, model, x, y):
    """Step times (s) of epochs 2.. of fit."""
    times = []

    class StepTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if self.epoch_index > 0:
                times.append(now - self.last)
            self.last = now

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_index += 1
    cb = StepTimes()
    cb.epoch_index = 0
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[cb])
    return times


def _compile(keras, model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def _where_time_goes(model, x, y):
    """{device: {"kernels_ms", "recv_wait_ms"}} and the step's wall time, from one traced step."""
    from tensorgrid.demo_keras import trace_train_step
    start = time.perf_counter()
    metadata = trace_train_step(model, x[:BATCH], y[:BATCH])
    wall = time.perf_counter() - start
    op_of = {node.name: node.op for graph in metadata.partition_graphs for node in graph.node}
    out = {}
    for dev in metadata.step_stats.dev_stats:
        kernels = recv = 0
        for node in dev.node_stats:
            duration = node.all_end_rel_micros / 1e3
            if op_of.get(node.node_name) == "_Recv":
                recv += duration
            else:
                kernels += duration
        out[dev.device] = {"kernels_ms": round(kernels, 3), "recv_wait_ms": round(recv, 3)}
    return {"traced_step_wall_ms": round(wall * 1e3, 3), "devices": out}


def child(system, mode):
    """Runs one configuration; prints STEPS [...] (and WHERE {...} on a cluster)."""
    x, y = _data()
    if system == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
        model = _model(keras)
        _compile(keras, model)
        print("STEPS " + json.dumps(_timed_fit(keras, model, x, y)), flush=True)
        return 0
    import tensorgrid as tg
    from tensorgrid import keras
    if mode == "in-process":
        model = _model(keras)
        _compile(keras, model)
        print("STEPS " + json.dumps(_timed_fit(keras, model, x, y)), flush=True)
        return 0
    from tensorgrid.client import remote_eager
    from tensorgrid.runtime.cluster import LocalCluster
    with LocalCluster(num_workers=2) as cluster:
        tg.config.experimental_connect_to_host(cluster.target)
        try:
            with tg.device("/job:worker/task:0"):
                model = _model(keras)
                _compile(keras, model)
            with tg.device("/job:worker/task:1"):
                times = _timed_fit(keras, model, x, y)
                where = _where_time_goes(model, x, y)
        finally:
            remote_eager.disconnect()
    print("STEPS " + json.dumps(times), flush=True)
    print("WHERE " + json.dumps(where), flush=True)
    return 0


NAMES = {("tensorgrid", "in-process"): "W7 keras fit (in-process)", ("tensorgrid", "cluster"): "W7 keras fit (cluster)",
         ("tensorflow", "in-process"): "W7 keras fit"}


def run(timeout=900):
    """({system: {workload name: [seconds per step]}}, the cluster's time breakdown) for every configuration
    this machine can run; names as the suite's table pairs them (TF's "W7 keras fit" beside both of ours)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    results, where = {"tensorgrid": {}, "tensorflow": {}}, None
    for system, mode in CONFIGS:
        if system == "tensorflow" and subprocess.run([sys.executable, "-c", "import keras, tensorflow"],
                                                     capture_output=True).returncode != 0:
            continue
        proc = subprocess.run([sys.executable, "-m", "benchmarks.w7", system, mode], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.splitlines()
        steps = next((json.loads(x[6:]) for x in lines if x.startswith("STEPS ")), None)
        if steps is None:
            print(f"warning: W7 {system} {mode} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            continue
        results[system][NAMES[(system, mode)]] = steps
        where = next((json.loads(x[6:]) for x in lines if x.startswith("WHERE ")), where)
    return results, where


def report(results, where):
    """Prints samples/s per configuration, the ratios to tf.keras, and where the cluster's step time goes."""
    import statistics
    rate = {(system, name): BATCH / statistics.median(samples)
            for system in ("tensorgrid", "tensorflow") for name, samples in results.get(system, {}).items()
            if name.startswith("W7") and samples}
    tf = rate.get(("tensorflow", "W7 keras fit"))
    print("\nW7 Keras fit, MLP 784-256-256-10, batch 128, Adam (samples/s, median step):")
    for (system, name), r in rate.items():
        where_run = "in-process" if system == "tensorflow" else name.split("(")[1].rstrip(")")
        ratio = f"  {r / tf:.2f}x tf.keras" if tf and system == "tensorgrid" else ""
        label = "tf.keras" if system == "tensorflow" else "tensorgrid"
        print(f"  {label} {where_run:<18}{r:>12.0f} samples/s{ratio}")
    if where:
        print(f"  cluster: one traced step took {where['traced_step_wall_ms']:.1f} ms; per device, kernel time and "
              f"time waiting in _Recv:")
        for device, t in where["devices"].items():
            print(f"    {device:<46}{t['kernels_ms']:>9.2f} ms kernels{t['recv_wait_ms']:>9.2f} ms recv")


def main():
    if len(sys.argv) == 3:
        return child(sys.argv[1], sys.argv[2])
    results, where = run()
    report(results, where)
    return 0 if results["tensorgrid"] else 1


if __name__ == "__main__":
    sys.exit(main())
