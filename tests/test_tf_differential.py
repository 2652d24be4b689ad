"""The same TF1 programs run with tensorflow.compat.v1 and with tensorgrid.compat.v1 give the same numbers.

The programs are the ones in examples/ (each a `run(tf, ...)` taking the TF1
module), plus every optimizer on a small regression and the placements of
replica_device_setter. Initial values are fixed numpy arrays, never random
draws. Float results agree to 1e-5 relative to each tensor's scale
(rtol 1e-5, atol 1e-5 * max|expected|). Skipped where TensorFlow is not installed.
tensorgrid runs each with elementwise fusion on (the default) and off (TENSORGRID_FUSION=0).
"""

import importlib
import os
import sys

import numpy as np
import pytest

from tests.test_train import placement_program

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # Eigen's kernels, so float sums run in a fixed order
pytest.importorskip("tensorflow")
tensorflow_v1 = importlib.import_module("tensorflow.compat.v1")
tensorgrid_v1 = importlib.import_module("tensorgrid.compat.v1")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
MODULES = {"tensorflow": tensorflow_v1, "tensorgrid": tensorgrid_v1}


def _example(name):
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)  # the examples import each other as scripts do
    return importlib.import_module(name)


def assert_same(expected, actual, path="result"):
    """Dicts of numbers and arrays agree: floats to 1e-5 of their scale, everything else exactly."""
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual), path
        for k in expected:
            assert_same(expected[k], actual[k], f"{path}[{k!r}]")
        return
    if isinstance(expected, (list, str)):
        assert expected == actual, path
        return
    e, a = np.asarray(expected), np.asarray(actual)
    assert e.shape == a.shape, path
    if e.dtype.kind == "f":
        scale = float(np.abs(e).max()) if e.size else 0.0
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * scale, err_msg=path)
    else:
        np.testing.assert_array_equal(a, e, err_msg=path)


_cache = {}


@pytest.fixture(params=["fused", "unfused"])
def fusion(request, monkeypatch):
    """Runs the test's tensorgrid sessions with elementwise fusion on, then off."""
    if request.param == "unfused":
        monkeypatch.setenv("TENSORGRID_FUSION", "0")
    return request.param


def run_program(name, module_name, tmp_path_factory, fusion="fused"):
    """Runs example `name` with one TF1 module (tensorgrid fused or not), once per test session."""
    key = (name, module_name, module_name != "tensorflow" and fusion)
    if key not in _cache:
        program = _example(name)
        args = (str(tmp_path_factory.mktemp(f"{name}-{module_name}")),) if name == "save_restore" else ()
        _cache[key] = program.run(MODULES[module_name], *args)
    return _cache[key]


PROGRAMS = ["linear_regression", "softmax_regression", "mlp_adam", "nearest_neighbor", "save_restore"]


@pytest.mark.parametrize("module_name", sorted(MODULES))
@pytest.mark.parametrize("name", PROGRAMS)
def test_program_runs(name, module_name, tmp_path_factory):
    result = run_program(name, module_name, tmp_path_factory)
    if "accuracy" in result:
        assert result["accuracy"] > 0.85
    for key in ("cost", "loss"):
        if key in result:
            assert result[key][-1] < result[key][0]


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_matches_tensorflow(name, tmp_path_factory, fusion):
    assert_same(run_program(name, "tensorflow", tmp_path_factory),
                run_program(name, "tensorgrid", tmp_path_factory, fusion))


OPTIMIZERS = {
    "sgd": lambda tf: tf.train.GradientDescentOptimizer(0.05),
    "momentum": lambda tf: tf.train.MomentumOptimizer(0.05, 0.9),
    "nesterov": lambda tf: tf.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
    "adagrad": lambda tf: tf.train.AdagradOptimizer(0.2, initial_accumulator_value=0.3),
    "rmsprop": lambda tf: tf.train.RMSPropOptimizer(0.01),
    "rmsprop_centered": lambda tf: tf.train.RMSPropOptimizer(0.01, decay=0.8, momentum=0.5, epsilon=1e-6,
                                                             centered=True),
    "adam": lambda tf: tf.train.AdamOptimizer(0.02, beta1=0.8, beta2=0.99, epsilon=1e-7),
}


def optimizer_program(tf, kind, dtype, steps=40):
    """Fits a linear model with optimizer `kind`; returns every global variable (slots included) by name."""
    rng = np.random.RandomState(7)
    x_data = rng.randn(32, 3).astype(dtype)
    y_data = (x_data @ np.array([[1.5], [-2.0], [0.5]]) + 0.3).astype(dtype)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(dtype, [None, 3])
        w = tf.Variable(np.array([[0.1], [0.2], [-0.3]], dtype), name="w")
        b = tf.Variable(np.array([0.05], dtype), name="b")
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y_data))
        step = tf.train.get_or_create_global_step()
        train = OPTIMIZERS[kind](tf).minimize(loss, global_step=step)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(steps):
                sess.run(train, {x: x_data})
            return {v.op.name: sess.run(v) for v in tf.global_variables()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_optimizer_matches_tensorflow(kind, dtype, fusion):
    expected = optimizer_program(tensorflow_v1, kind, dtype)
    actual = optimizer_program(tensorgrid_v1, kind, dtype)
    assert_same(expected, actual)


def test_replica_device_setter_matches_tensorflow():
    assert_same(placement_program(tensorflow_v1)[1], placement_program(tensorgrid_v1)[1])
