"""tg.sparse (client/sparse_ops.py, client/sparse_tensor.py): against NumPy on every executor, against
TensorFlow on the same inputs, finite-difference gradients, feeds and fetches of SparseTensorValues."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1
from tests.conftest import run_with
from tests.gradcheck import check_gradients

INDICES = np.array([[0, 1], [1, 0], [1, 3], [2, 2]], dtype=np.int64)
VALUES = np.array([1.5, -2.0, 3.0, 4.0], dtype=np.float32)
SHAPE = np.array([3, 4], dtype=np.int64)


def _dense(indices=INDICES, values=VALUES, shape=SHAPE):
    out = np.zeros(shape, dtype=np.asarray(values).dtype)
    for row, v in zip(indices, values):
        out[tuple(row)] += v
    return out


def test_sparse_ops_match_numpy(executor):
    b = np.arange(8, dtype=np.float32).reshape(4, 2)
    dense = np.ones((3, 4), np.float32)

    def fn(indices, values, shape, b, dense):
        sp = tg.sparse.SparseTensor(indices, values, shape)
        return [tg.sparse.to_dense(sp), tg.sparse.sparse_dense_matmul(sp, b),
                tg.sparse.reduce_sum(sp, axis=1, keepdims=True), tg.sparse.reduce_sum(sp),
                tg.sparse.add(sp, dense), tg.sparse.to_dense(tg.sparse.add(sp, sp)),
                tg.sparse.to_dense(tg.sparse.reshape(sp, [2, -1])), tg.sparse.to_dense(tg.sparse.transpose(sp))]
    got = run_with(executor, fn, INDICES, VALUES, SHAPE, b, dense)
    d = _dense()
    want = [d, d @ b, d.sum(axis=1, keepdims=True), d.sum(), d + dense, 2 * d, d.reshape(2, 6), d.T]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_sparse_tensor_static_shape_and_dtype():
    g = tg.Graph()
    with g.as_default():
        sp = tg.SparseTensor([[0, 0]], [1.0], [2, 3])
        assert sp.shape.as_list() == [2, 3] and sp.dtype == tg.float32
        assert sp.indices.dtype == tg.int64 and sp.dense_shape.dtype == tg.int64
        assert tg.sparse.to_dense(sp).shape.as_list() == [2, 3]
        assert tg.sparse.reshape(sp, [-1]).shape.as_list() == [6]
        assert tg.sparse.transpose(sp).shape.as_list() == [3, 2]
        assert sp.indices.name.startswith("SparseTensor/indices")
    with pytest.raises(TypeError, match="int64"):
        tg.SparseTensor(tg.constant([[0, 0]]), [1.0], [2, 3])


def _tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("adjoint_a", [False, True])
@pytest.mark.parametrize("adjoint_b", [False, True])
def test_sparse_dense_matmul_matches_tensorflow(adjoint_a, adjoint_b):
    tf = _tf()
    rng = np.random.RandomState(0)
    a_shape = [4, 3] if adjoint_a else [3, 4]
    indices = np.array(sorted({(int(rng.randint(a_shape[0])), int(rng.randint(a_shape[1]))) for _ in range(6)}),
                       dtype=np.int64)
    values = rng.randn(len(indices)).astype(np.float32)
    b = rng.randn(*([5, 4] if adjoint_b else [4, 5])).astype(np.float32)
    outs = []
    for m in (tg, tf):
        sp = m.sparse.SparseTensor(indices, values, a_shape)
        outs.append(m.sparse.sparse_dense_matmul(sp, b, adjoint_a=adjoint_a, adjoint_b=adjoint_b).numpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def _both(fn):
    """fn(m) with tensorgrid and with TensorFlow (eager), as numpy nests."""
    tf = _tf()

    def numpy(x):
        if isinstance(x, (tg.SparseTensor, tf.sparse.SparseTensor)):
            return [x.indices.numpy(), x.values.numpy(), x.dense_shape.numpy()]
        return x.numpy()
    return numpy(fn(tg)), numpy(fn(tf))


@pytest.mark.parametrize("case", ["to_dense_default", "reduce_sum_axis0", "reduce_sum_neg_keep", "reduce_all",
                                  "add_threshold", "add_dense", "reorder", "reshape", "retain", "transpose",
                                  "from_dense"])
def test_sparse_ops_match_tensorflow(case):
    shuffled = INDICES[[2, 0, 3, 1]]
    other_idx = np.array([[0, 1], [0, 2], [2, 2]], dtype=np.int64)
    other_val = np.array([-1.4, 0.05, -4.0], dtype=np.float32)
    fns = {
        "to_dense_default": lambda m: m.sparse.to_dense(m.sparse.SparseTensor(INDICES, VALUES, SHAPE), 7.0),
        "reduce_sum_axis0": lambda m: m.sparse.reduce_sum(m.sparse.SparseTensor(INDICES, VALUES, SHAPE), axis=0),
        "reduce_sum_neg_keep": lambda m: m.sparse.reduce_sum(m.sparse.SparseTensor(INDICES, VALUES, SHAPE),
                                                             axis=-1, keepdims=True),
        "reduce_all": lambda m: m.sparse.reduce_sum(m.sparse.SparseTensor(INDICES, VALUES, SHAPE)),
        # (0, 1) sums to 0.1 (dropped at 0.2), (0, 2) is one-sided and small, (2, 2) sums to 0 exactly
        "add_threshold": lambda m: m.sparse.add(m.sparse.SparseTensor(INDICES, VALUES, SHAPE),
                                                m.sparse.SparseTensor(other_idx, other_val, SHAPE), 0.2),
        "add_dense": lambda m: m.sparse.add(m.sparse.SparseTensor(INDICES, VALUES, SHAPE),
                                            np.ones((3, 4), np.float32)),
        "reorder": lambda m: m.sparse.reorder(m.sparse.SparseTensor(shuffled, VALUES, SHAPE)),
        "reshape": lambda m: m.sparse.reshape(m.sparse.SparseTensor(INDICES, VALUES, SHAPE), [-1, 2, 3]),
        "retain": lambda m: m.sparse.retain(m.sparse.SparseTensor(INDICES, VALUES, SHAPE),
                                            np.array([True, False, False, True])),
        "transpose": lambda m: m.sparse.transpose(m.sparse.SparseTensor(INDICES, VALUES, SHAPE)),
        "from_dense": lambda m: m.sparse.from_dense(np.array([[0, 2.5], [1, 0]], np.float32)),
    }
    got, want = _both(fns[case])
    if isinstance(want, list):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6)
            assert np.asarray(g).dtype == np.asarray(w).dtype
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_graph_op_types_match_tensorflow():
    tf = _tf().compat.v1

    def build(m):
        g = m.Graph()
        with g.as_default():
            sp = m.sparse_placeholder(m.float32, name="sp")
            m.sparse.to_dense(sp)
            m.sparse.sparse_dense_matmul(sp, m.ones([4, 2]))
            m.sparse.reduce_sum(sp, axis=1)
            m.sparse.add(sp, sp)
            m.sparse.reorder(sp)
            m.sparse.reshape(sp, [12])
        ops = g.get_operations()
        return sorted({o.type for o in ops if o.type.startswith("Sparse")}), sorted(o.name for o in ops
                                                                                   if o.name.startswith("sp/"))
    assert build(v1) == build(tf)


def test_gradients_match_finite_differences():
    idx = tg.constant(INDICES)

    def matmul(adj_a, adj_b):
        return lambda values, b: tg.sparse.sparse_dense_matmul(
            tg.sparse.SparseTensor(idx, values, [4, 3] if adj_a else [3, 4]), b, adjoint_a=adj_a, adjoint_b=adj_b)
    vals = VALUES.astype(np.float64)
    check_gradients(matmul(False, False), vals, np.random.RandomState(1).randn(4, 2))
    check_gradients(matmul(False, True), vals, np.random.RandomState(2).randn(2, 4))
    check_gradients(lambda values, b: tg.sparse.sparse_dense_matmul(
        tg.sparse.SparseTensor(tg.constant([[0, 1], [1, 0], [2, 1], [3, 2]], tg.int64), values, [4, 3]), b,
        adjoint_a=True), vals, np.random.RandomState(3).randn(4, 2))
    check_gradients(lambda values, d: tg.sparse.to_dense(tg.sparse.SparseTensor(idx, values, SHAPE), d),
                    vals, np.array(0.5))
    check_gradients(lambda values: tg.sparse.reduce_sum(tg.sparse.SparseTensor(idx, values, SHAPE), axis=0),
                    vals)
    check_gradients(lambda values, dense: tg.sparse.add(tg.sparse.SparseTensor(idx, values, SHAPE), dense),
                    vals, np.ones((3, 4)))
    other = tg.constant([[0, 1], [2, 0]], tg.int64)
    check_gradients(lambda a, b: tg.sparse.to_dense(tg.sparse.add(tg.sparse.SparseTensor(idx, a, SHAPE),
                                                                  tg.sparse.SparseTensor(other, b, SHAPE))),
                    vals, np.array([2.0, 3.0]))
    shuffled = tg.constant(INDICES[[2, 0, 3, 1]])
    check_gradients(lambda values: tg.sparse.reorder(tg.sparse.SparseTensor(shuffled, values, SHAPE)).values
                    * tg.constant([1.0, 2.0, 3.0, 4.0], tg.float64), vals)


def test_errors_name_what_is_wrong():
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"indices\[1\] = \[0,1\] is out of order"):
        tg.sparse.to_dense(tg.SparseTensor([[1, 0], [0, 1]], [1.0, 2.0], [2, 2]))
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"indices\[0\] = \[5,3\] is out of bounds"):
        tg.sparse.to_dense(tg.SparseTensor([[5, 3]], [1.0], [3, 4]))
    with pytest.raises(tg.errors.InvalidArgumentError, match="is repeated"):
        tg.sparse.to_dense(tg.SparseTensor([[0, 1], [0, 1]], [1.0, 2.0], [2, 2]))
    with pytest.raises(tg.errors.InvalidArgumentError, match="shapes do not match"):
        tg.sparse.add(tg.SparseTensor([[0, 0]], [1.0], [2, 2]), tg.SparseTensor([[0, 0]], [1.0], [2, 3]))
    with pytest.raises((ValueError, tg.errors.InvalidArgumentError), match="inner dimension"):  # static in eager too
        tg.sparse.sparse_dense_matmul(tg.SparseTensor([[0, 0]], [1.0], [2, 2]), tg.ones([3, 1]))
    with pytest.raises(TypeError, match="SparseTensor"):
        tg.sparse.to_dense(tg.ones([2]))


def test_session_feeds_and_fetches_sparse_tensor_values():
    g = tg.Graph()
    with g.as_default():
        sp = v1.sparse_placeholder(tg.float32, name="sp")
        total = tg.sparse.reduce_sum(sp)
        doubled = sp.with_values(sp.values * 2.0)
        with tg.Session(graph=g) as sess:
            value = v1.SparseTensorValue(INDICES, VALUES, SHAPE)
            out = sess.run(doubled, {sp: value})
            assert isinstance(out, v1.SparseTensorValue)
            np.testing.assert_array_equal(out.indices, INDICES)
            np.testing.assert_allclose(out.values, 2 * VALUES)
            assert sess.run(total, {sp: (INDICES, VALUES, SHAPE)}) == pytest.approx(VALUES.sum())
            with pytest.raises(TypeError, match="indices, values, dense_shape"):
                sess.run(total, {sp: (INDICES, VALUES)})
        fixed = v1.sparse_placeholder(tg.float32, shape=[3, 4], name="fixed")
        assert fixed.shape.as_list() == [3, 4]
        with tg.Session(graph=g) as sess:   # the shape need not be fed when it is given
            dense = sess.run(tg.sparse.to_dense(fixed), {fixed.indices: INDICES, fixed.values: VALUES})
            np.testing.assert_allclose(dense, _dense())


def test_function_returns_sparse_tensor():
    @tg.function
    def f(x):
        return tg.sparse.from_dense(x * 2.0)
    out = f(tg.constant([[0.0, 1.0], [3.0, 0.0]]))
    assert isinstance(out, tg.SparseTensor)
    np.testing.assert_array_equal(out.indices.numpy(), [[0, 1], [1, 0]])
    np.testing.assert_allclose(out.values.numpy(), [2.0, 6.0])
    np.testing.assert_array_equal(out.dense_shape.numpy(), [2, 2])


@pytest.mark.parametrize("name", ["segment_sum", "segment_mean", "segment_sqrt_n"])
@pytest.mark.parametrize("num_segments", [None, 5])
def test_sparse_segment_ops_and_gradients_match_tensorflow(name, num_segments):
    tf = _tf()
    data = np.random.RandomState(4).randn(6, 3).astype(np.float32)
    indices, ids = np.array([0, 2, 2, 5, 1], np.int32), np.array([0, 0, 1, 3, 3], np.int32)
    outs = []
    for m in (tg, tf):
        x = m.constant(data)
        with m.GradientTape() as tape:
            tape.watch(x)
            y = getattr(m.sparse, name)(x, indices, ids, num_segments=num_segments)
            loss = m.reduce_sum(y * m.constant(np.arange(y.shape[0] * 3, dtype=np.float32).reshape(-1, 3)))
        outs.append((y.numpy(), m.convert_to_tensor(tape.gradient(loss, x)).numpy()))
    for g, w in zip(outs[0], outs[1]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [False, True])
def test_embedding_lookup_sparse_matches_tensorflow(combiner, weighted):
    tf = _tf()
    table = np.random.RandomState(5).randn(10, 4).astype(np.float32)
    ids = ([[0, 0], [0, 1], [2, 0], [2, 1], [2, 2]], np.array([3, 7, 3, 0, 9], np.int64), [3, 3])
    weights = np.array([0.5, 2.0, 1.0, -1.5, 3.0], np.float32)
    outs = []
    for m in (tg, tf):
        params = m.Variable(table)
        sp_ids = m.sparse.SparseTensor(*ids)
        sp_w = m.sparse.SparseTensor(ids[0], weights, ids[2]) if weighted else None
        with m.GradientTape() as tape:
            y = m.nn.embedding_lookup_sparse(params, sp_ids, sp_w, combiner=combiner)
            loss = m.reduce_sum(y * m.constant(np.arange(12, dtype=np.float32).reshape(3, 4)))
        outs.append((y.numpy(), m.convert_to_tensor(tape.gradient(loss, params)).numpy()))
    for g, w in zip(outs[0], outs[1]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis,keepdims", [(1, False), (0, True), ([0, 1], False)])
def test_reduce_sum_with_sparse_output_matches_tensorflow(axis, keepdims):
    indices = np.array([[0, 1], [1, 0], [1, 3], [2, 2]], np.int64)
    values = np.array([1.5, -2.0, 2.0, 4.0], np.float32)   # row 1 sums to zero: kept as an element
    got, want = _both(lambda m: m.sparse.reduce_sum(m.sparse.SparseTensor(indices, values, SHAPE), axis=axis,
                                                    keepdims=keepdims, output_is_sparse=True))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w)
