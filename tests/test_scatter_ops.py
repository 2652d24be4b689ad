"""Row ops (tensorgrid/ops/scatter_ops.py) and Unique / DynamicPartition / DynamicStitch: numbers on every
executor, gradients by finite differences, errors, copy-on-write, repeated rows in the sparse updates."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1
from tensorgrid.client.graph import apply_op
from conftest import run_with
from gradcheck import check_gradients

RNG = np.random.RandomState(5)
TABLE = RNG.randn(6, 3).astype(np.float32)
IDS = np.array([4, 1, 4], np.int32)
UPDATES = RNG.randn(3, 3).astype(np.float32)


def _rows_program(scatter):
    """fn(ids, updates): sets a variable to TABLE, gathers rows ids, then scatters `updates` with `scatter`."""
    made = []

    def fn(ids, updates):
        if not made:  # one variable per program (a tg.function may make variables on its first trace only)
            made.append(tg.Variable(lambda: tg.zeros([6, 3]), name="table"))
        v = made[0]
        with tg.control_dependencies([v.assign(TABLE)]):
            rows = v.sparse_read(ids)
        with tg.control_dependencies([rows]):
            new = scatter(v, ids, updates)
        return rows, new
    return fn


def _scatter_reference(how):
    want = TABLE.copy()
    for i, u in zip(IDS, UPDATES):
        want[i] = want[i] + u if how == "add" else want[i] - u if how == "sub" else u
    return want


@pytest.mark.parametrize("how", ["add", "sub", "update"])
def test_gather_then_scatter_on_every_executor(executor, how):
    scatter = {"add": v1.scatter_add, "sub": v1.scatter_sub, "update": v1.scatter_update}[how]
    rows, new = run_with(executor, _rows_program(scatter), IDS, UPDATES)
    np.testing.assert_array_equal(rows, TABLE[IDS])
    np.testing.assert_allclose(new, _scatter_reference(how), rtol=1e-6)


def test_variable_scatter_methods_take_indexed_slices():
    v = tg.Variable(TABLE)
    v.scatter_add(tg.IndexedSlices(tg.constant(UPDATES), tg.constant(IDS)))
    np.testing.assert_allclose(v.numpy(), _scatter_reference("add"), rtol=1e-6)
    v.scatter_update(tg.IndexedSlices(tg.constant(TABLE[:2]), tg.constant([0, 1])))
    np.testing.assert_array_equal(v.numpy()[:2], TABLE[:2])
    with pytest.raises(TypeError, match="IndexedSlices"):
        v.scatter_sub(tg.constant(UPDATES))


def test_a_value_read_before_an_update_never_changes():
    v = tg.Variable(TABLE)
    before = v.numpy()
    gathered = v.sparse_read([4])
    v1.scatter_add(v, [4], np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(before, TABLE)
    np.testing.assert_array_equal(gathered.numpy(), TABLE[[4]])
    np.testing.assert_allclose(v.numpy()[4], TABLE[4] + 1)


def test_row_indices_out_of_range_name_the_op():
    v = tg.Variable(TABLE)
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"ResourceGather.*indices\[1\] = 6 is not in \[0, 6\)"):
        v.sparse_read([0, 6])
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"ResourceScatterAdd.*is not in \[0, 6\)"):
        v1.scatter_add(v, [-1], np.ones((1, 3), np.float32))
    with pytest.raises(tg.errors.InvalidArgumentError, match="updates of shape"):
        v1.scatter_add(v, [0, 1], np.ones((3, 3), np.float32))


def test_sparse_apply_kernels_apply_repeated_rows_one_after_another():
    var, accum = tg.Variable(TABLE), tg.Variable(np.full((6, 3), 0.1, np.float32))
    grad = UPDATES
    apply_op("ResourceSparseApplyAdagrad", [var.handle, accum.handle, tg.constant(0.5), grad, IDS],
             {"use_locking": False, "update_slots": True})
    want_var, want_acc = TABLE.copy(), np.full((6, 3), 0.1, np.float32)
    for i, g in zip(IDS, grad):
        want_acc[i] += g * g
        want_var[i] -= 0.5 * g / np.sqrt(want_acc[i])
    np.testing.assert_allclose(accum.numpy(), want_acc, rtol=1e-6)
    np.testing.assert_allclose(var.numpy(), want_var, rtol=1e-6)


# ---- Unique, DynamicPartition, DynamicStitch --------------------------------------------------------

def test_unique_partition_and_stitch_on_every_executor(executor):
    x = np.array([5, 3, 5, 1, 3, 7], np.int64)
    data = RNG.randn(6, 2).astype(np.float32)
    parts = np.array([1, 0, 2, 1, 1, 0], np.int32)

    def fn(x, data, parts):
        y, idx = tg.unique(x)
        split = tg.dynamic_partition(data, parts, 3)
        positions = tg.dynamic_partition(tg.range(6), parts, 3)
        return y, idx, split[0], split[1], split[2], tg.dynamic_stitch(positions, split)
    y, idx, p0, p1, p2, stitched = run_with(executor, fn, x, data, parts)
    np.testing.assert_array_equal(y, [5, 3, 1, 7])
    np.testing.assert_array_equal(idx, [0, 1, 0, 2, 1, 3])
    assert idx.dtype == np.int32
    for i, p in enumerate((p0, p1, p2)):
        np.testing.assert_array_equal(p, data[parts == i])
    np.testing.assert_array_equal(stitched, data)


def test_unique_partition_and_stitch_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    x = np.array([2, 2, 9, -1, 9, 0], np.int32)
    y, idx = tg.unique(x, out_idx=tg.int64)
    want_y, want_idx = tf.unique(x, out_idx=tf.int64)
    np.testing.assert_array_equal(y.numpy(), want_y.numpy())
    np.testing.assert_array_equal(idx.numpy(), want_idx.numpy())
    indices = [np.array([0, 4, 2]), np.array([[1, 4], [3, 5]])]
    data = [RNG.randn(3, 2), RNG.randn(2, 2, 2)]
    np.testing.assert_array_equal(tg.dynamic_stitch(indices, data).numpy(), tf.dynamic_stitch(indices, data).numpy())
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"partitions\[2\] = 3 is not in \[0, 3\)"):
        tg.dynamic_partition(np.ones(3), np.array([0, 1, 3], np.int32), 3)


GRADIENTS = {
    "dynamic_partition": (lambda d: tg.dynamic_partition(d, tg.constant([[1, 0], [0, 2]]), 3),
                          [RNG.randn(2, 2, 3)]),
    "dynamic_stitch": (lambda a, b: tg.dynamic_stitch([tg.constant([0, 3]), tg.constant([[2], [1]])], [a, b]),
                       [RNG.randn(2, 2), RNG.randn(2, 1, 2)]),
    "gather_rows": (lambda t: tg.gather(t, tg.constant([[2, 0], [2, 2]])) ** 2, [RNG.randn(3, 2)]),
    "embedding_mod": (lambda a, b: v1.nn.embedding_lookup([a, b], tg.constant([3, 0, 1, 3])) * 2.0,
                      [RNG.randn(2, 2), RNG.randn(2, 2)]),
    "embedding_div": (lambda a, b: tg.nn.embedding_lookup([a, b], tg.constant([[4], [0]])) ** 2,
                      [RNG.randn(3, 2), RNG.randn(2, 2)]),
}


@pytest.mark.parametrize("case", sorted(GRADIENTS))
def test_gradient(case):
    fn, arrays = GRADIENTS[case]
    check_gradients(fn, *arrays)
