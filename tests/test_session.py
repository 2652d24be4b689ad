"""The in-process Session: feeds, fetches, graph growth, tracing, and bad input."""

import collections
import json

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf
from tensorgrid.framework import errors


@pytest.fixture
def graph():
    g = tg.Graph()
    with g.as_default():
        yield g


def test_fetch_structures_come_back_in_the_same_shape(graph):
    a = tf.constant(1.0)
    b = tf.constant([2, 3])
    Pair = collections.namedtuple("Pair", "x y")
    with tf.Session() as sess:
        out = sess.run({"a": a, "rest": [b, (a, Pair(a, "Const_1:0"))], "op": b.op})
    assert out["a"] == 1.0 and out["op"] is None
    np.testing.assert_array_equal(out["rest"][0], [2, 3])
    assert isinstance(out["rest"][1], tuple) and isinstance(out["rest"][1][1], Pair)
    np.testing.assert_array_equal(out["rest"][1][1].y, [2, 3])


def test_any_tensor_can_be_fed_and_fetches_see_the_fed_value(graph):
    x = tf.constant(3.0)
    y = x * 2.0
    z = y + 1.0
    with tf.Session() as sess:
        assert sess.run(z) == 7.0
        assert sess.run(z, {y: 10.0}) == 11.0
        assert sess.run(y, {y: 5.0}) == 5.0
        assert sess.run(z, {"mul:0": 1.0}) == 2.0


def test_feeds_accept_scalars_lists_and_arrays(graph):
    x = tf.placeholder(tf.float32, [None, 2])
    with tf.Session() as sess:
        np.testing.assert_array_equal(sess.run(x * 2, {x: [[1, 2]]}), [[2, 4]])
        s = tf.placeholder(tf.int64, [])
        assert sess.run(s + 1, {s: 4}) == 5


def test_graph_can_grow_after_the_session_is_created(graph):
    a = tf.constant(2.0)
    with tf.Session() as sess:
        assert sess.run(a) == 2.0
        b = a * 4.0
        assert sess.run(b) == 8.0


def test_eval_and_run_use_the_default_session(graph):
    a = tf.constant(5.0)
    with tf.Session():
        assert a.eval() == 5.0
        tf.no_op(name="nothing").run()


