"""Collectives between processes (worker/collectives.py, the Collective* ops): all-reduce (one-round exchange for
small tensors, ring for large), gather, broadcast.

Real member processes for the sums and for a member that dies; members on threads of this process
(each with its own data plane) for the error cases.
"""

import json
import os
import sys
import threading

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.distribute import collective_ops as co
from tensorgrid.framework import errors
from tensorgrid.worker import collectives
from taskprocs import free_ports, tasks  # noqa: F401 - fixture

MEMBER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "collective_member.py")


def _members(n):
    return [f"127.0.0.1:{p}" for p in free_ports(n)]


def _results(task):
    out = {}
    for line in task.log().splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            out[r["kind"]] = r
    return out


def test_ring_all_reduce_gather_and_broadcast_in_three_processes_equal_numpy(tasks):  # noqa: F811
    members = _members(3)
    procs = [tasks.script(f"member{r}", MEMBER, ",".join(members), r, "ops") for r in range(3)]
    for p in procs:
        assert p.wait(120) == 0, p.log()[-3000:]
    results = [_results(p) for p in procs]
    inputs = [np.array(r["sum"]["input"], np.float32) for r in results]
    for r in results:
        np.testing.assert_allclose(r["sum"]["value"], sum(inputs), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(r["mean"]["value"], sum(inputs) / 3, rtol=1e-6, atol=1e-6)
        assert r["big"]["value"] == pytest.approx(sum(x["big"]["input"] for x in results), rel=1e-4, abs=1e-2)
        ints = [np.array(x["Add"]["input"]) for x in results]
        assert r["Add"]["value"] == (ints[0] + ints[1] + ints[2]).tolist()
        assert r["Mul"]["value"] == (ints[0] * ints[1] * ints[2]).tolist()
        assert r["Min"]["value"] == np.minimum.reduce(ints).tolist()
        assert r["Max"]["value"] == np.maximum.reduce(ints).tolist()
        assert r["gather"]["value"] == [[0, 0], [1, 1], [1, 1], [2, 2], [2, 2], [2, 2]]
        assert r["bcast"]["value"] == r["bcast"]["rank0"]
        # the big tensor's chunks went through shared memory (same host)
        assert r["stats"]["shm"] > 300_000 * 4 // 3


def test_a_member_killed_fails_the_collective_on_every_other_member(tasks):  # noqa: F811
    members = _members(3)
    procs = [tasks.script(f"member{r}", MEMBER, ",".join(members), r, "die") for r in range(3)]
    procs[2].wait_for_output("DYING", 60)
    procs[2].kill()
    for p in procs[:2]:
        assert p.wait(60) == 0, p.log()[-3000:]
        log = p.log()
        assert "ERROR UnavailableError" in log, log[-3000:]
        assert "NO ERROR" not in log
        # the next collective fails too, naming a member that is gone (the killed one, or the other survivor
        # if it already finished and exited)
        again = log.split("AGAIN", 1)[-1]
        assert "AGAIN UnavailableError" in log and "is unavailable" in again, log[-2000:]
        assert any(m in again for m in (members[2], members[1 - procs.index(p)])), log[-2000:]


# ---- members on threads of this process ---------------------------------------------------------------------

def _group(n, timeout=None):
    members = _members(n)
    comms = [collectives.Communicator(members, r, timeout=timeout).start() for r in range(n)]
    return comms


def _on_threads(comms, fn):
    """fn(comm) on one thread per member; [(result, error)] in rank order."""
    out = [None] * len(comms)

    def run(i):
        try:
            out[i] = (fn(comms[i]), None)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out[i] = (None, e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(comms))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.fixture
def group2():
    comms = _group(2)
    yield comms
    for c in comms:
        c.close()


def test_members_on_threads_all_reduce_repeatedly_and_by_instance(group2):
    def body(c):
        outs = []
        for k in range(3):  # the k-th run of an instance meets the k-th run on the other member
            outs.append(c.all_reduce(np.full(4, c.rank + k, np.float64), 2, 7, 1))
        outs.append(c.all_reduce(np.array([c.rank + 1.0]), 2, 7, 2, "Max", "Id"))
        # a small tensor goes round the ring too when asked (communication_hint "ring"), to the same sum
        outs.append(c.all_reduce(np.arange(5.0) * (c.rank + 1), 2, 7, 4, ring=True))
        # a scalar keeps its shape
        outs.append(c.broadcast_send(np.float32(0.5), 2, 7, 3) if c.rank == 0 else
                    c.broadcast_recv((), np.float32, 2, 7, 3))
        return outs
    (a, ea), (b, eb) = _on_threads(group2, body)
    assert ea is None and eb is None, (ea, eb)
    for k in range(3):
        np.testing.assert_array_equal(a[k], np.full(4, 1 + 2 * k))
        np.testing.assert_array_equal(b[k], a[k])
    assert a[3].tolist() == [2.0] == b[3].tolist()
    np.testing.assert_array_equal(a[4], np.arange(5.0) * 3)
    np.testing.assert_array_equal(b[4], a[4])
    assert b[5].shape == () and b[5] == np.float32(0.5)


def test_shape_mismatch_fails_both_members_with_invalid_argument(group2):
    (_, ea), (_, eb) = _on_threads(group2, lambda c: c.all_reduce(np.zeros(4 + 2 * c.rank, np.float32), 2, 1, 1))
    assert isinstance(ea, (errors.InvalidArgumentError, errors.UnavailableError)), ea
    assert isinstance(eb, (errors.InvalidArgumentError, errors.UnavailableError)), eb
    assert "different tensors" in ea.message + eb.message


def test_members_whose_tensors_pick_different_algorithms_fail_with_invalid_argument(group2):
    # 4 floats are exchanged in one round, 100,000 (over SMALL_BYTES) go round the ring: no hang
    sizes = (4, 100_000)
    (_, ea), (_, eb) = _on_threads(group2, lambda c: c.all_reduce(np.zeros(sizes[c.rank], np.float32), 2, 1, 1))
    assert isinstance(ea, (errors.InvalidArgumentError, errors.UnavailableError)), ea
    assert isinstance(eb, (errors.InvalidArgumentError, errors.UnavailableError)), eb
    assert "different tensors" in ea.message + eb.message


def test_a_member_that_never_comes_times_out_with_deadline_exceeded():
    comms = _group(2, timeout=0.5)
    try:
        with pytest.raises(errors.DeadlineExceededError, match="timed out waiting for the other members"):
            comms[0].all_reduce(np.ones(3), 2, 1, 1)
    finally:
        for c in comms:
            c.close()


def test_group_size_must_match_the_process_group(group2):
    with pytest.raises(errors.InvalidArgumentError, match="group_size 3 for group 1, but this process's collective "
                                                          "group has 2 members"):
        group2[0].all_reduce(np.ones(3), 3, 1, 1)
    with pytest.raises(errors.InvalidArgumentError, match="merge_op 'Sum'"):
        group2[0].all_reduce(np.ones(3), 2, 1, 1, merge_op="Sum")


def test_ops_without_a_group_reduce_over_one_member_or_say_what_is_missing():
    assert collectives.current() is None
    x = tg.constant([1.0, 2.0])
    np.testing.assert_array_equal(co.all_reduce_v2(x, 1, 1, 1).numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(tg.raw_ops.CollectiveReduceV2(input=x, group_size=1, group_key=1, instance_key=1,
                                                                merge_op="Add", final_op="Id").numpy(), [1.0, 2.0])
    with pytest.raises(errors.FailedPreconditionError, match="no collective group.*MultiWorkerMirroredStrategy"):
        co.all_reduce_v2(x, 2, 1, 1)


def test_collective_ops_in_a_tf1_graph_carry_tf_names_and_attrs():
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [3], name="x")
        y = co.all_reduce(x, 1, 5, 9, merge_op="Max", final_op="Id")
        z = co.all_gather(x, 1, 5, 10)
        r = tg.raw_ops.CollectiveBcastRecvV2(group_size=2, group_key=5, instance_key=11, shape=[2, 3], T=tg.float32)
    assert y.op.type == "CollectiveReduce" and y.op.get_attr("group_key") == 5
    assert y.op.get_attr("merge_op") == "Max" and y.shape.as_list() == [3]
    assert z.op.type == "CollectiveGather" and z.shape.as_list() == [None]
    assert r.op.type == "CollectiveBcastRecvV2" and r.shape.as_list() == [2, 3]
    with tg.compat.v1.Session(graph=g) as sess:
        out = sess.run([y, z], {x: [1.0, 2.0, 3.0]})
    assert out[0].tolist() == [1.0, 2.0, 3.0] and out[1].tolist() == [1.0, 2.0, 3.0]


# ---- in-graph all-reduces: every member in one step, planned by one master ------------------------------------

def _in_graph_reduces(tf, devices):
    """A TF1 graph with an all-reduce (mean) and a CollectiveReduceV2 (max) across `devices`; its fetches."""
    means, maxes = [], []
    for i, device in enumerate(devices):
        with tf.device(device):
            x = tf.constant([1.0, 2.0, 4.0]) * float(i + 1)
            means.append(tf.raw_ops.CollectiveReduce(input=x, group_size=len(devices), group_key=1, instance_key=7,
                                                     merge_op="Add", final_op="Div", subdiv_offsets=[0]))
            maxes.append(tf.raw_ops.CollectiveReduceV2(input=x - 3.0, group_size=len(devices), group_key=1,
                                                       instance_key=8, merge_op="Max", final_op="Id",
                                                       ordering_token=[]))
    return means + maxes


def test_the_in_graph_pass_merges_an_instance_whose_members_are_all_in_the_graph():
    from literal_graphs import DEVS, const
    from tensorgrid.runtime import in_graph_collectives
    from tensorgrid.runtime.ir import GraphIR, Node

    def member(name, x, device, instance, size=2, merge="Add"):
        return Node(name, "CollectiveReduce", [f"{x}:0"], [], device,
                    {"group_size": size, "group_key": 1, "instance_key": instance, "merge_op": merge, "final_op": "Id"})
    graph = GraphIR([const("a", [1.0], DEVS[1]), const("b", [2.0], DEVS[0]),
                     member("r1", "a", DEVS[1], 5), member("r0", "b", DEVS[0], 5),
                     member("alone", "a", DEVS[1], 6)])      # its other member is another process's
    out = in_graph_collectives.rewrite(graph)
    merge = out["r0/_in_graph_all_reduce"]   # named after the first member by rank
    assert (merge.op, merge.device, merge.inputs) == ("_CollectiveMerge", DEVS[0], ["b:0", "a:0"])  # rank order
    assert [(out[n].op, out[n].device, out[n].inputs) for n in ("r0", "r1")] == [
        ("Identity", DEVS[0], [f"{merge.name}:0"]), ("Identity", DEVS[1], [f"{merge.name}:0"])]
    assert out["alone"].op == "CollectiveReduce"
    assert in_graph_collectives.rewrite(GraphIR([const("a", [1.0]), member("x", "a", DEVS[0], 1, size=1)]))["x"].op \
        == "Identity"
    too_many = GraphIR([const("a", [1.0])] + [member(f"m{i}", "a", DEVS[i], 3) for i in range(3)])
    with pytest.raises(errors.InvalidArgumentError, match=r"instance_key 3\) of nodes m0, m1, m2: 3 members in one "
                                                          r"step, but group_size is 2"):
        in_graph_collectives.rewrite(too_many)
    mixed = GraphIR([const("a", [1.0]), member("p", "a", DEVS[0], 4), member("q", "a", DEVS[1], 4, merge="Max")])
    with pytest.raises(errors.InvalidArgumentError, match="disagree on merge_op"):
        in_graph_collectives.rewrite(mixed)


def test_an_in_graph_all_reduce_over_two_local_devices_equals_tensorflows():
    tf = pytest.importorskip("tensorflow")
    config = {"device_count": {"CPU": 2}}
    results = []
    for lib in (tg, tf):
        g = lib.Graph()
        with g.as_default():
            fetches = _in_graph_reduces(lib, ["/cpu:0", "/cpu:1"])
        with lib.compat.v1.Session(graph=g, config=lib.compat.v1.ConfigProto(**config)) as sess:
            results.append(sess.run(fetches))
    x = np.array([1.0, 2.0, 4.0], np.float32)
    expected = [(x + 2 * x) / 2] * 2 + [2 * x - 3.0] * 2
    for got_tg, got_tf, want in zip(*results, expected):
        np.testing.assert_array_equal(got_tg, want)
        np.testing.assert_array_equal(got_tf, want)


def test_an_in_graph_all_reduce_between_worker_tasks_runs_in_one_cluster_step(tasks):  # noqa: F811
    from taskprocs import cluster_of
    cluster = cluster_of(worker=3)
    for i in range(3):
        tasks.serve(cluster, "worker", i).wait_serving(cluster["worker"][i])
    g = tg.Graph()
    with g.as_default():
        fetches = _in_graph_reduces(tg, [f"/job:worker/task:{i}" for i in range(3)])
        # one in-graph replicated SGD step: each task's gradient of its share, averaged by the all-reduce
        with tg.device("/job:worker/task:0"):
            w = tg.Variable([0.5, -1.0], name="w")
        grads = []
        for i in range(3):
            with tg.device(f"/job:worker/task:{i}"):
                xi = tg.constant([[1.0 + i, 2.0]])
                with tg.GradientTape() as tape:
                    loss = tg.reduce_sum(tg.square(tg.matmul(xi, tg.reshape(w, [2, 1])) - float(i)))
                grads.append(tg.raw_ops.CollectiveReduce(input=tape.gradient(loss, w), group_size=3, group_key=2,
                                                         instance_key=1, merge_op="Add", final_op="Div",
                                                         subdiv_offsets=[0]))
        with tg.device("/job:worker/task:0"):
            # every member must be in the step (a step pruned to one member would wait for a process group)
            train = tg.group(w.assign_sub(0.1 * grads[0]), *grads[1:])
        init = tg.compat.v1.global_variables_initializer()
    with tg.compat.v1.Session(f"grpc://{cluster['worker'][0]}", graph=g) as sess:
        out = sess.run(fetches)
        sess.run(init)
        for _ in range(3):
            sess.run(train)
        final = sess.run(w)
    x = np.array([1.0, 2.0, 4.0], np.float32)
    for got, want in zip(out, [(x + 2 * x + 3 * x) / 3] * 3 + [3 * x - 3.0] * 3):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    wn = np.array([0.5, -1.0])
    for _ in range(3):
        g_mean = np.mean([2 * (np.array([1.0 + i, 2.0]) @ wn - i) * np.array([1.0 + i, 2.0]) for i in range(3)], 0)
        wn = wn - 0.1 * g_mean
    np.testing.assert_allclose(final, wn, rtol=1e-5)
