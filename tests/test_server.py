"""Tests for tg.train.Server: static clusters of real tasks (in this process and in processes of their own)."""

import json
import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client import remote
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster
from tests.taskprocs import cluster_of, tasks  # noqa: F401 - the fixture

tf = tg.compat.v1


@pytest.fixture
def servers():
    """Servers started by the test, stopped at its end."""
    started = []

    def start(*args, **kwargs):
        server = args[0] if isinstance(args[0], tf.train.Server) else tf.train.Server(*args, **kwargs)
        started.append(server)
        return server
    yield start
    for s in started:
        s.stop()


def test_server_def_target_and_tf_errors(servers):
    spec = cluster_of(ps=1, worker=2)
    server = servers(tf.train.ClusterSpec(spec), job_name="worker", task_index=1)
    assert server.target == f"grpc://{spec['worker'][1]}"
    sd = server.server_def
    assert (sd.job_name, sd.task_index, sd.protocol) == ("worker", 1, "grpc")
    assert tf.train.ClusterSpec(sd.cluster) == tf.train.ClusterSpec(spec)
    assert tf.distribute.Server is tf.train.Server
    with pytest.raises(ValueError, match="Must specify an explicit `job_name`"):
        tf.train.Server(spec, start=False)
    with pytest.raises(ValueError, match="Must specify an explicit `task_index`"):
        tf.train.Server(spec, job_name="worker", start=False)
    with pytest.raises(errors.InternalError, match='Job "chief" was not defined in cluster'):
        tf.train.Server(spec, job_name="chief", task_index=0, start=False)
    with pytest.raises(errors.InternalError, match='Task 2 was not defined in job "worker"'):
        tf.train.Server(spec, job_name="worker", task_index=2, start=False)
    with pytest.raises(errors.NotFoundError, match="protocol 'grpc\\+verbs'"):
        tf.train.Server(spec, job_name="ps", task_index=0, protocol="grpc+verbs", start=False)
    with pytest.raises(OSError, match="cannot listen on"):
        tf.train.Server(spec, job_name="worker", task_index=1)        # that port is this test's server's


def test_cluster_spec_has_tfs_api():
    spec = tf.train.ClusterSpec({"ps": ["a:1", "b:2"], "worker": {0: "c:3", 2: "d:4"}})
    assert spec.jobs == ["ps", "worker"]
    assert spec.num_tasks("worker") == 2 and spec.task_indices("worker") == [0, 2]
    assert spec.task_address("ps", 1) == "b:2"
    assert spec.job_tasks("worker") == ["c:3", None, "d:4"]
    assert spec.as_dict() == {"ps": ["a:1", "b:2"], "worker": {0: "c:3", 2: "d:4"}}
    assert tf.train.ClusterSpec(spec.as_cluster_def()) == spec
    with pytest.raises(ValueError, match="No such job in cluster"):
        spec.num_tasks("chief")


def test_a_local_server_runs_a_session(servers):
    server = servers(tf.train.Server.create_local_server())
    assert server.target.startswith("grpc://localhost:") and not server.target.endswith(":0")
    tf.disable_eager_execution()
    v = tf.Variable([1.0, 2.0], name="v")
    with tf.Session(server.target) as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(v * 3), [3.0, 6.0])
        assert [d.name for d in sess.list_devices()][0] == "/job:localhost/replica:0/task:0/device:CPU:0"


def _model(spec, task):
    with tf.device(tf.train.replica_device_setter(cluster=spec, worker_device=f"/job:worker/task:{task}")):
        v = tf.Variable(tf.zeros([3]), name="v")
        step = tf.assign_add(v, tf.ones([3]), name="step")
        y = tf.identity(v * 2, name="y")
    return v, step, y


