"""The coordinator of a ParameterServerStrategy cluster (TF2's custom training loop with a ClusterCoordinator).

    python tests/pss_coordinator.py CLUSTER_JSON OUT_JSON [--kill-pid PID --kill-after K [--expect-back | --ps-dies]]

The cluster has a chief (this process), ps and worker tasks; every other task only serves. First a
Keras model with momentum SGD takes KERAS_STEPS steps, each fetched before the next (keras_reference()).
Then:
1. synchronous use: each batch's train step is scheduled and fetched before the next one, so the
   weights follow sequential gradient descent (mwms_train's model and data, `reference()` in NumPy),
   whichever worker runs a step;
2. asynchronous use: CLOSURES closures scheduled at once, each reading a batch from a per-worker
   dataset and applying an update that does not depend on the weights (so their order does not
   matter) and counting itself on a ps variable. With --kill-pid the process PID (a worker) is
   killed with SIGKILL once K closures have been fetched; every closure must still complete.
   With --ps-dies the process killed is a ps task: join() must raise, and the script writes what.
3. with --expect-back, closures are scheduled until the restarted worker 1 runs one;
4. closures read past the end of a per-worker dataset of 3 elements: join() raises.
TG_USE_TF=1 runs it with TensorFlow.
"""

import json
import os
import signal
import sys
import time

import numpy as np

if os.environ.get("TG_USE_TF"):
    import tensorflow as tf
else:
    import tensorgrid as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "distribute"))
from mwms_train import GLOBAL_BATCH, LR, SIZES, STEPS, initial_weights, make_data  # noqa: E402

CLOSURES = 40
KERAS_STEPS, KERAS_LR, KERAS_MOMENTUM = 4, 0.05, 0.9
KERAS_X = np.random.RandomState(3).randn(32, 5).astype(np.float32)
KERAS_Y = (KERAS_X @ np.arange(1.0, 6.0).reshape(5, 1)).astype(np.float32)
ASYNC_X = np.array([1.0, 2.0, 0.5, -1.0, 0.0, 1.5, -2.0, 0.25], np.float32)   # every per-worker batch row


