"""One worker of tests/test_distribute.py's Keras fit under MultiWorkerMirroredStrategy (TF_CONFIG names it).

argv: the output JSON path. A Dense(1) model compiled in strategy.scope() fits 3 steps of SGD on a
global batch of 64 rows (each worker gets its share of every batch); writes the weights and losses.
"""

import json
import sys

import numpy as np

import tensorgrid as tf

STEPS, LR = 3, 0.1


def data():
    rng = np.random.RandomState(0)
    return rng.randn(64, 8).astype(np.float32), rng.randn(64, 1).astype(np.float32)


def reference():
    """[kernel, bias] of full-batch gradient descent on the mean squared error, in NumPy (float64)."""
    x, y = (a.astype(np.float64) for a in data())
    w, b = np.ones((8, 1)), np.zeros(1)
    for _ in range(STEPS):
        e = x @ w + b - y
        w, b = w - LR * 2 * x.T @ e / len(x), b - LR * 2 * e.mean(0)
    return [w, b]


def main(out):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x, y = data()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(8,), kernel_initializer="ones")])
        model.compile(optimizer=tf.keras.optimizers.SGD(LR), loss="mse")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x)).repeat()
    history = model.fit(ds, epochs=1, steps_per_epoch=STEPS, verbose=0)
    with open(out, "w") as f:
        json.dump({"weights": [w.tolist() for w in model.get_weights()], "replicas": strategy.num_replicas_in_sync,
                   "loss": history.history["loss"]}, f)


if __name__ == "__main__":
    main(sys.argv[1])
