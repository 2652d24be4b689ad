"""The Docker deployment: deploy/Dockerfile's image, docker-compose.yml's cluster, steps from the host.

Builds the image from a local base (tensorgrid-base:bookworm, which `bash deploy/build-base.sh`
makes without any registry, else python:3.12-slim when it is already pulled; TENSORGRID_BASE_IMAGE
picks another), brings compose clusters up under projects of their own on free host ports, runs
steps on their workers with tg.Session("grpc://127.0.0.1:PORT"), breaks them the ways containers
break (a worker killed mid-step, a worker crashing under its restart policy, the master
restarting) and always takes them down.

Not in the default run (pyproject's addopts): `pytest -m docker` runs them, as .ci/run does.
Where no Docker engine answers, no compose is installed or no base image is at hand, the tests
skip on a developer's machine and fail where TENSORGRID_REQUIRE_DOCKER=1 (.ci/run sets it): a CI
run that could not try the Docker deployment has not proven it. Once an engine and a base are
there, anything that keeps the image from building fails the test.

The module prints its timings (image build, cluster up, the cross-container step, kill -> error,
crash -> serving again, ...) at the end, in the test log.
"""

import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client import remote
from tensorgrid.framework import errors

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
BASES = ("tensorgrid-base:bookworm", "python:3.12-slim")
REQUIRED = os.environ.get("TENSORGRID_REQUIRE_DOCKER") == "1"
# docker-compose.yml's worker port inside each container.
WORKER_PORT = 7071
# What the module measured, printed at its end: name -> "seconds s[: note]".
TIMINGS = {}

tf = tg.compat.v1


