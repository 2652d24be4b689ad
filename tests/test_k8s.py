"""deploy/k8s/ and the Helm chart deploy/helm/tensorgrid: rendered, validated, and their commands run.

Client-side, with no cluster: the chart is rendered with Helm's own engine (helm-python-sdk, as
`helm template` does) and linted as `helm lint --strict` would; every object is validated against
Kubernetes' OpenAPI schemas (kubernetes-validate, strict: an unknown field fails) of the oldest
and the newest Kubernetes the manifests support; deploy/k8s/ must be the chart's rendering; and
the containers' commands run on this machine as a kubelet would run them (variables expanded,
probes asked, a pod restarted), the Service's name standing for loopback.
"""

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.cli import build_parser
from tensorgrid.client import remote

helm_python = pytest.importorskip("helm_python", reason="the dev extra has helm-python-sdk: pip install -e '.[dev]'")
kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                          reason="the dev extra has kubernetes-validate: pip install -e '.[dev]'")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "tensorgrid"
# The pods learn their task from the apps.kubernetes.io/pod-index label, new in 1.28.
KUBERNETES = ["1.28.0", kubernetes_validate.latest_version()]
VALUES = {
    "defaults": {},
    "gpu and metrics": {"gpuWorkers": {"replicas": 2, "resources": {"limits": {"cpu": "4"}}},
                        "metrics": {"enabled": True}},
    "a client token": {"clientToken": {"existingSecret": "clients"}},
    "file access": {"allowFileAccess": ["/data", "/ckpt"], "gpuWorkers": {"replicas": 1}},
    "own secret, resources, another release": {"token": {"existingSecret": "mine"},
                                               "workers": {"replicas": 5, "resources": {"requests": {"cpu": "1"}}},
                                               "master": {"service": {"type": "LoadBalancer"}}},
}

tf = tg.compat.v1


