"""TF1's queues (client/queues.py, tensorgrid/ops/queue_ops.py): order, batching, closing, blocking,
sharing across sessions on a cluster, and the same answers as TensorFlow."""

import threading
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster
from tests.conftest import _local_cluster, run_with

tf = tg.compat.v1


@pytest.fixture
def cluster():
    """The test session's shared local cluster, reset afterwards."""
    c = _local_cluster()
    yield c
    tg.Session.reset(c.target)


def _graph_mode():
    tf.disable_eager_execution()
    return tg.Graph()


# ---- the op battery ------------------------------------------------------------------------------

def test_enqueue_many_then_dequeue_many_in_one_step(executor):
    def fn(x):
        q = tg.queue.FIFOQueue(10, x.dtype, shapes=[x.shape[1:]])
        enq = q.enqueue_many(x)
        with tg.control_dependencies([enq]):
            first = q.dequeue()
        with tg.control_dependencies([first]):
            rest = q.dequeue_many(3)
        return first, rest

    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    first, rest = run_with(executor, fn, x)
    np.testing.assert_array_equal(first, x[0])
    np.testing.assert_array_equal(rest, x[1:])


def test_padding_queue_pads_each_batch_to_its_largest_element(executor):
    def fn(a, b):
        q = tg.queue.PaddingFIFOQueue(4, [tg.int32], shapes=[[None]])
        e1 = q.enqueue([a])
        with tg.control_dependencies([e1]):
            e2 = q.enqueue([b])
        with tg.control_dependencies([e2]):
            return q.dequeue_many(2)

    out = run_with(executor, fn, np.array([1, 2, 3], np.int32), np.array([4], np.int32))
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 0, 0]])


# ---- graph-mode semantics -------------------------------------------------------------------------

def test_static_shapes_and_names_follow_tf():
    with _graph_mode().as_default():
        q = tf.FIFOQueue(5, [tf.float32, tf.int32], shapes=[[2], []], names=["x", "y"], name="q")
        d = q.dequeue()
        assert sorted(d) == ["x", "y"] and d["x"].shape.as_list() == [2]
        many = q.dequeue_many(3)
        assert many["x"].shape.as_list() == [3, 2] and many["y"].shape.as_list() == [3]
        assert q.dequeue_up_to(3)["x"].shape.as_list() == [None, 2]
        assert q.enqueue({"x": [1.0, 2.0], "y": 3}).name == "q_enqueue"
        assert q.size().op.name == "q_Size" and q.close().name == "q_Close"
        with pytest.raises(ValueError, match="incompatible"):
            q.enqueue({"x": [1.0, 2.0, 3.0], "y": 3})
        with pytest.raises(ValueError, match="dictionary"):
            q.enqueue([[1.0, 2.0], 3])
        with pytest.raises(ValueError, match="fully defined"):
            tf.FIFOQueue(5, tf.float32, shapes=[[None]])


def test_close_drains_then_out_of_range():
    with _graph_mode().as_default():
        q = tf.FIFOQueue(10, tf.int32, shapes=[[]])
        enq = q.enqueue_many([[1, 2, 3]])
        up_to, many, one = q.dequeue_up_to(2), q.dequeue_many(2), q.dequeue()
        with tf.Session() as sess:
            sess.run(enq)
            sess.run(q.close())
            assert sess.run(q.is_closed())
            with pytest.raises(errors.CancelledError, match="is closed"):
                sess.run(enq)
            np.testing.assert_array_equal(sess.run(up_to), [1, 2])
            with pytest.raises(errors.OutOfRangeError, match=r"insufficient elements \(requested 2, current size 1"):
                sess.run(many)
            np.testing.assert_array_equal(sess.run(up_to), [3])
            with pytest.raises(errors.OutOfRangeError):
                sess.run(one)


