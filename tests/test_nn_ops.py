"""Tests of tg.nn: values against NumPy references (and TensorFlow where installed) on every
executor, gradients against finite differences, and build-time and run-time errors."""

import numpy as np
import pytest

import tensorgrid as tg
from conftest import run_with
from tensorgrid.client.graph import apply_op
from gradcheck import check_gradients

FLOATS = [np.float32, np.float64]


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def assert_close(got, want, dtype):
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    np.testing.assert_allclose(got, want, **tol(dtype))


def away_from_zero(shape, seed=0):
    """Values in +-[0.1, 2]: no kinks of relu-like functions within finite-difference reach."""
    rng = np.random.RandomState(seed)
    return rng.uniform(0.1, 2, shape) * rng.choice([-1, 1], shape)


def np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ---- activations ------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (tg.nn.relu, lambda x: np.maximum(x, 0)),
    "relu6": (tg.nn.relu6, lambda x: np.minimum(np.maximum(x, 0), 6)),
    "elu": (tg.nn.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
    "leaky_relu": (tg.nn.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x)),
    "softplus": (tg.nn.softplus, lambda x: np.logaddexp(x, 0)),
    "sigmoid": (tg.nn.sigmoid, np_sigmoid),
    "tanh": (tg.nn.tanh, np.tanh),
}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations(executor, name, dtype):
    fn, ref = ACTIVATIONS[name]
    x = np.concatenate([away_from_zero((2, 5)) * 4, [[0, 7, -7, 50, -50], [6, 1e-3, -1e-3, 700, -700]]]).astype(dtype)
    with np.errstate(over="ignore"):
        want = ref(x).astype(dtype)
    assert_close(run_with(executor, fn, x), want, dtype)


def test_relu_keeps_integer_dtypes():
    out = tg.nn.relu(tg.constant([-3, 0, 4], tg.int32))
    assert out.dtype == tg.int32
    np.testing.assert_array_equal(out.numpy(), [0, 0, 4])


def test_leaky_relu_alpha_and_large_alpha():
    x = np.array([-2.0, 3.0], np.float32)
    np.testing.assert_allclose(tg.nn.leaky_relu(x, alpha=0.5).numpy(), [-1.0, 3.0])
    np.testing.assert_allclose(tg.nn.leaky_relu(x, alpha=2.0).numpy(), [-4.0, 3.0])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradients(name):
    check_gradients(ACTIVATIONS[name][0], away_from_zero((3, 4)) * 4)


# ---- softmax ------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(executor, axis):
    x = (np.random.RandomState(1).randn(3, 4, 5) * 3).astype(np.float32)
    x[0, 0, 0] = 1000  # would overflow exp without the max shift
    got = run_with(executor, lambda t: [tg.nn.softmax(t, axis=axis), tg.nn.log_softmax(t, axis=axis)], x)
    want = np_log_softmax(x.astype(np.float64), axis)
    assert_close(got[0], np.exp(want), np.float32)
    assert_close(got[1], want, np.float32)


def test_softmax_tf1_dim_spelling():
    x = np.random.RandomState(0).randn(2, 3)
    np.testing.assert_allclose(tg.nn.softmax(x, dim=0).numpy(), np.exp(np_log_softmax(x, 0)))
    with pytest.raises(ValueError):
        tg.nn.softmax(x, axis=0, dim=0)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_gradients(axis):
    x = np.random.RandomState(2).randn(3, 4)
    check_gradients(lambda t: tg.nn.softmax(t, axis=axis), x)
    check_gradients(lambda t: tg.nn.log_softmax(t, axis=axis), x)


# ---- bias_add, l2_loss, moments -------------------------------------------------------------------

def test_bias_add(executor):
    x = np.random.RandomState(0).randn(2, 3, 4).astype(np.float32)
    b = np.arange(4, dtype=np.float32)
    assert_close(run_with(executor, tg.nn.bias_add, x, b), x + b, np.float32)


def test_bias_add_nchw():
    x = np.random.RandomState(0).randn(2, 3, 4, 5)
    b = np.arange(3.0)
    got = tg.nn.bias_add(x, b, data_format="NCHW").numpy()
    np.testing.assert_allclose(got, x + b[:, None, None])


