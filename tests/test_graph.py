"""The graph-building API: names, scopes, lookups, GraphDef round trips, dtypes and shapes."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf


@pytest.fixture
def graph():
    g = tg.Graph()
    with g.as_default():
        yield g


def test_names_are_unique_and_scoped(graph):
    a = tf.constant(1.0, name="c")
    b = tf.constant(2.0, name="c")
    with tg.name_scope("layer"):
        c = tf.constant(3.0, name="c")
        with tg.name_scope("inner"):
            d = tf.add(a, c)
    assert [a.name, b.name, c.name, d.name] == ["c:0", "c_1:0", "layer/c:0", "layer/inner/Add:0"]
    assert graph.get_tensor_by_name("layer/c:0") is c
    assert graph.get_operation_by_name("layer/inner/Add") is d.op
    with pytest.raises(KeyError):
        graph.get_tensor_by_name("nope:0")
    with pytest.raises(ValueError):
        graph.get_tensor_by_name("c")


def test_operation_and_tensor_properties(graph):
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    y = tf.reduce_sum(x, axis=1, name="total")
    assert y.op.type == "Sum" and y.op.inputs[0] is x
    assert y.dtype == tg.float32 and y.shape.as_list() == [None]
    assert x.shape[1] == 3 and x.shape.ndims == 2
    assert y.op.node_def.name == "total"
    assert y.op.node_def.source_file.endswith("test_graph.py")
    assert y.op.node_def.source_line > 0


def test_device_scopes_merge_like_tensorflow(graph):
    with tg.device("/job:ps/task:1"):
        with tg.device("/device:GPU:0"):
            a = tf.constant(1.0)
        with tg.device("/cpu:0"):
            b = tf.constant(1.0)
    assert a.device == "/job:ps/task:1/device:GPU:0"
    assert b.device == "/job:ps/task:1/device:CPU:0"


def test_device_functions_see_the_op(graph):
    with tg.device(lambda op: "/cpu:1" if op.type == "Const" else "/cpu:0"):
        a = tf.constant(1.0)
        b = tf.identity(a)
    assert a.device.endswith("CPU:1") and b.device.endswith("CPU:0")


def test_control_dependencies_and_colocation(graph):
    a = tf.constant(1.0, name="a")
    with tg.control_dependencies([a]):
        b = tf.constant(2.0, name="b")
        with tg.control_dependencies(None):
            c = tf.constant(3.0, name="c")
    assert b.op.control_inputs == [a.op] and c.op.control_inputs == []
    with tg.device("/cpu:3"):
        anchor = tf.constant(0.0, name="anchor")
    with tg.colocate_with(anchor):
        near = tf.identity(a, name="near")
    assert near.op.get_attr("_class") == ["loc:@anchor"]
    assert near.device == anchor.device


def test_finalized_graph_refuses_new_ops(graph):
    graph.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        tf.constant(1.0)


def test_graph_def_survives_bytes_and_import_and_runs_the_same(graph):
    x = tf.placeholder(tf.float32, [2, 2], name="x")
    with tg.name_scope("net"):
        y = tf.nn.relu(tf.matmul(x, tf.constant([[1.0, -2.0], [3.0, 4.0]])) - 1.0)
    data = graph.as_graph_def().SerializeToString()
    feed = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    with tf.Session() as sess:
        want = sess.run(y, {x: feed})
    g2 = tg.Graph()
    with g2.as_default():
        x2, y2 = tg.import_graph_def(data, name="copy", return_elements=["x:0", y.name])
        assert y2.name == "copy/" + y.name
        with tf.Session() as sess:
            np.testing.assert_array_equal(sess.run(y2, {x2: feed}), want)


def test_import_graph_def_input_map_replaces_inputs(graph):
    x = tf.placeholder(tf.float32, [], name="x")
    tf.multiply(x, 3.0, name="triple")
    gd = graph.as_graph_def()
    g2 = tg.Graph()
    with g2.as_default():
        five = tf.constant(5.0)
        (out,) = tg.import_graph_def(gd, input_map={"x:0": five}, return_elements=["triple:0"])
        with tf.Session() as sess:
            assert sess.run(out) == 15.0


@pytest.mark.parametrize("spec,want", [
    ("float", tg.float32), (np.float64, tg.float64), ("int32", tg.int32), (np.dtype("uint8"), tg.uint8),
    (bool, tg.bool), ("half", tg.float16), (9, tg.int64),
])
def test_as_dtype_accepts_numpy_and_tf1_names(spec, want):
    assert tg.as_dtype(spec) is want


def test_as_dtype_rejects_nonsense():
    with pytest.raises(TypeError):
        tg.as_dtype("complex999")


def test_tensor_shape_compatibility():
    s = tg.TensorShape([None, 3])
    assert s.is_compatible_with([5, 3]) and not s.is_compatible_with([5, 4])
    assert s.merge_with([5, None]).as_list() == [5, 3]
    assert tg.TensorShape(None).ndims is None
    with pytest.raises(ValueError):
        s.merge_with([5, 4])


def test_static_shape_errors_are_raised_while_building(graph):
    a = tf.constant(np.ones((2, 3), np.float32))
    b = tf.constant(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"MatMul.*test_graph.py"):
        tf.matmul(a, b)


def test_collections(graph):
    a = tf.constant(1.0, name="a")
    tf.add_to_collection("mine", a)
    tf.add_to_collections(["mine", "theirs"], "note")
    assert tf.get_collection("mine") == [a, "note"]
    tf.get_collection_ref("theirs").append(2)
    assert tf.get_collection("theirs") == ["note", 2]
    assert graph.get_collection("mine", scope="a") == [a]
