"""Failure handling across real processes: killed, hung and restarted workers, deadlines, leftover state."""

import os
import signal
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster
from waiting import poll, run_in_thread

tf = tg.compat.v1
HEARTBEAT_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(num_workers=3, extra_worker_args=["--allow-pickle"], heartbeat_timeout=HEARTBEAT_TIMEOUT_S,
                      heartbeat_interval=0.2) as c:
        yield c


def _task(i):
    return f"/job:worker/task:{i}"


def _slow_graph(task, marker):
    """x -> (py_func that touches `marker`, then sleeps `delay` s) on `task` -> +1 on task 0."""
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [1], name="x")
        delay = tf.placeholder(tg.float32, [], name="delay")

        def slow(v, d):
            with open(marker, "w"):
                pass
            time.sleep(float(d))
            return v

        with tg.device(_task(task)):
            y = tf.py_func(slow, [x, delay], tg.float32, name="slow")
        with tg.device(_task(0)):
            out = tg.identity(y) + 1.0
    return g, x, delay, out


def _pinned_pair(a, b):
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [1], name="x")
        with tg.device(_task(a)):
            u = x + 1.0
        with tg.device(_task(b)):
            v = u * 2.0
    return g, x, v


def _health(cluster, task):
    return [w.health for w in cluster.status().worker if w.task == task][0]


def _at_rest(cluster):
    status = cluster.status()
    return status.active_steps == 0 and all(
        w.active_steps == 0 and w.rendezvous_entries == 0 for w in status.worker if w.health == "alive")


def _start_slow_step(cluster, task, tmp_path, seconds):
    """A session whose slow op on `task` has started a `seconds`-long step in a thread: (sess, feeds, t, box)."""
    marker = str(tmp_path / "started")
    g, x, delay, out = _slow_graph(task, marker)
    sess = tg.Session(cluster.target, graph=g)
    t, box = run_in_thread(lambda: sess.run(out, {x: [1.0], delay: seconds}))
    poll(lambda: os.path.exists(marker), 10, "the slow op to start")
    return sess, (x, delay, out), t, box


def test_killed_worker_fails_the_step_others_keep_working_and_it_rejoins(cluster, tmp_path):
    sess, (x, delay, out), t, box = _start_slow_step(cluster, 2, tmp_path, 30.0)
    killed_at = time.monotonic()
    cluster.kill_worker(2)
    t.join(10)
    assert not t.is_alive()
    assert isinstance(box.get("error"), errors.UnavailableError), box
    assert "/job:worker/task:2" in str(box["error"])
    assert time.monotonic() - killed_at < HEARTBEAT_TIMEOUT_S + 3
    assert _health(cluster, 2) == "dead"
    with pytest.raises(errors.UnavailableError, match="task:2"):
        sess.run(out, {x: [1.0], delay: 0.0})

    g2, x2, v2 = _pinned_pair(0, 1)
    with tg.Session(cluster.target, graph=g2) as other:
        assert other.run(v2, {x2: [3.0]}) == [8.0]

    old = cluster.status().worker[2].incarnation
    info = cluster.restart_worker(2)
    assert (info["job"], info["task"]) == ("worker", 2) and info["incarnation"] != old
    assert _health(cluster, 2) == "alive"
    assert sess.run(out, {x: [5.0], delay: 0.0}) == [6.0]
    sess.close()


def test_hung_worker_is_declared_dead_after_the_heartbeat_timeout(cluster, tmp_path):
    pid = cluster.worker_info(1)["pid"]
    sess, (x, delay, out), t, box = _start_slow_step(cluster, 1, tmp_path, 0.5)
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        t.join(HEARTBEAT_TIMEOUT_S + 5)
        waited = time.monotonic() - stopped_at
        assert isinstance(box.get("error"), errors.UnavailableError), box
        assert "/job:worker/task:1" in str(box["error"]) and "heartbeat" in str(box["error"])
        assert waited < HEARTBEAT_TIMEOUT_S + 3
    finally:
        os.kill(pid, signal.SIGCONT)
    poll(lambda: _health(cluster, 1) == "alive", 10, "the worker to heartbeat again")
    assert sess.run(out, {x: [2.0], delay: 0.0}) == [3.0]
    sess.close()


