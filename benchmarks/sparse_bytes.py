"""Bytes the data plane moves per training step of an embedding model whose table lives on a ps task.

    python benchmarks/sparse_bytes.py [--rows 1000000] [--dim 64] [--batch 128] [--steps 10]
                                      [--optimizer sgd|momentum|adagrad|rmsprop|adam]

starts a local cluster (a master, /job:worker/task:0 and /job:ps/task:0),
puts a rows x dim float32 embedding (and a dim x 1 dense layer) on the ps
task and the batch's ids, the model and the loss on the worker, and trains.
Each step's gradient of the table is an IndexedSlices, so what crosses is
the ids (worker -> ps), the gathered rows (ps -> worker) and their gradient
rows (worker -> ps), not the table. The figure is the growth of the
`bytes_sent_*` counters (every path: shm, tcp, grpc, unix) that each task's
data plane reports through GetStatus, summed over the tasks, per step,
after warm-up steps. Prints one JSON line:
{"benchmark": "sparse_bytes", "optimizer", "rows", "dim", "batch", "bytes_per_step",
 "slice_bytes" (ids + one batch of rows each way), "table_bytes", "step_s"}.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

OPTIMIZERS = {
    "sgd": lambda tf: tf.train.GradientDescentOptimizer(0.1),
    "momentum": lambda tf: tf.train.MomentumOptimizer(0.1, 0.9),
    "adagrad": lambda tf: tf.train.AdagradOptimizer(0.1),
    "rmsprop": lambda tf: tf.train.RMSPropOptimizer(0.01),
    "adam": lambda tf: tf.train.AdamOptimizer(0.01),
}


def data_plane_bytes_sent(cluster):
    """The sum over the cluster's tasks of their data planes' bytes_sent_* counters (GetStatus)."""
    import grpc

    from tensorgrid import security
    from tensorgrid.proto import worker_pb2
    total = 0
    for job, count in (("worker", cluster.num_workers), ("ps", cluster.num_ps)):
        for i in range(count):
            channel = grpc.insecure_channel(cluster.worker_info(i, job)["address"])
            try:
                reply = worker_pb2.GetStatusResponse.FromString(
                    channel.unary_unary("/tensorgrid.v1.WorkerService/GetStatus")(
                        worker_pb2.GetStatusRequest().SerializeToString(), timeout=10,
                        metadata=security.call_metadata(cluster.token)))
            finally:
                channel.close()
            total += sum(v for k, v in reply.transport.items() if k.startswith("bytes_sent_"))
    return total


def measure(cluster, rows=1_000_000, dim=64, batch=128, steps=10, warmup=2, optimizer="sgd"):
    """Trains the model on `cluster` (a LocalCluster with a worker and a ps task); returns the JSON dict."""
    import tensorgrid.compat.v1 as tf
    rng = np.random.RandomState(0)
    g = tf.Graph()
    with g.as_default():
        with tf.device("/job:ps/task:0"):
            table = tf.Variable(tf.random_uniform([rows, dim], -0.05, 0.05, seed=1), name="embedding")
            dense = tf.Variable(tf.ones([dim, 1]), name="dense")
        with tf.device("/job:worker/task:0"):
            ids = tf.placeholder(tf.int32, [batch], name="ids")
            labels = tf.placeholder(tf.float32, [batch, 1], name="labels")
            loss = tf.reduce_mean(tf.square(tf.matmul(tf.nn.embedding_lookup(table, ids), dense) - labels))
            train = OPTIMIZERS[optimizer](tf).minimize(loss)
        with tf.Session(cluster.target, graph=g) as sess:
            sess.run(tf.global_variables_initializer())

            def step():
                return sess.run([loss, train], {ids: rng.randint(0, rows, batch), labels: rng.randn(batch, 1)})[0]
            for _ in range(warmup):
                step()
            before, t0 = data_plane_bytes_sent(cluster), time.perf_counter()
            for _ in range(steps):
                step()
            elapsed, after = time.perf_counter() - t0, data_plane_bytes_sent(cluster)
    tf.Session.reset(cluster.target)
    return {"benchmark": "sparse_bytes", "optimizer": optimizer, "rows": rows, "dim": dim, "batch": batch,
            "bytes_per_step": (after - before) / steps, "slice_bytes": batch * 4 + 2 * batch * dim * 4,
            "table_bytes": rows * dim * 4, "step_s": elapsed / steps}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    args = p.parse_args(argv)
    from tensorgrid.runtime.cluster import LocalCluster
    with LocalCluster(num_workers=1, num_ps=1) as cluster:
        print(json.dumps(measure(cluster, args.rows, args.dim, args.batch, args.steps, optimizer=args.optimizer)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