def test_bias_add_checks_shapes():
    with pytest.raises(ValueError, match="channels"):
        tg.nn.bias_add(np.zeros((2, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="1-D"):
        tg.nn.bias_add(np.zeros((2, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="rank >= 2"):
        tg.nn.bias_add(np.zeros(3), np.zeros(3))


def test_bias_add_is_one_op_with_one_gradient_op():
    """As in TF: one BiasAdd forward, one BiasAddGrad for the bias (no Shape/Sum/Reshape chain)."""
    g = tg.Graph()
    with g.as_default():
        x, b = tg.placeholder(tg.float32, [None, None]), tg.constant(np.zeros(4, np.float32))
        y = tg.nn.bias_add(x, b)
        gx, gb = tg.gradients(y, [x, b])
    assert y.op.type == "BiasAdd" and gb.op.type == "BiasAddGrad"
    assert {o.type for o in g.get_operations()} == {"Placeholder", "Const", "BiasAdd", "BiasAddGrad", "OnesLike"}
    with tg.Session(graph=g) as sess, pytest.raises(tg.errors.InvalidArgumentError, match="BiasAdd.*channels"):
        sess.run(y, {x: np.zeros((2, 3), np.float32)})


@pytest.mark.parametrize("fmt,shape", [("NHWC", (4, 5)), ("NHWC", (2, 3, 4, 5)), ("NCHW", (2, 5, 3, 4)),
                                       ("NCHW", (2, 5))])
def test_bias_add_and_its_gradients_match_tensorflow(fmt, shape):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.RandomState(5)
    x, b, w = rng.randn(*shape), rng.randn(5), rng.randn(*shape)
    tx, tb, tw = map(tf.constant, (x, b, w))
    with tf.GradientTape() as outer:
        outer.watch(tw)
        with tf.GradientTape() as inner:
            inner.watch([tx, tb])
            y = tf.raw_ops.BiasAdd(value=tx, bias=tb, data_format=fmt)
            loss = tf.reduce_sum(y * tw)
        _, gb = inner.gradient(loss, [tx, tb])
        bias_grad = tf.raw_ops.BiasAddGrad(out_backprop=tw, data_format=fmt)
        second = tf.reduce_sum(gb * gb)
    want = [y.numpy(), gb.numpy(), bias_grad.numpy(), outer.gradient(second, tw).numpy()]
    a, c, v = map(tg.constant, (x, b, w))
    with tg.GradientTape() as outer:
        outer.watch(v)
        with tg.GradientTape() as inner:
            inner.watch([a, c])
            y = tg.nn.bias_add(a, c, data_format=fmt)
            loss = tg.reduce_sum(y * v)
        _, gb = inner.gradient(loss, [a, c])
        second = tg.reduce_sum(gb * gb)
    got = [y.numpy(), gb.numpy(), apply_op("BiasAddGrad", [v], {"data_format": fmt}).numpy(),
           outer.gradient(second, v).numpy()]
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-12, atol=1e-12)


def test_l2_loss(executor):
    x = np.random.RandomState(0).randn(3, 4).astype(np.float32)
    got = run_with(executor, tg.nn.l2_loss, x)
    assert_close(got, np.float32((x.astype(np.float64) ** 2).sum() / 2), np.float32)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axes", [[0], [0, 2], [1]], ids=str)
def test_moments(executor, axes, keepdims):
    x = np.random.RandomState(0).randn(3, 4, 5).astype(np.float32)
    mean, var = run_with(executor, lambda t: list(tg.nn.moments(t, axes, keepdims=keepdims)), x)
    assert_close(mean, x.mean(axis=tuple(axes), keepdims=keepdims), np.float32)
    assert_close(var, x.var(axis=tuple(axes), keepdims=keepdims), np.float32)


def test_moments_float16_and_keep_dims_alias():
    x = np.random.RandomState(0).randn(4, 3).astype(np.float16)
    mean, var = tg.nn.moments(x, [0], keep_dims=True)
    assert mean.dtype == tg.float16 and mean.shape == (1, 3)
    np.testing.assert_allclose(var.numpy(), x.astype(np.float64).var(0, keepdims=True), rtol=2e-3)


def test_layer_arithmetic_gradients():
    rng = np.random.RandomState(3)
    check_gradients(tg.nn.bias_add, rng.randn(2, 3), rng.randn(3))
    check_gradients(lambda v, b: tg.nn.bias_add(v, b, data_format="NCHW"), rng.randn(2, 3, 2), rng.randn(3))
    check_gradients(tg.nn.l2_loss, rng.randn(2, 3))
    check_gradients(lambda t: list(tg.nn.moments(t, [0])), rng.randn(4, 3))
    check_gradients(lambda t: list(tg.nn.moments(t, [0, 1], keepdims=True)), rng.randn(4, 3))


# ---- dropout ------------------------------------------------------------------------------------------

def test_dropout_zeroes_and_scales(executor):
    x = np.ones((200, 50), np.float32)
    got = run_with(executor, lambda t: tg.nn.dropout(t, rate=0.25, seed=3), x)
    assert set(np.unique(got)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((got == 0).mean() - 0.25) < 0.02


def test_dropout_tf1_keep_prob_and_noise_shape():
    x = np.ones((100, 6))
    got = tg.nn.dropout(x, keep_prob=0.5, noise_shape=[100, 1], seed=1).numpy()
    assert set(np.unique(got)) <= {0.0, 2.0}
    assert (got == got[:, :1]).all()  # one draw per row, broadcast along it
    v1 = tg.nn.compat_v1["dropout"]
    assert set(np.unique(v1(x, 0.5, seed=1).numpy())) <= {0.0, 2.0}


def test_dropout_rate_zero_and_bad_rates():
    x = tg.constant([1.0, 2.0])
    assert tg.nn.dropout(x, rate=0.0) is x
    with pytest.raises(ValueError, match="range"):
        tg.nn.dropout(x, rate=1.0)
    with pytest.raises(ValueError):
        tg.nn.dropout(x, rate=0.5, keep_prob=0.5)
    with pytest.raises(ValueError, match="floating"):
        tg.nn.dropout(tg.constant([1, 2]), rate=0.5)


def test_dropout_tensor_rate_and_gradient():
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float64, [50, 20])
        rate = tg.compat.v1.placeholder(tg.float64, [])
        y = tg.nn.dropout(x, rate=rate, seed=5)
        dx, = tg.gradients(tg.reduce_sum(y), [x])
        with tg.Session(graph=g) as sess:
            xv = np.random.RandomState(0).uniform(1, 2, (50, 20))
            yv, dxv = sess.run([y, dx], {x: xv, rate: 0.4})
    np.testing.assert_allclose(dxv, yv / xv)  # the gradient is the mask times the scale
    assert set(np.round(np.unique(dxv), 6)) == {0.0, round(1 / 0.6, 6)}


# ---- cross-entropies ----------------------------------------------------------------------------------

def _labels(shape, seed=0):
    """Rows of probabilities (each sums to 1), as softmax cross-entropy assumes."""
    p = np.random.RandomState(seed).uniform(0.1, 1, shape)
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_softmax_cross_entropy(executor, dtype):
    logits = (np.random.RandomState(1).randn(4, 5) * 5).astype(dtype)
    logits[0, 0] = 500  # stable without overflow
    labels = _labels((4, 5)).astype(dtype)
    want = -(labels * np_log_softmax(logits.astype(np.float64))).sum(-1)
    got = run_with(executor, lambda z, y: [tg.nn.softmax_cross_entropy_with_logits(labels=y, logits=z),
                                           tg.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=z)],
                   logits, labels)
    assert_close(got[0], want, dtype)
    assert_close(got[1], want, dtype)


def test_softmax_cross_entropy_axis_and_rank3():
    logits = np.random.RandomState(1).randn(3, 4, 2)
    labels = _labels((3, 2, 4)).transpose(0, 2, 1)
    want = -(labels * np_log_softmax(logits, 1)).sum(1)
    got = tg.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=1).numpy()
    np.testing.assert_allclose(got, want)
    got = tg.nn.compat_v1["softmax_cross_entropy_with_logits"](labels=labels, logits=logits, dim=1).numpy()
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="named arguments"):
        tg.nn.compat_v1["softmax_cross_entropy_with_logits"](labels, logits)


