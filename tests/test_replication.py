"""Replicated ps variables (runtime/replication.py): a ps task killed mid-training loses no update."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.runtime import replication
from tensorgrid.runtime.cluster import LocalCluster
from tensorgrid.runtime.ir import GraphIR, Node

PS0, PS1 = "/job:ps/replica:0/task:0/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"


def _var_attrs(name):
    return {"shared_name": name, "dtype": dtypes.float32, "shape": TensorShape([2])}


def test_written_variables_are_the_handles_that_writes_take():
    g = GraphIR()
    g.add(Node("w", "VarHandleOp", device=PS0, attrs=_var_attrs("w")))
    g.add(Node("b", "VarHandleOp", device=PS0, attrs=_var_attrs("b")))
    g.add(Node("g", "_Recv", device=PS0))
    g.add(Node("apply", "ResourceApplyGradientDescent", ["w:0", "g:0", "g:0"], device=PS0))
    g.add(Node("read", "ReadVariableOp", ["b:0"], device=PS0, attrs={"dtype": dtypes.float32}))
    written = replication.written_variables({PS0: g})
    assert written == {PS0: {replication.Var("", "w", dtypes.float32, TensorShape([2]))}}


def test_the_replica_assigns_every_value_or_none():
    v = [replication.Var("", "w", dtypes.float32, TensorShape([2])), replication.Var("c", "b", dtypes.float32,
                                                                                     TensorShape([2]))]
    g, feeds, target = replication.write_graph(PS1, v)
    assert feeds == ["replica/value0:0", "replica/value1:0"]
    assigns = [n for n in g.nodes.values() if n.op == "AssignVariableOp"]
    assert len(assigns) == 2 and all(n.control_inputs == ["replica/all_values"] for n in assigns)
    assert g["replica/all_values"].control_inputs == ["replica/arrived0", "replica/arrived1"]
    assert g["replica/h1"].attrs["container"] == "c" and g[target].op == "NoOp"
    read, fetches = replication.read_graph(PS0, v)
    assert fetches == ["replica/read0:0", "replica/read1:0"] and all(n.device == PS0 for n in read.nodes.values())


def test_retarget_moves_a_promoted_tasks_nodes_to_its_replica():
    g = GraphIR()
    g.add(Node("w", "VarHandleOp", device="/job:ps/task:0", attrs=_var_attrs("w")))
    g.add(Node("x", "Placeholder", device="/job:worker/task:0"))
    g.add(Node("y", "Identity", ["x:0"]))
    moved = replication.retarget(g, {("ps", 0): ("ps", 1)})
    assert moved["w"].device == "/job:ps/task:1" and moved["x"].device == "/job:worker/task:0"
    assert g["w"].device == "/job:ps/task:0"
    assert replication.retarget(g, {("ps", 5): ("ps", 1)}) is g


def _model(devices):
    """A linear model trained by SGD: (graph, x, y, train op, variables); on ps0 and worker0 when `devices`."""
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:ps/task:0" if devices else None):
            w = tg.compat.v1.Variable(np.arange(6, dtype=np.float32).reshape(3, 2) / 10, name="w")
            b = tg.compat.v1.Variable(np.zeros(2, np.float32), name="b")
            step = tg.compat.v1.train.get_or_create_global_step()
        with tg.device("/job:worker/task:0" if devices else None):
            x = tg.compat.v1.placeholder(tg.float32, [None, 3])
            y = tg.compat.v1.placeholder(tg.float32, [None, 2])
            loss = tg.reduce_mean(tg.square(tg.matmul(x, w) + b - y))
            train = tg.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
        init = tg.compat.v1.global_variables_initializer()
    return g, x, y, train, init, [w, b, step]


def _batches(n):
    rng = np.random.RandomState(0)
    return [(rng.randn(4, 3).astype(np.float32), rng.randn(4, 2).astype(np.float32)) for _ in range(n)]


STEPS, KILL_AFTER = 24, 9


def _uninterrupted():
    g, x, y, train, init, variables = _model(devices=False)
    with tg.compat.v1.Session(graph=g) as sess:
        sess.run(init)
        for xb, yb in _batches(STEPS):
            sess.run(train, {x: xb, y: yb})
        return sess.run(variables)


def test_a_ps_killed_mid_training_with_a_replica_loses_no_update():
    expected = _uninterrupted()
    with LocalCluster(num_workers=1, num_ps=2, extra_worker_args=["--replicas", "1"],
                      heartbeat_timeout=2.0) as cluster:
        g, x, y, train, init, variables = _model(devices=True)
        failures = []
        with tg.compat.v1.Session(cluster.target, graph=g) as sess:
            sess.run(init)
            for i, (xb, yb) in enumerate(_batches(STEPS)):
                if i == KILL_AFTER:
                    cluster.kill_worker(0, job="ps")
                for _ in range(20):   # the step in flight fails; running it again applies it once
                    try:
                        sess.run(train, {x: xb, y: yb})
                        break
                    except errors.UnavailableError as e:
                        failures.append(e.message)
                else:
                    pytest.fail(f"step {i} kept failing: {failures[-1]}")
            got = sess.run(variables)
        master_log = cluster.log_tail("master", 200)
    assert failures, "the step after the kill should have failed once"
    assert "promoted" in master_log, master_log
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert got[2] == STEPS


def test_monitored_training_goes_on_from_the_promoted_replica_without_restoring(tmp_path, caplog):
    caplog.set_level("WARNING", "tensorgrid.train")
    expected = _uninterrupted()
    batches = _batches(STEPS)
    with LocalCluster(num_workers=1, num_ps=2, extra_worker_args=["--replicas", "1"],
                      heartbeat_timeout=2.0) as cluster:
        g, x, y, train, _, variables = _model(devices=True)
        with g.as_default():
            steps_seen = []
            with tg.compat.v1.train.MonitoredTrainingSession(
                    master=cluster.target, is_chief=True, checkpoint_dir=str(tmp_path),
                    save_checkpoint_steps=1000, save_summaries_steps=None,
                    hooks=[tg.compat.v1.train.StopAtStepHook(last_step=STEPS)]) as sess:
                while not sess.should_stop():
                    step = int(sess.run(variables[2]))
                    steps_seen.append(step)
                    if step == KILL_AFTER and len(steps_seen) == KILL_AFTER + 1:
                        cluster.kill_worker(0, job="ps")
                    sess.run(train, {x: batches[step][0], y: batches[step][1]})
            with tg.compat.v1.Session(cluster.target) as sess:
                got = sess.run(variables)
    lines = [r.getMessage() for r in caplog.records]
    assert any("creating the session again" in line for line in lines), lines
    assert any("without restoring the checkpoint" in line for line in lines), lines
    # the checkpoint holds step 0; going on from the replica never goes back to it
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] == STEPS - 1, steps_seen
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
