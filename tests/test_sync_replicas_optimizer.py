"""SyncReplicasOptimizer (client/train/sync_replicas_optimizer.py): ps and workers as real processes
(tg.train.Server + MonitoredTrainingSession) give the weights of averaged gradient descent computed in
NumPy, a worker that stops early does not hang the chief, nor the chief the workers; one process driving
the protocol by hand gives TensorFlow's local steps, accumulator counts (stale gradients dropped) and
weights."""

import json
import os
import sys

import numpy as np
import pytest

import tensorgrid as tg
from tests.taskprocs import cluster_of, tasks  # noqa: F401 - the fixture
from tests.tf_reference import tensorflow_v1

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sync_replicas_program as program  # noqa: E402

SCRIPT = os.path.join(HERE, "sync_replicas_program.py")


def _start(tasks, cluster, job, index, *args):
    return tasks.script(f"{job}{index}", SCRIPT, json.dumps(cluster), job, index, *args)


def _result(task):
    assert task.wait(120) == 0, task.log()[-3000:]
    return json.loads(task.log().strip().splitlines()[-1])


def _gradients(w, b, task, local_step):
    x, y = program.batch(task, local_step)
    err = x @ w + b - y
    return 2 * x.T @ err / len(x), 2 * float(np.mean(err))


def _numpy_training(updates):
    """w, b after each update averages the gradients of the (task, local step) pairs it lists, at its weights."""
    w, b = program.W0.astype(np.float64), 0.0
    for pairs in updates:
        grads = [_gradients(w, b, task, step) for task, step in pairs]
        w = w - program.LEARNING_RATE * np.mean([g for g, _ in grads], axis=0)
        b = b - program.LEARNING_RATE * np.mean([g for _, g in grads])
    return w, b


@pytest.mark.slow  # the next test checks the same lockstep updates (its first three) and more
def test_sync_replicas_weights_equal_averaged_gradient_descent(tasks):
    """num_tokens=0: the two workers move in lockstep, update k averages each worker's k-th gradient."""
    cluster = cluster_of(ps=1, worker=2)
    _start(tasks, cluster, "ps", 0)
    workers = [_start(tasks, cluster, "worker", i, "--last_step=8", "--num_tokens=0") for i in range(2)]
    results = [_result(w) for w in workers]
    w, b = _numpy_training([[(0, k), (1, k)] for k in range(8)])
    for r in results:
        assert r["global_step"] == 8 and r["local_steps"] == 8, results
        np.testing.assert_allclose(r["w"], w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r["b"], b, rtol=1e-5, atol=1e-6)