def test_softmax_cross_entropy_gradients():
    logits, labels = np.random.RandomState(4).randn(3, 4), _labels((3, 4), 5)
    check_gradients(lambda y, z: tg.nn.softmax_cross_entropy_with_logits(labels=y, logits=z), labels, logits)
    column_labels = _labels((4, 3), 6).T
    check_gradients(lambda z: tg.nn.softmax_cross_entropy_with_logits(labels=column_labels, logits=z, axis=0), logits)


def test_softmax_cross_entropy_v1_stops_labels_gradient():
    g = tg.Graph()
    with g.as_default():
        y = tg.constant(_labels((2, 3)))
        z = tg.constant(np.zeros((2, 3)))
        loss = tg.nn.compat_v1["softmax_cross_entropy_with_logits"](labels=y, logits=z)
        assert tg.gradients(loss, [y, z])[0] is None


def test_softmax_cross_entropy_second_order():
    labels = _labels((2, 4), 7)

    def logits_grad(z):
        loss = tg.nn.softmax_cross_entropy_with_logits(labels=labels, logits=z)
        return tg.gradients(tg.reduce_sum(loss * loss), [z])[0]
    check_gradients(logits_grad, np.random.RandomState(8).randn(2, 4))


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64], ids=lambda d: np.dtype(d).name)
def test_sparse_softmax_cross_entropy(executor, label_dtype):
    logits = (np.random.RandomState(2).randn(2, 3, 5) * 3).astype(np.float32)
    labels = np.array([[0, 4, 2], [1, 1, 3]], label_dtype)
    picked = np.take_along_axis(np_log_softmax(logits.astype(np.float64)), labels[..., None].astype(np.int64), -1)
    want = -picked[..., 0]
    got = run_with(executor, lambda y, z: tg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z),
                   labels, logits)
    assert_close(got, want, np.float32)


