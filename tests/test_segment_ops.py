"""tg.math segment reductions (client/segment_ops.py): NumPy on every executor, TensorFlow on the same inputs,
finite-difference gradients (ties and zeros included), TF's errors."""

import numpy as np
import pytest

import tensorgrid as tg
from tests.conftest import run_with
from tests.gradcheck import check_gradients

DATA = np.array([[1.0, -2.0], [3.0, 4.0], [0.5, 4.0], [-1.0, 2.0], [6.0, 0.0]], np.float32)
SORTED = np.array([0, 0, 2, 2, 3], np.int32)
UNSORTED = np.array([3, 0, -1, 3, 1], np.int32)


def _reduce(kind, rows, data, ids, empty):
    out = np.full((rows,) + data.shape[1:], empty, dtype=np.float64)
    for k in range(rows):
        sel = data[ids == k]
        if len(sel):
            out[k] = {"sum": sel.sum(0), "mean": sel.mean(0), "max": sel.max(0), "min": sel.min(0),
                      "prod": sel.prod(0), "sqrt_n": sel.sum(0) / np.sqrt(len(sel))}[kind]
    return out


def test_segment_ops_match_numpy(executor):
    def fn(data, sorted_ids, unsorted_ids):
        return ([tg.math.segment_sum(data, sorted_ids), tg.math.segment_mean(data, sorted_ids),
                 tg.math.segment_max(data, sorted_ids), tg.math.segment_min(data, sorted_ids),
                 tg.math.segment_prod(data, sorted_ids)],
                [tg.math.unsorted_segment_sum(data, unsorted_ids, 5), tg.math.unsorted_segment_mean(data, unsorted_ids, 5),
                 tg.math.unsorted_segment_max(data, unsorted_ids, 5), tg.math.unsorted_segment_min(data, unsorted_ids, 5),
                 tg.math.unsorted_segment_prod(data, unsorted_ids, 5),
                 tg.math.unsorted_segment_sqrt_n(data, unsorted_ids, 5)])
    sorted_out, unsorted_out = run_with(executor, fn, DATA, SORTED, UNSORTED)
    f32 = np.finfo(np.float32)
    for got, kind in zip(sorted_out, ["sum", "mean", "max", "min", "prod"]):
        np.testing.assert_allclose(got, _reduce(kind, 4, DATA, SORTED, kind == "prod"), rtol=1e-6, err_msg=kind)
    empties = {"sum": 0, "mean": 0, "max": f32.min, "min": f32.max, "prod": 1, "sqrt_n": 0}
    for got, kind in zip(unsorted_out, ["sum", "mean", "max", "min", "prod", "sqrt_n"]):
        np.testing.assert_allclose(got, _reduce(kind, 5, DATA, UNSORTED, empties[kind]), rtol=1e-6, err_msg=kind)


@pytest.mark.parametrize("name", ["segment_sum", "segment_mean", "segment_max", "segment_min", "segment_prod"])
def test_sorted_segments_match_tensorflow(name):
    tf = pytest.importorskip("tensorflow")
    data = np.random.RandomState(0).randn(6, 3).astype(np.float32)
    ids = np.array([0, 0, 1, 3, 3, 3], np.int32)
    got = getattr(tg.math, name)(data, ids).numpy()
    want = getattr(tf.math, name)(data, ids).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("name", ["unsorted_segment_sum", "unsorted_segment_mean", "unsorted_segment_max",
                                  "unsorted_segment_min", "unsorted_segment_prod", "unsorted_segment_sqrt_n"])
def test_unsorted_segments_match_tensorflow(name):
    tf = pytest.importorskip("tensorflow")
    data = np.random.RandomState(1).randn(3, 2, 4).astype(np.float32)
    ids = np.array([[2, -1], [0, 2], [4, 0]], np.int32)   # a matrix of ids, one dropped, segments 1 and 3 empty
    got = getattr(tg.math, name)(data, ids, 5).numpy()
    want = getattr(tf.math, name)(data, ids, 5).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_gradients_match_finite_differences():
    ids = tg.constant(SORTED)
    uids = tg.constant([0, 0, -1, 2, 1])    # no empty segment: max/min's empty value (-FLT_MAX) would overflow
    data = DATA.astype(np.float64)
    with_ties = np.array([[1.0, 2.0], [1.0, 3.0], [0.0, 5.0], [2.0, 0.0], [7.0, 1.0]])  # a tie, a zero, two zeros
    for fn in (tg.math.segment_sum, tg.math.segment_mean, tg.math.segment_max, tg.math.segment_min,
               tg.math.segment_prod):
        check_gradients(lambda d, fn=fn: fn(d, ids), data)
        check_gradients(lambda d, fn=fn: fn(d, ids), with_ties)
    for fn in (tg.math.unsorted_segment_mean, tg.math.unsorted_segment_max, tg.math.unsorted_segment_min,
               tg.math.unsorted_segment_prod, tg.math.unsorted_segment_sqrt_n):
        check_gradients(lambda d, fn=fn: fn(d, uids, 3), data)
        check_gradients(lambda d, fn=fn: fn(d, uids, 3), with_ties)


def test_gradients_match_tensorflow_with_ties():
    tf = pytest.importorskip("tensorflow")
    data = np.array([[1.0, 2.0], [1.0, 3.0], [0.0, 5.0], [0.0, 0.0], [7.0, 1.0]], np.float32)
    ids = np.array([0, 0, 1, 1, 1], np.int32)
    for name in ("segment_max", "segment_prod", "unsorted_segment_min", "unsorted_segment_prod"):
        grads = []
        for m in (tg, tf):
            x = m.constant(data)
            with m.GradientTape() as tape:
                tape.watch(x)
                args = (x, ids, 2) if name.startswith("unsorted") else (x, ids)
                y = m.reduce_sum(getattr(m.math, name)(*args) * m.constant([[1.0, 2.0], [3.0, 4.0]]))
            grads.append(tape.gradient(y, x).numpy())
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, err_msg=name)


def test_errors_are_tensorflows():
    with pytest.raises(tg.errors.InvalidArgumentError, match="segment ids are not increasing"):
        tg.math.segment_sum([1.0, 2.0], [1, 0])
    with pytest.raises(tg.errors.InvalidArgumentError, match="out of range"):
        tg.math.segment_sum([1.0, 2.0], [-1, 0])
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"segment_ids\[0\] = 5 is out of range \[0, 3\)"):
        tg.math.unsorted_segment_max([1.0, 2.0], [5, 0], 3)
    with pytest.raises((ValueError, tg.errors.InvalidArgumentError), match="same size as dimension 0"):
        tg.math.segment_sum([1.0, 2.0], [0, 0, 1])
    with pytest.raises(TypeError, match="integer"):
        tg.math.segment_sum([1.0, 2.0], tg.constant([0.0, 1.0]))
    g = tg.Graph()
    with g.as_default():
        assert tg.math.segment_max(tg.ones([3, 2]), [0, 0, 2]).shape.as_list() == [3, 2]
        assert tg.math.segment_sum(tg.ones([3, 2]), [0, 0, 1]).op.type == "SegmentSum"
        assert tg.math.unsorted_segment_prod(tg.ones([3, 2]), [0, 0, 1], 4).shape.as_list() == [4, 2]
