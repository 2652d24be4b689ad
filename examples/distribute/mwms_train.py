"""Synchronous data-parallel training with MultiWorkerMirroredStrategy: a TF2 custom training loop.

Run one process per worker, each with TF_CONFIG naming the cluster and its task:

    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:23456"]},
                "task": {"type": "worker", "index": 0}}' python examples/distribute/mwms_train.py out0.json

The same script runs with TensorFlow (TG_USE_TF=1 imports tensorflow instead of tensorgrid).
Each worker trains a small MLP on its share of every global batch; the gradients are all-reduced
(SUM of losses scaled by the global batch, i.e. the global batch's mean gradient), so the weights
equal one process's full-batch gradient descent. Worker 0 writes the final weights and losses
as JSON to the path given (every worker with --all-write).
"""

import functools
import json
import os
import sys

import numpy as np

if os.environ.get("TG_USE_TF"):
    import tensorflow as tf
else:
    import tensorgrid as tf

GLOBAL_BATCH = 32
STEPS = 12
LR = 0.05
SIZES = (8, 16, 1)


def make_data(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(GLOBAL_BATCH * STEPS, SIZES[0]).astype(np.float32)
    y = (np.sin(x @ rng.randn(SIZES[0], 1)) + 0.1 * rng.randn(len(x), 1)).astype(np.float32)
    return x, y


def initial_weights(seed=1):
    rng = np.random.RandomState(seed)
    return [(rng.randn(SIZES[0], SIZES[1]) * 0.3).astype(np.float32), np.zeros(SIZES[1], np.float32),
            (rng.randn(SIZES[1], SIZES[2]) * 0.3).astype(np.float32), np.zeros(SIZES[2], np.float32)]


def main(out_path, optimizer_kind="manual"):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # a different seed per worker: the variables must still start equal (broadcast from worker 0)
    rank = strategy.cluster_resolver.task_id or 0
    with strategy.scope():
        start = initial_weights()
        if rank:
            start = [w + 1.0 for w in start]
        weights = [tf.Variable(w) for w in start]
        opt = make_optimizer(optimizer_kind)

    x, y = make_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def train_step(xb, yb):
        per_replica = strategy.run(functools.partial(replica_step, weights, opt), args=(xb, yb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    losses = [float(train_step(xb, yb)) for xb, yb in dist]
    if rank == 0 or "--all-write" in sys.argv:
        with open(out_path, "w") as f:
            json.dump({"losses": losses, "weights": [w.numpy().tolist() for w in weights],
                       "replicas": strategy.num_replicas_in_sync}, f)
    print(f"worker {rank}: done, loss {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)


def make_optimizer(kind):
    """None (gradients all-reduced and applied by hand), a TF1 ("v1") or a Keras ("keras") SGD."""
    return {"v1": lambda: tf.compat.v1.train.GradientDescentOptimizer(LR),
            "keras": lambda: tf.keras.optimizers.SGD(LR)}.get(kind, lambda: None)()


def replica_step(weights, opt, xb, yb):
    """One replica's step: its loss scaled by the global batch, the gradients summed over the replicas
    (by hand with opt None, else by the optimizer's apply_gradients), then applied."""
    w1, b1, w2, b2 = weights
    with tf.GradientTape() as tape:
        pred = tf.matmul(tf.nn.relu(tf.matmul(xb, w1) + b1), w2) + b2
        loss = tf.reduce_sum(tf.square(pred - yb)) / GLOBAL_BATCH
    grads = tape.gradient(loss, weights)
    if opt is None:
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        for w, g in zip(weights, grads):
            w.assign_sub(LR * g)
    else:
        # a TF1 or Keras optimizer's apply_gradients sums the replicas' gradients itself
        opt.apply_gradients(zip(grads, weights))
    return loss


def reference():
    """Full-batch gradient descent in NumPy: what the workers together must compute."""
    x, y = make_data()
    w1, b1, w2, b2 = initial_weights()
    losses = []
    for s in range(STEPS):
        xb, yb = x[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH], y[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH]
        h_pre = xb @ w1 + b1
        h = np.maximum(h_pre, 0)
        pred = h @ w2 + b2
        err = pred - yb
        losses.append(float(np.sum(err ** 2) / GLOBAL_BATCH))
        d_pred = 2 * err / GLOBAL_BATCH
        g_w2, g_b2 = h.T @ d_pred, d_pred.sum(0)
        d_h = (d_pred @ w2.T) * (h_pre > 0)
        g_w1, g_b1 = xb.T @ d_h, d_h.sum(0)
        w1, b1, w2, b2 = w1 - LR * g_w1, b1 - LR * g_b1, w2 - LR * g_w2, b2 - LR * g_b2
    return {"losses": losses, "weights": [w.tolist() for w in (w1, b1, w2, b2)]}


if __name__ == "__main__":
    kind = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--optimizer=")), "manual")
    main(sys.argv[1], kind)