def test_sparse_softmax_cross_entropy_gradients():
    labels = np.array([2, 0, 1])
    check_gradients(lambda z: tg.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z),
                    np.random.RandomState(9).randn(3, 4))

    def logits_grad(z):
        loss = tg.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)
        return tg.gradients(tg.reduce_sum(loss * loss), [z])[0]
    check_gradients(logits_grad, np.random.RandomState(10).randn(3, 4))


def test_sparse_softmax_cross_entropy_bad_label_fails_at_run_time(executor):
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"label value of 5 .*\[0, 3\)"):
        run_with(executor, lambda y, z: tg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z),
                 np.array([0, 5], np.int32), logits)


def test_sparse_softmax_cross_entropy_error_names_the_node():
    g = tg.Graph()
    with g.as_default():
        y = tg.compat.v1.placeholder(tg.int32, [2])
        loss = tg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tg.zeros([2, 3]), name="xent")
        with tg.Session(graph=g) as sess, pytest.raises(tg.errors.InvalidArgumentError, match="'xent'") as info:
            sess.run(loss, {y: [-1, 0]})
    assert "CPU:0" in str(info.value) and "test_nn_ops.py" in str(info.value)


def test_sparse_softmax_cross_entropy_static_errors():
    with pytest.raises(ValueError, match="Rank mismatch"):
        tg.nn.sparse_softmax_cross_entropy_with_logits(labels=tg.constant([[1]]), logits=tg.zeros([1, 3]))
    with pytest.raises(ValueError, match="int32 or int64"):
        tg.nn.sparse_softmax_cross_entropy_with_logits(labels=tg.constant([1.0]), logits=tg.zeros([1, 3]))


def test_sigmoid_cross_entropy(executor):
    logits = np.array([[-800, -3, 0, 0.5, 3, 800]], np.float32)
    labels = np.array([[0, 1, 0.5, 0, 1, 0.3]], np.float32)
    x, z = logits.astype(np.float64), labels.astype(np.float64)
    want = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    got = run_with(executor, lambda y, t: tg.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=t), labels, logits)
    assert_close(got, want, np.float32)


