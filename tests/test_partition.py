"""runtime/partition.py and plan.py on literal graphs, and partitioned steps through a 4-device Session."""

import numpy as np

import tensorgrid as tg
import tensorgrid.compat.v1 as tf
from tensorgrid.runtime import partition, plan
from tensorgrid.runtime.ir import GraphIR, Node

from literal_graphs import DEVS, computed_diamond, const, diamond


def test_partition_inserts_one_send_recv_pair_per_tensor_and_destination():
    parts = partition.partition(computed_diamond())
    assert set(parts) == set(DEVS[:3])
    sends0 = [n for n in parts[DEVS[0]] if n.op == "_Send"]
    recvs1 = [n for n in parts[DEVS[1]] if n.op == "_Recv"]
    # a:0 is read by two nodes on dev1, but crosses once.
    assert len(sends0) == 1 and len(recvs1) == 1
    assert sends0[0].attrs["key"] == recvs1[0].attrs["key"]
    assert sends0[0].attrs["key"] == f"{DEVS[0]};{DEVS[1]};a:0"
    assert parts[DEVS[1]]["b"].inputs == [recvs1[0].name + ":0"]
    assert parts[DEVS[1]]["c"].inputs == [recvs1[0].name + ":0"]
    recvs2 = [n for n in parts[DEVS[2]] if n.op == "_Recv"]
    assert sorted(r.attrs["tensor_name"] for r in recvs2) == ["b:0", "c:0"]


def test_a_small_constant_is_copied_to_each_device_that_reads_it_not_sent():
    parts = partition.partition(diamond())   # a is a Const on dev0, read by b and c on dev1
    assert not any(n.op in ("_Send", "_Recv") and n.attrs["tensor_name"] == "a:0" for p in parts.values() for n in p)
    copies = [n for n in parts[DEVS[1]] if n.op == "Const"]
    assert len(copies) == 1 and copies[0].device == DEVS[1]
    assert np.array_equal(copies[0].attrs["value"], [1.0, 2.0]) and copies[0].source == diamond()["a"].source
    assert parts[DEVS[1]]["b"].inputs == [copies[0].name + ":0"] == parts[DEVS[1]]["c"].inputs
    assert "a" in parts[DEVS[0]]


def test_constants_that_are_large_strings_or_ordered_after_others_are_still_sent():
    big = np.zeros(partition.COPIED_CONST_BYTES // 4 + 1, np.float32)
    g = GraphIR([const("big", big, DEVS[0]), Node("s", "Const", [], [], DEVS[0], {"value": np.array([b"x"], object), "dtype": tg.string}),
                 const("gated", 1.0, DEVS[0]), const("first", 0.0, DEVS[0]),
                 Node("u", "Identity", ["big:0"], [], DEVS[1]), Node("v", "Identity", ["s:0"], [], DEVS[1]),
                 Node("w", "Identity", ["gated:0"], [], DEVS[1])])
    g["gated"].control_inputs = ["first"]
    parts = partition.partition(g)
    sent = sorted(n.attrs["tensor_name"] for n in parts[DEVS[0]] if n.op == "_Send")
    assert sent == ["big:0", "gated:0", "s:0"]


def test_partition_turns_cross_device_control_edges_into_send_recv():
    g = GraphIR([const("a", 1.0, DEVS[0]), const("b", 2.0, DEVS[1])])
    g["b"].control_inputs = ["a"]
    parts = partition.partition(g)
    send = next(n for n in parts[DEVS[0]] if n.op == "_Send")
    recv = next(n for n in parts[DEVS[1]] if n.op == "_Recv")
    assert send.control_inputs == ["a"] and not send.inputs
    assert parts[DEVS[1]]["b"].control_inputs == [recv.name]


def test_plan_reports_where_feeds_and_fetches_live():
    g = diamond()
    p = plan.plan_step(g, ["a:0"], ["d:0", "b:0"], [], DEVS)
    assert p.fetch_devices == {"d:0": DEVS[2], "b:0": DEVS[1]}
    assert sorted(p.feed_devices["a:0"]) == [DEVS[1]]


def _spread_graph(ndev):
    """A graph of mixed ops with every node pinned round-robin over `ndev` devices."""
    g = tg.Graph()
    rng = np.random.RandomState(0)
    with g.as_default():
        x = tf.placeholder(tf.float32, [4, 4], name="x")
        vals = [x]
        for i in range(24):
            with tg.device(f"/cpu:{i % ndev}"):
                a, b = vals[rng.randint(len(vals))], vals[rng.randint(len(vals))]
                op = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: tf.matmul(a, b) * 0.1,
                      lambda a, b: tf.tanh(a - b)][i % 4]
                vals.append(op(a, b))
        with tg.device(f"/cpu:{ndev - 1}"):
            out = tf.add_n(vals[-6:])
    return g, x, out