def test_a_full_queue_blocks_enqueues_until_a_dequeue_makes_room():
    with _graph_mode().as_default():
        q = tf.FIFOQueue(2, tf.int32, shapes=[[]])
        enq = q.enqueue_many([[1, 2, 3]])
        deq = q.dequeue()
        with tf.Session() as sess:
            done = threading.Event()
            t = threading.Thread(target=lambda: (sess.run(enq), done.set()))
            t.start()
            assert not done.wait(0.2)
            assert sess.run(q.size()) == 2
            assert sess.run(deq) == 1
            assert done.wait(10)
            t.join()
            assert sess.run(q.size()) == 2


def test_close_with_cancel_pending_enqueues_cancels_a_blocked_enqueue():
    with _graph_mode().as_default():
        q = tf.FIFOQueue(1, tf.int32, shapes=[[]])
        enq = q.enqueue_many([[1, 2]])
        with tf.Session() as sess:
            seen = []
            t = threading.Thread(target=lambda: _catch(seen, lambda: sess.run(enq)))
            t.start()
            _poll(lambda: sess.run(q.size()) == 1)
            sess.run(q.close(cancel_pending_enqueues=True))
            t.join(10)
            assert isinstance(seen[0], errors.CancelledError)


def _catch(seen, fn):
    try:
        fn()
        seen.append(None)
    except Exception as e:  # noqa: BLE001 - the test looks at it
        seen.append(e)


def _poll(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_random_shuffle_queue_keeps_min_after_dequeue_until_closed():
    with _graph_mode().as_default():
        q = tf.RandomShuffleQueue(20, min_after_dequeue=3, dtypes=tf.int32, shapes=[[]], seed=7)
        enq = q.enqueue_many([list(range(10))])
        deq = q.dequeue()
        with tf.Session() as sess:
            sess.run(enq)
            got = [int(sess.run(deq)) for _ in range(7)]
            with pytest.raises(errors.DeadlineExceededError):  # 3 left: no more until closed
                sess.run(deq, options=tf.RunOptions(timeout_in_ms=100))
            sess.run(q.close())
            got += [int(sess.run(deq)) for _ in range(3)]
        assert sorted(got) == list(range(10)) and got != list(range(10))


def test_blocking_dequeue_is_stopped_by_timeout_and_by_session_close():
    with _graph_mode().as_default():
        q = tf.FIFOQueue(2, tf.float32, shapes=[[]])
        deq = q.dequeue()
        sess = tf.Session()
        with pytest.raises(errors.DeadlineExceededError, match="Timed out"):
            sess.run(deq, options=tf.RunOptions(timeout_in_ms=100))
        seen = []
        t = threading.Thread(target=lambda: _catch(seen, lambda: sess.run(deq)))
        t.start()
        time.sleep(0.1)  # let the dequeue start waiting; the close must end it either way
        sess.close()
        t.join(10)
        assert not t.is_alive() and isinstance(seen[0], errors.CancelledError)


def test_eager_queues():
    q = tg.queue.FIFOQueue(3, [tg.float32, tg.int32], shapes=[[2], []])
    q.enqueue([[1.0, 2.0], 3])
    q.enqueue_many([np.ones((2, 2)), [4, 5]])
    assert int(q.size()) == 3
    x, y = q.dequeue()
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])
    xs, ys = q.dequeue_many(2)
    np.testing.assert_array_equal(ys.numpy(), [4, 5])


# ---- on a cluster ---------------------------------------------------------------------------------