def test_full_trace_fills_step_stats_and_partition_graphs(graph):
    with tg.device("/cpu:0"):
        x = tf.placeholder(tf.float32, [2], name="x")
    with tg.device("/cpu:1"):
        y = tf.square(x, name="y")
    with tf.Session(config=tg.ConfigProto(device_count={"CPU": 2})) as sess:
        md = tg.RunMetadata()
        sess.run(y, {x: [1.0, 2.0]}, options=tg.RunOptions(trace_level=tg.RunOptions.FULL_TRACE), run_metadata=md)
    assert len(md.partition_graphs) == 2
    names = {ns.node_name for d in md.step_stats.dev_stats for ns in d.node_stats}
    assert "y" in names
    ystats = next(ns for d in md.step_stats.dev_stats for ns in d.node_stats if ns.node_name == "y")
    assert ystats.all_start_micros > 0 and ystats.all_end_rel_micros >= 0
    assert ystats.output[0].tensor_description.allocation_description.requested_bytes == 8
    trace = json.loads(tg.profiler.chrome_trace(md))
    pids = {e["pid"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert len(pids) == 2


# ---- bad input: each raises the right class with a message naming the node -------------------

def test_missing_feed_names_the_placeholder(graph):
    x = tf.placeholder(tf.float32, [2], name="needs_me")
    with tf.Session() as sess:
        with pytest.raises(errors.InvalidArgumentError, match="needs_me"):
            sess.run(x * 2)


def test_wrong_shape_feed_names_the_tensor(graph):
    x = tf.placeholder(tf.float32, [2], name="xin")
    with tf.Session() as sess:
        with pytest.raises(ValueError, match=r"xin:0.*\(2,\)"):
            sess.run(x, {x: [1.0, 2.0, 3.0]})


def test_wrong_dtype_feed_names_the_tensor(graph):
    x = tf.placeholder(tf.int32, [2], name="ints")
    with tf.Session() as sess:
        with pytest.raises(errors.InvalidArgumentError, match="ints:0"):
            sess.run(x, {x: [1.5, 2.0]})
        with pytest.raises(errors.InvalidArgumentError, match="ints:0"):
            sess.run(x, {x: ["a", "b"]})


def test_fetching_a_tensor_that_does_not_exist(graph):
    tf.constant(1.0, name="there")
    with tf.Session() as sess:
        with pytest.raises(ValueError, match="nowhere:0"):
            sess.run("nowhere:0")
        with pytest.raises(ValueError, match="there:3"):
            sess.run("there:3")


def test_device_spec_that_matches_nothing_names_the_node_and_lists_devices(graph):
    with tg.device("/job:ps/task:3"):
        a = tf.constant(1.0, name="stranded")
    with tf.Session() as sess:
        with pytest.raises(errors.InvalidArgumentError, match=r"stranded.*CPU:0"):
            sess.run(a)
    with tf.Session(config=tg.ConfigProto(allow_soft_placement=True)) as sess:
        assert sess.run(a) == 1.0


def test_unknown_op_in_an_imported_graph_def(graph):
    gd = tg.GraphDef()
    node = gd.node.add()
    node.name, node.op = "mystery", "NoSuchOp"
    with pytest.raises(errors.InvalidArgumentError, match=r"mystery.*NoSuchOp"):
        tg.import_graph_def(gd)


def test_a_cycle_in_an_imported_graph_def(graph):
    gd = tg.GraphDef()
    for name, src in (("a", "b"), ("b", "a")):
        n = gd.node.add()
        n.name, n.op = name, "Identity"
        n.input.append(src + ":0")
    with pytest.raises(errors.InvalidArgumentError, match=r"cycle.*\['a', 'b'\]"):
        tg.import_graph_def(gd)


def test_a_dangling_input_in_an_imported_graph_def(graph):
    gd = tg.GraphDef()
    n = gd.node.add()
    n.name, n.op = "lonely", "Identity"
    n.input.append("ghost:0")
    with pytest.raises(errors.InvalidArgumentError, match=r"lonely.*ghost"):
        tg.import_graph_def(gd)


def test_runtime_error_names_node_device_and_user_line(graph):
    x = tf.placeholder(tf.float32, None, name="x")
    y = tf.placeholder(tf.float32, None, name="y")
    prod = tf.matmul(x, y, name="bad_matmul")  # the line the error must name
    line = __import__("inspect").currentframe().f_lineno - 1
    with tf.Session() as sess:
        with pytest.raises(errors.InvalidArgumentError) as info:
            sess.run(prod, {x: np.ones((2, 3)), y: np.ones((4, 5))})
    msg = str(info.value)
    assert "bad_matmul" in msg and "CPU:0" in msg and f"test_session.py:{line}" in msg
    assert info.value.node_def.name == "bad_matmul"


def test_a_failure_on_one_device_cancels_the_step_and_reports_the_root_error(graph):
    with tg.device("/cpu:0"):
        x = tf.placeholder(tf.float32, None, name="x")
        bad = tf.matmul(x, x, name="fails_here")
    with tg.device("/cpu:1"):
        waits = tf.identity(bad) + 1.0
    with tf.Session(config=tg.ConfigProto(device_count={"CPU": 2})) as sess:
        with pytest.raises(errors.InvalidArgumentError, match="fails_here"):
            sess.run(waits, {x: np.ones((2, 3))})
        np.testing.assert_array_equal(sess.run(waits, {x: np.ones((2, 2))}), np.full((2, 2), 3.0))


def test_timeout_in_ms_gives_deadline_exceeded(graph):
    import time

    def slow(a):
        time.sleep(1.0)
        return a
    with tg.device("/cpu:0"):
        x = tf.placeholder(tf.float32, [], name="x")
        s = tf.py_func(slow, [x], tf.float32)
    with tg.device("/cpu:1"):
        y = tf.identity(s) * 2.0
    with tf.Session(config=tg.ConfigProto(device_count={"CPU": 2})) as sess:
        with pytest.raises(errors.DeadlineExceededError):
            sess.run(y, {x: 1.0}, options=tg.RunOptions(timeout_in_ms=100))


def test_closed_session_refuses_to_run(graph):
    a = tf.constant(1.0)
    sess = tf.Session()
    sess.close()
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(a)


def test_tensorgrid_master_is_the_default_target_and_empty_string_is_in_process(graph, monkeypatch):
    a = tf.constant(4.0)
    monkeypatch.setenv("TENSORGRID_MASTER", "grpc://127.0.0.1:1")
    with tf.Session("") as sess:
        assert sess.run(a) == 4.0
    with pytest.raises(errors.UnavailableError):
        with tf.Session() as sess:
            sess.run(a)


def test_a_fetch_run_again_and_again_follows_the_graph_and_checks_every_feed(graph):
    x = tf.placeholder(tf.float32, [2], name="x")
    y = x * 2.0
    v = tf.Variable(1.0, name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        for k in range(3):  # the same Tensor fetched each time, fed arrays of its dtype (no conversion)
            np.testing.assert_array_equal(sess.run(y, {x: np.array([k, 1], np.float32)}), [2 * k, 2])
        np.testing.assert_array_equal(sess.run(y, {x: [1, 2]}), [2, 4])    # a list, converted
        with pytest.raises(ValueError, match=r"Cannot feed value of shape \(3,\) for Tensor 'x:0'"):
            sess.run(y, {x: np.zeros(3, np.float32)})
        with pytest.raises(errors.InvalidArgumentError, match="cannot feed a value of type"):
            sess.run(y, {x: np.array(["a", "b"])})
        # a variable's handle fetched as TF1 fetches it: its read, which is looked up again when the graph grew
        handle = v.handle if hasattr(v, "handle") else v
        first = sess.run(handle)
        tf.assign_add(v, 1.0, name="bump")
        sess.run("bump")
        assert sess.run(handle) == first + 1.0
