"""LocalCluster: a real master process and N real worker processes on this machine.

Used by tests, `tensorgrid local` and the benchmarks. Every process is
`python -m tensorgrid.cli ...` on port 0; each writes a port file once it
serves (a worker only after the master registered it), so starting waits on
files, never on fixed sleeps. The cluster always stops what it started: on
stop(), on leaving a `with` block, at interpreter exit, and (Linux) when the
process that started it dies.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import tensorgrid


class ClusterError(RuntimeError):
    """A cluster process did not start, or died while starting."""


# A child's first program on Linux: sets PR_SET_PDEATHSIG, exits if its parent is already gone, then execs
# the command (same pid). Not a preexec_fn: that makes Popen fork(), whose gRPC fork handlers restart gRPC's
# threads in the child, and those abort it (SIGABRT) once close_fds closes their epoll set before the exec.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"   # 1: PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os.kill(os.getpid(), signal.SIGTERM)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n")


def die_with_parent(argv):
    """`argv` as a command whose process gets SIGTERM when the calling thread ends (Linux; elsewhere argv)."""
    if sys.platform != "linux":
        return list(argv)
    return [sys.executable, "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *argv]


def free_ports(n):
    """n distinct ports that were free a moment ago (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _Proc:
    def __init__(self, name, argv, env, log_path, port_file):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.port_file = port_file
        self.info = None
        out = open(log_path, "ab") if log_path else None
        try:
            self.popen = subprocess.Popen(die_with_parent(argv), env=env, stdin=subprocess.DEVNULL,
                                          stdout=out or subprocess.DEVNULL, stderr=out)
        finally:
            if out is not None:
                out.close()

    def wait_ready(self, deadline):
        while True:
            if os.path.exists(self.port_file):
                with open(self.port_file, encoding="utf-8") as f:
                    self.info = json.load(f)
                return self.info
            code = self.popen.poll()
            if code is not None:
                raise ClusterError(f"{self.name} exited with status {code} while starting: {self.log_tail(1)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name} did not start in time: {self.log_tail(1)}")
            time.sleep(0.02)

    def log_tail(self, lines=20):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no log)"
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            tail = f.read().splitlines()[-lines:]
        return "\n".join(tail) or "(empty log)"

    def signal(self, signum):
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signum)
            except ProcessLookupError:
                pass

    def stop(self, timeout=5.0):
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait()