def test_sigmoid_cross_entropy_gradients():
    rng = np.random.RandomState(11)
    check_gradients(lambda y, z: tg.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z),
                    rng.uniform(0, 1, (2, 3)), away_from_zero((2, 3), 12) * 3)


# ---- convolution and pooling -----------------------------------------------------------------------


def np_geometry(size, k, stride, dilation, padding):
    span = (k - 1) * dilation + 1
    if padding == "VALID":
        return -(-(size - span + 1) // stride), 0
    out = -(-size // stride)
    return out, max((out - 1) * stride + span - size, 0) // 2


def np_conv2d(x, w, stride, dilation, padding):
    """Direct convolution, one output pixel at a time."""
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    oh, pt = np_geometry(h, kh, stride, dilation, padding)
    ow, pl = np_geometry(wd, kw, stride, dilation, padding)
    out = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    r, c = i * stride - pt + a * dilation, j * stride - pl + b * dilation
                    if 0 <= r < h and 0 <= c < wd:
                        out[:, i, j, :] += x[:, r, c, :] @ w[a, b]
    return out


def np_pool(x, k, stride, padding, reduce):
    """Max or mean over the in-bounds elements of each window."""
    n, h, wd, ch = x.shape
    oh, pt = np_geometry(h, k, stride, 1, padding)
    ow, pl = np_geometry(wd, k, stride, 1, padding)
    out = np.zeros((n, oh, ow, ch))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - pt, j * stride - pl
            window = x[:, max(r0, 0):r0 + k, max(c0, 0):c0 + k, :]
            out[:, i, j, :] = reduce(window, axis=(1, 2))
    return out


CONV_CASES = [  # (input shape, filter shape, stride, dilation, padding)
    ((2, 5, 6, 3), (3, 3, 3, 4), 1, 1, "SAME"),
    ((2, 5, 6, 3), (3, 2, 3, 4), 2, 1, "SAME"),
    ((1, 7, 7, 2), (3, 3, 2, 3), 2, 1, "VALID"),
    ((1, 6, 5, 2), (2, 3, 2, 2), 3, 1, "VALID"),
    ((1, 7, 6, 2), (3, 2, 2, 2), 1, 2, "SAME"),
    ((1, 7, 6, 1), (2, 2, 1, 2), 1, 2, "VALID"),
    ((1, 4, 4, 2), (1, 1, 2, 3), 1, 1, "VALID"),
]


@pytest.mark.parametrize("case", CONV_CASES[:3], ids=str)
def test_conv2d(executor, case):
    xs, ws, stride, dilation, padding = case
    rng = np.random.RandomState(0)
    x, w = rng.randn(*xs).astype(np.float32), rng.randn(*ws).astype(np.float32)
    got = run_with(executor, lambda a, b: tg.nn.conv2d(a, b, stride, padding, dilations=dilation), x, w)
    assert_close(got, np_conv2d(x.astype(np.float64), w.astype(np.float64), stride, dilation, padding), np.float32)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_geometries(case):
    xs, ws, stride, dilation, padding = case
    rng = np.random.RandomState(1)
    x, w = rng.randn(*xs), rng.randn(*ws)
    got = tg.nn.conv2d(x, w, [1, stride, stride, 1], padding, dilations=[1, dilation, dilation, 1])
    assert got.dtype == tg.float64
    np.testing.assert_allclose(got.numpy(), np_conv2d(x, w, stride, dilation, padding), rtol=1e-10, atol=1e-12)


def test_conv2d_static_shape_tf1_spelling_and_nchw():
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [None, 9, 8, 3])
        y = tg.nn.conv2d(x, filter=tg.zeros([3, 3, 3, 5]), strides=[1, 2, 2, 1], padding="SAME")
        assert y.shape.as_list() == [None, 5, 4, 5]
    rng = np.random.RandomState(2)
    x, w = rng.randn(2, 3, 6, 5), rng.randn(3, 3, 3, 4)
    got = tg.nn.conv2d(x, w, [1, 1, 2, 2], "SAME", data_format="NCHW").numpy()
    want = np_conv2d(x.transpose(0, 2, 3, 1), w, 2, 1, "SAME").transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_conv2d_static_errors():
    x = tg.zeros([1, 5, 5, 3])
    with pytest.raises(ValueError, match="in_channels"):
        tg.nn.conv2d(x, tg.zeros([3, 3, 2, 4]), 1, "SAME")
    with pytest.raises(ValueError, match="padding"):
        tg.nn.conv2d(x, tg.zeros([3, 3, 3, 4]), 1, "FULL")
    with pytest.raises(ValueError, match="does not fit"):
        tg.nn.conv2d(x, tg.zeros([6, 6, 3, 4]), 1, "VALID")
    with pytest.raises(ValueError, match="4-dimensional"):
        tg.nn.conv2d(tg.zeros([5, 5, 3]), tg.zeros([3, 3, 3, 4]), 1, "SAME")


@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (1, 2, 4)], ids=str)
def test_conv2d_gradients(case):
    xs, ws, stride, dilation, padding = case
    xs, ws = (1,) + xs[1:3] + (2,), ws[:2] + (2, 2)
    rng = np.random.RandomState(3)
    check_gradients(lambda a, b: tg.nn.conv2d(a, b, stride, padding, dilations=dilation),
                    rng.randn(*xs), rng.randn(*ws))


