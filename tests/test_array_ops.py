"""Array ops: creation and shape ops against NumPy on every executor, `[]` slicing against
NumPy's, static shape inference and build-time errors, runtime errors, and every gradient
against finite differences."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client import array_ops
from tensorgrid.client.graph import apply_op
from conftest import run_with
from gradcheck import check_gradients, tape_gradients

RNG = np.random.RandomState(0)
DTYPES = [np.float32, np.float64, np.int32, np.int64]


def _arange(shape, dtype=np.float32):
    return (np.arange(int(np.prod(shape))) - 3).reshape(shape).astype(dtype)


def _assert_same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=1e-6)


# ---- creation ----------------------------------------------------------------------------------

CREATION = {
    "zeros": (lambda: tg.zeros([2, 3]), np.zeros((2, 3), np.float32)),
    "zeros_int32": (lambda: tg.zeros((4,), tg.int32), np.zeros(4, np.int32)),
    "zeros_bool": (lambda: tg.zeros([2], tg.bool), np.zeros(2, bool)),
    "zeros_scalar": (lambda: tg.zeros([], tg.float64), np.zeros((), np.float64)),
    "zeros_tensorshape": (lambda: tg.zeros(tg.TensorShape([1, 2])), np.zeros((1, 2), np.float32)),
    "ones": (lambda: tg.ones([3, 1], "float64"), np.ones((3, 1))),
    "ones_bool": (lambda: tg.ones([2], tg.bool), np.ones(2, bool)),
    "fill": (lambda: tg.fill([2, 2], 7), np.full((2, 2), 7, np.int32)),
    "fill_float": (lambda: tg.fill([3], 0.5), np.full(3, 0.5, np.float32)),
    "range_stop": (lambda: tg.range(5), np.arange(5, dtype=np.int32)),
    "range_start_stop": (lambda: tg.range(2, 9, 3), np.arange(2, 9, 3, dtype=np.int32)),
    "range_negative": (lambda: tg.range(5, -4, -2), np.arange(5, -4, -2, dtype=np.int32)),
    "range_float": (lambda: tg.range(1, 2, 0.25), np.arange(1, 2, 0.25, dtype=np.float32)),
    "range_dtype": (lambda: tg.range(4, dtype=tg.float64), np.arange(4, dtype=np.float64)),
    "range_empty": (lambda: tg.range(3, 3), np.arange(0, dtype=np.int32)),
    "range_int64": (lambda: tg.range(tg.constant(3, tg.int64)), np.arange(3, dtype=np.int64)),
    "linspace": (lambda: tg.linspace(0.0, 1.0, 5), np.linspace(0, 1, 5, dtype=np.float32)),
    "lin_space_f64": (lambda: tg.lin_space(tg.constant(-1.0, tg.float64), 2.0, 4), np.linspace(-1, 2, 4)),
    "one_hot": (lambda: tg.one_hot([0, 2, -1, 5], 3), np.eye(3, dtype=np.float32)[[0, 2]].tolist()
                + [[0, 0, 0], [0, 0, 0]]),
    "one_hot_axis0": (lambda: tg.one_hot([1, 0], 3, axis=0), np.eye(3, dtype=np.float32)[[1, 0]].T),
    "one_hot_values": (lambda: tg.one_hot([[1], [0]], 2, on_value=5, off_value=-1),
                       np.array([[[-1, 5]], [[5, -1]]], np.int32)),
    "one_hot_dtype": (lambda: tg.one_hot([1], 2, dtype=tg.float64), np.array([[0.0, 1.0]])),
    "one_hot_bool": (lambda: tg.one_hot([1], 2, dtype=tg.bool), np.array([[False, True]])),
    "eye": (lambda: tg.eye(3), np.eye(3, dtype=np.float32)),
    "eye_rect": (lambda: tg.eye(2, 4, dtype=tg.int32), np.eye(2, 4, dtype=np.int32)),
    "eye_tall": (lambda: tg.eye(3, 2), np.eye(3, 2, dtype=np.float32)),
    "eye_batch": (lambda: tg.eye(2, batch_shape=[3]), np.broadcast_to(np.eye(2, dtype=np.float32), (3, 2, 2))),
}


@pytest.mark.parametrize("case", sorted(CREATION))
def test_creation(executor, case):
    fn, want = CREATION[case]
    if case == "one_hot":
        want = np.asarray(want, np.float32)
    _assert_same(run_with(executor, fn), want)


@pytest.mark.parametrize("dtype", DTYPES + [np.bool_])
def test_like_ops(executor, dtype):
    x = np.array([[1, 0, 2]], dtype=dtype)
    zeros, ones, zeros_f, ones_i = run_with(
        executor, lambda t: (tg.zeros_like(t), tg.ones_like(t), tg.zeros_like(t, tg.float64),
                             tg.ones_like(t, dtype=tg.int64)), x)
    _assert_same(zeros, np.zeros_like(x))
    _assert_same(ones, np.ones_like(x))
    _assert_same(zeros_f, np.zeros(x.shape, np.float64))
    _assert_same(ones_i, np.ones(x.shape, np.int64))


def test_fill_and_range_from_tensors(executor):
    dims, n = np.array([2, 3], np.int32), np.array(4, np.int32)
    filled, seq = run_with(executor, lambda d, k: (tg.fill(d, 1.5), tg.range(1, k + 1)), dims, n)
    _assert_same(filled, np.full((2, 3), 1.5, np.float32))
    _assert_same(seq, np.arange(1, 5, dtype=np.int32))


# ---- shape ops battery -----------------------------------------------------------------------------

# name -> (tensorgrid fn, numpy fn, input shapes); the inputs are _arange arrays of the dtype under test
SHAPE_OPS = {
    "reshape": (lambda x: tg.reshape(x, [3, -1]), lambda x: x.reshape(3, -1), [(2, 3, 2)]),
    "reshape_scalar": (lambda x: tg.reshape(x, []), lambda x: x.reshape(()), [(1, 1)]),
    "transpose_default": (lambda x: tg.transpose(x), lambda x: x.T, [(2, 3, 4)]),
    "transpose_perm": (lambda x: tg.transpose(x, [1, 2, 0]), lambda x: x.transpose(1, 2, 0), [(2, 3, 4)]),
    "expand_dims": (lambda x: tg.expand_dims(x, 1), lambda x: x[:, None], [(2, 3)]),
    "expand_dims_neg": (lambda x: tg.expand_dims(x, -1), lambda x: x[..., None], [(2, 3)]),
    "expand_dims_dim": (lambda x: tg.expand_dims(x, dim=0), lambda x: x[None], [(3,)]),
    "squeeze_all": (lambda x: tg.squeeze(x), lambda x: x.squeeze(), [(1, 3, 1, 2)]),
    "squeeze_axis": (lambda x: tg.squeeze(x, [2]), lambda x: x.squeeze(2), [(1, 3, 1, 2)]),
    "squeeze_dims": (lambda x: tg.squeeze(x, squeeze_dims=[-4]), lambda x: x.squeeze(0), [(1, 3, 1, 2)]),
    "concat": (lambda x, y: tg.concat([x, y], 1), lambda x, y: np.concatenate([x, y], 1), [(2, 3), (2, 1)]),
    "concat_neg": (lambda x, y: tg.concat([x, y], -2), lambda x, y: np.concatenate([x, y], 0), [(2, 3), (1, 3)]),
    "concat_three": (lambda x, y, z: tg.concat([x, y, z], 0), lambda x, y, z: np.concatenate([x, y, z]),
                     [(1, 2), (2, 2), (1, 2)]),
    "concat_one": (lambda x: tg.concat([x], 0), lambda x: x, [(2, 2)]),
    "stack": (lambda x, y: tg.stack([x, y]), lambda x, y: np.stack([x, y]), [(2, 3), (2, 3)]),
    "stack_axis": (lambda x, y: tg.stack([x, y], axis=-1), lambda x, y: np.stack([x, y], -1), [(2, 3), (2, 3)]),
    "stack_scalars": (lambda x, y: tg.stack([x, y]), lambda x, y: np.stack([x, y]), [(), ()]),
    "unstack": (lambda x: tg.unstack(x), lambda x: list(x), [(3, 2)]),
    "unstack_axis": (lambda x: tg.unstack(x, axis=1), lambda x: list(np.moveaxis(x, 1, 0)), [(2, 3)]),
    "split_even": (lambda x: tg.split(x, 2, axis=1), lambda x: np.split(x, 2, 1), [(2, 4)]),
    "split_sizes": (lambda x: tg.split(x, [1, -1, 2]), lambda x: np.split(x, [1, 3]), [(5, 2)]),
    "split_one": (lambda x: tg.split(x, 1), lambda x: [x], [(2, 2)]),
    "slice": (lambda x: tg.slice(x, [1, 0], [1, -1]), lambda x: x[1:2, 0:], [(3, 4)]),
    "slice_empty": (lambda x: tg.slice(x, [3, 1], [0, 2]), lambda x: x[3:3, 1:3], [(3, 4)]),
    "strided_slice": (lambda x: tg.strided_slice(x, [0, 3], [2, 0], [1, -2]), lambda x: x[0:2, 3:0:-2], [(3, 4)]),
    "strided_slice_masks": (lambda x: tg.strided_slice(x, [1, 0, 0], [0, 0, 2], [1, 1, 1], begin_mask=4, end_mask=1,
                                                       ellipsis_mask=2),
                            lambda x: x[1:, ..., :2], [(3, 2, 4)]),
    "gather": (lambda x: tg.gather(x, [2, 0, 2]), lambda x: x[[2, 0, 2]], [(3, 2)]),
    "gather_axis": (lambda x: tg.gather(x, [[1], [0]], axis=1), lambda x: np.take(x, [[1], [0]], 1), [(2, 3, 2)]),
    "gather_neg_axis": (lambda x: tg.gather(x, 1, axis=-1), lambda x: x[..., 1], [(2, 3)]),
    "gather_nd": (lambda x: tg.gather_nd(x, [[1, 0], [0, 2]]), lambda x: x[[1, 0], [0, 2]], [(2, 3, 2)]),
    "gather_nd_slices": (lambda x: tg.gather_nd(x, [[1], [0]]), lambda x: x[[1, 0]], [(2, 3)]),
    "scatter_nd": (lambda u: tg.scatter_nd([[1], [3], [1]], u, [4, 2]),
                   lambda u: np.array([np.zeros(2), u[0] + u[2], np.zeros(2), u[1]], dtype=u.dtype), [(3, 2)]),
    "unsorted_segment_sum": (lambda x: tg.unsorted_segment_sum(x, [2, 0, 2, -1], 3),
                             lambda x: np.array([x[1], np.zeros(2), x[0] + x[2]], dtype=x.dtype), [(4, 2)]),
    "tile": (lambda x: tg.tile(x, [2, 3]), lambda x: np.tile(x, (2, 3)), [(2, 2)]),
    "pad": (lambda x: tg.pad(x, [[1, 0], [2, 1]]), lambda x: np.pad(x, [(1, 0), (2, 1)]), [(2, 3)]),
    "pad_value": (lambda x: tg.pad(x, [[0, 1], [1, 1]], constant_values=9),
                  lambda x: np.pad(x, [(0, 1), (1, 1)], constant_values=9), [(2, 3)]),
    "pad_reflect": (lambda x: tg.pad(x, [[1, 1], [2, 2]], "REFLECT"),
                    lambda x: np.pad(x, [(1, 1), (2, 2)], "reflect"), [(2, 3)]),
    "pad_symmetric": (lambda x: tg.pad(x, [[2, 1], [0, 3]], mode="symmetric"),
                      lambda x: np.pad(x, [(2, 1), (0, 3)], "symmetric"), [(2, 3)]),
    "broadcast_to": (lambda x: tg.broadcast_to(x, [2, 3, 4]), lambda x: np.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
    "reverse": (lambda x: tg.reverse(x, [0, -1]), lambda x: x[::-1, :, ::-1], [(2, 3, 2)]),
    "reverse_v2": (lambda x: tg.reverse_v2(x, [1]), lambda x: x[:, ::-1], [(2, 3)]),
    "reverse_none": (lambda x: tg.reverse(x, []), lambda x: x, [(2, 3)]),
    "boolean_mask": (lambda x: tg.boolean_mask(x, [True, False, True]), lambda x: x[[0, 2]], [(3, 2)]),
    "boolean_mask_2d": (lambda x: tg.boolean_mask(x, [[True, False], [False, True]]),
                        lambda x: x[np.array([[True, False], [False, True]])], [(2, 2, 3)]),
    "boolean_mask_axis": (lambda x: tg.boolean_mask(x, [False, True, True], axis=1),
                          lambda x: x[:, 1:], [(2, 3)]),
    "shape": (lambda x: tg.shape(x), lambda x: np.array(x.shape, np.int32), [(2, 3, 1)]),
    "shape_int64": (lambda x: tg.shape(x, out_type=tg.int64), lambda x: np.array(x.shape, np.int64), [(4,)]),
    "size": (lambda x: tg.size(x), lambda x: np.int32(x.size), [(2, 3)]),
    "rank": (lambda x: tg.rank(x), lambda x: np.int32(x.ndim), [(2, 3, 1)]),
    "clip_by_value": (lambda x: tg.clip_by_value(x, -1, 4), lambda x: np.clip(x, -1, 4), [(3, 4)]),
    "clip_by_tensors": (lambda x, lo: tg.clip_by_value(x, lo, 5), lambda x, lo: np.clip(x, lo, 5), [(3, 4), (4,)]),
}


def _inputs(shapes, dtype):
    return [_arange(s, dtype) + i for i, s in enumerate(shapes)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", sorted(SHAPE_OPS))
def test_shape_ops(executor, case, dtype):
    fn, np_fn, shapes = SHAPE_OPS[case]
    arrays = _inputs(shapes, dtype)
    got, want = run_with(executor, fn, *arrays), np_fn(*arrays)
    if isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    else:
        _assert_same(got, want)


@pytest.mark.parametrize("case", ["reshape", "transpose_perm", "concat", "stack", "gather", "tile", "pad",
                                  "reverse", "broadcast_to", "strided_slice"])
def test_shape_ops_bool(case):
    fn, np_fn, shapes = SHAPE_OPS[case]
    arrays = [a > 0 for a in _inputs(shapes, np.int32)]
    _assert_same(run_with("graph", fn, *arrays), np_fn(*arrays))


def test_shape_ops_with_tensor_arguments(executor):
    x = _arange((2, 3, 4))
    shape, perm, begin = np.array([4, 6], np.int32), np.array([2, 0, 1], np.int64), np.array([1, 1, 0], np.int32)
    got = run_with(executor, lambda t, s, p, b: (tg.reshape(t, s), tg.transpose(t, p), tg.slice(t, b, [1, 2, -1]),
                                                 tg.tile(t, tg.concat([tg.shape(s), [1, 1]], 0)), tg.reshape(t, [s[1], -1])),
                   x, shape, perm, begin)
    for g, w in zip(got, [x.reshape(4, 6), x.transpose(2, 0, 1), x[1:2, 1:3, 0:], np.tile(x, (2, 1, 1)),
                          x.reshape(6, 4)]):
        _assert_same(g, w)


@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.float64, np.float32), (np.int32, np.float64),
                                     (np.int64, np.int32), (np.float32, np.bool_), (np.bool_, np.float32),
                                     (np.int32, np.uint8), (np.float32, np.float16)])
def test_cast(executor, src, dst):
    x = np.array([[-2.7, -0.5, 0.0], [0.4, 1.9, 3.0]]).astype(src)
    _assert_same(run_with(executor, lambda t: tg.cast(t, dst), x), x.astype(dst))


def test_cast_shortcuts(executor):
    x = np.array([1.7, -2.2], np.float64)
    got = run_with(executor, lambda t: (tg.to_float(t), tg.to_double(t), tg.to_int32(t), tg.to_int64(t)), x)
    for g, dt in zip(got, [np.float32, np.float64, np.int32, np.int64]):
        _assert_same(g, x.astype(dt))


def test_cast_to_same_dtype_is_the_input():
    with tg.Graph().as_default():
        x = tg.compat.v1.placeholder(tg.float32, [2])
        assert tg.cast(x, tg.float32) is x


def test_range_dtype_rules():
    assert tg.range(3).dtype == tg.int32
    assert tg.range(3.0).dtype == tg.float32
    assert tg.range(tg.constant(2, tg.int64), 5).dtype == tg.int64
    assert tg.range(0, tg.constant(2.0, tg.float64), 0.5).dtype == tg.float64
    assert tg.one_hot([1], 2, on_value=1.0, off_value=0.0, dtype=tg.float64).dtype == tg.float64


# ---- slicing with [] --------------------------------------------------------------------------------

KEYS = [
    0, -1, 2, slice(None), slice(1, None), slice(None, 2), slice(None, None, -1), slice(None, None, 2),
    slice(-2, None, -1), slice(3, 0, -2), slice(-100, 100), slice(10, 20), slice(2, 1),
    (1, 2), (-1, -2, -3), (0, slice(None), 1), (slice(1, 3), slice(None, None, -2)),
    Ellipsis, (Ellipsis, 0), (0, Ellipsis), (Ellipsis, slice(None, None, -1)), (1, Ellipsis, slice(1, 3)),
    None, (None, 0), (Ellipsis, None), (slice(None), None, -1), (None, None, 1, None),
    (slice(None, None, -1), Ellipsis, None, slice(None, 1)), (np.int64(1), np.int32(-1)),
    (), (0, 1, 2), (slice(None, None, -3), 2, Ellipsis),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_getitem_matches_numpy(executor, key):
    x = _arange((3, 4, 5))
    _assert_same(run_with(executor, lambda t: t[key], x), x[key])


def test_getitem_with_tensor_indices(executor):
    x = _arange((4, 5))
    i, j = np.array(2, np.int32), np.array(-1, np.int32)
    got = run_with(executor, lambda t, a, b: (t[a], t[a, b], t[1:a], t[:, a:b], t[::b]), x, i, j)
    for g, w in zip(got, [x[2], x[2, -1], x[1:2], x[:, 2:-1], x[::-1]]):
        _assert_same(g, w)


def test_getitem_with_bool_mask(executor):
    x = _arange((3, 2))
    m = np.array([True, False, True])
    _assert_same(run_with(executor, lambda t, mask: t[mask], x, m), x[m])


def test_getitem_static_shapes():
    with tg.Graph().as_default():
        x = tg.compat.v1.placeholder(tg.float32, [None, 4, 5])
        assert x[0].shape.as_list() == [4, 5]
        assert x[:, 1:3].shape.as_list() == [None, 2, 5]
        assert x[..., None, ::2].shape.as_list() == [None, 4, 1, 3]
        assert x[1:, 0, -1].shape.as_list() == [None]
        i = tg.compat.v1.placeholder(tg.int32, [])
        assert x[i].shape.as_list() == [4, 5]
        assert x[:, :i].shape.as_list() == [None, None, 5]


def test_getitem_rejects_bad_keys():
    x = tg.constant(_arange((2, 3)))
    with pytest.raises(TypeError, match="valid indices"):
        x[1.5]
    with pytest.raises(TypeError, match="valid indices"):
        x["a"]
    with tg.Graph().as_default():
        y = tg.compat.v1.placeholder(tg.float32, [2, 3])
        with pytest.raises(ValueError, match="StridedSlice.*out of bounds"):
            y[2]
        with pytest.raises(ValueError, match="Index out of range"):
            y[0, 0, 0]
        with pytest.raises(ValueError, match="Multiple ellipses"):
            y[..., 0, ...]


# ---- static shapes and build-time errors -------------------------------------------------------------


def _ph(shape, dtype=tg.float32):
    return tg.compat.v1.placeholder(dtype, shape)


@pytest.mark.parametrize("build,want", [
    (lambda: tg.reshape(_ph([None, 3]), [-1, 6]), [None, 6]),
    (lambda: tg.reshape(_ph([2, 3]), [-1, 2]), [3, 2]),
    (lambda: tg.reshape(_ph([2, 3]), _ph([3], tg.int32)), [None, None, None]),
    (lambda: tg.reshape(_ph([2, 3]), tg.shape(_ph([6, 1]))), [6, 1]),
    (lambda: tg.transpose(_ph([1, None, 3])), [3, None, 1]),
    (lambda: tg.transpose(_ph(None)), None),
    (lambda: tg.expand_dims(_ph([2, None]), -1), [2, None, 1]),
    (lambda: tg.squeeze(_ph([1, None, 1]), [0]), [None, 1]),
    (lambda: tg.squeeze(_ph([1, None])), None),
    (lambda: tg.concat([_ph([2, None]), _ph([None, 3])], 0), [None, 3]),
    (lambda: tg.concat([_ph([2, 4]), _ph([3, 4])], 0), [5, 4]),
    (lambda: tg.stack([_ph([None, 3]), _ph([2, None])], 1), [2, 2, 3]),
    (lambda: tg.unstack(_ph([2, None]), axis=0)[1], [None]),
    (lambda: tg.split(_ph([6, None]), 3)[0], [2, None]),
    (lambda: tg.split(_ph([6, 2]), [1, -1])[1], [5, 2]),
    (lambda: tg.slice(_ph([5, None]), [1, 1], [2, -1]), [2, None]),
    (lambda: tg.gather(_ph([5, 3]), _ph([None, 2], tg.int32), axis=1), [5, None, 2]),
    (lambda: tg.gather_nd(_ph([5, 3, 2]), _ph([7, 2], tg.int64)), [7, 2]),
    (lambda: tg.tile(_ph([None, 3]), [2, 2]), [None, 6]),
    (lambda: tg.pad(_ph([None, 3]), [[1, 1], [0, 2]]), [None, 5]),
    (lambda: tg.broadcast_to(_ph([3, 1]), [2, 3, 4]), [2, 3, 4]),
    (lambda: tg.shape(_ph([None, 2, None])), [3]),
    (lambda: tg.shape(_ph(None)), [None]),
    (lambda: tg.one_hot(_ph([None], tg.int32), 4, axis=0), [4, None]),
    (lambda: tg.range(_ph([], tg.int32)), [None]),
    (lambda: tg.range(2, 11, 3), [3]),
    (lambda: tg.linspace(0.0, 1.0, 7), [7]),
    (lambda: tg.zeros(_ph([2], tg.int32)), [None, None]),
    (lambda: tg.eye(3, batch_shape=[2]), [2, 3, 3]),
    (lambda: tg.boolean_mask(_ph([4, 2, 3]), _ph([4, 2], tg.bool)), [None, 3]),
    (lambda: tg.clip_by_value(_ph([None, 2]), 0.0, 1.0), [None, 2]),
])
def test_static_shape(build, want):
    with tg.Graph().as_default():
        out = build()
        assert out.shape.as_tuple() == (None if want is None else tuple(want))


@pytest.mark.parametrize("build,op,match", [
    (lambda: tg.reshape(_ph([2, 3]), [4]), "Reshape", "Cannot reshape a tensor with 6 elements to shape \\[4\\]"),
    (lambda: tg.reshape(_ph([7]), [-1, 2]), "Reshape", "requires a multiple of 2"),
    (lambda: tg.reshape(_ph([6]), [-1, -1]), "Reshape", "Only one input size may be -1"),
    (lambda: tg.transpose(_ph([2, 3]), [0, 0]), "Transpose", "not a permutation"),
    (lambda: tg.transpose(_ph([2, 3]), [1, 0, 2]), "Transpose", "vector of size 2"),
    (lambda: tg.expand_dims(_ph([2, 3]), 3), "ExpandDims", "out of range"),
    (lambda: tg.squeeze(_ph([2, 3]), [1]), "Squeeze", "Can not squeeze dim\\[1\\]"),
    (lambda: tg.concat([_ph([2, 3]), _ph([2, 4])], 0), "ConcatV2", "Dimension 1 in both shapes must be equal"),
    (lambda: tg.concat([_ph([2, 3]), _ph([2])], 0), "ConcatV2", "equal rank"),
    (lambda: tg.concat([_ph([2, 3]), _ph([2, 3])], 2), "ConcatV2", "out of range"),
    (lambda: tg.stack([_ph([2, 3]), _ph([3, 2])]), "Pack", "dimensions must be equal"),
    (lambda: tg.unstack(_ph([2, 3]), num=3), "Unpack", "num is 3"),
    (lambda: tg.split(_ph([5, 2]), 2), "Split", "evenly divisible by 2 but is 5"),
    (lambda: tg.split(_ph([5, 2]), [1, 2]), "SplitV", "Determined shape must"),
    (lambda: tg.slice(_ph([3, 3]), [1, 1], [3, 1]), "Slice", "Expected size\\[0\\]"),
    (lambda: tg.slice(_ph([3, 3]), [1], [1]), "Slice", "1-D tensors of size 2"),
    (lambda: tg.gather_nd(_ph([3, 3]), [[0, 1, 2]]), "GatherNd", "must be <= params.rank"),
    (lambda: tg.tile(_ph([2, 3]), [2]), "Tile", "rank 2"),
    (lambda: tg.scatter_nd([[1], [0]], _ph([2, 3]), [4, 2]), "ScatterNd", "expected \\[2, 2\\]"),
    (lambda: tg.pad(_ph([2, 3]), [[1, 1]]), "Pad", "paddings must have shape \\[2, 2\\]"),
    (lambda: tg.pad(_ph([2, 3]), [[2, 0], [0, 0]], "REFLECT"), "MirrorPad", "no greater than"),
    (lambda: tg.broadcast_to(_ph([3, 2]), [3, 3]), "BroadcastTo", "Unable to broadcast"),
    (lambda: tg.reverse(_ph([2, 3]), [0, -2]), "ReverseV2", "more than once"),
    (lambda: tg.range(3, 1), "Range", "Requires start <= limit"),
    (lambda: tg.range(0, 3, 0), "Range", "Requires delta != 0"),
    (lambda: tg.boolean_mask(_ph([2, 3]), [True, False, True]), "BooleanMask", "incompatible"),
    (lambda: tg.one_hot([1], 2, axis=3), "OneHot", "axis"),
    (lambda: tg.clip_by_value(_ph([3]), [0.0, 1.0], 2.0), "ClipByValue", "Dimensions must be equal"),
    (lambda: tg.clip_by_value(_ph([3]), _ph([2, 3]), 2.0), "ClipByValue", "do not broadcast to t's shape"),
])
def test_build_time_errors(build, op, match):
    with tg.Graph().as_default():
        with pytest.raises(ValueError, match=match) as info:
            build()
        assert str(info.value).startswith(f"{op} '") and "test_array_ops.py:" in str(info.value)


def test_build_time_type_errors():
    with tg.Graph().as_default():
        with pytest.raises(TypeError, match="don't all match"):
            tg.concat([_ph([2]), _ph([2], tg.int32)], 0)
        with pytest.raises(TypeError, match="integer"):
            tg.reshape(_ph([2]), [1.5])
        with pytest.raises(TypeError, match="bool"):
            tg.boolean_mask(_ph([2]), _ph([2], tg.int32))
        with pytest.raises(ValueError, match="Cannot infer argument `num`"):
            tg.unstack(_ph([None, 2]))
        with pytest.raises(ValueError, match="both 'axis' and 'dim'"):
            tg.expand_dims(_ph([2]), 0, dim=0)
        with pytest.raises(ValueError, match="Unknown padding mode"):
            tg.pad(_ph([2]), [[1, 1]], "WRAP")
        with pytest.raises(ValueError, match="partially known TensorShape"):
            tg.zeros(tg.TensorShape([None, 2]))


# ---- runtime behaviour on shapes known only when the step runs ---------------------------------------


def _run_unknown(fn, *arrays):
    """Runs fn on placeholders of unknown shape fed with `arrays` in one graph session."""
    with tg.Graph().as_default() as g:
        phs = [tg.compat.v1.placeholder(tg.as_dtype(a.dtype), None) for a in arrays]
        out = fn(*phs)
        with tg.Session(graph=g) as sess:
            return sess.run(out, dict(zip(phs, arrays)))


def test_shape_ops_on_unknown_shapes():
    x = _arange((2, 3, 4))
    got = _run_unknown(lambda t: (tg.shape(t), tg.size(t), tg.rank(t), tg.transpose(t), tg.reshape(t, [-1, 4]),
                                  tg.zeros_like(t), tg.squeeze(tg.expand_dims(t, 0)), t[1, ::-1],
                                  tg.tile(t, [1, 2, 1])), x)
    want = [np.array([2, 3, 4], np.int32), np.int32(24), np.int32(3), x.T, x.reshape(6, 4), np.zeros_like(x),
            x, x[1, ::-1], np.tile(x, (1, 2, 1))]
    for g, w in zip(got, want):
        _assert_same(g, w)


@pytest.mark.parametrize("fn,arrays,match", [
    (lambda t: tg.reshape(t, [4]), [_arange((2, 3))], "Input to reshape is a tensor with 6 values"),
    (lambda t, i: tg.gather(t, i), [_arange((3,)), np.array([0, 3], np.int32)], "indices\\[1\\] = 3 is not in \\[0, 3\\)"),
    (lambda t, i: tg.gather(t, i), [_arange((3,)), np.array([-1], np.int32)], "is not in"),
    (lambda t, i: tg.gather_nd(t, i), [_arange((2, 2)), np.array([[0, 2]], np.int32)], "is not in \\[0, 2\\)"),
    (lambda t: t[5], [_arange((3,))], "out of bounds"),
    (lambda t: tg.split(t, 2), [_arange((3,))], "evenly divisible"),
    (lambda t: tg.slice(t, [1], [3]), [_arange((3,))], "Expected size\\[0\\]"),
    (lambda t: tg.concat([t, tg.reshape(t, [1, -1])], 0), [_arange((3,))], "cannot concatenate"),
    (lambda t: tg.squeeze(t, [0]), [_arange((2, 1))], "Can not squeeze"),
    (lambda t: tg.pad(t, [[3, 0]], "REFLECT"), [_arange((3,))], "no greater than"),
])
def test_runtime_errors(fn, arrays, match):
    with pytest.raises(tg.errors.InvalidArgumentError, match=match):
        _run_unknown(fn, *arrays)


def test_runtime_errors_in_eager():
    with pytest.raises(tg.errors.InvalidArgumentError, match="is not in"):
        tg.gather(tg.constant([1.0, 2.0]), [2])


# ---- gradients ---------------------------------------------------------------------------------------

X = RNG.uniform(-1, 1, (2, 3))
X3 = RNG.uniform(-1, 1, (2, 3, 2))

GRADIENTS = {
    "identity": (lambda x: tg.identity(x) * 2.0, [X]),
    "placeholder_with_default": (lambda x: tg.compat.v1.placeholder_with_default(x, [2, 3]) * x, [X]),
    "fill": (lambda v: tg.fill([2, 2], v), [np.array(0.3)]),
    "reshape": (lambda x: tg.reshape(x, [3, -1]), [X]),
    "transpose": (lambda x: tg.transpose(x, [2, 0, 1]), [X3]),
    "transpose_default": (lambda x: tg.transpose(x), [X3]),
    "expand_dims": (lambda x: tg.expand_dims(x, 1), [X]),
    "squeeze": (lambda x: tg.squeeze(x), [X[:1]]),
    "concat": (lambda x, y: tg.concat([x, y, x], 1), [X, X[:, :1]]),
    "concat_neg": (lambda x, y: tg.concat([x, y], -2), [X, X[:1]]),
    "stack": (lambda x, y: tg.stack([x, y], axis=1), [X, X + 1]),
    "unstack": (lambda x: tg.unstack(x, axis=1)[::2], [X]),
    "split": (lambda x: tg.split(x, 3, axis=1)[1:], [X]),
    "split_v": (lambda x: tg.split(x, [1, -1], axis=1), [X]),
    "slice": (lambda x: tg.slice(x, [1, 0, 1], [1, 2, -1]), [X3]),
    "strided_slice": (lambda x: x[1:, ::-2, None, 0], [X3]),
    "strided_slice_ellipsis": (lambda x: x[..., 1] * x[1, ..., 0], [X3]),
    "gather": (lambda x: tg.gather(x, [1, 0, 1]), [X]),
    "gather_axis": (lambda x: tg.gather(x, [[2, 0], [2, 2]], axis=1), [X3]),
    "gather_last_axis": (lambda x: tg.gather(x, [1, 1, 0], axis=-1), [X3]),
    "gather_nd": (lambda x: tg.gather_nd(x, [[1, 2], [0, 0], [1, 2]]), [X3]),
    "scatter_nd": (lambda u: tg.scatter_nd([[1], [0], [1]], u, [3, 2]), [X.T]),
    "unsorted_segment_sum": (lambda x: tg.unsorted_segment_sum(x, [1, -1, 1], 2), [X.T]),
    "tile": (lambda x: tg.tile(x, [2, 1, 3]), [X3]),
    "pad": (lambda x: tg.pad(x, [[1, 0], [2, 1]]), [X]),
    "pad_value": (lambda x: tg.pad(x, [[0, 1], [0, 0]], constant_values=2.0), [X]),
    "pad_reflect": (lambda x: tg.pad(x, [[1, 1], [2, 2]], "REFLECT"), [X]),
    "pad_symmetric": (lambda x: tg.pad(x, [[2, 1], [3, 1]], "SYMMETRIC"), [X]),
    "broadcast_to": (lambda x: tg.broadcast_to(x, [2, 2, 3]), [X[:1]]),
    "clip_by_value": (lambda x: tg.clip_by_value(x, -0.5, 0.5), [X]),
    "clip_by_tensors": (lambda x, lo, hi: tg.clip_by_value(x, lo, hi),
                        [X, np.array([-0.2, 0.1, -0.9]), np.array([[0.4], [0.2]])]),
    "reverse": (lambda x: tg.reverse(x, [0, 2]), [X3]),
    "boolean_mask": (lambda x: tg.boolean_mask(x, [[True, False, True], [False, False, True]]), [X3]),
    "boolean_mask_axis": (lambda x: tg.boolean_mask(x, [False, True, True], axis=1), [X3]),
    "getitem_tensor_index": (lambda x: x[tg.constant(1)], [X]),
}


@pytest.mark.parametrize("case", sorted(GRADIENTS))
def test_gradient(case):
    fn, arrays = GRADIENTS[case]
    check_gradients(fn, *arrays)


# The ops gradients build have gradients of their own (second derivatives go through them).
GRADIENT_OPS = {
    "StridedSliceGrad": (lambda dy: apply_op("StridedSliceGrad", [[3, 4], [2, 0], [0, 3], [-1, 1], dy],
                                             {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0,
                                              "new_axis_mask": 0, "shrink_axis_mask": 0}), [X]),
    "MirrorPadGrad_reflect": (lambda g: apply_op("MirrorPadGrad", [g, [[1, 1], [2, 2]]], {"mode": "REFLECT"}),
                              [RNG.uniform(-1, 1, (4, 7))]),
    "MirrorPadGrad_symmetric": (lambda g: apply_op("MirrorPadGrad", [g, [[0, 2], [3, 1]]], {"mode": "SYMMETRIC"}),
                                [RNG.uniform(-1, 1, (4, 7))]),
    "BooleanMaskGrad": (lambda g: apply_op("BooleanMaskGrad", [g, [[True, False, True], [False, True, False]],
                                                               [4, 2, 3]], {"axis": 1}), [RNG.uniform(-1, 1, (4, 3))]),
}


@pytest.mark.parametrize("case", sorted(GRADIENT_OPS))
def test_gradient_of_gradient_ops(case):
    fn, arrays = GRADIENT_OPS[case]
    check_gradients(fn, *arrays)


def test_gradients_on_unknown_shapes():
    """Gradients that compute shapes at run time when the static shapes are unknown."""
    x = RNG.uniform(-1, 1, (2, 3, 2))
    fns = [lambda t: tg.reshape(t, [-1]), lambda t: tg.tile(t, [1, 2, 1]), lambda t: tg.slice(t, [0, 1, 0], [-1, 2, 1]),
           lambda t: tg.concat([t, t * 2.0], 1), lambda t: tg.pad(t, [[0, 1], [1, 0], [0, 0]]),
           lambda t: tg.broadcast_to(t, [3, 2, 3, 2]), lambda t: t[:, 1:, ::-1],
           lambda t: tg.gather(t, [1, 0, 1], axis=1), lambda t: tg.gather_nd(t, [[1, 2], [0, 1]]),
           lambda t: tg.boolean_mask(t, [True, False])]
    with tg.Graph().as_default() as g:
        known = tg.compat.v1.placeholder(tg.float64, [2, 3, 2])
        unknown = tg.compat.v1.placeholder_with_default(known, [None, None, 2])
        outs = [fn(unknown) for fn in fns]
        grads = [tg.gradients(tg.reduce_sum(o * o), known)[0] for o in outs]
        ref = [tg.gradients(tg.reduce_sum(fn(known) ** 2), known)[0] for fn in fns]
        with tg.Session(graph=g) as sess:
            got, want = sess.run([grads, ref], {known: x})
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, err_msg=f"case {i}")


def test_cast_gradient():
    with tg.Graph().as_default():
        x = tg.compat.v1.placeholder(tg.float64, [2])
        y = tg.cast(x, tg.float32) * tg.constant([2.0, 3.0])
        (gx,) = tg.gradients(tg.reduce_sum(y), x)
        assert gx.dtype == tg.float64
        with tg.Session() as sess:
            np.testing.assert_allclose(sess.run(gx, {x: [0.1, 0.2]}), [2.0, 3.0])


def test_integer_cast_blocks_gradient():
    with tg.Graph().as_default():
        x = tg.compat.v1.placeholder(tg.float32, [2])
        assert tg.gradients(tg.cast(tg.cast(x, tg.int32), tg.float32), x) == [None]


def test_stop_gradient_and_shape_ops_are_not_differentiable():
    with tg.Graph().as_default():
        x = tg.compat.v1.placeholder(tg.float64, [2, 2])
        y = tg.stop_gradient(x) * x + tg.cast(tg.size(x), tg.float64) + tg.zeros_like(x) + tg.ones_like(x)
        (gx,) = tg.gradients(tg.reduce_sum(y), x)
        with tg.Session() as sess:
            np.testing.assert_allclose(sess.run(gx, {x: np.full((2, 2), 3.0)}), np.full((2, 2), 3.0))


def test_gradient_tape_through_array_ops():
    x = tg.constant(X3)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.reduce_sum(tg.gather(tg.transpose(x[:, 1:] * 2.0, [1, 0, 2]), [1, 1]) ** 2)
    want = np.zeros_like(X3)
    want[:, 2] = 2 * 2 * (2 * X3[:, 2]) * 2
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), want)


def test_slice_helper_is_tensor_getitem():
    assert array_ops.slice_helper(tg.constant([1, 2, 3]), slice(1, None)).numpy().tolist() == [2, 3]
    assert tg.newaxis is None


# ---- against TensorFlow itself, where it is installed ------------------------------------------------

TF_PROGRAMS = {
    "range_float": lambda m, x: m.range(0, 1, 0.1),
    "range_negative": lambda m, x: m.range(0.5, -1.3, -0.35),
    "linspace": lambda m, x: m.linspace(0.1, 1.7, 7),
    "one_hot": lambda m, x: m.one_hot([[0, 3], [-1, 1]], 3, axis=1),
    "eye": lambda m, x: m.eye(3, 2, batch_shape=[2]),
    "pad_symmetric": lambda m, x: m.pad(x, [[1, 1], [3, 0], [0, 4]], "SYMMETRIC"),
    "pad_reflect": lambda m, x: m.pad(x, [[1, 1], [2, 0], [0, 3]], "REFLECT"),
    "strided_slice": lambda m, x: m.strided_slice(x, [1, -1, 0], [-3, 0, 5], [-1, -1, 2], end_mask=1),
    "getitem": lambda m, x: x[..., None, ::-2] * 2.0 + x[1, -1:-4:-1, None, 1:3],
    "cast": lambda m, x: m.cast(x / 3, m.int32),
    "clip": lambda m, x: m.clip_by_value(x, -2.0, m.constant([1.0, 2.0, 3.0, 4.0])),
    "boolean_mask": lambda m, x: m.boolean_mask(x, [[True, False, True], [False, True, True]]),
    "unsorted_segment_sum": lambda m, x: m.unsorted_segment_sum(x, [1, -1], 3),
    "gather_nd": lambda m, x: m.gather_nd(x, [[[1, 2], [0, 0]]]),
    "split": lambda m, x: m.concat(m.split(x, [1, -1, 2], axis=2)[::-1], axis=-1),
}

TF_GRADIENTS = {
    "clip_at_bounds": (lambda m, x, lo, hi: m.clip_by_value(x, lo, hi), [np.float32(-2.0), np.full(4, 3.0, np.float32)]),
    "gather_repeated": (lambda m, x: m.gather(x, [[1, 1], [0, 2]], axis=1), []),
    "getitem": (lambda m, x: x[..., ::-2, None], []),
    "tile": (lambda m, x: m.tile(x, [1, 2, 2]), []),
    "pad_reflect": (lambda m, x: m.pad(x, [[1, 1], [2, 0], [0, 3]], "REFLECT"), []),
    "boolean_mask": (lambda m, x: m.boolean_mask(x, [True, False]), []),
}


@pytest.fixture(scope="module")
def tf1():
    """TensorFlow's TF1 namespace (eager): it spells every name the programs use as tensorgrid does."""
    return pytest.importorskip("tensorflow").compat.v1


@pytest.mark.parametrize("case", sorted(TF_PROGRAMS))
def test_matches_tensorflow(tf1, case):
    x = _arange((2, 3, 4))
    _assert_same(TF_PROGRAMS[case](tg, tg.constant(x)).numpy(), TF_PROGRAMS[case](tf1, tf1.constant(x)).numpy())


@pytest.mark.parametrize("case", sorted(TF_GRADIENTS))
def test_gradients_match_tensorflow(tf1, case):
    fn, extra = TF_GRADIENTS[case]
    arrays = [_arange((2, 3, 4))] + extra

    for got, want in zip(tape_gradients(tg, fn, arrays, weighted=True),
                         tape_gradients(tf1, fn, arrays, weighted=True)):
        _assert_same(got, want)
