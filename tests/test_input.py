"""TF1's queue-based input (client/input/): Coordinator, QueueRunner, input producers and batching,
in-process, on a real cluster and against TensorFlow."""

import threading

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tests.conftest import _local_cluster

tf = tg.compat.v1


def _epochs_program(tfm, target=""):
    """slice_input_producer + batch over 2 epochs, and string_input_producer, drained to OutOfRange."""
    g = tfm.Graph()
    with g.as_default():
        x = np.arange(20, dtype=np.float32).reshape(10, 2)
        y = np.arange(10, dtype=np.int32)
        xs, ys = tfm.train.slice_input_producer([x, y], num_epochs=2, shuffle=False)
        bx, by = tfm.train.batch([xs, ys], batch_size=4, allow_smaller_final_batch=True)
        names = tfm.train.string_input_producer(["a", "b", "c"], num_epochs=1, shuffle=False).dequeue()
        with tfm.Session(target) as sess:
            sess.run([tfm.global_variables_initializer(), tfm.local_variables_initializer()])
            coord = tfm.train.Coordinator()
            threads = tfm.train.start_queue_runners(sess=sess, coord=coord)
            batches = []
            try:
                while not coord.should_stop():
                    batches.append(sess.run([bx, by]))
            except tfm.errors.OutOfRangeError:
                pass
            strings = []
            try:
                while True:
                    strings.append(sess.run(names))
            except tfm.errors.OutOfRangeError:
                pass
            coord.request_stop()
            coord.join(threads)
    return batches, strings


def _check_epochs(batches, strings):
    ys = sorted(int(v) for _, b in batches for v in b)
    assert ys == sorted(list(range(10)) * 2)
    for bx, by in batches:
        np.testing.assert_array_equal(bx, np.stack([by * 2, by * 2 + 1], axis=1).astype(np.float32))
    assert strings == [b"a", b"b", b"c"]


def test_epochs_and_batches_like_tensorflow():
    tf_real = pytest.importorskip("tensorflow").compat.v1
    tf.disable_eager_execution()
    want_b, want_s = _epochs_program(tf_real)
    got_b, got_s = _epochs_program(tf)
    _check_epochs(got_b, got_s)
    assert got_s == want_s
    assert [len(b[1]) for b in got_b] == [len(b[1]) for b in want_b]
    for (wx, wy), (gx, gy) in zip(want_b, got_b):
        np.testing.assert_array_equal(wx, gx)
        np.testing.assert_array_equal(wy, gy)


def test_queue_runners_on_a_cluster():
    tf.disable_eager_execution()
    target = _local_cluster().target
    try:
        _check_epochs(*_epochs_program(tf, target))
    finally:
        tg.Session.reset(target)


def test_shuffle_batch_mixes_and_covers_every_element():
    tf.disable_eager_execution()
    with tf.Graph().as_default():
        value = tf.train.range_input_producer(50, num_epochs=1, shuffle=False).dequeue()
        batch = tf.train.shuffle_batch([value], batch_size=10, capacity=30, min_after_dequeue=10, seed=3,
                                       allow_smaller_final_batch=True, num_threads=2)
        assert batch.shape.as_list() == [None]
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            got = []
            with pytest.raises(errors.OutOfRangeError):
                while True:
                    got.extend(sess.run(batch).tolist())
            coord.request_stop()
            coord.join(threads)
    assert sorted(got) == list(range(50)) and got != list(range(50))


def test_batch_join_dict_and_dynamic_pad():
    tf.disable_eager_execution()
    with tf.Graph().as_default():
        a = {"v": tf.constant([1, 2, 3]), "k": tf.constant(1)}
        b = {"v": tf.constant([4, 5, 6]), "k": tf.constant(2)}
        joined = tf.train.batch_join([a, b], batch_size=4)
        assert sorted(joined) == ["k", "v"] and joined["v"].shape.as_list() == [4, 3]
        ragged = tf.train.batch([tf.range(tf.random.uniform([], 1, 4, dtype=tf.int32))], batch_size=5,
                                dynamic_pad=True)
        with tf.Session() as sess:
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            out = sess.run(joined)
            padded = sess.run(ragged)
            coord.request_stop()
            coord.join(threads)
    for k, v in zip(out["k"], out["v"]):
        np.testing.assert_array_equal(v, [1, 2, 3] if k == 1 else [4, 5, 6])
    assert padded.shape[0] == 5
    for row in padded:
        n = int(np.count_nonzero(row)) + 1
        np.testing.assert_array_equal(row[:n], np.arange(n))


def test_input_producer_rejects_unknown_element_shapes():
    tf.disable_eager_execution()
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, None])
        with pytest.raises(ValueError, match="element_shape"):
            tf.train.input_producer(x)
        with pytest.raises(ValueError, match="num_epochs must be > 0"):
            tf.train.limit_epochs(x, 0)


def test_queue_runner_needs_graph_mode():
    with pytest.raises(RuntimeError, match="eager"):
        tf.train.QueueRunner(tg.queue.FIFOQueue(1, tg.int32), [])


# ---- Coordinator ---------------------------------------------------------------------------------

def test_coordinator_reraises_the_first_error_from_join():
    coord = tf.train.Coordinator()

    def worker(k):
        with coord.stop_on_exception():
            if k == 1:
                raise ValueError("boom")
            coord.wait_for_stop()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    with pytest.raises(ValueError, match="boom"):
        coord.join(threads)
    assert coord.should_stop() and coord.joined


def test_coordinator_clean_stop_errors_and_stragglers():
    coord = tf.train.Coordinator()
    coord.request_stop(errors.OutOfRangeError(None, None, "end of input"))  # a clean stop: not re-raised
    coord.join([])
    coord.clear_stop()
    assert not coord.should_stop()
    hold = threading.Event()
    t = threading.Thread(target=hold.wait)
    t.start()
    coord.register_thread(t)
    coord.request_stop()
    with pytest.raises(RuntimeError, match="threads still running"):
        coord.join(stop_grace_period_secs=0.05)
    hold.set()
    t.join()


def test_looper_thread_runs_until_stop():
    coord = tf.train.Coordinator()
    calls = []
    looper = coord.loop(0.01, lambda: (calls.append(1), len(calls) >= 3 and coord.request_stop()))
    coord.join([looper], stop_grace_period_secs=10)
    assert len(calls) >= 3
