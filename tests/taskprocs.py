"""Real processes for the distributed-training tests: each task of a ClusterSpec its own OS process.

Ports are picked free by the test (a static ClusterSpec names them before
any task starts); every process dies with the test process (PR_SET_PDEATHSIG)
and is stopped by the `tasks` fixture even when the test fails. Tests wait on
a process's output, never for a fixed time.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import tensorgrid
from tensorgrid.runtime.cluster import die_with_parent, free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# A task that only serves: what a ps script does (Server(...).join()).
SERVE = "import json, sys, tensorgrid as tg; tg.train.Server(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])).join()"


def cluster_of(**jobs):
    """{"ps": ["localhost:p", ...], ...} with free ports, given the number of tasks of each job."""
    ports = iter(free_ports(sum(jobs.values())))
    return {job: [f"localhost:{next(ports)}" for _ in range(n)] for job, n in jobs.items()}


class Task:
    """One process, its stdout and stderr in a log file."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, f"{name}.log")
        full_env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(tensorgrid.__file__)))
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, ROOT, full_env.get("PYTHONPATH")) if p)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(die_with_parent(argv), env=full_env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=out)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_until(self, check, what, timeout=180.0):
        """Waits until check(log text) is truthy; returns its value. The default allows for a loaded
        machine (CI runs many process tests at once); a task that dies fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            found = check(self.log())
            if found:
                return found
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode} before {what}:\n"
                                     f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} in {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def wait_for_output(self, text, timeout=60.0):
        """Waits until `text` is in the log."""
        return self.wait_until(lambda log: text in log, f"output {text!r}", timeout)

    def wait_serving(self, address, timeout=180.0):
        """Waits until host:port takes TCP connections (the task serves there); a task that dies first fails
        at once with its log, rather than a step waiting for it without end (a master waits for a task
        that was never up, as TensorFlow's does)."""
        host, _, port = address.rpartition(":")

        def listening(_log):
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            except OSError:
                return False
            return True
        return self.wait_until(listening, f"a server at {address}", timeout)

    def wait(self, timeout=120.0):
        """Waits for the process to end; returns its exit status (AssertionError with its log if it hangs)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not finish in {timeout} s:\n{self.log()[-3000:]}") from None

    def kill(self):
        """SIGKILL: no goodbye to anyone."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class Tasks:
    """Starts processes and stops every one of them at the end of the test."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.started = []
        self._names = {}

    def start(self, name, argv, env=None):
        n = self._names[name] = self._names.get(name, 0) + 1
        task = Task(name if n == 1 else f"{name}.{n}", argv, self.log_dir, env)
        self.started.append(task)
        return task

    def serve(self, cluster, job, index):
        """A process that serves /job:<job>/task:<index> of `cluster` until stopped."""
        return self.start(f"{job}{index}", [sys.executable, "-c", SERVE, json.dumps(cluster), job, str(index)])

    def script(self, name, path, *args, env=None):
        return self.start(name, [sys.executable, path, *map(str, args)], env)

    def stop_all(self):
        for task in self.started:
            task.stop()


@pytest.fixture
def tasks(tmp_path):
    t = Tasks(str(tmp_path))
    yield t
    t.stop_all()