def test_a_worker_that_stops_early_does_not_hang_the_chief(tasks):
    """Worker 1 stops after 3 steps and gives its token back: the chief makes up its gradients.

    (TensorFlow's chief waits forever here: the finished worker took a token it never uses, so the chief
    finds neither a token nor a second gradient.)"""
    cluster = cluster_of(ps=1, worker=2)
    _start(tasks, cluster, "ps", 0)
    chief = _start(tasks, cluster, "worker", 0, "--last_step=6", "--num_tokens=0")
    worker = _start(tasks, cluster, "worker", 1, "--last_step=6", "--num_tokens=0", "--max_local_steps=3")
    assert _result(worker)["local_steps"] == 3
    r = _result(chief)
    # updates 1-3: one gradient of each worker; 4-6: two successive gradients of the chief
    w, b = _numpy_training([[(0, k), (1, k)] for k in range(3)] + [[(0, k), (0, k + 1)] for k in (3, 5, 7)])
    assert r["global_step"] == 6 and r["local_steps"] == 9, r
    np.testing.assert_allclose(r["w"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["b"], b, rtol=1e-5, atol=1e-6)


def test_a_chief_that_stops_early_ends_the_workers(tasks):
    """The chief's end closes the token queue: a worker waiting for a token ends cleanly at once (TF's worker
    was aborted 30 s later, and TF's chief took 150 s to close)."""
    cluster = cluster_of(ps=1, worker=2)
    _start(tasks, cluster, "ps", 0)
    chief = _start(tasks, cluster, "worker", 0, "--last_step=50", "--max_local_steps=4")
    worker = _start(tasks, cluster, "worker", 1, "--last_step=50")
    assert _result(chief)["local_steps"] == 4
    r = _result(worker)                             # it ended, cleanly, long before its last step
    assert r["global_step"] < 50, r


# ---- one process driving the protocol, against TensorFlow -------------------------------------------

def _drive(tf, steps):
    """Two replicas' train runs from one session, the chief's sync op whenever every accumulator is full.

    Returns [(local step after the run, accumulator counts, global step)], and w, emb, global step."""
    rng = np.random.RandomState(0)
    w0 = rng.randn(3, 2).astype(np.float32)
    xs = rng.randn(steps, 4, 3).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        global_step = tf.train.get_or_create_global_step()
        x = tf.placeholder(tf.float32, [4, 3])
        ids = tf.placeholder(tf.int64, [2])
        w = tf.Variable(w0, name="w")
        emb = tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2), name="emb")
        loss = tf.reduce_sum(tf.square(tf.matmul(x, w))) + tf.reduce_sum(tf.gather(emb, ids) ** 2)
        opt = tf.train.SyncReplicasOptimizer(tf.train.GradientDescentOptimizer(0.05), replicas_to_aggregate=2,
                                             total_num_replicas=2)
        train_op = opt.minimize(loss, global_step=global_step)
        sync_op = opt.get_chief_queue_runner().enqueue_ops[0]
        init_tokens = opt.get_init_tokens_op(num_tokens=3)
        one_more_token = opt.get_init_tokens_op(num_tokens=1)
        counts = [accumulator.num_accumulated() for accumulator, _ in opt._accumulator_list]
        tokens_left = opt._sync_token_queue.size()
        trace = []
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(tf.local_variables_initializer())
            sess.run(opt.chief_init_op)
            sess.run(init_tokens)
            for k in range(steps):
                if sess.run(tokens_left) == 0:       # the other replica's token, so the run does not wait
                    sess.run(one_more_token)
                local = sess.run(train_op, {x: xs[k], ids: [k % 6, (k * 5) % 6]})
                c = [int(v) for v in sess.run(counts)]
                trace.append((int(local), c, int(sess.run(global_step))))
                if min(c) >= 2:
                    sess.run(sync_op)
            return trace, sess.run([w, emb, global_step])


def test_driven_protocol_drops_stale_gradients():
    tg.compat.v1.disable_eager_execution()
    trace, (_, _, step) = _drive(tg.compat.v1, 8)
    # 3 initial tokens at step 0: the third step's gradient, tagged 0 after update 1, is dropped
    assert trace[:4] == [(0, [1, 1], 0), (0, [2, 2], 0), (0, [0, 0], 1), (1, [0, 0], 1)], trace
    assert step == 2


def test_driven_protocol_agrees_with_tensorflow():
    with tensorflow_v1() as tf:
        tf_trace, tf_values = _drive(tf, 14)
    tg.compat.v1.disable_eager_execution()
    trace, values = _drive(tg.compat.v1, 14)
    assert trace == tf_trace
    for ours, theirs in zip(values, tf_values):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_sync_replicas_names_and_errors():
    tf = tg.compat.v1
    tf.disable_eager_execution()
    with tg.Graph().as_default() as g:
        global_step = tf.train.get_or_create_global_step()
        v = tf.Variable([1.0, 2.0], name="v")
        opt = tf.train.SyncReplicasOptimizer(tf.train.GradientDescentOptimizer(0.1), replicas_to_aggregate=2)
        with pytest.raises(ValueError, match="after apply_gradients"):
            opt.get_chief_queue_runner()
        with pytest.raises(ValueError, match="Global step is required"):
            opt.minimize(tf.reduce_sum(v))
        opt.minimize(tf.reduce_sum(v), global_step=global_step)
        backup = tf.train.SyncReplicasOptimizer(tf.train.GradientDescentOptimizer(0.1), 3, 2, name="backup")
        backup.minimize(tf.reduce_sum(v), global_step=global_step)
        with pytest.raises(ValueError, match=r"Too few tokens to finish the first step: 0 \(given\) vs 1"):
            backup.get_init_tokens_op(0)
        names = {op.name: op.type for op in g.get_operations()}
        assert names["sync_replicas/conditional_accumulator"] == "ResourceConditionalAccumulator"
        assert names["sync_token_q"] == "FIFOQueueV2" and names["dummy_queue"] == "FIFOQueueV2"
        assert names["sync_rep_local_step"] == "VarHandleOp"
        accumulator = g.get_operation_by_name("sync_replicas/conditional_accumulator")
        assert accumulator.get_attr("shared_name") == "v:0/grad_accum"
        assert opt._local_step in tf.local_variables()
