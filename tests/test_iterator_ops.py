"""TF1 graph-mode iterators over tg.data datasets: one-shot, initializable and reinitializable
iterators, OutOfRangeError at the end, GraphDef round trips, captured tensors and variables, and
pipelines placed on a worker of a real local cluster."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf
from conftest import _local_cluster


@pytest.fixture
def graph_mode():
    tf.disable_eager_execution()
    yield tf.get_default_graph()
    tf.enable_eager_execution()


def _drain(sess, tensor, feed=None):
    out = []
    while True:
        try:
            out.append(sess.run(tensor, feed))
        except tf.errors.OutOfRangeError:
            return out


def test_one_shot_iterator_ends_with_out_of_range_every_time(graph_mode):
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    nxt = tf.data.Dataset.from_tensor_slices(x).map(lambda r: r * 2.0).batch(2).make_one_shot_iterator().get_next()
    assert nxt.shape.as_list() == [None, 2] and nxt.op.type == "IteratorGetNext"
    with tf.Session() as sess:
        got = _drain(sess, nxt)
        for _ in range(2):
            with pytest.raises(tf.errors.OutOfRangeError, match="End of sequence"):
                sess.run(nxt)
    np.testing.assert_array_equal(np.concatenate(got), x * 2)
    assert [len(b) for b in got] == [2, 2, 1]


def test_one_shot_iterator_function_form_and_what_it_cannot_capture(graph_mode):
    it = tf.data.make_one_shot_iterator(tf.data.Dataset.range(3))
    assert it.get_next().op.inputs[0].op.type == "OneShotIterator"
    with pytest.raises(ValueError, match="Iterator does not have an initializer|does not have an initializer"):
        it.initializer
    p = tf.placeholder(tf.int64, [])
    with pytest.raises(ValueError, match=r"Cannot capture a placeholder \(name:Placeholder, type:Placeholder\)"):
        tf.data.Dataset.range(p).make_one_shot_iterator()
    v = tf.Variable(np.int64(2))
    with pytest.raises(ValueError, match="Cannot capture a stateful node .*make_initializable_iterator"):
        tf.data.Dataset.range(3).map(lambda e: e * v).make_one_shot_iterator()


def test_initializable_iterator_restarts_and_feeds_placeholders(graph_mode):
    n = tf.placeholder(tf.int64, [], name="n")
    it = tf.data.Dataset.range(n).map(lambda e: e * 10).make_initializable_iterator()
    nxt = it.get_next()
    with tf.Session() as sess:
        with pytest.raises(tf.errors.FailedPreconditionError, match="has not been initialized"):
            sess.run(nxt)
        sess.run(it.initializer, {n: 3})
        assert _drain(sess, nxt) == [0, 10, 20]
        with pytest.raises(tf.errors.OutOfRangeError):
            sess.run(nxt)
        sess.run(it.initializer, {n: 2})   # re-initialized: starts over with the new feed
        assert _drain(sess, nxt) == [0, 10]


def test_seeded_shuffle_restarts_its_order_on_reinitialization_and_reshuffles_across_repeats(graph_mode):
    it = tf.data.Dataset.range(8).shuffle(8, seed=3).repeat(2).make_initializable_iterator()
    nxt = it.get_next()
    with tf.Session() as sess:
        sess.run(it.initializer)
        first = _drain(sess, nxt)
        sess.run(it.initializer)
        second = _drain(sess, nxt)
    assert first == second  # TF's graph mode: a new initialization builds the dataset anew
    assert sorted(first[:8]) == list(range(8)) and first[:8] != first[8:]


def test_reinitializable_iterator_from_structure(graph_mode):
    it = tf.data.Iterator.from_structure(tf.int64, tf.TensorShape([]))
    train = it.make_initializer(tf.data.Dataset.range(3))
    test = it.make_initializer(tf.data.Dataset.range(100, 102))
    nxt = it.get_next()
    with tf.Session() as sess:
        sess.run(train)
        assert sess.run(nxt) == 0
        sess.run(test)
        assert _drain(sess, nxt) == [100, 101]
        sess.run(train)
        assert _drain(sess, nxt) == [0, 1, 2]
    with pytest.raises(TypeError, match="Expected output types"):
        it.make_initializer(tf.data.Dataset.from_tensors(1.0))
    nested = tf.data.Iterator.from_structure((tf.float32, {"y": tf.int32}), ([None, 2], {"y": []}))
    assert nested.output_shapes[0].as_list() == [None, 2]
    with pytest.raises(TypeError, match="same nested structure"):
        nested.make_initializer(tf.data.Dataset.range(2))


def test_nested_elements_through_get_next(graph_mode):
    ds = tf.data.Dataset.from_tensor_slices({"x": np.ones((4, 3), np.float32), "y": np.arange(4)}).batch(3)
    nxt = tf.data.make_initializable_iterator(ds)
    el = nxt.get_next()
    assert sorted(el) == ["x", "y"] and el["x"].shape.as_list() == [None, 3]
    with tf.Session() as sess:
        sess.run(nxt.initializer)
        got = sess.run(el)
    assert got["x"].shape == (3, 3) and list(got["y"]) == [0, 1, 2]


def test_map_with_a_captured_tensor_and_a_captured_variable(graph_mode):
    offset = tf.constant(100, tf.int64)
    scale = tf.Variable(np.int64(2), name="scale")
    it = tf.data.Dataset.range(4).map(lambda e: e * scale + offset).make_initializable_iterator()
    nxt = it.get_next()
    with tf.Session() as sess:
        sess.run([scale.initializer, it.initializer])
        assert sess.run(nxt) == 100
        assert sess.run(nxt) == 102
        sess.run(scale.assign(10))   # read at every call through the captured handle
        assert sess.run(nxt) == 120


def test_graph_def_round_trip_of_a_graph_holding_a_dataset(graph_mode):
    g = tf.get_default_graph()
    c = tf.constant(3.0)
    ds = tf.data.Dataset.from_tensor_slices(np.arange(6, dtype=np.float32)).map(lambda e: e * c).filter(
        lambda e: e > 4.0).batch(2)
    it = ds.make_initializable_iterator()
    nxt = it.get_next()
    one_shot = tf.data.Dataset.range(3).map(lambda e: e + 1).make_one_shot_iterator().get_next()
    gd = g.as_graph_def()
    assert len(gd.library.function) == 4  # map, filter, the one-shot iterator's dataset factory and its map
    g2 = tg.Graph()
    with g2.as_default():
        tf.import_graph_def(gd.SerializeToString(), name="")
        with tf.Session(graph=g2) as sess:
            sess.run(g2.get_operation_by_name(it.initializer.name))
            got = _drain(sess, g2.get_tensor_by_name(nxt.name))
            assert _drain(sess, g2.get_tensor_by_name(one_shot.name)) == [1, 2, 3]
    np.testing.assert_array_equal(np.concatenate(got), [6, 9, 12, 15])


def test_eager_forms_of_the_tf1_functions():
    it = tf.data.make_one_shot_iterator(tf.data.Dataset.range(2))
    assert [int(x) for x in it] == [0, 1]
    with pytest.raises(RuntimeError, match="not supported when eager execution is enabled"):
        tf.data.Dataset.range(2).make_initializable_iterator()
    assert tf.data.get_output_types(tf.data.Dataset.range(2)) == tf.int64


def test_iterator_on_a_cluster_worker_feeds_another_worker(graph_mode):
    target = _local_cluster().target
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    try:
        with tf.device("/job:worker/task:1"):
            it = tf.data.Dataset.from_tensor_slices(x).shuffle(10, seed=1).map(lambda r: r * 2.0).batch(4) \
                .prefetch(1).make_initializable_iterator()
            nxt = it.get_next()
        with tf.device("/job:worker/task:0"):
            total = tf.reduce_sum(nxt, axis=1)
        gen = tf.data.Dataset.from_generator(lambda: iter(range(3)), tf.int64, tf.TensorShape([]))
        with tf.device("/job:worker/task:0"):
            gen_it = gen.make_one_shot_iterator()
        with tf.Session(target) as sess:
            for _ in range(2):
                sess.run(it.initializer)
                sums = []
                meta = tf.RunMetadata()
                sums.append(sess.run(total, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                                     run_metadata=meta))
                sums += _drain(sess, total)
                assert sorted(np.concatenate(sums).tolist()) == sorted((x.sum(axis=1) * 2).tolist())
            by_device = {p.node[0].device: {n.op for n in p.node} for p in meta.partition_graphs}
            iterator_side = by_device["/job:worker/replica:0/task:1/device:CPU:0"]
            assert {"IteratorGetNext", "_Send"} <= iterator_side
            assert "_Recv" in by_device["/job:worker/replica:0/task:0/device:CPU:0"]
            assert _drain(sess, gen_it.get_next()) == [0, 1, 2]   # Python on a worker with --allow-pickle
    finally:
        tg.Session.reset(target)


def test_feedable_iterator_switches_by_string_handle(graph_mode):
    train = tf.data.Dataset.range(100).make_one_shot_iterator()
    val = tf.data.Dataset.range(5).map(lambda e: -e).make_initializable_iterator()
    handle = tf.placeholder(tf.string, [])
    it = tf.data.Iterator.from_string_handle(handle, train.output_types, train.output_shapes)
    nxt = it.get_next()
    with tf.Session() as sess:
        train_h, val_h = sess.run([train.string_handle(), val.string_handle()])
        sess.run(val.initializer)
        assert [sess.run(nxt, {handle: train_h}) for _ in range(2)] == [0, 1]
        assert [sess.run(nxt, {handle: val_h}) for _ in range(2)] == [0, -1]
        assert sess.run(nxt, {handle: train_h}) == 2
        with pytest.raises(tf.errors.InvalidArgumentError, match="not an iterator's string handle"):
            sess.run(nxt, {handle: b"nonsense"})


def test_slices_of_different_lengths_fed_at_run_time_are_invalid_argument(graph_mode):
    a = tf.placeholder(tf.float32, [None])
    b = tf.placeholder(tf.float32, [None])
    it = tf.data.Dataset.from_tensor_slices((a, b)).make_initializable_iterator()
    with tf.Session() as sess:
        with pytest.raises(tf.errors.InvalidArgumentError, match="same size in the 0th dimension"):
            sess.run(it.initializer, {a: np.zeros(3), b: np.zeros(4)})


def test_an_eager_iterator_advances_inside_a_function_it_is_passed_to():
    it = iter(tg.data.Dataset.range(5).batch(2))

    @tg.function
    def step(iterator):
        return next(iterator) * 10

    np.testing.assert_array_equal(step(it).numpy(), [0, 10])
    np.testing.assert_array_equal(step(it).numpy(), [20, 30])
    np.testing.assert_array_equal(next(it).numpy(), [4])
    with pytest.raises(tg.errors.OutOfRangeError):
        step(it)

    @tg.function
    def loop(ds):
        for x in ds:
            return x   # a loop over a dataset that returns from inside is not converted (tests/test_loops.py)
    with pytest.raises(RuntimeError, match="nor with break, continue or return"):
        loop(tg.data.Dataset.range(3))


def test_a_map_reading_a_variable_of_another_device_in_process(graph_mode):
    with tf.device("/cpu:1"):
        scale = tf.Variable(np.int64(3), name="scale")
    with tf.device("/cpu:0"):
        it = tf.data.Dataset.range(3).map(lambda e: e * scale).make_initializable_iterator()
        nxt = it.get_next()
    with tf.Session(config=tf.ConfigProto(device_count={"CPU": 2})) as sess:
        sess.run([scale.initializer, it.initializer])
        meta = tf.RunMetadata()
        assert sess.run(nxt) == 0
        assert sess.run(nxt, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=meta) == 3
    ops = {n.op: n.device for p in meta.partition_graphs for n in p.node}
    assert ops["IteratorGetNext"].endswith("CPU:0")   # where the device scope put it, as TF places it


def test_sessions_on_a_cluster_get_their_own_iterators_unless_shared_by_name(graph_mode):
    target = _local_cluster().target
    try:
        with tf.device("/job:worker/task:1"):
            own = tf.data.Dataset.range(10).make_one_shot_iterator().get_next()
            shared = tf.data.Dataset.range(10).make_initializable_iterator(shared_name="shared_it")
            shared_next = shared.get_next()
        with tf.Session(target) as first, tf.Session(target) as second:
            assert [first.run(own) for _ in range(3)] == [0, 1, 2]
            assert second.run(own) == 0      # a session's iterator without a shared name is its own
            first.run(shared.initializer)
            assert first.run(shared_next) == 0
            assert second.run(shared_next) == 1  # the sessions naming "shared_it" share it
    finally:
        tg.Session.reset(target)
