"""`tensorgrid demo`: trains an MLP on scikit-learn's handwritten digits across a cluster.

The variables live on a parameter-server task (/job:ps/task:0); the first
layer runs on /job:worker/task:0 and the second layer and the loss on
/job:worker/task:1, so every step moves activations and gradients between
workers through send/recv. With no --target the demo starts a local cluster
of its own (a master, one ps and two worker processes). It prints a progress
bar with the loss and the test accuracy, and writes the Chrome trace of one
traced step (trace.json, open it in Perfetto) and a picture of the
partitioned graph (partitions.svg) into --out. Its own cluster's master
serves the live dashboard (the URL is printed) and keeps its history in
<out>/dashboard, which `tensorgrid dashboard --from` opens afterwards.

The model is written against the TF1 API so the benchmark suite (W5) runs
the same code on TensorFlow. `--keras` trains a Keras CNN with `fit` across
the same cluster instead (tensorgrid/demo_keras.py).
"""

import argparse
import os
import sys
import time

import numpy as np


def load_digits(seed=0):
    """Digits scaled to [0, 1], split 80/20 into (x_train, y_train, x_test, y_test)."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise SystemExit("tensorgrid demo: scikit-learn is not installed; run: pip install scikit-learn")
    data = _load()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(len(x) * 0.8)
    return x[:split], y[:split], x[split:], y[split:]


def build_model(tf, ps_device, worker_devices, n_in=64, hidden=128, n_out=10, learning_rate=0.01, seed=0):
    """The demo's MLP as a TF1 graph in the default graph; returns a dict of its tensors and ops."""
    rng = np.random.RandomState(seed)

    def glorot(shape):
        limit = np.sqrt(6.0 / (shape[0] + shape[1]))
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    with tf.device(ps_device):
        w1 = tf.Variable(glorot((n_in, hidden)), name="w1")
        b1 = tf.Variable(np.zeros(hidden, np.float32), name="b1")
        w2 = tf.Variable(glorot((hidden, n_out)), name="w2")
        b2 = tf.Variable(np.zeros(n_out, np.float32), name="b2")
    x = tf.placeholder(tf.float32, [None, n_in], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    with tf.device(worker_devices[0]):
        h = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1), name="hidden")
    with tf.device(worker_devices[1]):
        logits = tf.nn.bias_add(tf.matmul(h, w2), b2)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        correct = tf.equal(tf.argmax(logits, 1), y)
        accuracy = tf.reduce_mean(tf.cast(correct, tf.float32), name="accuracy")
    train_op = tf.train.AdamOptimizer(learning_rate).minimize(loss)
    init = tf.global_variables_initializer()
    return {"x": x, "y": y, "loss": loss, "accuracy": accuracy, "train_op": train_op, "init": init}


def time_training_steps(tf, target, ps_device, worker_devices, steps=60, warmup=5, batch=64):
    """Seconds per training step of the demo's model on `target` (benchmark W5)."""
    x_train, y_train, _, _ = load_digits()
    g = tf.Graph()
    with g.as_default():
        m = build_model(tf, ps_device, worker_devices)
        with tf.Session(target, graph=g) as sess:
            sess.run(m["init"])
            out = []
            for i in range(warmup + steps):
                lo = (i * batch) % (len(x_train) - batch)
                feed = {m["x"]: x_train[lo:lo + batch], m["y"]: y_train[lo:lo + batch]}
                t0 = time.perf_counter()
                sess.run(m["train_op"], feed)
                if i >= warmup:
                    out.append(time.perf_counter() - t0)
    return out


def _bar(step, total, loss, width=30):
    done = int(width * step / total)
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] step {step:4d}/{total}  loss {loss:.4f}")
    sys.stderr.flush()


def train(target, out_dir, steps=400, batch=64, ps_device="/job:ps/task:0",
          worker_devices=("/job:worker/task:0", "/job:worker/task:1")):
    """Trains the demo model on `target`; returns the test accuracy."""
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    x_train, y_train, x_test, y_test = load_digits()
    g = tf.Graph()
    with g.as_default():
        m = build_model(tf, ps_device, list(worker_devices))
        with tf.Session(target, graph=g) as sess:
            sess.run(m["init"])
            rng = np.random.RandomState(1)
            loss = float("nan")
            for step in range(1, steps + 1):
                idx = rng.randint(0, len(x_train), batch)
                _, loss = sess.run([m["train_op"], m["loss"]], {m["x"]: x_train[idx], m["y"]: y_train[idx]})
                if step % 10 == 0 or step == steps:
                    _bar(step, steps, loss)
            sys.stderr.write("\n")
            accuracy = sess.run(m["accuracy"], {m["x"]: x_test, m["y"]: y_test})
            md = tf.RunMetadata()
            sess.run([m["train_op"], m["loss"]], {m["x"]: x_train[:batch], m["y"]: y_train[:batch]},
                     options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=md)
    print(f"test accuracy: {accuracy:.4f}")
    write_step_views(md, out_dir, "one training step of the demo MLP, partitioned per device")
    return accuracy


def write_step_views(run_metadata, out_dir, title):
    """Writes one traced step's Chrome trace and partition SVG under out_dir, and says where."""
    from tensorgrid.client import profiler
    from tensorgrid.runtime import visualize
    os.makedirs(out_dir, exist_ok=True)
    trace_path = os.path.join(out_dir, "trace.json")
    with open(trace_path, "w") as f:
        f.write(profiler.chrome_trace(run_metadata))
    svg_path = os.path.join(out_dir, "partitions.svg")
    with open(svg_path, "w") as f:
        f.write(visualize.partition_svg(visualize.partitions_from_metadata(run_metadata), title=title))
    print(f"wrote {trace_path} (open in https://ui.perfetto.dev) and {svg_path}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="tensorgrid demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", help="grpc://HOST:PORT of a running master (needs a ps job and two workers); "
                                    "default: start a local cluster")
    p.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    p.add_argument("--keras", action="store_true",
                   help="train a Keras CNN with fit() (tensorgrid.keras) instead of the TF1 MLP")
    p.add_argument("--epochs", type=int, default=12, help="with --keras: epochs of fit (default 12)")
    p.add_argument("--out", default="tensorgrid-demo", help="folder for trace.json and partitions.svg")
    p.add_argument("--dashboard-port", type=int, default=0,
                   help="port of the local cluster's dashboard (default 0: any free port; -1: none)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.epochs < 1:
        p.error("--epochs must be at least 1")

    def run(target):
        if args.keras:
            from tensorgrid import demo_keras
            return demo_keras.train(target, args.out, epochs=args.epochs)
        return train(target, args.out, args.steps)
    if args.target:
        accuracy = run(args.target)
    else:
        from tensorgrid.runtime.cluster import LocalCluster
        print("starting a local cluster: a master, /job:ps/task:0, /job:worker/task:0 and /job:worker/task:1")
        history = os.path.join(args.out, "dashboard")
        dashboard = [] if args.dashboard_port < 0 else ["--dashboard-port", str(args.dashboard_port),
                                                        "--history-dir", os.path.abspath(history)]
        with LocalCluster(num_workers=2, num_ps=1, extra_master_args=dashboard) as cluster:
            if dashboard:
                print(f"dashboard: {cluster.dashboard_url} (live while the demo trains; afterwards: "
                      f"tensorgrid dashboard --from {history})", flush=True)
            accuracy = run(cluster.target)
    return 0 if accuracy >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
