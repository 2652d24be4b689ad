"""tensorgrid/observability/: the master's step observer, `tensorgrid status --stacks` and `--watch`
(in a real pseudo-terminal), and `tensorgrid dashboard --from` refusing a folder with no history."""

import io
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time

import numpy as np

import tensorgrid.compat.v1 as tf
from tensorgrid.framework import errors
from tensorgrid.observability import step_observer, watch
from tensorgrid.runtime.cluster import LocalCluster

TOKEN = "observability-test-token"


def test_step_observer_counts_steps_keeps_errors_and_signatures():
    now = [100.0]
    obs = step_observer.StepObserver(clock=lambda: now[0], wall=lambda: 1000.0 + now[0])
    sig = obs.planned("s1", ["x:0"], ["y:0"], [], {"/cpu:0": []})
    assert obs.planned("s1", ["x:0"], ["y:0"], [], {"/cpu:0": []}) == sig
    assert obs.signature(sig).plan_version == 2 and obs.signature(sig).label == "y:0 <- x:0"
    record = obs.step_started("s1")
    record.signature, record.step_id = sig, 7
    now[0] += 0.5
    assert obs.running() == [(7, "s1", sig, 0.5)]
    obs.step_ended(record)
    failing = obs.step_started("s1")
    failing.signature = sig
    obs.step_ended(failing, errors.InvalidArgumentError(
        None, "dense/MatMul", "MatMul 'dense/MatMul' on /job:worker/replica:0/task:1/device:CPU:0 (created at "
        "train.py:41): inner dimensions differ"))
    assert obs.running() == []
    assert (obs.started.value, obs.finished.value) == (2, 1)
    s = obs.signature(sig)
    assert (s.steps, s.failed, s.total_s) == (2, 1, 0.5)
    err = obs.errors[-1]
    assert (err["error"], err["node"], err["device"], err["location"]) == (
        "InvalidArgumentError", "dense/MatMul", "/job:worker/replica:0/task:1/device:CPU:0", "train.py:41")
    assert not obs.wants_trace(sig)        # only the dashboard asks for traces
    obs.trace_every_s = 10.0
    assert obs.wants_trace(sig)
    obs.traced(sig, 7, object())
    assert not obs.wants_trace(sig)
    now[0] += 10.0
    assert obs.wants_trace(sig)


def test_watch_redraws_in_place_and_survives_a_silent_master():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    calls = []
    stop = threading.Event()

    def fetch():
        calls.append(1)
        if len(calls) == 2:
            raise errors.UnavailableError(None, None, "connection refused")
        if len(calls) == 3:
            stop.set()
        return type("S", (), {"session": []})()
    out = Tty()
    assert watch.watch(fetch, lambda s: "TABLE", 0.01, stop, out) == 0
    frames = out.getvalue().split(watch.HOME_AND_CLEAR)
    assert frames[0] == "" and len(frames) == 4
    assert "TABLE" in frames[1] and "does not answer: connection refused" in frames[2] and "TABLE" in frames[3]


def _read_until(fd, needle, timeout):
    got, deadline = b"", time.monotonic() + timeout
    while needle not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {timeout} s; got {got[-400:]!r}")
        if select.select([fd], [], [], left)[0]:
            try:
                got += os.read(fd, 65536)
            except OSError:
                break
    return got


def test_status_watch_and_stacks_on_a_live_cluster(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with LocalCluster(num_workers=2, token=TOKEN) as cluster:
        g = tf.Graph()
        with g.as_default():
            x = tf.placeholder(tf.float32, [4])
            with tf.Session(cluster.target, graph=g, config=tf.ConfigProto(token=TOKEN)) as sess:
                for _ in range(3):
                    sess.run(x * 2.0, {x: np.ones(4, np.float32)})
            cli = [sys.executable, "-m", "tensorgrid.cli", "status", "--master", cluster.master_address,
                   "--token-file", str(token_file)]
            stacks = subprocess.run(cli + ["--stacks"], capture_output=True, text=True, timeout=60)
            assert stacks.returncode == 0, stacks.stderr
            out = stacks.stdout
            assert out.count("==== ") == 3 and f"==== master {cluster.master_address}" in out
            assert "==== /job:worker/task:0 at" in out and "==== /job:worker/task:1 at" in out
            assert "tg-heartbeat" in out and "in _beat" in out           # the workers' heartbeat threads
            denied = subprocess.run(cli[:-2] + ["--stacks"], capture_output=True, text=True, timeout=60)
            assert denied.returncode == 1 and "token" in denied.stderr and len(denied.stderr.splitlines()) == 1

            leader, follower = pty.openpty()
            proc = subprocess.Popen(cli + ["--watch", "0.2"], stdin=follower, stdout=follower, stderr=follower)
            os.close(follower)
            try:
                seen = _read_until(leader, watch.HOME_AND_CLEAR.encode(), 30)
                seen += _read_until(leader, b"/job:worker/task:1", 30)
                seen += _read_until(leader, watch.HOME_AND_CLEAR.encode(), 30)   # a second frame, in place
                assert b"Ctrl-C stops" in seen and b"alive" in seen
                proc.send_signal(signal.SIGINT)
                assert proc.wait(20) == 0
            finally:
                proc.kill()
                proc.wait()
                os.close(leader)


def test_dashboard_from_a_folder_without_history_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "dashboard", "--from", str(tmp_path),
                             "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("no dashboard history here (a master started with --history-dir writes it)")
    assert len(result.stderr.splitlines()) == 1