def test_conv2d_second_order():
    rng = np.random.RandomState(4)
    x, w = rng.randn(1, 5, 4, 2), rng.randn(3, 2, 2, 2)

    def grads(a, b):
        y = tg.nn.conv2d(a, b, 2, "SAME")
        loss = tg.reduce_sum(y * y)
        return tg.gradients(loss, [a, b])
    check_gradients(grads, x, w)


POOL_CASES = [  # (input shape, window, stride, padding)
    ((2, 5, 6, 3), 2, 2, "SAME"),
    ((1, 5, 5, 2), 3, 2, "SAME"),
    ((1, 6, 7, 2), 3, 1, "VALID"),
    ((1, 5, 4, 1), 2, 3, "VALID"),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools(executor, kind, case):
    shape, k, stride, padding = case
    x = np.random.RandomState(5).randn(*shape).astype(np.float32)
    fn = tg.nn.max_pool if kind == "max" else tg.nn.avg_pool
    got = run_with(executor, lambda t: fn(t, ksize=k, strides=stride, padding=padding), x)
    assert_close(got, np_pool(x.astype(np.float64), k, stride, padding, np.max if kind == "max" else np.mean),
                 np.float32)


def test_avg_pool_same_divides_by_valid_count():
    x = np.ones((1, 3, 3, 1), np.float32)
    got = tg.nn.avg_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME").numpy()
    np.testing.assert_array_equal(got, np.ones((1, 2, 2, 1)))


def test_pool_tf1_spelling_nchw_and_int_max_pool():
    x = np.random.RandomState(6).randn(1, 2, 5, 4)
    got = tg.nn.avg_pool(value=x, ksize=[1, 1, 2, 2], strides=[1, 1, 2, 2], padding="VALID", data_format="NCHW")
    want = np_pool(x.transpose(0, 2, 3, 1), 2, 2, "VALID", np.mean).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got.numpy(), want)
    ints = np.arange(-20, 12, dtype=np.int32).reshape(1, 4, 4, 2)
    got = tg.nn.max_pool(ints, 3, 2, "SAME")
    assert got.dtype == tg.int32
    np.testing.assert_array_equal(got.numpy(), np_pool(ints, 3, 2, "SAME", np.max))
    with pytest.raises(ValueError, match="floating"):
        tg.nn.avg_pool(ints, 2, 2, "SAME")


@pytest.mark.parametrize("case", POOL_CASES[1:3], ids=str)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_gradients(kind, case):
    shape, k, stride, padding = case
    fn = tg.nn.max_pool if kind == "max" else tg.nn.avg_pool
    x = np.random.RandomState(7).permutation(np.prod(shape)).reshape(shape) * 0.1  # no ties
    check_gradients(lambda t: fn(t, k, stride, padding), x)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_second_order(kind):
    fn = tg.nn.max_pool if kind == "max" else tg.nn.avg_pool
    x = np.random.RandomState(8).permutation(30).reshape(1, 5, 3, 2) * 0.1

    def grad(t):
        y = fn(t, 2, 2, "SAME")
        return tg.gradients(tg.reduce_sum(y * y), [t])[0]
    check_gradients(grad, x)


