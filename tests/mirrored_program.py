"""MirroredStrategy over two logical CPU devices of one process: a TF2 custom training loop.

    python tests/mirrored_program.py OUT_JSON [--optimizer=manual|keras|v1] [--replicas=N]

mwms_train's model and data: each global batch is split between the replicas, each replica's
gradients (of its loss scaled by the global batch) are summed over the replicas, so the weights equal
full-batch gradient descent (mwms_train.reference()). TG_USE_TF=1 runs it with TensorFlow, its CPU
split into logical devices as TF requires.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "distribute"))
from mwms_train import GLOBAL_BATCH, initial_weights, make_data, make_optimizer, replica_step  # noqa: E402


def main(out_path, optimizer_kind, replicas):
    global strategy   # a module global: TF's autograph loses free variables of nested functions
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
    with strategy.scope():
        weights = [tf.Variable(w) for w in initial_weights()]
        opt = make_optimizer(optimizer_kind)
    x, y = make_data()
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH))

    @tf.function
    def train_step(xb, yb):
        per_replica = strategy.run(functools.partial(replica_step, weights, opt), args=(xb, yb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    losses = [float(train_step(xb, yb)) for xb, yb in dist]
    components = [[c.numpy().tolist() for c in strategy.experimental_local_results(w)] for w in weights]
    with open(out_path, "w") as f:
        json.dump({"losses": losses, "weights": [w.numpy().tolist() for w in weights], "components": components,
                   "replicas": strategy.num_replicas_in_sync,
                   "devices": [[c.device for c in strategy.experimental_local_results(w)] for w in weights]}, f)
    print(f"done, loss {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)


if __name__ == "__main__":
    kind = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--optimizer=")), "manual")
    n = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--replicas=")), "2"))
    main(sys.argv[1], kind, n)