def test_tasks_start_in_any_order_and_the_wait_is_logged(servers, tasks, caplog):
    caplog.set_level(logging.WARNING, "tensorgrid.master")
    spec = cluster_of(ps=1, worker=1)
    worker = servers(spec, "worker", 0)
    tf.disable_eager_execution()
    v, _, y = _model(spec, 0)
    result = {}

    def run():
        with tf.Session(worker.target, graph=v.graph) as sess:
            sess.run(v.initializer)
            result["y"] = sess.run(y)
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not any("is waiting for /job:ps/task:0" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline and thread.is_alive(), "no log line while waiting for the ps"
        time.sleep(0.05)
    line = next(r.getMessage() for r in caplog.records if "is waiting for" in r.getMessage())
    assert f"/job:ps/task:0 at {spec['ps'][0]} (connection refused)" in line, line
    tasks.serve(spec, "ps", 0)
    thread.join(60)
    assert not thread.is_alive()
    np.testing.assert_array_equal(result["y"], [0.0, 0.0, 0.0])


def test_between_graph_replicas_share_the_ps_variables_by_name(servers, tasks):
    """Each replica builds its own graph and session on its own task's master; the ps variables they name
    alike are the same variables (what every between-graph replication script relies on)."""
    spec = cluster_of(ps=1, worker=2)
    tasks.serve(spec, "ps", 0)
    replicas = [servers(spec, "worker", i) for i in range(2)]
    tf.disable_eager_execution()
    sessions = []
    for i, server in enumerate(replicas):
        g = tf.Graph()
        with g.as_default():
            v, step, y = _model(spec, i)
        sessions.append((tf.Session(server.target, graph=g), v, step, y))
    try:
        chief, other = sessions
        chief[0].run(chief[1].initializer)
        chief[0].run(chief[2])
        other[0].run(other[2])
        np.testing.assert_array_equal(other[0].run(other[3]), [4.0, 4.0, 4.0])
        np.testing.assert_array_equal(chief[0].run(chief[1]), [2.0, 2.0, 2.0])
        np.testing.assert_array_equal(other[0].run(other[1]), [2.0, 2.0, 2.0])
    finally:
        for sess, *_ in sessions:
            sess.close()


def test_a_task_that_died_fails_steps_at_once_and_is_found_when_back(servers, tasks):
    spec = cluster_of(ps=1, worker=1)
    ps = tasks.serve(spec, "ps", 0)
    worker = servers(spec, "worker", 0)
    tf.disable_eager_execution()
    v, step, y = _model(spec, 0)
    with tf.device("/job:worker/task:0"):
        local = tf.constant([5.0]) * 2
    with tf.Session(worker.target) as sess:
        sess.run(v.initializer)
        sess.run(step)
        ps.kill()
        started = time.monotonic()
        # Either the master finds the ps gone ("worker /job:ps/task:0 (localhost:N) is unavailable") or
        # worker 0's send to it fails first ("cannot send tensor to /job:ps/task:0 at localhost:N: ...");
        # which comes first is a race, and both name the task.
        with pytest.raises(errors.UnavailableError, match=r"/job:ps/task:0\b.*localhost:\d+"):
            while True:                  # the first step after the kill may still find the ps's old connection
                sess.run(step)
        assert time.monotonic() - started < 5.0
        assert sess.run(local).tolist() == [10.0]           # a step that does not need the ps runs
        tasks.serve(spec, "ps", 0)
        deadline = time.monotonic() + 30
        while True:
            try:
                sess.run(v.initializer)
                break
            except errors.UnavailableError:
                assert time.monotonic() < deadline, "the restarted ps was not found again"
                time.sleep(0.1)
        np.testing.assert_array_equal(sess.run(y), [0.0, 0.0, 0.0])


def test_a_server_mixes_with_a_cli_cluster(servers):
    """A ClusterSpec from `tensorgrid status --cluster-spec` names the CLI workers, but a CLI worker takes
    control calls only from its own master (issue 11's roles): a Server's master that plans a step on it
    gets PermissionDenied saying so, and the worker keeps serving its master."""
    with LocalCluster(num_workers=1) as cli:
        out = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "status", "--master", cli.master_address,
                              "--cluster-spec"], capture_output=True, text=True, timeout=60, check=True).stdout
        spec = json.loads(out)
        assert spec == {"worker": [cli.worker_info(0)["address"]]}
        spec["trainer"] = cluster_of(trainer=1)["trainer"]
        trainer = servers(spec, "trainer", 0)
        tf.disable_eager_execution()
        with tf.device("/job:worker/task:0"):
            v = tf.Variable([1.0, 2.0], name="v")
        with tf.Session(trainer.target) as sess:
            with pytest.raises(errors.PermissionDeniedError, match="only this worker's master may call it"):
                sess.run(v.initializer)
        with tf.Session(cli.target) as sess:
            sess.run(v.initializer)
            np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])
        tf.Session.reset(cli.target)


def test_a_cli_worker_registers_with_a_servers_master(servers, tasks):
    server = servers(tf.train.Server.create_local_server())
    address = server.target[len("grpc://"):]
    tasks.start("extra", [sys.executable, "-m", "tensorgrid.cli", "worker", "--master", address, "--job", "extra"]) \
        .wait_for_output("tensorgrid worker /job:extra/task:0 listening")
    tf.disable_eager_execution()
    with tf.device("/job:extra/task:0"):
        y = tf.constant([1.0, 2.0]) * 3.0
    with tf.Session(server.target) as sess:
        np.testing.assert_array_equal(sess.run(y), [3.0, 6.0])