def test_eager_tape_matches_graph_gradients():
    rng = np.random.RandomState(9)
    x, w = rng.randn(1, 4, 4, 2), rng.randn(2, 2, 2, 3)

    def loss(a, b):
        h = tg.nn.relu(tg.nn.conv2d(a, b, 1, "SAME"))
        return tg.reduce_sum(tg.nn.log_softmax(tg.reshape(tg.nn.max_pool(h, 2, 2, "VALID"), [1, -1])))
    a, b = tg.constant(x), tg.constant(w)
    with tg.GradientTape() as tape:
        tape.watch([a, b])
        out = loss(a, b)
    eager = tape.gradient(out, [a, b])
    g = tg.Graph()
    with g.as_default():
        ga, gb = tg.constant(x), tg.constant(w)
        grads = tg.gradients(loss(ga, gb), [ga, gb])
        with tg.Session(graph=g) as sess:
            graph = sess.run(grads)
    for e, gr in zip(eager, graph):
        np.testing.assert_allclose(e.numpy(), gr, rtol=1e-10)


# ---- TensorFlow as a reference ------------------------------------------------------------------------

def test_conv_and_pools_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.RandomState(10)
    for xs, ws, stride, _, padding in CONV_CASES[:4]:
        x, w = rng.randn(*xs), rng.randn(*ws)
        xt, wt = tf.constant(x), tf.constant(w)
        with tf.GradientTape() as tape:
            tape.watch([xt, wt])
            y = tf.nn.conv2d(xt, wt, stride, padding)
            z = tf.nn.max_pool2d(y, 2, 2, "SAME") + tf.nn.avg_pool2d(y, 2, 2, "SAME")
        want = [z.numpy()] + [t.numpy() for t in tape.gradient(z, [xt, wt])]
        a, b = tg.constant(x), tg.constant(w)
        with tg.GradientTape() as tape:
            tape.watch([a, b])
            y = tg.nn.conv2d(a, b, stride, padding)
            z = tg.nn.max_pool(y, 2, 2, "SAME") + tg.nn.avg_pool(y, 2, 2, "SAME")
        got = [z.numpy()] + [t.numpy() for t in tape.gradient(z, [a, b])]
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(g_, w_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_conv2d_transpose_and_its_gradients_match_tensorflow(fmt):
    """tg.nn.conv2d_transpose (dcgan's Conv2DTranspose): values and gradients w.r.t. input and filters as
    tf.nn.conv2d_transpose's, SAME and VALID, strides 1 and 2."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.RandomState(11)
    cases = [((2, 4, 4, 3), (3, 3, 5, 3), (2, 8, 8, 5), 2, "SAME"),
             ((1, 3, 5, 2), (2, 3, 4, 2), (1, 6, 11, 4), 2, "VALID"),
             ((2, 5, 5, 1), (3, 3, 2, 1), (2, 5, 5, 2), 1, "SAME")]
    for xs, ws, out, stride, padding in cases:
        x, w = rng.randn(*xs), rng.randn(*ws)
        if fmt == "NCHW":
            x, out = x.transpose(0, 3, 1, 2), (out[0], out[3], out[1], out[2])
        results = []
        for lib in (tf, tg):
            xt, wt = lib.constant(x), lib.constant(w)
            with lib.GradientTape() as tape:
                tape.watch([xt, wt])
                y = lib.nn.conv2d_transpose(xt, wt, out, stride, padding, data_format=fmt) if lib is tg or \
                    fmt == "NHWC" else tf.transpose(tf.nn.conv2d_transpose(
                        tf.transpose(xt, [0, 2, 3, 1]), wt, (out[0], out[2], out[3], out[1]), stride, padding),
                        [0, 3, 1, 2])   # TF's CPU kernel is NHWC-only
                z = lib.reduce_sum(y * y)
            results.append([y.numpy()] + [t.numpy() for t in tape.gradient(z, [xt, wt])])
        for theirs, ours in zip(*results):
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