def _run(cmd, timeout=120, env=None):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _answers(cmd):
    try:
        return _run(cmd, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _tail(result, lines=30):
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def _unavailable(reason):
    if REQUIRED:
        pytest.fail(f"the Docker tests cannot run: {reason} (TENSORGRID_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def _record(name, seconds, note=""):
    TIMINGS[name] = f"{seconds:.2f} s" + (f" ({note})" if note else "")


def _timed(name, since):
    seconds = time.monotonic() - since
    _record(name, seconds)
    return seconds


@pytest.fixture(scope="module", autouse=True)
def _report_timings(request):
    yield
    if TIMINGS:
        plugins = request.config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
        lines = [f"  {name}: {value}" for name, value in TIMINGS.items()]
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n".join(["", "Docker deployment timings (tests/test_docker.py):"] + lines))


@pytest.fixture(scope="module")
def compose():
    """The compose command, `docker compose` (v2) or `docker-compose` (v1), once an engine answers."""
    if not shutil.which("docker"):
        _unavailable("no docker command")
    if not _answers(["docker", "info"]):
        _unavailable("no Docker engine answers (`docker info` fails)")
    if _answers(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _answers(["docker-compose", "version"]):
        return ["docker-compose"]
    _unavailable("neither `docker compose` nor `docker-compose` is installed")


@pytest.fixture(scope="module")
def image(compose):
    """Builds deploy/Dockerfile from a local base and this checkout's wheel; the image's tag.

    The tag is this run's own, and the image and its build stage are removed afterwards: a later or
    concurrent run builds from its own checkout.
    """
    wanted = os.environ.get("TENSORGRID_BASE_IMAGE")
    bases = [wanted] if wanted else BASES
    base = next((b for b in bases if _answers(["docker", "image", "inspect", b])), None)
    if base is None:
        _unavailable(f"no base image {' or '.join(bases)} here (`bash deploy/build-base.sh` makes {BASES[0]})")
    started = time.monotonic()
    version = _run(["docker", "run", "--rm", "--entrypoint", "python3", base, "-c",
                    "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert version.returncode == 0, f"{base} has no python3:\n{_tail(version)}"
    # Wheels for the base's Python alone: the fewest downloads on a cold machine.
    env = dict(os.environ, PYTHON=sys.executable, PYTHON_VERSIONS=version.stdout.strip())
    wheels = _run(["bash", "deploy/build-base.sh", "--wheels-only"], timeout=600, env=env)
    assert wheels.returncode == 0, f"deploy/build-base.sh --wheels-only failed:\n{_tail(wheels)}"
    _timed(f"wheels (build-base.sh --wheels-only, Python {version.stdout.strip()})", started)
    started = time.monotonic()
    tag = f"tensorgrid:pytest-{uuid.uuid4().hex[:8]}"
    # --force-rm: a failed step's container goes too.
    build = _run(["docker", "build", "--force-rm", "--build-arg", f"BASE_IMAGE={base}", "-f", "deploy/Dockerfile",
                  "-t", tag, "."], timeout=600)
    try:
        assert build.returncode == 0, f"docker build from {base} failed:\n{_tail(build)}"
        _timed(f"image build (docker build from {base})", started)
        yield tag
    finally:
        _run(["docker", "image", "rm", tag])
        _run(["docker", "image", "prune", "--force", "--filter", "label=tensorgrid.stage=build"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _task(i):
    return f"/job:worker/task:{i}"


class _Cluster:
    """A compose project of this repository's docker-compose.yml (plus `files`), reached at `target`."""

    def __init__(self, compose, image, files=(), options=(), env=None, token=None):
        self.project = f"tgtest{uuid.uuid4().hex[:8]}"
        self.port = _free_port()
        self.target = f"grpc://127.0.0.1:{self.port}"
        self.config = tg.ConfigProto(token=token) if token else None
        base = {k: v for k, v in os.environ.items() if not k.startswith("TENSORGRID_TOKEN")}
        self.env = dict(base, TENSORGRID_PORT=str(self.port), TENSORGRID_IMAGE=image, **(env or {}))
        self.compose = list(compose) + list(options) + ["-p", self.project]
        if files:
            for f in ("docker-compose.yml", *files):
                self.compose += ["-f", f]

    def run(self, *args, timeout=180):
        return _run(self.compose + list(args), timeout=timeout, env=self.env)

    def up(self, *args):
        result = self.run("up", "-d", "--no-build", *args)
        assert result.returncode == 0, f"compose up failed:\n{_tail(result)}"

    def status(self, timeout=2):
        return remote.cluster_status(self.target, self.config, timeout=timeout)

    def wait_until(self, predicate, what, timeout=90):
        """The master's status once predicate(status) holds; fails with the logs after `timeout` s."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            try:
                status = self.status()
                if predicate(status):
                    return status
            except errors.OpError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{what} not seen after {timeout} s (last status: {status}); "
                    f"logs:\n{_tail(self.run('logs', '--no-color'), 60)}")

    def wait_for_workers(self, n, timeout=90):
        return self.wait_until(lambda s: sum(w.health == "alive" for w in s.worker) == n,
                               f"{n} live workers", timeout)

    def containers(self, service):
        """IDs of the service's containers, running or not."""
        ps = _run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--filter", f"label=com.docker.compose.service={service}"])
        return ps.stdout.split()

    def services(self):
        """The service of each running container of the project."""
        ps = _run(["docker", "ps", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--format", '{{.Label "com.docker.compose.service"}}'])
        return sorted(ps.stdout.split())

    def worker_container(self, task):
        """The container serving /job:worker/task:`task`: the one whose IP the worker advertises."""
        host = next(w.address for w in self.status().worker if w.task == task).rpartition(":")[0]
        for cid in self.containers("worker"):
            if host in _inspect(cid, "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").split():
                return cid
        pytest.fail(f"no container of {self.project} has the address {host} of {_task(task)}")

    def down(self):
        return self.run("down", "--remove-orphans", "--timeout", "5")


def _inspect(container, template):
    result = _run(["docker", "inspect", "--format", template, container])
    assert result.returncode == 0, _tail(result)
    return result.stdout.strip()


def _transport(container):
    """The data-plane counters of the worker in `container`, asked of the worker itself."""
    result = _run(["docker", "exec", container, "tensorgrid", "health", "--worker", f"127.0.0.1:{WORKER_PORT}",
                   "--ready", "--json"])
    assert result.returncode == 0, _tail(result)
    return {k: int(v) for k, v in json.loads(result.stdout)["transport"].items()}


@pytest.fixture(scope="module")
def cluster(compose, image):
    """docker-compose.yml's default cluster (master and two CPU workers), torn down after the module."""
    c = _Cluster(compose, image)
    try:
        started = time.monotonic()
        c.up()
        c.wait_for_workers(2)
        _timed("cluster up (compose up -> 2 workers registered)", started)
        yield c
    finally:
        down = c.down()
        assert down.returncode == 0, f"compose down failed:\n{_tail(down)}"


def _pinned_pair(shape=(4,)):
    """x (fed) -> x + 1 on task 0 -> * 2 on task 1: a step whose tensor crosses from task 0 to task 1."""
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, shape, name="x")
        with tg.device(_task(0)):
            u = x + 1.0
        with tg.device(_task(1)):
            v = u * 2.0
    return g, x, v


def _run_pair(target, config=None):
    g, x, v = _pinned_pair()
    with tg.Session(target, graph=g, config=config) as sess:
        return sess.run(v, {x: np.arange(4, dtype=np.float32)})


def test_image_runs_the_cli(image):
    assert _run(["docker", "run", "--rm", image, "worker", "--help"]).returncode == 0
    unreachable = _run(["docker", "run", "--rm", image, "worker", "--master", "127.0.0.1:1", "--master-wait", "1"])
    assert unreachable.returncode == 1
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr
    # The image's user has a fixed uid, so a secret file can be made readable to it alone.
    assert _run(["docker", "run", "--rm", "--entrypoint", "id", image, "-u"]).stdout.strip() == "10001"


def test_gpu_profile_config_is_valid(compose):
    gpu = _run(compose + ["--profile", "gpu", "config"])
    assert gpu.returncode == 0, _tail(gpu)
    assert "gpu-worker:" in gpu.stdout and "nvidia" in gpu.stdout


def test_a_step_across_containers_takes_the_network_data_plane(cluster):
    status = cluster.wait_for_workers(2)
    assert cluster.services() == ["master", "worker", "worker"]  # the gpu profile stays off
    assert sorted(w.task for w in status.worker) == [0, 1]
    # Workers advertise their container addresses, not loopback: they reach one another by them.
    assert all(not w.address.startswith("127.") for w in status.worker), status
    sender, receiver = cluster.worker_container(0), cluster.worker_container(1)
    before = _transport(receiver)

    # 256 KiB: over the shared-memory threshold, so only separate hosts keep it off /dev/shm.
    a = np.random.default_rng(7).standard_normal((256, 256)).astype(np.float32)
    g, x, v = _pinned_pair(a.shape)
    with tg.Session(cluster.target, graph=g) as sess:
        started = time.monotonic()
        got = sess.run(v, {x: a})
        _timed("cross-container step (first run: plan and register)", started)
        started = time.monotonic()
        again = sess.run(v, {x: a})
        _timed("cross-container step (again)", started)
    np.testing.assert_array_equal(got, (a + 1.0) * 2.0)
    np.testing.assert_array_equal(again, got)

    sent, received = _transport(sender), _transport(receiver)
    # Two containers share no /dev/shm: the probe fails and the tensors go over TCP between them.
    assert received["tensors_received_tcp"] - before.get("tensors_received_tcp", 0) == 2, received
    assert received["bytes_received_tcp"] - before.get("bytes_received_tcp", 0) >= 2 * a.nbytes, received
    assert received.get("tensors_received_shm", 0) == 0 and received.get("tensors_received_grpc", 0) == 0
    assert sent["tensors_sent_tcp"] >= 2 and sent.get("tensors_sent_shm", 0) == 0, sent


def _long_step_graph(task):
    """A step that computes for seconds on `task` (chained 2048x2048 matmuls), then reports to task 0."""
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(task)):
            m = tg.random.uniform([2048, 2048], seed=1) * (1.0 / 2048)
            h = m
            for _ in range(24):
                h = tg.matmul(h, m)
        with tg.device(_task(0)):
            out = tg.reduce_sum(h)
    return g, out


def _busy(status, task):
    return any(w.task == task and w.active_steps > 0 for w in status.worker)


def test_a_worker_killed_mid_step_fails_the_step_and_docker_start_brings_it_back(cluster):
    cluster.wait_for_workers(2)
    victim = cluster.worker_container(1)
    g, out = _long_step_graph(1)
    with tg.Session(cluster.target, graph=g) as sess, concurrent.futures.ThreadPoolExecutor(1) as pool:
        step = pool.submit(sess.run, out)
        cluster.wait_until(lambda s: _busy(s, 1), "the long step running on task 1", timeout=30)
        assert _run(["docker", "kill", victim]).returncode == 0
        killed = time.monotonic()
        error = step.exception(timeout=30)
        waited = time.monotonic() - killed
    assert isinstance(error, errors.UnavailableError), error
    _record("worker killed mid-step (docker kill) -> client error", waited,
            f"{type(error).__name__}: {str(error).splitlines()[0]}")
    assert "task:1" in str(error), error
    assert waited < 5.0, f"the client learnt of the kill after {waited:.1f} s"
    # `docker kill` (like `docker stop`) is an operator's act: restart: unless-stopped leaves it down.
    assert _inspect(victim, "{{.State.Status}} {{.RestartCount}}") == "exited 0"
    cluster.wait_until(lambda s: [w.health for w in s.worker if w.task == 1] == ["dead"], "task 1 marked dead")

    started = time.monotonic()
    assert _run(["docker", "start", victim]).returncode == 0
    cluster.wait_until(lambda s: [w.health for w in s.worker if w.task == 1] == ["alive"], "task 1 back")
    np.testing.assert_array_equal(_run_pair(cluster.target), [2.0, 4.0, 6.0, 8.0])
    _timed("docker start -> the worker serves again", started)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                    reason="crashing a container's process from the host needs root")
def test_a_crashed_worker_is_restarted_by_the_policy_as_the_same_task(cluster):
    cluster.wait_for_workers(2)
    victim = cluster.worker_container(1)
    old = next(w.incarnation for w in cluster.status().worker if w.task == 1)
    restarts = int(_inspect(victim, "{{.RestartCount}}"))
    # SIGKILL from the host, as the kernel's OOM killer would: a crash the engine did not ask for.
    os.kill(int(_inspect(victim, "{{.State.Pid}}")), signal.SIGKILL)
    crashed = time.monotonic()
    cluster.wait_until(lambda s: any(w.task == 1 and w.incarnation != old and w.health == "alive" for w in s.worker),
                       "task 1 registered again under a new incarnation", timeout=60)
    np.testing.assert_array_equal(_run_pair(cluster.target), [2.0, 4.0, 6.0, 8.0])
    _timed("worker crash (SIGKILL from the host) -> restarted and serving again", crashed)
    assert int(_inspect(victim, "{{.RestartCount}}")) == restarts + 1
    # It came back as task 1 itself, not as a third task beside a dead one.
    assert sorted(w.task for w in cluster.status().worker) == [0, 1]


def test_a_master_restart_has_the_workers_register_again(cluster):
    before = {w.task: w.incarnation for w in cluster.wait_for_workers(2).worker}
    started = time.monotonic()
    restart = cluster.run("restart", "--timeout", "5", "master")
    assert restart.returncode == 0, _tail(restart)
    status = cluster.wait_for_workers(2, timeout=60)
    # The same processes, under the tasks they had: a client's device names still hold.
    assert {w.task: w.incarnation for w in status.worker} == before
    np.testing.assert_array_equal(_run_pair(cluster.target), [2.0, 4.0, 6.0, 8.0])
    _timed("master restart (compose restart master) -> workers registered and serving", started)


def test_scale_workers(cluster):
    cluster.up("--scale", "worker=3")
    cluster.wait_for_workers(3)
    g = tg.Graph()
    with g.as_default():
        parts = []
        for i in range(3):
            with tg.device(_task(i)):
                parts.append(tg.range(4, dtype=tg.float64) * float(i + 1))
        with tg.device(_task(0)):
            total = tg.add_n(parts)
    with tg.Session(cluster.target, graph=g) as sess:
        np.testing.assert_array_equal(sess.run(total), np.arange(4.0) * 6.0)


@pytest.mark.parametrize("source", ["env-file", "secret"])
def test_the_token_from_an_env_file_or_a_docker_secret(compose, image, tmp_path, source):
    token = secrets.token_hex(16)
    if source == "env-file":
        env_file = tmp_path / "tensorgrid.env"
        env_file.write_text(f"TENSORGRID_TOKEN={token}\n")
        c = _Cluster(compose, image, options=["--env-file", str(env_file)], token=token)
    else:
        secret = tmp_path / "token"
        secret.write_text(token + "\n")
        secret.chmod(0o444)
        c = _Cluster(compose, image, files=["deploy/compose.secret.yml"], token=token,
                     env={"TENSORGRID_TOKEN_SECRET": str(secret)})
    try:
        c.up()
        c.wait_for_workers(2)
        with pytest.raises(errors.UnauthenticatedError):
            _run_pair(c.target)  # no token
        with pytest.raises(errors.UnauthenticatedError):
            _run_pair(c.target, tg.ConfigProto(token="wrong"))
        np.testing.assert_array_equal(_run_pair(c.target, c.config), [2.0, 4.0, 6.0, 8.0])
        worker = c.containers("worker")[0]
        # The probe inside a container finds the token where the worker did.
        assert _transport(worker) is not None
        leaked = token in _run(["docker", "inspect", worker]).stdout
        assert leaked == (source == "env-file"), "a secret's token must not show in `docker inspect`"
    finally:
        down = c.down()
        assert down.returncode == 0, f"compose down failed:\n{_tail(down)}"
