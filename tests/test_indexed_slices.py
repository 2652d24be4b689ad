"""tg.IndexedSlices (client/indexed_slices.py): the gradients of gather, their aggregation, densifying, fetching."""

import warnings

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1

TABLE = np.arange(12, dtype=np.float32).reshape(6, 2)


def _graph_grads(m, fn):
    """tg.gradients / tf.gradients of fn(table variable, ids placeholder) w.r.t. the table, fetched."""
    g = m.Graph()
    with g.as_default():
        table = m.Variable(TABLE)
        ids = m.placeholder(m.int64, [None])
        grad = m.gradients(fn(m, table, ids), table)[0]
        with m.Session() as sess:
            sess.run(m.global_variables_initializer())
            sparse = type(grad).__name__ == "IndexedSlices"
            return sparse, grad.indices.dtype.name if sparse else None, \
                sess.run(m.convert_to_tensor(grad), {ids: [4, 1, 4]})


@pytest.mark.parametrize("case", ["gather", "two_gathers", "gather_and_dense", "gather_of_a_read"])
def test_gradients_are_indexed_slices_and_aggregate_as_in_tensorflow(case):
    tf = pytest.importorskip("tensorflow").compat.v1
    fns = {
        "gather": lambda m, t, ids: m.reduce_sum(m.gather(t, ids) * 3.0),
        "two_gathers": lambda m, t, ids: m.reduce_sum(m.gather(t, ids) ** 2) + m.reduce_sum(m.gather(t, [0, 1])),
        "gather_and_dense": lambda m, t, ids: m.reduce_sum(m.gather(t, ids)) + m.reduce_sum(t * t),
        "gather_of_a_read": lambda m, t, ids: m.reduce_sum(m.gather(m.identity(t), ids) * 2.0),
    }
    got, want = _graph_grads(v1, fns[case]), _graph_grads(tf, fns[case])
    assert got[0] == want[0] == (case != "gather_and_dense")
    assert got[1] == want[1]   # an int32 and an int64 index meet as int64
    np.testing.assert_allclose(got[2], want[2])


def test_small_known_shapes_densify_without_a_warning_others_warn():
    g = tg.Graph()
    with g.as_default():
        values = tg.ones([3, 2])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dense = tg.convert_to_tensor(tg.IndexedSlices(values, tg.constant([0, 2, 0]), tg.constant([4, 2])))
        assert dense.shape.as_list() == [4, 2]
        unknown = tg.IndexedSlices(values, tg.constant([0, 2, 0]), v1.placeholder(tg.int32, [2]))
        with pytest.warns(UserWarning, match="unknown shape"):
            tg.convert_to_tensor(unknown)
        huge = tg.IndexedSlices(values, tg.constant([0, 2, 0]), tg.constant([50_000_000, 2]))
        with pytest.warns(UserWarning, match="100000000 elements"):
            tg.convert_to_tensor(huge)
        with pytest.raises(ValueError, match="without dense_shape"):
            tg.convert_to_tensor(tg.IndexedSlices(values, tg.constant([0, 2, 0])))
        with tg.Session() as sess:
            np.testing.assert_array_equal(sess.run(dense), [[2, 2], [0, 0], [1, 1], [0, 0]])


def test_fetching_gives_an_indexed_slices_value():
    g = tg.Graph()
    with g.as_default():
        table = tg.Variable(TABLE)
        grad = tg.gradients(tg.reduce_sum(tg.gather(table, [5, 0])), table)[0]
        assert grad.dtype == tg.float32 and grad.shape.as_list() == [6, 2]
        with tg.Session() as sess:
            sess.run(tg.global_variables_initializer())
            got = sess.run({"g": grad})["g"]
    assert isinstance(got, tg.IndexedSlicesValue)
    np.testing.assert_array_equal(got.indices, [5, 0])
    np.testing.assert_array_equal(got.values, np.ones((2, 2)))
    np.testing.assert_array_equal(got.dense_shape, [6, 2])


def test_tape_gives_indexed_slices_eagerly_and_from_a_function():
    table = tg.Variable(TABLE)

    def grad(ids):
        with tg.GradientTape() as tape:
            y = tg.reduce_sum(tg.gather(table, ids) ** 2)
        return tape.gradient(y, table)
    eager, traced = grad(tg.constant([3, 3])), tg.function(grad)(tg.constant([3, 3]))
    for got in (eager, traced):
        assert isinstance(got, tg.IndexedSlices)
        np.testing.assert_array_equal(got.indices.numpy(), [3, 3])
        np.testing.assert_array_equal(tg.convert_to_tensor(got).numpy()[3], 4 * TABLE[3])
    neg = -eager
    np.testing.assert_array_equal(neg.values.numpy(), -eager.values.numpy())


def test_clip_by_global_norm_keeps_indexed_slices_sparse():
    tf = pytest.importorskip("tensorflow")
    values, dense = np.array([[3.0, 0.0], [0.0, 4.0]], np.float32), np.array([12.0], np.float32)

    def clip(m):
        slices = m.IndexedSlices(m.constant(values), m.constant([1, 1]), m.constant([3, 2]))
        (clipped, other), norm = m.clip_by_global_norm([slices, m.constant(dense)], 6.5)
        return type(clipped).__name__, clipped.values.numpy(), other.numpy(), norm.numpy()
    got, want = clip(tg), clip(tf)
    assert got[0] == want[0] == "IndexedSlices"
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-6)
