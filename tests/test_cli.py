"""The `tensorgrid` command: --help everywhere, one-line errors, clean stops, status and local."""

import json
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.runtime.cluster import LocalCluster

tf = tg.compat.v1
COMMANDS = ["master", "worker", "local", "status", "health", "dashboard"]


def _cli(*args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "tensorgrid.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def _spawn(*args):
    return subprocess.Popen([sys.executable, "-m", "tensorgrid.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _one_line_error(result, code=None):
    assert result.returncode != 0 if code is None else result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _read_line(proc, timeout):
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
        return proc.stdout.readline()
    finally:
        sel.unregister(proc.stdout)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_top_level_help():
    result = _cli("--help")
    assert result.returncode == 0
    for command in COMMANDS + ["demo"]:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = _cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: tensorgrid {command}")
    assert "--log-level" in result.stdout


@pytest.mark.parametrize("args", [
    ["worker", "--port", "x"], ["master", "--port", "99999"], ["worker", "--master", "nocolon"],
    ["local", "--workers", "0"], ["worker", "--task", "-1"], ["nosuchcommand"], [],
])
def test_bad_arguments_give_one_line(args):
    line = _one_line_error(_cli(*args), code=2)
    assert line.startswith("tensorgrid")


def test_unreachable_master_gives_one_line():
    port = _free_port()
    line = _one_line_error(_cli("worker", "--master", f"127.0.0.1:{port}", "--master-wait", "0.5"), code=1)
    assert f"127.0.0.1:{port}" in line
    line = _one_line_error(_cli("status", "--master", f"127.0.0.1:{port}", "--timeout", "2"), code=1)
    assert f"127.0.0.1:{port}" in line


def test_a_port_in_use_gives_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        line = _one_line_error(_cli("master", "--port", str(s.getsockname()[1])), code=1)
    assert "listen" in line


def test_missing_token_file_gives_one_line(tmp_path):
    line = _one_line_error(_cli("master", "--port", "0", "--token-file", str(tmp_path / "none")), code=1)
    assert "token" in line


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_master_binds_loopback_and_stops_cleanly(tmp_path, signum):
    port_file = tmp_path / "port"
    proc = _spawn("master", "--port", "0", "--port-file", str(port_file))
    try:
        line = _read_line(proc, 30)
        info = json.loads(port_file.read_text())
        assert info["address"].startswith("127.0.0.1:")
        assert info["address"] in line
        proc.send_signal(signum)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_status_lists_workers_devices_and_sessions():
    with LocalCluster(num_workers=2) as c:
        g = tg.Graph()
        with g.as_default():
            a = tg.constant(1.0) + 1.0
            sess = tg.Session(c.target, graph=g)
            sess.run(a)
            result = _cli("status", "--master", c.master_address)
            as_json = _cli("status", "--master", c.master_address, "--json")
            sess.close()
    assert result.returncode == 0, result.stderr
    assert "2 workers (2 alive), 1 session, 0 steps running" in result.stdout
    for i in range(2):
        assert re.search(rf"/job:worker/task:{i}\s+127\.0\.0\.1:\d+\s+alive", result.stdout)
    assert "CPU:0" in result.stdout
    status = json.loads(as_json.stdout)
    assert [w["task"] for w in status["worker"]] == [0, 1]
    assert status["worker"][0]["health"] == "alive"


def test_local_prints_its_target_serves_and_stops_on_ctrl_c():
    proc = _spawn("local", "--workers", "2", "--port", "0", "--dashboard-port", "0")
    try:
        line = _read_line(proc, 60)
        match = re.search(r"grpc://127\.0\.0\.1:\d+", line)
        assert match, line
        # printed right after the target, so already in the pipe's buffer (select would not see it)
        dashboard = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", proc.stdout.readline())
        assert dashboard, "tensorgrid local prints no dashboard URL"
        with urllib.request.urlopen(dashboard.group(1), timeout=10) as page:
            assert b"tensorgrid dashboard" in page.read()
        g = tg.Graph()
        with g.as_default():
            with tg.device("/job:worker/task:0"):
                x = tf.placeholder(tg.float32, [2])
            with tg.device("/job:worker/task:1"):
                y = x * 3.0
            with tg.Session(match.group(0), graph=g) as sess:
                np.testing.assert_allclose(sess.run(y, {x: [1.0, 2.0]}), [3.0, 6.0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_health_asks_the_master_or_a_worker_itself(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("health-token\n")
    with LocalCluster(num_workers=1, token="health-token") as c:
        worker = c.worker_info(0)["address"]
        assert "requires its token" in _one_line_error(_cli("health", "--master", c.master_address))
        monkeypatch.setenv("TENSORGRID_TOKEN_FILE", str(token_file))  # --token-file's default
        master = _cli("health", "--master", c.master_address)
        assert master.returncode == 0 and master.stdout.startswith(f"master {c.master_address} serves: 1 device")
        ready = _cli("health", "--worker", worker, "--ready")
        assert ready.returncode == 0 and ready.stdout.startswith(f"worker /job:worker/task:0 at {worker} serves")
        status = json.loads(_cli("health", "--worker", worker, "--json").stdout)
        assert (status["job"], status["task"]) == ("worker", 0) and "transport" in status
    line = _one_line_error(_cli("health", "--worker", worker, "--timeout", "2"))
    assert line.startswith(f"tensorgrid health: error: cannot reach the worker at {worker}")
    _one_line_error(_cli("health", "--master", "127.0.0.1:1", "--worker", worker), code=2)


def test_worker_stops_cleanly_and_tells_the_master():
    with LocalCluster(num_workers=2) as c:
        c.stop_worker(1)
        assert c.workers[1].popen.returncode == 0
        deadline = time.monotonic() + 5
        while [w.health for w in c.status().worker] != ["alive", "dead"]:
            assert time.monotonic() < deadline, c.status()
            time.sleep(0.05)


def test_a_worker_without_task_gets_the_next_free_one_and_ps_tasks_work(tmp_path):
    with LocalCluster(num_workers=1, num_ps=1) as c:
        port_file = tmp_path / "port"
        proc = _spawn("worker", "--master", c.master_address, "--port-file", str(port_file))
        try:
            _read_line(proc, 30)
            info = json.loads(port_file.read_text())
            assert (info["job"], info["task"]) == ("worker", 1)
            g = tg.Graph()
            with g.as_default():
                with tg.device("/job:ps/task:0"):
                    v = tf.Variable([1.0, 2.0])
                with tg.device("/job:worker/task:1"):
                    y = v * 2.0
                with tg.Session(c.target, graph=g) as sess:
                    sess.run(v.initializer)
                    np.testing.assert_allclose(sess.run(y), [2.0, 4.0])
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            proc.kill()
            proc.wait()