def test_run_options_timeout_gives_deadline_exceeded(cluster, tmp_path):
    g, x, delay, out = _slow_graph(1, str(tmp_path / "started"))
    with tg.Session(cluster.target, graph=g) as sess:
        start = time.monotonic()
        with pytest.raises(errors.DeadlineExceededError):
            sess.run(out, {x: [1.0], delay: 3.0}, options=tg.RunOptions(timeout_in_ms=300))
        assert time.monotonic() - start < 2.5
        config_sess = tg.Session(cluster.target, graph=g, config=tg.ConfigProto(operation_timeout_in_ms=200))
        with pytest.raises(errors.DeadlineExceededError):
            config_sess.run(out, {x: [1.0], delay: 3.0})
        config_sess.close()
        assert sess.run(out, {x: [1.0], delay: 0.0}) == [2.0]


def test_a_thousand_steps_with_failures_and_timeouts_leave_no_state(cluster, tmp_path):
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [1], name="x")
        with tg.device(_task(0)):
            checked = tg.debugging.assert_positive(x)
            with tg.control_dependencies([checked]):
                a = x + 1.0
        with tg.device(_task(1)):
            b = a * 2.0
    slow_g, sx, sdelay, sout = _slow_graph(1, str(tmp_path / "started"))
    failed = cancelled = 0
    with tg.Session(cluster.target, graph=g) as sess, tg.Session(cluster.target, graph=slow_g) as slow:
        for i in range(1000):
            if i % 100 == 0:
                with pytest.raises(errors.DeadlineExceededError):
                    slow.run(sout, {sx: [1.0], sdelay: 0.05}, options=tg.RunOptions(timeout_in_ms=5))
                cancelled += 1
            elif i % 10 == 0:
                with pytest.raises(errors.InvalidArgumentError):
                    sess.run(b, {x: [-1.0]})
                failed += 1
            else:
                assert sess.run(b, {x: [float(i)]}) == [2.0 * (i + 1)]
    assert (failed, cancelled) == (90, 10)
    try:
        poll(lambda: _at_rest(cluster), 10, "the workers' step and rendezvous tables to empty")
    except AssertionError:
        print(cluster.status())
        raise


def test_the_root_error_wins_over_cancellations(cluster):
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [None], name="x")
        with tg.device(_task(1)):
            bad = tg.reshape(x, [2, 2], name="bad_reshape")
        with tg.device(_task(0)):
            waits = tg.identity(bad) + 1.0
        with tg.device(_task(2)):
            also = tg.reduce_sum(waits) + tg.reduce_sum(x)
        with tg.Session(cluster.target, graph=g) as sess:
            for _ in range(5):
                with pytest.raises(errors.InvalidArgumentError) as info:
                    sess.run(also, {x: np.ones(3, np.float32)})
                assert "bad_reshape" in str(info.value) and "task:1" in str(info.value)
            assert sess.run(also, {x: np.ones(4, np.float32)}) == 12.0


def test_a_worker_told_to_stop_mid_step_stops_promptly_and_can_come_back(cluster, tmp_path):
    sess, (x, delay, out), t, box = _start_slow_step(cluster, 2, tmp_path, 60.0)
    start = time.monotonic()
    cluster.stop_worker(2, timeout=10)
    assert cluster.workers[2].popen.returncode == 0  # SIGTERM, not the SIGKILL fallback
    assert time.monotonic() - start < 8
    t.join(10)
    assert isinstance(box.get("error"), errors.UnavailableError), box
    assert "/job:worker/task:2" in str(box["error"])
    cluster.restart_worker(2)
    assert sess.run(out, {x: [1.0], delay: 0.0}) == [2.0]
    sess.close()


def test_variables_outlive_a_master_restart(cluster):
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(1)):
            v = tf.Variable([1.0, 2.0], name="survivor")
            bump = v.assign_add([10.0, 10.0])
        with tg.Session(cluster.target, graph=g) as sess:
            sess.run(v.initializer)
            sess.run(bump)
        cluster.restart_master()
        with tg.Session(cluster.target, graph=g) as sess:
            np.testing.assert_allclose(sess.run(bump), [21.0, 22.0])
    poll(lambda: all(w.registered_graphs <= 1 for w in cluster.status().worker), 5,
          "the old master's graphs to leave the workers")
