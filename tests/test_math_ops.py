"""Tests of the math, logic and reduction ops: values and dtypes against NumPy (and
TensorFlow where installed) on every executor, gradients against finite differences,
and the errors of bad shapes and dtypes, at build time and at run time."""

import numpy as np
import pytest

import tensorgrid as tg
from conftest import EXECUTORS, run_with
from gradcheck import check_gradients, tape_gradients
from tensorgrid.client import math_ops


@pytest.fixture(params=EXECUTORS + ["cluster-unfused"])
def executor(request):
    """Every executor, and the cluster with elementwise fusion off: the ops fusion fuses are these."""
    return request.param


FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8]
NUMERIC = FLOATS + INTS
# (x shape, y shape) pairs that broadcast, both ways round and to a shape neither has.
SHAPES = [((2, 3), (2, 3)), ((2, 1, 3), (4, 1)), ((), (2, 3)), ((3,), (2, 1))]


def values(dtype, shape, seed=0, low=-4, high=4):
    """Small random values of `dtype`: integers in [low, high), floats spread over it."""
    rng = np.random.RandomState(seed)
    if np.dtype(dtype).kind == "b":
        return rng.rand(*shape) > 0.5
    if np.dtype(dtype).kind == "u":
        low = max(low, 0)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(low, high, shape).astype(dtype)
    return rng.randint(low, high, shape).astype(dtype)


def tol(dtype):
    return {"rtol": 2e-3, "atol": 2e-3} if dtype == np.float16 else {"rtol": 1e-5, "atol": 1e-6}


def assert_same(got, want, dtype=None, what=""):
    """Same dtype and shape as the reference, and equal values (close, for floats)."""
    want = np.asarray(want)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, **tol(dtype or want.dtype))
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def truediv_dtype(dtype):
    if np.dtype(dtype).kind == "f":
        return dtype
    return np.float32 if np.dtype(dtype).itemsize <= 2 else np.float64


# ---- elementwise --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_binary_ops(executor, dtype, shapes):
    x = values(dtype, shapes[0], 1)
    y = values(dtype, shapes[1], 2, low=1, high=4)  # nonzero divisors, small exponents
    ops = {
        "add": (tg.add, np.add), "subtract": (tg.subtract, np.subtract), "multiply": (tg.multiply, np.multiply),
        "floordiv": (tg.floordiv, np.floor_divide), "mod": (tg.mod, np.mod),
        "pow": (tg.pow, np.power), "maximum": (tg.maximum, np.maximum), "minimum": (tg.minimum, np.minimum),
        "truediv": (tg.truediv, lambda a, b: (a.astype(truediv_dtype(dtype)) / b.astype(truediv_dtype(dtype)))),
        "less": (tg.less, np.less), "less_equal": (tg.less_equal, np.less_equal),
        "greater": (tg.greater, np.greater), "greater_equal": (tg.greater_equal, np.greater_equal),
        "equal": (tg.equal, np.equal), "not_equal": (tg.not_equal, np.not_equal),
    }
    names = list(ops)
    got = run_with(executor, lambda a, b: [ops[n][0](a, b) for n in names], x, y)
    for n, g in zip(names, got):
        with np.errstate(all="ignore"):
            want = ops[n][1](x, y)
        assert_same(g, want, dtype, n)


