"""tg.distribute: strategies, cluster resolvers, replica contexts; MultiWorkerMirroredStrategy with real workers."""

import json
import os
import sys

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from taskprocs import EXAMPLES, cluster_of, tasks  # noqa: F401 - fixture

SCRIPT = os.path.join(EXAMPLES, "distribute", "mwms_train.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import mwms_train  # noqa: E402


def _tf_config(cluster, job, index):
    return json.dumps({"cluster": cluster, "task": {"type": job, "index": index}})


def _run_workers(tasks, tmp_path, n, *args, env=None):  # noqa: F811
    cluster = cluster_of(worker=n)
    procs = [tasks.script(f"worker{i}", SCRIPT, tmp_path / f"out{i}.json", "--all-write", *args,
                          env={"TF_CONFIG": _tf_config(cluster, "worker", i), **(env or {})}) for i in range(n)]
    for p in procs:
        assert p.wait(180) == 0, p.log()[-3000:]
    return [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(n)]


def _assert_weights(result, expected, atol=1e-5):
    for got, want in zip(result["weights"], expected["weights"]):
        np.testing.assert_allclose(np.array(got), np.array(want), atol=atol)
    np.testing.assert_allclose(result["losses"], expected["losses"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,optimizer", [(2, "manual"), (3, "v1"), (2, "keras")])
def test_mwms_workers_train_to_the_weights_of_full_batch_gradient_descent(tasks, tmp_path, n, optimizer):  # noqa: F811
    results = _run_workers(tasks, tmp_path, n, f"--optimizer={optimizer}")
    expected = mwms_train.reference()
    for r in results:
        assert r["replicas"] == n
        _assert_weights(r, expected)


def test_keras_fit_on_two_mwms_workers_gives_the_weights_of_full_batch_training(tasks, tmp_path):  # noqa: F811
    import mwms_fit_worker
    cluster = cluster_of(worker=2)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mwms_fit_worker.py")
    procs = [tasks.script(f"worker{i}", script, tmp_path / f"fit{i}.json",
                          env={"TF_CONFIG": _tf_config(cluster, "worker", i)}) for i in range(2)]
    for p in procs:
        assert p.wait(180) == 0, p.log()[-3000:]
    expected = mwms_fit_worker.reference()
    for i in range(2):
        result = json.loads((tmp_path / f"fit{i}.json").read_text())
        assert result["replicas"] == 2
        for got, want in zip(result["weights"], expected):
            np.testing.assert_allclose(np.array(got), want, atol=1e-5)


@pytest.mark.slow
def test_tensorflow_mwms_gives_the_same_weights(tasks, tmp_path):  # noqa: F811
    pytest.importorskip("tensorflow")
    results = _run_workers(tasks, tmp_path, 2, env={"TG_USE_TF": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    _assert_weights(results[0], mwms_train.reference())


# ---- one process ----------------------------------------------------------------------------------------

def test_tf_config_cluster_resolver_reads_the_environment(monkeypatch):
    cluster = {"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1},
                                                 "rpc_layer": "grpc"}))
    r = tg.distribute.cluster_resolver.TFConfigClusterResolver()
    assert r.cluster_spec().as_dict() == cluster
    assert (r.task_type, r.task_id, r.rpc_layer) == ("worker", 1, "grpc")
    assert r.master() == "grpc://h:3" and r.master("ps", 0) == "grpc://h:4"
    assert r.num_accelerators() == {}
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        r.cluster_spec()
    s = tg.distribute.cluster_resolver.SimpleClusterResolver(tg.train.ClusterSpec(cluster), task_type="chief",
                                                             task_id=0, rpc_layer="grpc")
    assert s.cluster_spec().num_tasks("worker") == 2 and s.master("chief", 0) == "grpc://h:1"


def test_without_tf_config_mwms_is_one_replica_and_contexts_follow_tf(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not tg.distribute.has_strategy()
    default_ctx = tg.distribute.get_replica_context()
    assert default_ctx is not None and default_ctx.num_replicas_in_sync == 1
    strategy = tg.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        assert tg.distribute.get_strategy() is strategy and tg.distribute.has_strategy()
        assert tg.distribute.get_replica_context() is None and tg.distribute.in_cross_replica_context()
        v = tg.Variable([1.0, 2.0])

        def fn(x):
            ctx = tg.distribute.get_replica_context()
            assert ctx.strategy is strategy and int(ctx.replica_id_in_sync_group) == 0
            return ctx.all_reduce(tg.distribute.ReduceOp.MEAN, {"a": x * v})
        out = strategy.run(fn, args=(tg.constant([3.0, 4.0]),))
    np.testing.assert_array_equal(out["a"].numpy(), [3.0, 8.0])
    np.testing.assert_array_equal(strategy.reduce("SUM", tg.constant([[1.0, 2.0], [3.0, 4.0]]), axis=0).numpy(),
                                  [4.0, 6.0])
    assert float(strategy.reduce(tg.distribute.ReduceOp.MEAN, tg.constant([1.0, 2.0, 6.0]), axis=0)) == 3.0
    assert not tg.distribute.has_strategy()
    ds = tg.data.Dataset.range(4).batch(2)
    assert strategy.experimental_distribute_dataset(ds) is ds
    ctx_seen = []
    strategy.distribute_datasets_from_function(lambda ctx: ctx_seen.append(ctx) or ds)
    assert ctx_seen[0].num_input_pipelines == 1 and ctx_seen[0].get_per_replica_batch_size(8) == 8
    with pytest.raises(ValueError, match="reduce_op must be"):
        strategy.reduce("max", tg.constant(1.0), axis=None)


def test_mwms_rejects_a_task_that_is_not_a_worker(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _tf_config({"worker": ["localhost:1"], "ps": ["localhost:2"]}, "ps", 0))
    with pytest.raises(ValueError, match="not a chief or worker"):
        tg.distribute.MultiWorkerMirroredStrategy()


def test_mirrored_strategy_runs_one_replica_on_this_processs_cpu():
    strategy = tg.distribute.MirroredStrategy()
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        out = strategy.run(lambda: tg.distribute.get_replica_context().all_reduce("sum", tg.constant(2.0)))
    assert float(out) == 2.0
    assert strategy.experimental_local_results(out) == (out,)
    with pytest.raises(errors.InvalidArgumentError, match="not a device of this process"):
        tg.distribute.MirroredStrategy(["/gpu:0"])
    with pytest.raises(ValueError, match="duplicated devices"):
        tg.distribute.MirroredStrategy(["/cpu:0", "/cpu:0"])


# ---- MirroredStrategy over several devices of this process ----------------------------------------------

MIRRORED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirrored_program.py")


def test_mirrored_strategy_on_two_cpus_mirrors_variables_and_all_reduces_between_replicas():
    strategy = tg.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        v = tg.Variable([1.0, 2.0], name="v")
    parts = strategy.experimental_local_results(v)
    assert [p.name for p in parts] == ["v:0", "v/replica_1:0"]
    assert [p.device for p in parts] == [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(2)]

    def fn(x):
        ctx = tg.distribute.get_replica_context()
        k = tg.cast(ctx.replica_id_in_sync_group, tg.float32)
        v.assign_add(k)            # replica k updates its own component
        return ctx.all_reduce("sum", x * (k + 1.0)), ctx.all_reduce(tg.distribute.ReduceOp.MEAN, k)

    summed, mean = strategy.run(fn, args=(tg.constant([3.0, 4.0]),))
    assert isinstance(summed, tg.distribute.distribute_lib.PerReplica)
    for part in summed.values:
        np.testing.assert_array_equal(part.numpy(), [9.0, 12.0])
    assert [float(m) for m in mean.values] == [0.5, 0.5]
    np.testing.assert_array_equal([p.numpy() for p in parts], [[1.0, 2.0], [2.0, 3.0]])
    v.assign([5.0, 6.0])           # cross-replica: every component
    np.testing.assert_array_equal([p.numpy() for p in parts], [[5.0, 6.0], [5.0, 6.0]])
    np.testing.assert_array_equal(strategy.reduce("sum", summed, axis=None).numpy(), [18.0, 24.0])
    assert float(strategy.reduce("mean", summed, axis=0)) == 10.5

    @tg.function
    def traced(x):
        per_replica = strategy.run(lambda x: tg.distribute.get_replica_context().all_reduce("sum", x * v), args=(x,))
        return strategy.reduce("sum", per_replica, axis=None)
    dist = list(strategy.experimental_distribute_dataset(tg.data.Dataset.from_tensor_slices(
        np.arange(8, dtype=np.float32).reshape(4, 2)).batch(4)))
    assert len(dist) == 1 and [p.shape.as_list() for p in dist[0].values] == [[2, 2], [2, 2]]
    scaled = np.arange(8).reshape(4, 2) * [5, 6]    # each replica's rows times v, summed over replicas, twice
    np.testing.assert_array_equal(traced(dist[0]).numpy(), 2 * (scaled[:2] + scaled[2:]))
    devices = {op.device for op in traced.get_concrete_function(dist[0]).graph.get_operations()}
    assert {f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(2)} <= devices

    def uneven():
        ctx = tg.distribute.get_replica_context()
        if ctx._replica_id == 0:
            ctx.all_reduce("sum", tg.constant(1.0))
        return tg.constant(0.0)
    with pytest.raises(errors.InvalidArgumentError, match=r"replicas \[0\] reached all-reduce #1 that replicas \[1\]"):
        strategy.run(uneven)


@pytest.mark.parametrize("optimizer,replicas", [("manual", 2), ("keras", 2), ("v1", 3)])
def test_mirrored_training_on_cpu_devices_gives_the_weights_of_full_batch_gradient_descent(tmp_path, optimizer,
                                                                                           replicas):
    import mirrored_program
    mirrored_program.main(tmp_path / "out.json", optimizer, replicas)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["replicas"] == replicas
    assert result["devices"][0] == [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(replicas)]
    _assert_weights(result, mwms_train.reference())
    for parts in result["components"]:
        assert all(p == parts[0] for p in parts)


@pytest.mark.slow
def test_tensorflow_mirrored_strategy_on_logical_cpus_gives_the_same_weights(tasks, tmp_path):  # noqa: F811
    pytest.importorskip("tensorflow")
    run = tasks.script("tf", MIRRORED, tmp_path / "out.json", "--optimizer=keras",
                       env={"TG_USE_TF": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert run.wait(240) == 0, run.log()[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["devices"][0] == [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(2)]
    _assert_weights(result, mwms_train.reference())


def test_parameter_server_strategy_places_variables_round_robin_on_the_ps_tasks():
    cluster = {"worker": ["localhost:1"], "ps": ["localhost:2", "localhost:3"]}
    resolver = tg.distribute.cluster_resolver.SimpleClusterResolver(tg.train.ClusterSpec(cluster),
                                                                    task_type="worker", task_id=0)
    strategy = tg.distribute.experimental.ParameterServerStrategy(resolver)
    assert strategy.num_ps_tasks == 2
    g = tg.Graph()
    with g.as_default():
        with strategy.scope():
            a, b, c = tg.Variable(1.0, name="a"), tg.Variable(2.0, name="b"), tg.Variable(3.0, name="c")
            out = strategy.run(lambda: a + b)
    assert [v.op.device for v in (a, b, c)] == ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:0"]
    assert out.op.device.startswith("/job:worker/task:0")
    # eager (TF2) use needs the cluster's coordinator, its chief task
    with pytest.raises(ValueError, match="has no 'chief' job"):
        with strategy.scope():
            pass
    partitioned = tg.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=tg.compat.v1.fixed_size_partitioner(2))
    with pytest.raises(errors.UnimplementedError, match="no ShardedVariable"):
        with partitioned.scope():
            pass
    with pytest.raises(ValueError, match="only supports tg.distribute.experimental.ParameterServerStrategy"):
        tg.distribute.experimental.coordinator.ClusterCoordinator(tg.distribute.MirroredStrategy())


# ---- ParameterServerStrategy with a ClusterCoordinator: a chief (the coordinator script), 2 ps, 2 workers ------

COORDINATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pss_coordinator.py")


def _pss_cluster(tasks, serve):  # noqa: F811
    cluster = cluster_of(chief=1, ps=2, worker=2)
    servers = {(job, i): serve(cluster, job, i) for job in ("ps", "worker") for i in range(2)}
    return cluster, servers


def _assert_pss_result(result, closures, tensorflow=False):
    import pss_coordinator
    expected = mwms_train.reference()
    # phase 1: each step fetched before the next, so sequential gradient descent, whichever worker ran it
    np.testing.assert_allclose(result["losses"], expected["losses"], rtol=1e-5)
    for got, want in zip(result["weights"], expected["weights"]):
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-5)
    # Keras: momentum SGD's numbers, slots on their variables' ps tasks
    for got, want in zip(result["keras_weights"], pss_coordinator.keras_reference()):
        np.testing.assert_allclose(np.array(got), want, rtol=1e-4, atol=1e-5)
    assert {d.split("/task:")[0] for d in result["keras_devices"]} == {"/job:ps/replica:0"}
    if tensorflow:   # Keras 3 on TF 2.21 makes the slots on the coordinator, every step reads them from there
        assert {d.split("/task:")[0] for d in result["keras_slot_devices"]} == {"/job:chief/replica:0"}
    else:
        assert sorted(result["keras_slot_devices"]) == sorted(result["keras_devices"])
    # round-robin over the ps tasks, in the order the variables were made (after the Keras model's
    # 2 weights and the optimizer's 2 variables)
    assert result["devices"] == [f"/job:ps/replica:0/task:{i % 2}/device:CPU:0" for i in range(6)]
    # phase 2: every closure read its worker's dataset and ran
    assert result["fetched"] == [float(2 * pss_coordinator.ASYNC_X.sum())] * pss_coordinator.CLOSURES
    assert result["count"] in closures
    assert any(np.allclose(result["shift"], pss_coordinator.async_shift(n)) for n in closures), result["shift"]
    assert result["done"] is True
    # phase 4: a closure past the end of its worker's dataset of 3 fails, and join() raises its error
    assert result["join_error"] == "OutOfRangeError"
    assert all(result["taken"].count(v) <= 2 for v in range(3)) and set(result["taken"]) <= {0, 1, 2}


def test_cluster_coordinator_runs_tg_functions_on_two_workers_with_variables_on_two_ps(tasks, tmp_path):  # noqa: F811
    import pss_coordinator
    cluster, _ = _pss_cluster(tasks, tasks.serve)
    coordinator = tasks.script("chief0", COORDINATOR, json.dumps(cluster), tmp_path / "out.json")
    assert coordinator.wait(180) == 0, coordinator.log()[-3000:]
    _assert_pss_result(json.loads((tmp_path / "out.json").read_text()), [pss_coordinator.CLOSURES])


def test_a_worker_killed_mid_schedule_has_its_closure_run_on_the_other_and_comes_back(tasks, tmp_path):  # noqa: F811
    import pss_coordinator
    cluster, servers = _pss_cluster(tasks, tasks.serve)
    victim = servers[("worker", 1)]
    coordinator = tasks.script("chief0", COORDINATOR, json.dumps(cluster), tmp_path / "out.json",
                               "--kill-pid", victim.popen.pid, "--kill-after", 8, "--expect-back")
    coordinator.wait_for_output("killed", timeout=180)
    victim.popen.wait(30)
    tasks.serve(cluster, "worker", 1)        # the same task again, on its port
    assert coordinator.wait(180) == 0, coordinator.log()[-3000:]
    log = coordinator.log()
    assert "worker /job:worker/task:1 failed while running a closure (UnavailableError" in log, log[-3000:]
    assert "the closure goes to another worker" in log and "worker /job:worker/task:1 is back after" in log
    result = json.loads((tmp_path / "out.json").read_text())
    # at least once: the closure in flight may have updated a variable before its worker died
    n = pss_coordinator.CLOSURES
    _assert_pss_result(result, [n, n + 1])
    assert result["back_after"] is not None


def test_a_ps_killed_mid_schedule_fails_join_with_unavailable_naming_it(tasks, tmp_path):  # noqa: F811
    cluster, servers = _pss_cluster(tasks, tasks.serve)
    coordinator = tasks.script("chief0", COORDINATOR, json.dumps(cluster), tmp_path / "out.json",
                               "--kill-pid", servers[("ps", 1)].popen.pid, "--kill-after", 8, "--ps-dies")
    assert coordinator.wait(180) == 0, coordinator.log()[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    # not retried on another worker, and no hang: the closure's error, then the queued ones cancelled
    assert result["join_error"] == "UnavailableError", result
    assert "/job:ps/task:1" in result["message"]
    assert result["seconds_after_kill"] < 30
    assert "value" in result["outcomes"] and "UnavailableError" in result["outcomes"], result["outcomes"]
    assert "goes to another worker" not in coordinator.log()


TF_SERVE = ("import json, sys, tensorflow as tf; tf.distribute.Server(tf.train.ClusterSpec(json.loads(sys.argv[1])), "
            "job_name=sys.argv[2], task_index=int(sys.argv[3]), protocol='grpc', start=True).join()")


def _tf_pss_cluster(tasks):  # noqa: F811
    pytest.importorskip("tensorflow")
    env = {"TG_USE_TF": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}

    def serve(cluster, job, i):
        return tasks.start(f"{job}{i}", [sys.executable, "-c", TF_SERVE, json.dumps(cluster), job, str(i)], env=env)
    return _pss_cluster(tasks, serve) + (env,)


@pytest.mark.slow
def test_tensorflow_cluster_coordinator_computes_the_same(tasks, tmp_path):  # noqa: F811
    """The coordinator script on TensorFlow's own ParameterServerStrategy, ps and workers each a
    tf.distribute.Server process (TF's cluster of Servers in one process hangs at the first schedule here)."""
    import pss_coordinator
    cluster, _, env = _tf_pss_cluster(tasks)
    coordinator = tasks.script("chief0", COORDINATOR, json.dumps(cluster), tmp_path / "out.json", env=env)
    assert coordinator.wait(240) == 0, coordinator.log()[-3000:]
    _assert_pss_result(json.loads((tmp_path / "out.json").read_text()), [pss_coordinator.CLOSURES], tensorflow=True)


@pytest.mark.slow
def test_tensorflow_cluster_coordinator_also_reruns_the_closure_of_a_killed_worker(tasks, tmp_path):  # noqa: F811
    import pss_coordinator
    cluster, servers, env = _tf_pss_cluster(tasks)
    coordinator = tasks.script("chief0", COORDINATOR, json.dumps(cluster), tmp_path / "out.json",
                               "--kill-pid", servers[("worker", 1)].popen.pid, "--kill-after", 8, env=env)
    assert coordinator.wait(240) == 0, coordinator.log()[-3000:]
    assert "Worker /job:worker/replica:0/task:1 failed with UnavailableError" in coordinator.log()
    n = pss_coordinator.CLOSURES
    _assert_pss_result(json.loads((tmp_path / "out.json").read_text()), [n, n + 1], tensorflow=True)
