"""TF1's gradient accumulators (client/accumulators.py, tensorgrid/ops/accumulator_ops.py): means, stale
gradients dropped, row-wise sparse means, blocking takes ended by deadline and session close, one
accumulator shared by the sessions of a cluster, and the same answers as TensorFlow."""

import threading
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tests.conftest import _local_cluster
from tests.tf_reference import tensorflow_v1

tf = tg.compat.v1


def test_eager_accumulator_means_and_drops_stale_gradients():
    a = tf.ConditionalAccumulator(tg.float32, shape=[2])
    a.apply_grad([1.0, 2.0])
    a.apply_grad([3.0, 6.0], local_step=4)
    assert int(a.num_accumulated()) == 2
    np.testing.assert_array_equal(a.take_grad(2).numpy(), [2.0, 4.0])
    a.apply_grad([5.0, 5.0], local_step=0)      # the take moved the global step to 1: stale
    assert int(a.num_accumulated()) == 0
    a.set_global_step(7)
    a.apply_grad([1.0, 1.0], local_step=6)
    a.apply_grad([1.0, 3.0], local_step=7)
    np.testing.assert_array_equal(a.take_grad(1).numpy(), [1.0, 3.0])


def test_sum_reduction_and_bad_input():
    a = tf.ConditionalAccumulator(tg.float64, shape=[None], reduction_type="SUM")
    a.apply_grad(np.array([1.0, 2.0]))
    a.apply_grad(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(a.take_grad(2).numpy(), [4.0, 6.0])
    a.apply_grad(np.array([1.0, 2.0]), local_step=1)
    with pytest.raises(errors.InvalidArgumentError, match=r"expected \[2\], got \[3\]"):
        a.apply_grad(np.array([1.0, 2.0, 3.0]), local_step=1)
    with pytest.raises(errors.InvalidArgumentError, match="num_required must be positive, but was 0"):
        a.take_grad(0)
    with pytest.raises(ValueError, match="incompatible"):
        tf.ConditionalAccumulator(tg.float32, shape=[2]).apply_grad([1.0, 2.0, 3.0])


def test_sparse_accumulator_averages_each_row_over_the_gradients_that_had_it():
    a = tf.SparseConditionalAccumulator(tg.float32, shape=[4, 2])
    a.apply_indexed_slices_grad(tf.IndexedSlices(tg.constant([[1.0, 1.0], [2.0, 2.0]]), tg.constant([3, 0], tg.int64),
                                                 tg.constant([4, 2], tg.int64)))
    a.apply_grad([0, 1], [[3.0, 3.0], [5.0, 5.0]], grad_shape=[4, 2])
    a.apply_grad([2], [[9.0, 9.0]], local_step=-1)       # stale
    grad = a.take_indexed_slices_grad(2)
    np.testing.assert_array_equal(grad.indices.numpy(), [0, 1, 3])
    np.testing.assert_array_equal(grad.values.numpy(), [[2.5, 2.5], [5.0, 5.0], [1.0, 1.0]])
    np.testing.assert_array_equal(grad.dense_shape.numpy(), [4, 2])


def test_a_waiting_take_ends_at_its_deadline_and_when_the_session_closes():
    tf.disable_eager_execution()
    with tg.Graph().as_default():
        a = tf.ConditionalAccumulator(tf.float32, shape=[])
        take = a.take_grad(1)
        sess = tf.Session()
        with pytest.raises(errors.DeadlineExceededError, match="waiting for a take of 1 gradients"):
            sess.run(take, options=tf.RunOptions(timeout_in_ms=100))
        seen = []

        def wait():
            try:
                sess.run(take)
            except Exception as e:  # noqa: BLE001 - the test looks at it
                seen.append(e)
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.1)  # let the take start waiting; the close must end it either way
        sess.close()
        t.join(10)
        assert not t.is_alive() and isinstance(seen[0], errors.CancelledError)


def test_a_shared_accumulator_is_one_for_every_session_of_a_cluster():
    """A chief-like session and a replica-like one meet in one accumulator on worker 1 by its shared name."""
    target = _local_cluster().target
    tf.disable_eager_execution()

    def build():
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:1"):
            a = tf.ConditionalAccumulator(tf.float32, shape=[2], shared_name="w/grad_accum")
            grad, step = tf.placeholder(tf.float32, [2]), tf.placeholder(tf.int64, [])
            return g, a.apply_grad(grad, local_step=step), grad, step, a.take_grad(2), a.set_global_step(3)

    g1, _, _, _, take, set_step = build()
    g2, apply, grad, step, _, _ = build()
    try:
        with tf.Session(target, graph=g1) as chief, tf.Session(target, graph=g2) as replica:
            chief.run(set_step)
            for value, local in [([1.0, 1.0], 3), ([9.0, 9.0], 2), ([3.0, 5.0], 4)]:
                replica.run(apply, {grad: value, step: local})
            np.testing.assert_array_equal(chief.run(take), [2.0, 3.0])   # the one from local step 2 dropped
    finally:
        tg.Session.reset(target)


def test_accumulators_agree_with_tensorflow():
    def program(tf):
        g = tf.Graph()
        with g.as_default():
            dense = tf.ConditionalAccumulator(tf.float32, shape=[3])
            sparse = tf.SparseConditionalAccumulator(tf.float32, shape=[5, 2])
            ops = [dense.apply_grad([1.0, 2.0, 3.0], local_step=0), dense.apply_grad([3.0, 0.0, 1.0], local_step=2),
                   sparse.apply_grad(tf.constant([1, 4], tf.int64), [[1.0, 2.0], [3.0, 4.0]], grad_shape=[5, 2]),
                   sparse.apply_grad(tf.constant([0, 4], tf.int64), [[5.0, 6.0], [7.0, 8.0]], grad_shape=[5, 2])]
            takes = [dense.take_grad(2), sparse.take_grad(2)]
            after = [dense.apply_grad([1.0, 1.0, 1.0], local_step=0), dense.num_accumulated(),
                     sparse.num_accumulated()]
            with tf.Session() as sess:
                for op in ops:
                    sess.run(op)
                out = sess.run(takes)
                sess.run(after[0])
                return out, sess.run(after[1:])

    with tensorflow_v1() as tf1:
        expected = program(tf1)
    tf.disable_eager_execution()
    (dense, sparse), counts = program(tf)
    (tf_dense, tf_sparse), tf_counts = expected
    np.testing.assert_allclose(dense, tf_dense)
    for ours, theirs in zip(sparse, tf_sparse):
        np.testing.assert_allclose(ours, theirs)
    assert [int(c) for c in counts] == [int(c) for c in tf_counts]
