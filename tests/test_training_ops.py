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


# ---- TF's ops for the TF1 optimizers, against NumPy and against tf.raw_ops on the same inputs ----------------

G64 = rng.normal(size=(3, 2))
V64 = rng.normal(size=(3, 2))
SLOT = rng.uniform(0.5, 1.5, size=(3, 2))      # positive: an accumulator or mean square
MG = rng.normal(size=(3, 2)) * 0.1
LR, RHO, MOM, EPS = 0.05, 0.9, 0.7, 1e-6

# op, attrs, initial slots, scalars (in TF's order), the NumPy formulas giving (var, *slots)
CASES = [
    ("ResourceApplyMomentum", {"use_nesterov": False}, [SLOT], (LR, "grad", MOM),
     lambda v, a, g: (v - (a * MOM + g) * LR, a * MOM + g)),
    ("ResourceApplyMomentum", {"use_nesterov": True}, [SLOT], (LR, "grad", MOM),
     lambda v, a, g: (v - (g * LR + (a * MOM + g) * MOM * LR), a * MOM + g)),
    ("ResourceApplyAdagrad", {"update_slots": True}, [SLOT], (LR, "grad"),
     lambda v, a, g: (v - g * LR / np.sqrt(a + g * g), a + g * g)),
    ("ResourceApplyAdagrad", {"update_slots": False}, [SLOT], (LR, "grad"),
     lambda v, a, g: (v - g * LR / np.sqrt(a), a)),
    ("ResourceApplyRMSProp", {}, [SLOT, SLOT * 0.1], (LR, RHO, MOM, EPS, "grad"),
     lambda v, ms, mom, g: _rms(v, None, ms, mom, g)),
    ("ResourceApplyCenteredRMSProp", {}, [MG, SLOT, SLOT * 0.1], (LR, RHO, MOM, EPS, "grad"),
     lambda v, mg, ms, mom, g: _rms(v, mg, ms, mom, g)),
    ("ResourceApplyAdam", {"use_nesterov": False}, [MG, SLOT], (0.9 ** 3, 0.999 ** 3, LR, 0.9, 0.999, EPS, "grad"),
     lambda v, m, s, g: _adam(v, m, s, g, False)),
    ("ResourceApplyAdam", {"use_nesterov": True}, [MG, SLOT], (0.9 ** 3, 0.999 ** 3, LR, 0.9, 0.999, EPS, "grad"),
     lambda v, m, s, g: _adam(v, m, s, g, True)),
]


def _rms(v, mg, ms, mom, g):
    ms = ms + (g * g - ms) * (1 - RHO)
    if mg is not None:
        mg = mg + (g - mg) * (1 - RHO)
    mom = mom * MOM + g * LR / np.sqrt(ms - (0 if mg is None else mg * mg) + EPS)
    return (v - mom, ms, mom) if mg is None else (v - mom, mg, ms, mom)


def _adam(v, m, s, g, nesterov):
    alpha = LR * np.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3)
    m, s = m + (g - m) * 0.1, s + (g * g - s) * (1 - 0.999)
    step = m * 0.9 + g * 0.1 if nesterov else m
    return v - step * alpha / (np.sqrt(s) + EPS), m, s


def _run_ours(op, attrs, slots, scalars, dtype):
    variables = [tg.Variable(a.astype(dtype)) for a in [V64] + slots]
    args = [v.handle for v in variables] + [G64.astype(dtype) if s == "grad" else np.asarray(s, dtype)
                                             for s in scalars]
    apply_op(op, args, dict(attrs, use_locking=False))
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("op,attrs,slots,scalars,formula", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_fused_update_against_numpy_and_tf(op, attrs, slots, scalars, formula):
    got = _run_ours(op, attrs, slots, scalars, "float64")
    for a, b in zip(got, formula(V64, *slots, G64)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    tf = pytest.importorskip("tensorflow")
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-6)):
        tf_vars = [tf.Variable(a.astype(dtype)) for a in [V64] + slots]
        args = [tf.constant(G64.astype(dtype)) if s == "grad" else tf.constant(s, dtype) for s in scalars]
        names = {"ResourceApplyMomentum": ["var", "accum"], "ResourceApplyAdagrad": ["var", "accum"],
                 "ResourceApplyRMSProp": ["var", "ms", "mom"], "ResourceApplyCenteredRMSProp": ["var", "mg", "ms", "mom"],
                 "ResourceApplyAdam": ["var", "m", "v"]}[op]
        scalar_names = {"ResourceApplyMomentum": ["lr", "grad", "momentum"], "ResourceApplyAdagrad": ["lr", "grad"],
                        "ResourceApplyAdam": ["beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon", "grad"]
                        }.get(op, ["lr", "rho", "momentum", "epsilon", "grad"])
        kwargs = dict(zip(names, [v.handle for v in tf_vars]), **dict(zip(scalar_names, args)), **attrs)
        getattr(tf.raw_ops, op)(**kwargs)
        ours = _run_ours(op, attrs, slots, scalars, dtype)
        for a, b in zip(ours, tf_vars):
            np.testing.assert_allclose(a, b.numpy(), rtol=rtol, atol=1e-12 if dtype == "float64" else 1e-6)


def test_fused_update_errors_name_the_node():
    var, accum = tg.Variable(VAR), tg.Variable(np.ones((2, 2), "float32"))
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"ResourceApplyMomentum '.*has shape \[2, 2\], the variable"):
        apply_op("ResourceApplyMomentum", [var.handle, accum.handle, np.float32(0.1), GRAD, np.float32(0.9)],
                 {"use_locking": False})
    np.testing.assert_array_equal(var.numpy(), VAR)
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(VAR)
        with pytest.raises(ValueError, match=r"ResourceApplyAdagrad .*lr must be a scalar, but has shape \[2\]"):
            apply_op("ResourceApplyAdagrad", [v.handle, v.handle, np.ones(2, "float32"), GRAD], {})


def test_a_read_value_never_changes_under_its_reader():
    var, accum = tg.Variable(VAR), tg.Variable(np.zeros_like(VAR))
    before, accum_before = var.value(), accum.value()
    held = before.numpy(), accum_before.numpy()
    apply_op("ResourceApplyMomentum", [var.handle, accum.handle, np.float32(0.1), GRAD, np.float32(0.9)], {})
    np.testing.assert_array_equal(held[0], VAR)
    np.testing.assert_array_equal(held[1], 0)
    np.testing.assert_allclose(var.numpy(), VAR - GRAD * np.float32(0.1), rtol=1e-6)