def test_operators(executor):
    x, y = values(np.float32, (2, 3), 1), values(np.float32, (3,), 2, low=1)
    m = values(np.float32, (3, 2), 3)
    b1, b2 = values(bool, (2, 3), 4), values(bool, (3,), 5)
    got = run_with(executor, lambda a, b, c, p, q: [
        a + b, a - b, a * b, a / b, a // b, a % b, abs(a) ** b, a @ c, -a, abs(a),
        a < b, a <= b, a > b, a >= b, p & q, p | q, ~p, 2 * a, 1 - a, 1 / b, 2 ** b], x, y, m, b1, b2)
    want = [x + y, x - y, x * y, x / y, x // y, x % y, abs(x) ** y, x @ m, -x, abs(x),
            x < y, x <= y, x > y, x >= y, b1 & b2, b1 | b2, ~b1, 2 * x, 1 - x, 1 / y, 2 ** y]
    for g, w in zip(got, want):
        assert_same(g, w)


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_unary_ops(executor, dtype):
    x = values(dtype, (2, 5), 3)
    ops = {"negative": (tg.negative, np.negative), "abs": (tg.abs, np.abs), "sign": (tg.sign, np.sign),
           "square": (tg.square, np.square), "round": (tg.round, lambda a: a if a.dtype.kind != "f" else np.rint(a))}
    if np.dtype(dtype).kind == "f":
        pos = np.abs(x) + np.asarray(0.5, dtype)
        ops.update({
            "exp": (tg.exp, np.exp), "log": (lambda a: tg.log(tg.abs(a) + 0.5), lambda a: np.log(pos)),
            "log1p": (lambda a: tg.log1p(tg.abs(a)), lambda a: np.log1p(np.abs(a))),
            "sqrt": (lambda a: tg.sqrt(tg.abs(a)), lambda a: np.sqrt(np.abs(a))),
            "rsqrt": (lambda a: tg.rsqrt(tg.abs(a) + 0.5), lambda a: 1 / np.sqrt(pos)),
            "tanh": (tg.tanh, np.tanh), "sigmoid": (tg.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
            "sin": (tg.sin, np.sin), "cos": (tg.cos, np.cos), "floor": (tg.floor, np.floor),
            "ceil": (tg.ceil, np.ceil), "is_nan": (tg.is_nan, np.isnan), "is_finite": (tg.is_finite, np.isfinite),
        })
    names = list(ops)
    got = run_with(executor, lambda a: [ops[n][0](a) for n in names], x)
    for n, g in zip(names, got):
        with np.errstate(all="ignore"):
            want = np.asarray(ops[n][1](x))
        assert_same(g, want.astype(dtype) if want.dtype.kind == "f" else want, dtype, n)


def test_special_values(executor):
    """Banker's rounding, a sigmoid that neither overflows nor loses tiny values, nan and inf."""
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.7, -100.0, 100.0, np.nan, np.inf, -np.inf], np.float32)
    rounded, sig, nan, finite, log = run_with(
        executor, lambda a: [tg.round(a), tg.sigmoid(a), tg.is_nan(a), tg.is_finite(a), tg.log(a)], x)
    np.testing.assert_array_equal(rounded, [-2, -2, -0, 0, 2, 2, 4, -100, 100, np.nan, np.inf, -np.inf])
    np.testing.assert_allclose(sig[:9], 1 / (1 + np.exp(-x[:9].astype(np.float64))), rtol=1e-6, atol=1e-40)
    # sigmoid(-100) = 3.7e-44 is a float32 denormal, which CUDA's float32 math flushes to zero (TF's
    # GPU kernels too); every other device keeps it.
    assert sig[7] > 0 or (executor == "gpu" and sig[7] == 0)
    assert sig[-2:].tolist() == [1, 0] and np.isnan(sig[-3])
    assert nan.tolist() == [False] * 9 + [True, False, False]
    assert finite.tolist() == [True] * 9 + [False] * 3
    assert np.isnan(log[0]) and log[-2] == np.inf


def test_logic_on_bool(executor):
    p, q = values(bool, (2, 3), 1), values(bool, (3,), 2)
    got = run_with(executor, lambda a, b: [tg.logical_and(a, b), tg.logical_or(a, b), tg.logical_not(a),
                                           tg.equal(a, b), tg.not_equal(a, b)], p, q)
    for g, w in zip(got, [p & q, p | q, ~p, p == q, p != q]):
        assert_same(g, w)


def test_add_n(executor):
    xs = [values(np.float32, (2, 3), i) for i in range(3)]
    assert_same(run_with(executor, lambda *t: tg.add_n(list(t)), *xs), xs[0] + xs[1] + xs[2])
    assert_same(run_with(executor, lambda a: tg.add_n([a, np.ones((2, 3)), a]), xs[0]), xs[0] + 1 + xs[0])


