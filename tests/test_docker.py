"""The Docker deployment: deploy/Dockerfile's image, docker-compose.yml's cluster, steps from the host.

Builds the image from a local base (tensorgrid-base:bookworm, which `bash deploy/build-base.sh`
makes without any registry, else python:3.12-slim when it is already pulled; TENSORGRID_BASE_IMAGE
picks another), brings the compose cluster up under its own project name on a free host port,
runs steps on its workers with tg.Session("grpc://127.0.0.1:PORT"), and always takes it down.

Skipped, with the reason, where no Docker engine answers, no compose is installed, no base image
is at hand or the wheel folder cannot be made; a Dockerfile that fails to build fails the test.
"""

import os
import shutil
import socket
import subprocess
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
IMAGE = "tensorgrid:pytest"
BASES = ("tensorgrid-base:bookworm", "python:3.12-slim")


def _run(cmd, timeout=120, env=None):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _answers(cmd):
    try:
        return _run(cmd, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _tail(result, lines=30):
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def compose():
    """The compose command, `docker compose` (v2) or `docker-compose` (v1), once an engine answers."""
    if not shutil.which("docker"):
        pytest.skip("no docker command")
    if not _answers(["docker", "info"]):
        pytest.skip("no Docker engine answers (`docker info` fails)")
    if _answers(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _answers(["docker-compose", "version"]):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")


@pytest.fixture(scope="module")
def image(compose):
    """Builds deploy/Dockerfile from a local base and this checkout's wheel; the image's tag.

    The image and its build stage are removed afterwards: a later run builds from its own checkout.
    """
    wanted = os.environ.get("TENSORGRID_BASE_IMAGE")
    bases = [wanted] if wanted else BASES
    base = next((b for b in bases if _answers(["docker", "image", "inspect", b])), None)
    if base is None:
        pytest.skip(f"no base image {' or '.join(bases)} here (`bash deploy/build-base.sh` makes {BASES[0]})")
    wheels = _run(["bash", "deploy/build-base.sh", "--wheels-only"], timeout=600)
    if wheels.returncode != 0:
        pytest.skip(f"cannot make deploy/wheels/: {_tail(wheels, 1)}")
    build = _run(["docker", "build", "--build-arg", f"BASE_IMAGE={base}", "-f", "deploy/Dockerfile",
                  "-t", IMAGE, "."], timeout=600)
    try:
        if build.returncode != 0:
            pytest.fail(f"docker build from {base} failed:\n{_tail(build)}")
        yield IMAGE
    finally:
        _run(["docker", "image", "rm", IMAGE])
        _run(["docker", "image", "prune", "--force", "--filter", "label=tensorgrid.stage=build"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Cluster:
    """A compose project of this repository's docker-compose.yml, reached at `target`."""

    def __init__(self, compose, image):
        self.project = f"tgtest{uuid.uuid4().hex[:8]}"
        self.port = _free_port()
        self.target = f"grpc://127.0.0.1:{self.port}"
        self.env = dict(os.environ, TENSORGRID_PORT=str(self.port), TENSORGRID_IMAGE=image)
        self.compose = compose + ["-p", self.project]

    def run(self, *args, timeout=180):
        return _run(self.compose + list(args), timeout=timeout, env=self.env)

    def up(self, *args):
        result = self.run("up", "-d", "--no-build", *args)
        assert result.returncode == 0, f"compose up failed:\n{_tail(result)}"

    def wait_for_workers(self, n, timeout=90):
        """The master's status once it lists `n` live workers; fails with the logs after `timeout` s."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            try:
                status = remote.cluster_status(self.target, timeout=2)
                if sum(w.health == "alive" for w in status.worker) == n:
                    return status
            except errors.OpError:
                pass
            time.sleep(0.5)
        pytest.fail(f"no {n} live workers after {timeout} s (last status: {status}); "
                    f"logs:\n{_tail(self.run('logs', '--no-color'), 60)}")

    def services(self):
        """The service of each running container of the project."""
        ps = _run(["docker", "ps", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--format", '{{.Label "com.docker.compose.service"}}'])
        return sorted(ps.stdout.split())

    def down(self):
        return self.run("down", "--remove-orphans", "--timeout", "5")


@pytest.fixture(scope="module")
def cluster(compose, image):
    """docker-compose.yml's default cluster (master and two CPU workers), torn down after the module."""
    c = _Cluster(compose, image)
    try:
        c.up()
        c.wait_for_workers(2)
        yield c
    finally:
        down = c.down()
        assert down.returncode == 0, f"compose down failed:\n{_tail(down)}"


def _task(i):
    return f"/job:worker/task:{i}"


def test_image_runs_the_cli(image):
    assert _run(["docker", "run", "--rm", image, "worker", "--help"]).returncode == 0
    unreachable = _run(["docker", "run", "--rm", image, "worker", "--master", "127.0.0.1:1", "--master-wait", "1"])
    assert unreachable.returncode == 1
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr


def test_gpu_profile_config_is_valid(compose):
    gpu = _run(compose + ["--profile", "gpu", "config"])
    assert gpu.returncode == 0, _tail(gpu)
    assert "gpu-worker:" in gpu.stdout and "nvidia" in gpu.stdout


def test_two_worker_step(cluster):
    status = cluster.wait_for_workers(2)
    assert cluster.services() == ["master", "worker", "worker"]  # the gpu profile stays off
    assert sorted(w.task for w in status.worker) == [0, 1]
    # Workers advertise their container addresses, not loopback: they reach one another by them.
    assert all(not w.address.startswith("127.") for w in status.worker), status

    rng = np.random.default_rng(7)
    a = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal((4, 3)).astype(np.float32)
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [6, 4], name="x")
        with tg.device(_task(0)):
            h = tg.nn.relu(tg.matmul(x, tg.constant(b)))
        with tg.device(_task(1)):
            out = tg.reduce_sum(h * 2.0, axis=0) + tg.reduce_max(h)
    with tg.Session(cluster.target, graph=g) as sess:
        got = sess.run(out, feed_dict={x: a})
        busy = remote.cluster_status(cluster.target)
    want = np.maximum(a @ b, 0)
    np.testing.assert_allclose(got, (want * 2.0).sum(axis=0) + want.max(), rtol=1e-5)
    assert got.dtype == np.float32
    assert all(w.registered_graphs > 0 for w in busy.worker), busy


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
