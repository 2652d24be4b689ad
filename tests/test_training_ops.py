"""The fused dense optimizer ops (tensorgrid/ops/training_ops.py) against their formulas in NumPy."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.graph import apply_op

rng = np.random.default_rng(5)
VAR = rng.normal(size=(3, 2)).astype("float32")
GRAD = rng.normal(size=(3, 2)).astype("float32")


def test_gradient_descent_and_keras_momentum():
    var = tg.Variable(VAR)
    apply_op("ResourceApplyGradientDescent", [var.handle, np.float32(0.1), GRAD], {"use_locking": False})
    np.testing.assert_allclose(var.numpy(), VAR - np.float32(0.1) * GRAD, rtol=1e-6)
    for nesterov in (False, True):
        var, accum = tg.Variable(VAR), tg.Variable(np.full_like(VAR, 0.5))

        @tg.function
        def step():
            apply_op("ResourceApplyKerasMomentum", [var.handle, accum.handle, np.float32(0.1), GRAD,
                                                    np.float32(0.9)], {"use_nesterov": nesterov})
        step()
        m = 0.5 * np.float32(0.9) - np.float32(0.1) * GRAD
        expected = VAR + (m * np.float32(0.9) - np.float32(0.1) * GRAD if nesterov else m)
        np.testing.assert_allclose(accum.numpy(), m, rtol=1e-6)
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-6)


def test_adam_in_a_tf1_graph_on_a_session():
    g = tg.Graph()
    with g.as_default():
        var = tg.Variable(VAR)
        m = tg.Variable(np.zeros_like(VAR))
        v = tg.Variable(np.zeros_like(VAR))
        grad = tg.compat.v1.placeholder(tg.float32, [3, 2])
        step = apply_op("ResourceApplyAdam", [var.handle, m.handle, v.handle, np.float32(0.9), np.float32(0.999),
                                              np.float32(0.01), np.float64(0.9), np.float64(0.999),
                                              np.float32(1e-7), grad], {"use_locking": False})
        init = tg.compat.v1.global_variables_initializer()
    with tg.compat.v1.Session(graph=g) as sess:
        sess.run(init)
        sess.run(step, {grad: GRAD})
        got = sess.run(var)
    m1, v1 = GRAD * np.float32(0.1), GRAD * GRAD * np.float32(1 - 0.999)
    alpha = np.float32(0.01) * np.sqrt(np.float32(1 - 0.999)) / np.float32(1 - 0.9)
    np.testing.assert_allclose(got, VAR - m1 * alpha / (np.sqrt(v1) + np.float32(1e-7)), rtol=1e-5)


def test_a_gradient_of_the_wrong_shape_names_the_op():
    var = tg.Variable(VAR)
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"ResourceApplyGradientDescent.*gradient has shape"):
        apply_op("ResourceApplyGradientDescent", [var.handle, np.float32(0.1), np.ones(3, "float32")],
                 {"use_locking": False})