def test_where(executor):
    c = values(bool, (2, 1, 3), 1)
    x, y = values(np.float32, (4, 1), 2), values(np.float32, (3,), 3)
    rows = np.array([True, False])
    m, n = values(np.int32, (2, 2), 4), values(np.int32, (2, 2), 5)
    got = run_with(executor, lambda c_, x_, y_, r, m_, n_: [
        tg.where(c_, x_, y_), tg.where(c_), tg.where(m_), tg.where(c_, 1.5, y_),
        math_ops.where_v1(r, m_, n_)], c, x, y, rows, m, n)
    assert_same(got[0], np.where(c, x, y))
    assert_same(got[1], np.argwhere(c))
    assert_same(got[2], np.argwhere(m))
    assert_same(got[3], np.where(c, np.float32(1.5), y))
    assert_same(got[4], np.where(rows[:, None], m, n))


# ---- reductions ---------------------------------------------------------------------------

REDUCE_AXES = [None, 0, -1, [0, 2], []]


def np_reduce(name, x, axis, keepdims):
    axis = tuple(axis) if isinstance(axis, list) else axis
    if name == "mean" and x.dtype.kind in "iu":
        total = x.sum(axis=axis, dtype=np.int64, keepdims=keepdims)
        count = x.size // max(total.size, 1)
        return (np.sign(total) * (np.abs(total) // count)).astype(x.dtype)
    acc = np.float32 if x.dtype == np.float16 else x.dtype
    fn = {"sum": np.sum, "prod": np.prod, "mean": np.mean}.get(name)
    if fn is not None:
        return fn(x, axis=axis, dtype=acc, keepdims=keepdims).astype(x.dtype)
    return {"max": np.max, "min": np.min, "all": np.all, "any": np.any}[name](x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("dtype", NUMERIC + [bool], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(executor, dtype, keepdims):
    x = values(dtype, (2, 3, 4), 1, low=-3, high=4)
    names = ["all", "any"] if dtype is bool else ["sum", "mean", "max", "min", "prod"]
    fns = {n: getattr(tg, "reduce_" + n) for n in names}
    got = run_with(executor, lambda a: [fns[n](a, axis=ax, keepdims=keepdims) for n in names for ax in REDUCE_AXES], x)
    want = [np_reduce(n, x, ax, keepdims) for n in names for ax in REDUCE_AXES]
    for g, w in zip(got, want):
        assert_same(g, w, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8, bool], ids=lambda d: np.dtype(d).name)
def test_argmax_argmin(executor, dtype):
    x = values(dtype, (3, 4), 2)
    got = run_with(executor, lambda a: [tg.argmax(a), tg.argmax(a, axis=1), tg.argmin(a, -1),
                                        tg.argmin(a, axis=0, output_type=tg.int32),
                                        tg.compat.v1.arg_max(a, 1)], x)
    want = [np.argmax(x, 0), np.argmax(x, 1), np.argmin(x, -1), np.argmin(x, 0).astype(np.int32), np.argmax(x, 1)]
    for g, w in zip(got, want):
        assert_same(g, w)


def test_tf1_reduction_arguments(executor):
    x = values(np.float32, (2, 3), 1)
    got = run_with(executor, lambda a: [tg.reduce_sum(a, reduction_indices=[1], keep_dims=True),
                                        tg.reduce_mean(a, 0, True), tg.reduce_max(a, axis=tg.constant(1))], x)
    assert_same(got[0], x.sum(1, keepdims=True))
    assert_same(got[1], x.mean(0, keepdims=True))
    assert_same(got[2], x.max(1))
    with pytest.raises(ValueError, match="both"):
        tg.reduce_sum(x, axis=0, reduction_indices=0)


def test_reductions_of_empty_tensors_and_integer_dtypes(executor):
    e = np.zeros((0, 3), np.float32)
    i = np.array([[2**30, 2**30], [-3, 4]], np.int32)
    got = run_with(executor, lambda a, b: [tg.reduce_sum(a), tg.reduce_max(a, 0), tg.reduce_min(a),
                                           tg.reduce_prod(a, 0), tg.reduce_sum(b), tg.reduce_mean(b, 1)], e, i)
    assert_same(got[0], np.float32(0))
    assert_same(got[1], np.full(3, -np.inf, np.float32))
    assert_same(got[2], np.float32(np.inf))
    assert_same(got[3], np.ones(3, np.float32))
    assert_same(got[4], np.int32(i.sum(dtype=np.int32)))  # int32 sums stay int32 (and wrap), as TF's
    assert_same(got[5], np.array([2**30, 0], np.int32))   # integer means truncate toward zero


# ---- matrix products ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64],
                         ids=lambda d: np.dtype(d).name)
def test_matmul(executor, dtype):
    a, b = values(dtype, (2, 3), 1), values(dtype, (3, 4), 2)
    p, q = values(dtype, (5, 1, 2, 3), 3), values(dtype, (4, 3, 2), 4)
    got = run_with(executor, lambda a_, b_, p_, q_: [
        tg.matmul(a_, b_), tg.matmul(b_, a_, transpose_a=True, transpose_b=True),
        tg.matmul(tg.transpose(a_), b_, transpose_a=True), tg.matmul(a_, tg.transpose(b_), adjoint_b=True),
        tg.matmul(p_, q_), tg.matmul(p_, p_, transpose_b=True), tg.matmul(q_, p_, adjoint_a=True, adjoint_b=True)],
        a, b, p, q)
    want = [a @ b, b.T @ a.T, a @ b, a @ b, p @ q, p @ np.swapaxes(p, -1, -2),
            np.swapaxes(q, -1, -2) @ np.swapaxes(p, -1, -2)]
    for g, w in zip(got, want):
        assert_same(g, w, dtype)


EINSUMS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
    ("ij,kj->ik", [(2, 3), (4, 3)]), ("i,i", [(3,), (3,)]), ("i,i->i", [(3,), (3,)]), ("i,j->ij", [(2,), (3,)]),
    ("ij->", [(2, 3)]), ("ij->ji", [(2, 3)]), ("ii->i", [(3, 3)]), ("ii", [(3, 3)]), ("iij->j", [(2, 2, 3)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (4, 3, 2)]), ("i...->...", [(2, 3, 4)]),
    ("...i,i...", [(5, 2, 3), (3, 5, 2)]),
    ("ba,aC", [(2, 3), (3, 4)]), ("ij,ij->ij", [(1, 3), (2, 3)]), ("i j , j k -> k i", [(2, 3), (3, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("bi,bi->b", [(4, 3), (4, 3)]), ("ij,i->", [(2, 3), (2,)]),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int8],
                         ids=lambda d: np.dtype(d).name)
def test_einsum(executor, dtype):
    arrays = [values(dtype, s, seed) for seed, (_, shapes) in enumerate(EINSUMS) for s in shapes]

    def fn(*ts):
        out, it = [], iter(ts)
        for eq, shapes in EINSUMS:
            out.append(tg.einsum(eq, *[next(it) for _ in shapes]))
        return out
    got, it = run_with(executor, fn, *arrays), iter(arrays)
    for g, (eq, shapes) in zip(got, EINSUMS):
        ops = [next(it) for _ in shapes]
        acc = np.float32 if dtype == np.float16 else dtype
        assert_same(g, np.einsum(eq, *[o.astype(acc) for o in ops]).astype(dtype), dtype, eq)


def test_tensordot(executor):
    a, b = values(np.float32, (2, 3, 4), 1), values(np.float32, (4, 3, 5), 2)
    got = run_with(executor, lambda x, y: [tg.tensordot(x, y, 1), tg.tensordot(x, y, [[1, 2], [1, 0]]),
                                           tg.tensordot(x, y, [2, 0]), tg.tensordot(x, y, 0)], a, b)
    want = [np.tensordot(a, b, 1), np.tensordot(a, b, [[1, 2], [1, 0]]), np.tensordot(a, b, [2, 0]),
            np.tensordot(a, b, 0)]
    for g, w in zip(got, want):
        assert_same(g, w)


# ---- dtype rules ---------------------------------------------------------------------------

def test_python_operands_take_the_tensor_dtype(executor):
    h, i8, i32 = np.ones(2, np.float16), np.full(2, 7, np.int8), np.full(2, 7, np.int32)
    got = run_with(executor, lambda a, b, c: [a + 1, 2.5 * a, b // 2, 1 - b, c / 2, b / b, tg.maximum(c, 3),
                                               tg.add(1, 2), tg.truediv(1, 2), tg.multiply(1.5, 2)], h, i8, i32)
    want = [np.float16, np.float16, np.int8, np.int8, np.float64, np.float32, np.int32,
            np.int32, np.float64, np.float32]
    assert [g.dtype for g in got] == [np.dtype(w) for w in want]
    np.testing.assert_allclose(got[4], [3.5, 3.5])


def test_dtype_mismatches_raise_type_error(executor):
    def build(a, b):
        with pytest.raises(TypeError, match="Add"):
            tg.add(a, tg.cast(b, tg.float64))
        with pytest.raises(TypeError, match="float32"):
            a + b
        with pytest.raises(TypeError):
            b + 2.5
        with pytest.raises(TypeError, match="LogicalAnd"):
            tg.logical_and(b, b)
        with pytest.raises(TypeError, match="Exp"):
            tg.exp(b)
        with pytest.raises(TypeError, match="Sum"):
            tg.reduce_sum(tg.equal(b, b))
        return a
    run_with(executor, build, np.ones(2, np.float32), np.ones(2, np.int32))


# ---- errors --------------------------------------------------------------------------------

def test_static_shape_errors_name_the_op():
    g = tg.Graph()
    with g.as_default():
        a = tg.compat.v1.placeholder(tg.float32, [2, 3])
        b = tg.compat.v1.placeholder(tg.float32, [4, 5])
        with pytest.raises(ValueError, match=r"Add.*Dimensions must be equal.*3 and 5"):
            tg.add(a, b)
        with pytest.raises(ValueError, match=r"MatMul.*Dimensions must be equal, but are 3 and 4"):
            tg.matmul(a, b)
        with pytest.raises(ValueError, match=r"BatchMatMulV2.*rank at least 2"):
            tg.matmul(a, tg.compat.v1.placeholder(tg.float32, [3]))
        with pytest.raises(ValueError, match=r"Sum.*Invalid reduction dimension 2"):
            tg.reduce_sum(a, axis=2)
        with pytest.raises(ValueError, match=r"ArgMax.*range"):
            tg.argmax(a, axis=-3)
        with pytest.raises(ValueError, match=r"Einsum.*never appeared"):
            tg.einsum("ij,jk->iz", a, b)
        with pytest.raises(ValueError, match=r"Einsum.*sizes 3 and 4"):
            tg.einsum("ij,jk->ik", a, b)
        with pytest.raises(ValueError, match=r"AddN.*Shapes must be equal"):
            tg.add_n([a, b])
        with pytest.raises(ValueError, match=r"SelectV2"):
            tg.where(tg.less(a, 0.0), a, b)


def test_runtime_error_names_the_node():
    g = tg.Graph()
    with g.as_default():
        a = tg.compat.v1.placeholder(tg.float32, None, name="a")
        b = tg.compat.v1.placeholder(tg.float32, None, name="b")
        c = tg.matmul(a, b, name="product")
        d = tg.floordiv(tg.compat.v1.placeholder(tg.int32, None, name="n"), 0, name="by_zero")
        with tg.Session(graph=g) as sess:
            with pytest.raises(tg.errors.InvalidArgumentError, match=r"product.*Matrix size-incompatible"):
                sess.run(c, {a: np.ones((2, 3)), b: np.ones((4, 5))})
            with pytest.raises(tg.errors.InvalidArgumentError, match=r"by_zero.*division by zero"):
                sess.run(d, {"n:0": np.ones(3, np.int32)})
            with pytest.raises(tg.errors.InvalidArgumentError, match="Invalid reduction dimension"):
                sess.run(tg.reduce_sum(a, tg.compat.v1.placeholder_with_default(3, [])), {a: np.ones(2)})


def test_eager_runtime_errors():
    with pytest.raises(tg.errors.InvalidArgumentError, match="division by zero"):
        tg.mod(tg.constant([1, 2]), 0)
    with pytest.raises(tg.errors.InvalidArgumentError, match="empty"):
        tg.argmax(tg.zeros([0, 2]))


# ---- gradients -----------------------------------------------------------------------------

def positive(*shape, seed=0):
    return np.random.RandomState(seed).uniform(0.5, 2.0, shape)


def signed(*shape, seed=0):
    """Values in +-[0.5, 2], so no kink (abs, max, floor) sits within finite-difference reach."""
    r = np.random.RandomState(seed)
    return r.uniform(0.5, 2.0, shape) * r.choice([-1, 1], shape)


@pytest.mark.parametrize("fn", [tg.add, tg.subtract, tg.multiply, tg.truediv, tg.maximum, tg.minimum,
                                tg.pow, tg.mod], ids=lambda f: f.__name__)
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 1, 3), (2, 1)), ((), (3,))], ids=str)
def test_binary_gradients(fn, shapes):
    x, y = signed(*shapes[0], seed=1), positive(*shapes[1], seed=2)
    if fn is tg.pow:
        x = np.abs(x)
    if fn is tg.mod:
        x = x * 3 + 0.05  # away from the jumps at multiples of y
    check_gradients(fn, x, y)