def main(cluster, out_path, kill_pid=None, kill_after=0, expect_back=False, ps_dies=False):
    # module globals: TF's autograph loses free variables of a function nested in a function here
    global strategy, weights, shift, count
    spec = tf.train.ClusterSpec(cluster)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec, task_type="chief", task_id=0,
                                                                    rpc_layer="grpc")
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        weights = [tf.Variable(w) for w in initial_weights()]
        shift = tf.Variable(np.zeros(SIZES[0], np.float32))
        count = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def train_step(xb, yb):
        def replica_fn(xb, yb):
            w1, b1, w2, b2 = weights
            with tf.GradientTape() as tape:
                pred = tf.matmul(tf.nn.relu(tf.matmul(xb, w1) + b1), w2) + b2
                loss = tf.reduce_sum(tf.square(pred - yb)) / GLOBAL_BATCH
            for w, g in zip(weights, tape.gradient(loss, weights)):
                w.assign_sub(LR * g)
            return loss
        return strategy.run(replica_fn, args=(xb, yb))

    # a Keras model and optimizer (momentum slots, made by the first trace, go next to their variables)
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(KERAS_X.shape[1],),
                                                           kernel_initializer="ones")])
        keras_opt = tf.keras.optimizers.SGD(KERAS_LR, momentum=KERAS_MOMENTUM)

    @tf.function
    def keras_step(xb, yb):
        def replica_fn(xb, yb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(xb) - yb))
            grads = tape.gradient(loss, model.trainable_variables)
            keras_opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        return strategy.run(replica_fn, args=(xb, yb))

    for _ in range(KERAS_STEPS):
        coordinator.schedule(keras_step, args=(KERAS_X, KERAS_Y)).fetch()
    keras_weights = [w.tolist() for w in model.get_weights()]
    slots = {v.name: _device(v) for v in keras_opt.variables if "momentum" in v.name}

    x, y = make_data()
    losses = []
    for s in range(STEPS):
        rv = coordinator.schedule(train_step, args=(x[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH],
                                                      y[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH]))
        losses.append(float(rv.fetch()))

    def dataset_fn():
        return tf.data.Dataset.from_tensors(tf.constant(np.tile(ASYNC_X, (2, 1)))).repeat()

    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

    @tf.function
    def async_step(it):
        xb = next(it)
        # work enough for a closure to be in flight when a worker is killed
        m = tf.matmul(tf.ones([120, 120]), tf.ones([120, 120]))
        for _ in range(3):
            m = tf.matmul(m, tf.ones([120, 120])) / 120.0
        shift.assign_sub(0.25 * tf.reduce_sum(xb, axis=0) + 0.0 * tf.reduce_sum(m))
        count.assign_add(1)
        return tf.reduce_sum(xb)

    started = time.monotonic()
    values = [coordinator.schedule(async_step, args=(iterator,)) for _ in range(CLOSURES)]
    if kill_pid:
        for v in values[:kill_after]:
            v.fetch()
        os.kill(kill_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        print(f"killed {kill_pid}", flush=True)
    if ps_dies:
        try:
            coordinator.join()
            outcome = {"join_error": None}
        except Exception as e:  # noqa: BLE001 - what it is is the result
            outcome = {"join_error": type(e).__name__, "message": str(e),
                       "seconds_after_kill": time.monotonic() - killed_at,
                       "outcomes": sorted({_outcome(v) for v in values})}
        with open(out_path, "w") as f:
            json.dump(outcome, f)
        return
    coordinator.join()
    fetched = [float(v.fetch()) for v in values]
    elapsed = time.monotonic() - started
    back_after = None
    if expect_back:
        # the killed worker, restarted by whoever started it, takes closures again (tensorgrid only:
        # PerWorkerValues of Python values)
        which = tf.function(lambda worker: worker)
        ids = tf.distribute.experimental.coordinator.PerWorkerValues([0, 1])
        deadline = time.monotonic() + 120
        while back_after is None and time.monotonic() < deadline:
            if 1 in [coordinator.schedule(which, args=(ids,)).fetch() for _ in range(4)]:
                back_after = time.monotonic() - started
            time.sleep(0.05)
    # a per-worker dataset that ends: the closure past its end fails, and join() raises its error
    finite = iter(coordinator.create_per_worker_dataset(lambda: tf.data.Dataset.range(3)))

    @tf.function
    def take(it):
        return next(it)

    ended = [coordinator.schedule(take, args=(finite,)) for _ in range(12)]
    try:
        coordinator.join()
        join_error = None
    except Exception as e:  # noqa: BLE001 - which class it is is the result
        join_error = type(e).__name__
    taken = sorted(int(v.fetch()) for v in ended if _succeeded(v))
    result = {"keras_weights": keras_weights, "keras_devices": [_device(w) for w in model.weights],
              "keras_slot_devices": [slots[k] for k in sorted(slots)], "losses": losses,
              "weights": [w.numpy().tolist() for w in weights],
              "devices": [w.device for w in weights + [shift, count]],
              "shift": shift.numpy().tolist(), "count": int(count.numpy()), "fetched": fetched,
              "async_s": elapsed, "done": bool(coordinator.done()),
              "back_after": back_after, "join_error": join_error, "taken": taken}
    with open(out_path, "w") as f:
        json.dump(result, f)
    print(f"coordinator: done, loss {losses[0]:.4f} -> {losses[-1]:.4f}, {CLOSURES} closures in {elapsed:.2f} s",
          flush=True)


def _device(variable):
    """A variable's device (Keras 3's variables keep theirs on the backend variable, `.value`)."""
    return getattr(variable, "device", None) or variable.value.device


def _outcome(remote_value):
    try:
        remote_value.fetch()
        return "value"
    except Exception as e:  # noqa: BLE001
        return type(e).__name__


def _succeeded(remote_value):
    try:
        remote_value.fetch()
        return True
    except Exception:  # noqa: BLE001
        return False


def keras_reference():
    """[kernel, bias] after KERAS_STEPS of Keras's momentum SGD on the mean squared error, in NumPy."""
    x, y = KERAS_X.astype(np.float64), KERAS_Y.astype(np.float64)
    w, b = np.ones((x.shape[1], 1)), np.zeros(1)
    mw, mb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(KERAS_STEPS):
        e = x @ w + b - y
        mw = KERAS_MOMENTUM * mw - KERAS_LR * 2 * x.T @ e / len(x)
        mb = KERAS_MOMENTUM * mb - KERAS_LR * 2 * e.mean(0)
        w, b = w + mw, b + mb
    return [w, b]


def async_shift(n_closures):
    """The shift after n closures, in whatever order they ran: each subtracts 0.25 * (2 * ASYNC_X)."""
    return -0.5 * n_closures * ASYNC_X


if __name__ == "__main__":
    args = sys.argv[1:]
    pid = int(args[args.index("--kill-pid") + 1]) if "--kill-pid" in args else None
    after = int(args[args.index("--kill-after") + 1]) if "--kill-after" in args else 0
    main(json.loads(args[0]), args[1], pid, after, "--expect-back" in args, "--ps-dies" in args)