def test_spreading_over_4_devices_gives_the_same_numbers_as_one():
    feed = np.random.RandomState(1).uniform(-1, 1, (4, 4)).astype(np.float32)
    results = []
    for ndev in (1, 4):
        g, x, out = _spread_graph(ndev)
        with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": 4})) as sess:
            md = tg.RunMetadata()
            results.append(sess.run(out, {x: feed}, options=tg.RunOptions(trace_level=tg.RunOptions.FULL_TRACE),
                                    run_metadata=md))
            assert len(md.partition_graphs) == ndev
    np.testing.assert_array_equal(results[0], results[1])


def test_partition_graphs_show_one_pair_per_tensor_and_destination_not_per_consumer():
    g = tg.Graph()
    with g.as_default():
        with tg.device("/cpu:0"):
            x = tf.placeholder(tf.float32, [3], name="x")
            a = tf.exp(x, name="a")
        with tg.device("/cpu:1"):
            outs = [tf.multiply(a, float(i), name=f"use{i}") for i in range(5)]
            total = tf.add_n(outs)
        with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": 4})) as sess:
            md = tg.RunMetadata()
            got = sess.run(total, {x: [0.0, 1.0, 2.0]}, options=tg.RunOptions(trace_level=3), run_metadata=md)
    np.testing.assert_allclose(got, np.exp([0.0, 1.0, 2.0]) * 10, rtol=1e-6)
    sends = [n for gd in md.partition_graphs for n in gd.node if n.op == "_Send"]
    recvs = [n for gd in md.partition_graphs for n in gd.node if n.op == "_Recv"]
    assert [s.attr["tensor_name"].s.decode() for s in sends] == ["a:0"]
    assert len(recvs) == 1
    assert {d.device for d in md.step_stats.dev_stats} == {DEVS[0], DEVS[1]}


def test_a_control_dependency_across_devices_is_honoured():
    g = tg.Graph()
    with g.as_default():
        with tg.device("/cpu:0"):
            v = tf.Variable(1.0, name="v")
            bump = v.assign_add(10.0)
        with tg.device("/cpu:1"):
            with tg.control_dependencies([bump]):
                after = tf.identity(tf.constant(5.0), name="after")
        with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": 2})) as sess:
            sess.run(v.initializer)
            md = tg.RunMetadata()
            sess.run(after, options=tg.RunOptions(trace_level=3), run_metadata=md)
            assert sess.run(v) == 11.0
    recv = [n for gd in md.partition_graphs for n in gd.node if n.op == "_Recv"]
    assert recv and recv[0].attr["tensor_name"].s.decode().startswith("^")


def test_a_worker_sends_first_the_tensor_the_rest_of_the_step_waits_on():
    """The demo's step on two workers: of worker 1's three gradient sends, the hidden layer's (which
    worker 0's whole backward pass waits for) ranks above the second layer's weight gradients (only an
    update waits for those), and worker 1's executor orders its nodes to send it first."""
    from tensorgrid import demo
    from tensorgrid.worker.executor import _send_first
    workers = ["/job:worker/replica:0/task:0/device:CPU:0", "/job:worker/replica:0/task:1/device:CPU:0"]
    g = tf.Graph()
    with g.as_default():
        m = demo.build_model(tf, "/job:worker/task:0", ["/job:worker/task:0", "/job:worker/task:1"])
    parts = plan.plan_step(g.to_ir(), ["x:0", "y:0"], [], [m["train_op"].name], workers).partitions
    sends = {n.attrs["tensor_name"]: n for n in parts[workers[1]] if n.op == "_Send"}
    hidden_grad = sends["gradients/MatMul_1_grad/tuple/control_dependency:0"]
    weight_grads = [sends["gradients/MatMul_1_grad/tuple/control_dependency_1:0"],
                    sends["gradients/BiasAdd_1_grad/tuple/control_dependency_1:0"]]
    assert all(hidden_grad.attrs["_priority"] > s.attrs["_priority"] for s in weight_grads)
    order = parts[workers[1]].topological_order(_send_first(parts[workers[1]]))
    assert all(order.index(hidden_grad.name) < order.index(s.name) for s in weight_grads)
    alone = {workers[0]: parts[workers[0]]}
    assert partition.prioritize_sends(alone) is alone  # one partition has nothing to rank