@pytest.mark.parametrize("fn", [tg.negative, tg.abs, tg.sign, tg.square, tg.exp, tg.tanh, tg.sigmoid, tg.sin,
                                tg.cos, tg.log, tg.log1p, tg.sqrt, tg.rsqrt], ids=lambda f: f.__name__)
def test_unary_gradients(fn):
    x = positive(2, 3) if fn in (tg.log, tg.log1p, tg.sqrt, tg.rsqrt) else signed(2, 3)
    check_gradients(fn, x)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, False), ([0, 2], True), (-1, True)])
def test_reduction_gradients(name, axis, keepdims):
    x = signed(2, 3, 2, seed=3)
    if name == "prod":
        x[0, 1, 0] = 0.0  # one zero in some groups, none in others
    check_gradients(lambda a: getattr(tg, "reduce_" + name)(a, axis=axis, keepdims=keepdims), x)


def test_prod_gradient_with_two_zeros():
    x = signed(2, 3, seed=4)
    x[0, 0] = x[0, 2] = 0.0
    check_gradients(lambda a: tg.reduce_prod(a, 1), x)


def test_max_gradient_splits_ties():
    g = tg.Graph()
    with g.as_default():
        x = tg.constant([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
        grad, = tg.gradients(tg.reduce_max(x, 1), [x])
        with tg.Session(graph=g) as sess:
            np.testing.assert_allclose(sess.run(grad), [[0, 0.5, 0.5], [1, 0, 0]])


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_gradients(ta, tb):
    a, b = signed(2, 3, seed=1), signed(3, 4, seed=2)
    check_gradients(lambda x, y: tg.matmul(x, y, transpose_a=ta, transpose_b=tb),
                    a.T if ta else a, b.T if tb else b)
    p, q = signed(2, 1, 2, 3, seed=3), signed(3, 3, 2, seed=4)
    check_gradients(lambda x, y: tg.matmul(x, y, transpose_a=ta, transpose_b=tb),
                    np.swapaxes(p, -1, -2) if ta else p, np.swapaxes(q, -1, -2) if tb else q)


@pytest.mark.parametrize("eq,shapes", [e for e in EINSUMS if len(e[1]) <= 2] +
                         [("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]), ("ijk->kj", [(2, 2, 3)]),
                          ("...j,j->...", [(2, 3), (3,)])], ids=lambda v: str(v))
def test_einsum_gradients(eq, shapes):
    check_gradients(lambda *ts: tg.einsum(eq, *ts), *[signed(*s, seed=i) for i, s in enumerate(shapes)])


def test_other_gradients():
    x, y = signed(2, 3, seed=1), signed(3, seed=2)
    check_gradients(lambda a, b: tg.add_n([a, b * a, a]), x, signed(2, 3, seed=3))
    check_gradients(lambda a, b: tg.where(tg.greater(a, 0.0), a, b), x, y)
    check_gradients(lambda a, b: math_ops.where_v1(tg.greater(b, 0.0), a, b), x, signed(2, 3, seed=3))
    check_gradients(lambda a, b: tg.tensordot(a, b, [[1], [0]]), x, signed(3, 2, seed=4))
    check_gradients(lambda a: tg.reduce_mean(tg.square(a) * a / 3.0 - a), x)


def test_non_differentiable_ops_give_no_gradient():
    g = tg.Graph()
    with g.as_default():
        x = tg.constant([1.5, -0.5])
        outs = [tg.floor(x), tg.ceil(x), tg.round(x), tg.floordiv(x, 2.0),
                tg.cast(tg.argmax(x), tg.float32), tg.cast(tg.less(x, 1.0), tg.float32)]
        for out in outs:
            assert tg.gradients(out, [x]) == [None], out.op.type


def test_gradients_with_unknown_static_shapes():
    """The runtime Shape / BroadcastGradientArgs / ReducedShape path, checked against the static path."""
    x, y, z = signed(2, 3, seed=1), signed(3, seed=2), signed(2, 3, 4, seed=3)

    def grads(shapes):
        g = tg.Graph()
        with g.as_default():
            a, b, c = [tg.compat.v1.placeholder(tg.float64, s) for s in shapes]
            loss = tg.reduce_sum(a * b + tg.maximum(a, b) - b / (1 + tg.square(a))) + \
                tg.reduce_mean(c, axis=1, keepdims=True) * tg.reduce_max(c, axis=[0, 2], keepdims=True) + \
                tg.reduce_sum(tg.reduce_prod(tg.reduce_sum(c, 2), 0)) + \
                tg.reduce_mean(tg.einsum("...ij,j->...i", c, tg.ones([4], tg.float64)))
            with tg.Session(graph=g) as sess:
                return sess.run(tg.gradients(loss, [a, b, c]), {a: x, b: y, c: z})
    static = grads([x.shape, y.shape, z.shape])
    dynamic = grads([[None, None], None, [None, None, None]])
    batch = grads([[None, 3], [3], [None, 3, 4]])  # a reduced-away batch: static keepdims shapes
    for s, d, b in zip(static, dynamic, batch):
        np.testing.assert_allclose(d, s, rtol=1e-12)
        np.testing.assert_array_equal(b, s)


def test_gradient_tape():
    x = tg.constant(signed(2, 3, seed=1))
    w = tg.constant(signed(3, 2, seed=2))
    with tg.GradientTape() as tape:
        tape.watch([x, w])
        y = tg.reduce_sum(tg.sigmoid(tg.matmul(x, w)) * tg.reduce_max(x, 1, keepdims=True))
    gx, gw = tape.gradient(y, [x, w])
    g = tg.Graph()
    with g.as_default():
        xs, ws = tg.constant(x.numpy()), tg.constant(w.numpy())
        ys = tg.reduce_sum(tg.sigmoid(tg.matmul(xs, ws)) * tg.reduce_max(xs, 1, keepdims=True))
        with tg.Session(graph=g) as sess:
            want = sess.run(tg.gradients(ys, [xs, ws]))
    np.testing.assert_allclose(gx.numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(gw.numpy(), want[1], rtol=1e-6)


# ---- TensorFlow as the reference -----------------------------------------------------------

I = np.array([-7, -3, 0, 5, 7], np.int32)
J = np.array([2, -2, 3, -4, 3], np.int32)
F = np.array([-2.5, -0.5, 0.0, 1.5, 2.5], np.float32)
G = np.array([2.5, -0.5, 1.0, 1.5, -3.0], np.float32)
M = np.array([[1.0, 3.0, 3.0], [0.0, 0.0, 2.0]], np.float32)
# Semantics TF fixes beyond NumPy: dtypes of division, signs of floor division and modulo,
# rounding, integer means; and gradients at ties, zeros and kinks.
TF_CASES = {
    "truediv": (lambda m, a, b: m.truediv(a, b), (I, J)),
    "truediv_int8": (lambda m, a, b: m.cast(a, m.int8) / m.cast(b, m.int8), (I, J)),
    "floordiv": (lambda m, a, b: a // b, (I, J)),
    "floormod_int": (lambda m, a, b: a % b, (I, J)),
    "floormod_float": (lambda m, a, b: a % b, (F, G)),
    "round": (lambda m, a: m.round(a), (F,)),
    "sign": (lambda m, a: m.sign(a), (I,)),
    "mean_int": (lambda m, a: m.reduce_mean(a), (I,)),
    "sum_keepdims": (lambda m, a: m.reduce_sum(a, keepdims=True), (I,)),
    "argmax_ties": (lambda m, a: m.argmax(a, 1), (M,)),
    "where": (lambda m, a, b: m.where(a > 0, a, b), (F, G)),
    "where_indices": (lambda m, a: m.where(a > 0), (M,)),
    "einsum": (lambda m, a, b: m.einsum("i,j->ji", a, b), (F, G)),
    "pow_int": (lambda m, a: m.pow(a, 2), (I,)),
    "mul_scalar_first": (lambda m, a: 2 * a, (F,)),
}
TF_GRAD_CASES = {
    "max_ties": (lambda m, a: m.reduce_max(a, 1), (M,)),
    "min_all": (lambda m, a: m.reduce_min(a), (M,)),
    "prod_zeros": (lambda m, a: m.reduce_prod(a, 1), (M,)),
    "maximum_ties": (lambda m, a, b: m.maximum(a, b), (F, F[::-1].copy())),
    "minimum_ties": (lambda m, a, b: m.minimum(a, b), (F, F[::-1].copy())),
    "abs_at_zero": (lambda m, a: m.abs(a), (F,)),
    "pow_at_zero": (lambda m, a, b: m.pow(m.abs(a), b), (F, G)),
    "sqrt": (lambda m, a: m.sqrt(a * a + 1), (F,)),
    "mean_broadcast": (lambda m, a, b: m.reduce_mean(m.reshape(a, [5, 1]) * b, 0), (F, G)),
    "batch_matmul": (lambda m, a, b: m.matmul(m.reshape(a, [1, 5, 1]), m.reshape(b, [5, 1, 1]), transpose_b=True),
                     (F, G)),
    "einsum_diagonal": (lambda m, a: m.einsum("ii->i", m.reshape(m.concat([a, a[:4]], 0), [3, 3])), (F,)),
}


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("case", TF_CASES)
def test_against_tensorflow(tf, case):
    fn, args = TF_CASES[case]
    want = fn(tf, *[tf.constant(a) for a in args]).numpy()
    assert_same(fn(tg, *[tg.constant(a) for a in args]).numpy(), want, what=case)


@pytest.mark.parametrize("case", TF_GRAD_CASES)
def test_gradients_against_tensorflow(tf, case):
    fn, args = TF_GRAD_CASES[case]

    for got, want in zip(tape_gradients(tg, fn, args), tape_gradients(tf, fn, args)):
        assert_same(got, want, what=case)


def test_clip_by_global_norm_and_clip_by_norm(executor):
    a = np.array([3.0, 4.0], np.float32)
    b = np.array([[12.0]], np.float32)

    def fn(x, y):
        (cx, cy), norm = tg.clip_by_global_norm([x, y], 6.5)
        return cx, cy, norm, tg.clip_by_norm(x, 1.0)
    cx, cy, norm, cn = run_with(executor, fn, a, b)
    np.testing.assert_allclose(norm, 13.0, rtol=1e-6)
    np.testing.assert_allclose(cx, a * 0.5, rtol=1e-6)
    np.testing.assert_allclose(cy, b * 0.5, rtol=1e-6)
    np.testing.assert_allclose(cn, a / 5.0, rtol=1e-6)
