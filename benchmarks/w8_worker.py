"""One task of benchmark W8: data-parallel training of the demo's MLP, for tensorgrid or TensorFlow.

    python -m benchmarks.w8_worker SYSTEM MODE CLUSTER_JSON JOB INDEX STEPS

SYSTEM tensorgrid | tensorflow; MODE ps (TF1 between-graph replication: tf.train.Server per task,
the variables on /job:ps/task:0 by replica_device_setter, each worker its own client and Adam
steps) or allreduce (TF2 MultiWorkerMirroredStrategy from TF_CONFIG: each worker its own copy of the
variables, gradients all-reduced every step, then Adam on each copy). A ps task only serves. A
worker prints `STEPS <json list of seconds per step>` after its warm-up steps.
"""

import json
import os
import sys
import time

import numpy as np

WARMUP = 5
BATCH = 64


def _import(system, v1):
    if system == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
    else:
        import tensorgrid as tf
    if v1:
        tf = tf.compat.v1
        tf.disable_eager_execution()
    return tf


def _data():
    from tensorgrid.demo import load_digits
    x, y, _, _ = load_digits()
    return x, y


def _batches(x, y, index, steps):
    for i in range(steps):
        lo = ((i * 4 + index) * BATCH) % (len(x) - BATCH)
        yield x[lo:lo + BATCH], y[lo:lo + BATCH]


def run_ps(system, cluster, job, index, steps):
    tf = _import(system, v1=True)
    server = tf.train.Server(tf.train.ClusterSpec(cluster), job_name=job, task_index=index)
    if job == "ps":
        server.join()
        return
    from tensorgrid.demo import build_model
    x, y = _data()
    worker = f"/job:worker/task:{index}"
    with tf.device(tf.train.replica_device_setter(worker_device=worker, cluster=cluster)):
        m = build_model(tf, "/job:ps/task:0", [worker, worker])
    with tf.Session(server.target) as sess:
        if index == 0:
            sess.run(m["init"])
        else:
            while sess.run(tf.report_uninitialized_variables()).size:
                time.sleep(0.05)
        _time_steps(lambda xb, yb: sess.run(m["train_op"], {m["x"]: xb, m["y"]: yb}), x, y, index, steps)


def run_allreduce(system, cluster, index, steps):
    os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    tf = _import(system, v1=False)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x, y = _data()
    rng = np.random.RandomState(0)

    def glorot(shape):
        limit = np.sqrt(6.0 / (shape[0] + shape[1]))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    with strategy.scope():
        weights = [tf.Variable(glorot((64, 128))), tf.Variable(np.zeros(128, np.float32)),
                   tf.Variable(glorot((128, 10))), tf.Variable(np.zeros(10, np.float32))]
        opt = tf.compat.v1.train.AdamOptimizer(0.01)
    n = strategy.num_replicas_in_sync

    def replica_step(xb, yb):
        w1, b1, w2, b2 = weights
        with tf.GradientTape() as tape:
            logits = tf.matmul(tf.nn.relu(tf.matmul(xb, w1) + b1), w2) + b2
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits)) / n
        grads = tape.gradient(loss, weights)
        opt.apply_gradients(zip(grads, weights))   # sums the replicas' gradients: the global batch's mean
        return loss

    @tf.function
    def train_step(xb, yb):
        return strategy.run(replica_step, args=(xb, yb))

    _time_steps(lambda xb, yb: train_step(tf.constant(xb), tf.constant(yb)), x, y, index, steps)


def _time_steps(step, x, y, index, steps):
    out = []
    for i, (xb, yb) in enumerate(_batches(x, y, index, WARMUP + steps)):
        t0 = time.perf_counter()
        step(xb, yb)
        if i >= WARMUP:
            out.append(time.perf_counter() - t0)
    print("STEPS " + json.dumps(out), flush=True)


def main(argv):
    system, mode, cluster, job, index, steps = argv[0], argv[1], json.loads(argv[2]), argv[3], int(argv[4]), \
        int(argv[5])
    if mode == "ps":
        run_ps(system, cluster, job, index, steps)
    else:
        run_allreduce(system, cluster, index, steps)


if __name__ == "__main__":
    main(sys.argv[1:])