def _load_render():
    spec = importlib.util.spec_from_file_location("k8s_render", ROOT / "deploy" / "k8s" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_render()


def _objects(values=None, release="tensorgrid"):
    """Every object the chart renders with `values`, as dicts."""
    docs = []
    for text in render.render(values, release=release).values():
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _find(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(found) == 1, f"{kind} {name}: {len(found)} of them in {names}"
    return found[0]


def _container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_the_chart_lints_strictly():
    report = helm_python.lint(CHART, strict=True, kube_version=f"v{KUBERNETES[0]}")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("case", VALUES)
def test_every_rendered_object_validates_against_kubernetes_schemas(case):
    release = "prod" if "another release" in case else "tensorgrid"
    objects = _objects(VALUES[case], release)
    assert objects
    for version in KUBERNETES:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)


def test_bad_values_are_refused_by_the_chart_schema():
    with pytest.raises(helm_python.HelmValuesError, match="replica"):
        render.render({"workers": {"replica": 3}})
    with pytest.raises(helm_python.HelmValuesError, match="gpuWorkers/job"):
        render.render({"gpuWorkers": {"job": "worker"}})  # its tasks would collide with the CPU workers'


def test_the_plain_manifests_are_the_chart_rendered():
    written = {p.relative_to(render.HERE).as_posix(): p.read_text() for p in render.HERE.rglob("*.yaml")}
    assert written == render.plain_manifests(), "deploy/k8s/ is stale: run python deploy/k8s/render.py"
    for text in written.values():
        for obj in yaml.safe_load_all(text):
            kubernetes_validate.validate(obj, KUBERNETES[-1], strict=True)


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_objects_fit_together():
    objects = _objects(VALUES["gpu and metrics"])
    secret = _find(objects, "Secret", "tensorgrid-token")
    assert len(secret["data"]["token"]) >= 48
    service, master = _find(objects, "Service", "tensorgrid-master"), _find(objects, "Deployment", "tensorgrid-master")
    pod_labels = master["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert master["spec"]["strategy"]["type"] == "Recreate"  # never two masters at once
    for name, job, devices in (("tensorgrid-worker", "worker", "cpu"), ("tensorgrid-gpu-worker", "gpu", "gpu")):
        workers = _find(objects, "StatefulSet", name)
        headless = _find(objects, "Service", workers["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None"
        pod = workers["spec"]["template"]
        assert headless["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        container = _container(workers)
        args = container["args"]
        # The pod ordinal is the task, and the pod IP what the worker advertises.
        assert args[args.index("--task") + 1] == "$(TASK)" and args[args.index("--job") + 1] == job
        assert _env(container)["TASK"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
        assert args[args.index("--advertise") + 1] == "$(POD_IP):7071"
        assert args[args.index("--devices") + 1] == devices
        assert args[args.index("--master") + 1] == f"{service['metadata']['name']}:7070"
        assert container["readinessProbe"]["exec"]["command"][:2] == ["tensorgrid", "health"]
        assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "7072",
                                                  "prometheus.io/path": "/metrics"}
        assert args[args.index("--metrics-port") + 1] == "7072"
        assert pod["spec"]["volumes"][0]["secret"]["secretName"] == secret["metadata"]["name"]
    gpu = _container(_find(objects, "StatefulSet", "tensorgrid-gpu-worker"))
    assert gpu["resources"]["limits"] == {"nvidia.com/gpu": 1, "cpu": "4"}
    assert "resources" not in _container(_find(objects, "StatefulSet", "tensorgrid-worker"))


def test_a_client_token_goes_to_the_master_only():
    objects = _objects(VALUES["a client token"])
    master = _container(_find(objects, "Deployment", "tensorgrid-master"))
    workers = _container(_find(objects, "StatefulSet", "tensorgrid-worker"))
    assert _env(master)["TENSORGRID_CLIENT_TOKEN_FILE"] == "/var/run/secrets/tensorgrid-client/token"
    assert "/var/run/secrets/tensorgrid-client" in [m["mountPath"] for m in master["volumeMounts"]]
    volumes = _find(objects, "Deployment", "tensorgrid-master")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "client-token", "secret": {"secretName": "clients", "defaultMode": 0o440}} in volumes
    assert "TENSORGRID_CLIENT_TOKEN_FILE" not in _env(workers)
    assert "TENSORGRID_CLIENT_TOKEN_FILE" not in _env(_container(_find(_objects(), "Deployment", "tensorgrid-master")))


def test_allow_file_access_reaches_every_worker_and_only_them():
    objects = _objects(VALUES["file access"])
    for name in ("tensorgrid-worker", "tensorgrid-gpu-worker"):
        args = _container(_find(objects, "StatefulSet", name))["args"]
        assert [args[i + 1] for i, a in enumerate(args) if a == "--allow-file-access"] == ["/data", "/ckpt"], name
    assert "--allow-file-access" not in _container(_find(objects, "Deployment", "tensorgrid-master"))["args"]
    assert "--allow-file-access" not in _container(_find(_objects(), "StatefulSet", "tensorgrid-worker"))["args"]


def test_every_container_command_parses():
    """The manifests' arguments and probes are commands the CLI takes (metrics aside: SPEC 10 adds it)."""
    objects = _objects({"gpuWorkers": {"replicas": 1}})
    commands = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            container = _container(obj)
            commands.append(container["args"])
            commands += [container[p]["exec"]["command"][1:] for p in ("livenessProbe", "readinessProbe")]
    assert len(commands) == 9
    for argv in commands:
        build_parser().parse_args([re.sub(r"\$\((\w+)\)", lambda m: {"POD_IP": "10.0.0.7", "TASK": "3"}[m.group(1)], a)
                                   for a in argv])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Kubelet:
    """Runs a container's command on this machine as a kubelet would: $(VAR)s expanded from the pod's
    environment, the Service name and 0.0.0.0 replaced by loopback, the manifests' ports by free ones."""

    def __init__(self, token_file):
        self.token_file = token_file
        self.ports = {}
        self.procs = []

    def port(self, pod, port):
        return self.ports.setdefault((pod, port), _free_port())

    def command(self, argv, pod, pod_env):
        master = self.port("master", "7070")
        out = []
        for a in argv:
            a = re.sub(r"\$\((\w+)\)", lambda m: pod_env[m.group(1)], a)
            a = a.replace("tensorgrid-master:7070", f"127.0.0.1:{master}").replace("0.0.0.0", "127.0.0.1")
            a = re.sub(r"^(127\.0\.0\.1:)?(707[01])$", lambda m: (m.group(1) or "") + str(
                master if m.group(2) == "7070" else self.port(pod, m.group(2))), a)
            out.append(a)
        return [sys.executable, "-m", "tensorgrid.cli", *out]

    def environment(self, container):
        env = {k: v for k, v in _env(container).items() if isinstance(v, str)}
        assert env.pop("TENSORGRID_TOKEN_FILE") == "/var/run/secrets/tensorgrid/token"
        return dict(env, TENSORGRID_TOKEN_FILE=str(self.token_file))

    def start(self, container, pod, pod_env):
        proc = subprocess.Popen(self.command(container["args"], pod, pod_env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, **self.environment(container)))
        self.procs.append(proc)
        return proc

    def probe(self, container, probe, pod, pod_env):
        """Runs the container's probe once; its output, after checking that it passed."""
        command = self.command(container[probe]["exec"]["command"][1:], pod, pod_env)
        env = dict(os.environ, **self.environment(container))
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
        assert result.returncode == 0, f"{pod}'s {probe} fails: {result.stderr}"
        return result.stdout

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_pods_commands_run_and_a_restarted_pod_rejoins_as_its_task(tmp_path):
    token = "k8s-test-token"
    (tmp_path / "token").write_text(token + "\n")
    objects = _objects()
    master, workers = (_container(_find(objects, kind, name)) for kind, name in
                       (("Deployment", "tensorgrid-master"), ("StatefulSet", "tensorgrid-worker")))
    kubelet = _Kubelet(tmp_path / "token")
    pods = {f"tensorgrid-worker-{i}": {"POD_IP": "127.0.0.1", "TASK": str(i)} for i in range(2)}
    target = f"grpc://127.0.0.1:{kubelet.port('master', '7070')}"
    config = tg.ConfigProto(token=token)

    def wait_for(predicate, what):
        deadline = time.monotonic() + 60
        while True:
            try:
                status = remote.cluster_status(target, config, timeout=2)
                if predicate(status):
                    return status
            except tg.errors.OpError:
                pass
            assert time.monotonic() < deadline, f"no {what} after 60 s"
            time.sleep(0.05)

    try:
        kubelet.start(master, "master", {})
        wait_for(lambda s: True, "master")
        assert master["livenessProbe"]["exec"] == master["readinessProbe"]["exec"]
        assert kubelet.probe(master, "readinessProbe", "master", {}).startswith("master 127.0.0.1:")
        started = {pod: kubelet.start(workers, pod, env) for pod, env in pods.items()}
        status = wait_for(lambda s: sorted(w.task for w in s.worker if w.health == "alive") == [0, 1], "2 workers")
        # The readiness probe adds --ready to the liveness probe's command.
        assert workers["readinessProbe"]["exec"]["command"] == workers["livenessProbe"]["exec"]["command"] + ["--ready"]
        for pod, env in pods.items():
            assert kubelet.probe(workers, "readinessProbe", pod, env).startswith(
                f"worker /job:worker/task:{env['TASK']} at 127.0.0.1:")
        assert {w.task: w.address for w in status.worker} == {
            i: f"127.0.0.1:{kubelet.port(f'tensorgrid-worker-{i}', '7071')}" for i in range(2)}

        g = tg.Graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, [3], name="x")
            with tg.device("/job:worker/task:0"):
                u = x * 2.0
            with tg.device("/job:worker/task:1"):
                v = u + 1.0
        with tg.Session(target, graph=g, config=config) as sess:
            np.testing.assert_allclose(sess.run(v, {x: [1.0, 2.0, 3.0]}), [3.0, 5.0, 7.0])
            # The pod of task 1 dies and the StatefulSet starts it again: same name, so same task.
            old = next(w.incarnation for w in status.worker if w.task == 1)
            started["tensorgrid-worker-1"].kill()
            started["tensorgrid-worker-1"].wait()
            kubelet.start(workers, "tensorgrid-worker-1", pods["tensorgrid-worker-1"])
            status = wait_for(lambda s: any(w.task == 1 and w.incarnation != old for w in s.worker), "task 1 back")
            assert sorted((w.task, w.health) for w in status.worker) == [(0, "alive"), (1, "alive")], status
            kubelet.probe(workers, "livenessProbe", "tensorgrid-worker-1", pods["tensorgrid-worker-1"])
            np.testing.assert_allclose(sess.run(v, {x: [0.0, 1.0, 2.0]}), [1.0, 3.0, 5.0])
    finally:
        kubelet.stop()
    for proc in kubelet.procs:
        assert "Traceback" not in proc.stderr.read()