class LocalCluster:
    """A master, `num_workers` workers (/job:worker/task:0..N-1) and `num_ps` parameter servers
    (/job:ps/task:0..M-1) as processes of this machine. Methods that take a task index `i` take
    job="ps" for the latter. `token` is the cluster token; `client_token`, when given, is the master's
    client token (docs/security.md)."""

    def __init__(self, num_workers=2, token=None, extra_worker_args=(), env=None, host="127.0.0.1", master_port=0,
                 heartbeat_timeout=None, heartbeat_interval=None, log_level="warning", log_to="files",
                 start_timeout=60.0, extra_master_args=(), num_ps=0, client_token=None):
        self.num_workers = num_workers
        self.num_ps = num_ps
        self.token = token
        self.extra_worker_args = list(extra_worker_args)
        self.host = host
        self.heartbeat_interval = heartbeat_interval
        self.log_level = log_level
        self.start_timeout = start_timeout
        self._dir = tempfile.mkdtemp(prefix="tensorgrid-cluster-")
        self._log_to_files = log_to == "files"
        self._env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(tensorgrid.__file__)))
        self._env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, self._env.get("PYTHONPATH")) if p)
        self._env.pop("TENSORGRID_TOKEN", None)
        self._env.pop("TENSORGRID_CLIENT_TOKEN", None)
        # the processes share this machine's cores: each gets its share of BLAS threads, as OpenBLAS
        # spin-waits for cores the other processes need (W5 ran 15 ms steps instead of 1.6 in 2 of 3 runs
        # on 2 loaded cores)
        self._env.setdefault("OPENBLAS_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // (num_workers + num_ps + 1))))
        self._env.update(env or {})
        self.client_token = client_token
        self._token_file = self._secret_file("token", token)
        self._client_token_file = self._secret_file("client-token", client_token)
        self._starts = 0
        self.master = None
        self.workers = [None] * num_workers
        self.ps = [None] * num_ps
        self._heartbeat_timeout = heartbeat_timeout
        self._extra_master_args = list(extra_master_args)
        atexit.register(self.stop)
        try:
            self.master = self._spawn("master", self._master_args(master_port))
            self.master.wait_ready(time.monotonic() + start_timeout)
            for job, procs in (("worker", self.workers), ("ps", self.ps)):
                for i in range(len(procs)):
                    procs[i] = self._spawn_task(job, i)
            deadline = time.monotonic() + start_timeout
            for proc in self.workers + self.ps:
                proc.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _secret_file(self, name, secret):
        if not secret:
            return None
        path = os.path.join(self._dir, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as f:
            f.write(secret)
        return path

    # ---- processes -------------------------------------------------------------------------
    def _spawn(self, name, args):
        self._starts += 1
        port_file = os.path.join(self._dir, f"{name}.{self._starts}.port")
        log_path = os.path.join(self._dir, f"{name}.log") if self._log_to_files else None
        argv = [sys.executable, "-m", "tensorgrid.cli", *args, "--port-file", port_file, "--log-level", self.log_level]
        if self._token_file:
            argv += ["--token-file", self._token_file]
        return _Proc(name, argv, self._env, log_path, port_file)

    def _master_args(self, port):
        args = ["master", "--host", self.host, "--port", str(port), *self._extra_master_args]
        if self._client_token_file:
            args += ["--client-token-file", self._client_token_file]
        if self._heartbeat_timeout is not None:
            args += ["--heartbeat-timeout", str(self._heartbeat_timeout)]
        return args

    def _spawn_task(self, job, i):
        args = ["worker", "--master", self.master_address, "--host", self.host, "--job", job, "--task", str(i),
                *self.extra_worker_args]
        if self.heartbeat_interval is not None:
            args += ["--heartbeat-interval", str(self.heartbeat_interval)]
        return self._spawn(f"{job}{i}", args)

    def _tasks(self, job):
        return self.ps if job == "ps" else self.workers

    @property
    def log_dir(self):
        """The folder holding each process's log file (when logging to files) and port file."""
        return self._dir

    @property
    def master_address(self):
        return self.master.info["address"]

    @property
    def target(self):
        """The tg.Session target of this cluster: 'grpc://host:port'."""
        return f"grpc://{self.master_address}"

    @property
    def dashboard_url(self):
        """The master's dashboard (started with extra_master_args --dashboard-port), with the token to log
        in with when there is one; "" when it serves none."""
        port = self.master.info.get("dashboard_port")
        if port is None:
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")

    def worker_info(self, i, job="worker"):
        """What task i wrote once registered: port, address, data_address, step_address, job, task, pid,
        incarnation."""
        return self._tasks(job)[i].info

    def kill_worker(self, i, job="worker"):
        """SIGKILLs task i (no goodbye to the master) and waits for it to be gone."""
        proc = self._tasks(job)[i]
        proc.signal(signal.SIGKILL)
        proc.popen.wait()

    def stop_worker(self, i, timeout=5.0, job="worker"):
        """Stops task i with SIGTERM, as an operator would."""
        self._tasks(job)[i].stop(timeout)

    def restart_worker(self, i, job="worker"):
        """Starts task i again (same job and task, new process); returns once the master registered it."""
        procs = self._tasks(job)
        if procs[i] is not None and procs[i].popen.poll() is None:
            self.kill_worker(i, job)
        procs[i] = self._spawn_task(job, i)
        return procs[i].wait_ready(time.monotonic() + self.start_timeout)

    def restart_master(self):
        """SIGKILLs the master and starts a new one on the same port; returns once every live worker has
        registered with it again (they do so on their next heartbeat)."""
        port = self.master.info["port"]
        self.master.signal(signal.SIGKILL)
        self.master.popen.wait()
        self.master = self._spawn("master", self._master_args(port))
        deadline = time.monotonic() + self.start_timeout
        self.master.wait_ready(deadline)
        expected = sum(p is not None and p.popen.poll() is None for p in self.workers + self.ps)
        while sum(w.health == "alive" for w in self.status().worker) < expected:
            if time.monotonic() > deadline:
                raise ClusterError(f"workers did not register with the restarted master: {self.status()}")
            time.sleep(0.05)
        return self.master.info

    def log_tail(self, name="master", lines=40):
        """The last lines of the log of "master", "worker<i>" or "ps<i>"."""
        if name == "master":
            return self.master.log_tail(lines)
        job = "ps" if name.startswith("ps") else "worker"
        return self._tasks(job)[int(name[len(job):])].log_tail(lines)

    def status(self, timeout=10.0):
        """The master's ClusterStatusResponse."""
        from tensorgrid.client import remote
        from tensorgrid.proto import config_pb2
        return remote.cluster_status(self.target, config_pb2.ConfigProto(token=self.token or ""), timeout)

    def stop(self):
        """Stops every process of the cluster (workers first) and removes its files; safe to call twice."""
        procs = [p for p in self.workers + self.ps if p is not None]
        procs += [self.master] if self.master is not None else []
        for p in procs:
            p.signal(signal.SIGTERM)
        for p in procs:
            p.stop()
        self.workers = [None] * self.num_workers
        self.ps = [None] * self.num_ps
        self.master = None
        shutil.rmtree(self._dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False