def test_a_shared_queue_is_one_queue_for_every_session(cluster):
    """Between-graph replicas reach one queue by its shared_name; without one each session has its own."""
    def build(shared_name):
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:1"):
            q = tf.FIFOQueue(10, tf.int32, shapes=[[]], shared_name=shared_name, name="q")
            return g, q.enqueue_many([[1, 2, 3]]), q.dequeue(), q.size()

    g1, enq, _, _ = build("shared_q")
    g2, _, deq, _ = build("shared_q")
    with tf.Session(cluster.target, graph=g1) as s1, tf.Session(cluster.target, graph=g2) as s2:
        s1.run(enq)
        assert [s2.run(deq) for _ in range(3)] == [1, 2, 3]
    g3, enq, _, size3 = build(None)
    g4, _, _, size4 = build(None)
    with tf.Session(cluster.target, graph=g3) as s3, tf.Session(cluster.target, graph=g4) as s4:
        s3.run(enq)
        assert s3.run(size3) == 3 and s4.run(size4) == 0


def test_a_private_queue_lasts_across_steps_with_other_fetches(cluster):
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:1"):
            q = tf.FIFOQueue(10, tf.float32, shapes=[[]])
        x = tf.placeholder(tf.float32, [None])
        enq = q.enqueue_many(x)
        deq = q.dequeue_many(2)
        with tf.Session(cluster.target) as sess:
            sess.run(enq, {x: [1.0, 2.0]})
            np.testing.assert_array_equal(sess.run(deq * 10.0), [10.0, 20.0])


def test_a_blocked_dequeue_on_a_cluster_ends_on_timeout_close_and_worker_death():
    with LocalCluster(num_workers=2) as c:
        g = tg.Graph()
        with g.as_default():
            with tg.device("/job:worker/task:1"):
                q = tf.FIFOQueue(2, tf.float32, shapes=[[]])
                deq = q.dequeue()
            with tg.device("/job:worker/task:0"):
                out = deq + 1.0
        sess = tf.Session(c.target, graph=g)
        with pytest.raises(errors.DeadlineExceededError):
            sess.run(out, options=tf.RunOptions(timeout_in_ms=200))
        for end in ("close", "kill"):
            if end == "kill":
                sess = tf.Session(c.target, graph=g)
            seen = []
            t = threading.Thread(target=lambda: _catch(seen, lambda: sess.run(out)))
            t.start()
            time.sleep(0.3)  # the step is waiting in the dequeue by now; either way it must end
            if end == "close":
                sess.close()
            else:
                c.kill_worker(1)
            t.join(30)
            assert not t.is_alive(), f"the dequeue still waits after the {end}"
            expected = errors.CancelledError if end == "close" else (errors.UnavailableError, errors.CancelledError)
            assert isinstance(seen[0], expected), seen


# ---- against TensorFlow ---------------------------------------------------------------------------

def _fifo_program(tfm):
    g = tfm.Graph()
    with g.as_default():
        q = tfm.FIFOQueue(10, [tfm.float32, tfm.int32], shapes=[[2], []])
        pq = tfm.PaddingFIFOQueue(10, [tfm.int32], shapes=[[None]])
        enq = q.enqueue_many([np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5, dtype=np.int32)])
        pe = [pq.enqueue([np.arange(n, dtype=np.int32)]) for n in (1, 3, 2)]
        outs = []
        with tfm.Session() as sess:
            sess.run(enq)
            for op in pe:
                sess.run(op)
            outs.append(sess.run(q.dequeue()))
            outs.append(sess.run(q.dequeue_many(2)))
            outs.append(sess.run(q.size()))
            sess.run(q.close())
            outs.append(sess.run(q.dequeue_up_to(5)))
            outs.append(sess.run(pq.dequeue_many(3)))
            try:
                sess.run(q.dequeue())
            except tfm.errors.OutOfRangeError as e:
                outs.append(type(e).__name__)
    return outs


def test_same_results_as_tensorflow():
    tf_real = pytest.importorskip("tensorflow").compat.v1
    tf.disable_eager_execution()
    want, got = _fifo_program(tf_real), _fifo_program(tf)
    for w, g in zip(want, got):
        if isinstance(w, str):
            assert w == g
        else:
            for a, b in zip(w if isinstance(w, list) else [w], g if isinstance(g, list) else [g]):
                np.testing.assert_array_equal(a, b)
