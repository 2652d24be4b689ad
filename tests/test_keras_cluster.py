"""Keras on a cluster (real processes): tg.config.experimental_connect_to_host, variables where tg.device puts
them, tg.functions run by the master, and a Keras fit giving the numbers it gives in-process."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import keras
from tensorgrid.client import remote_eager
from tensorgrid.runtime.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(num_workers=2)
    try:
        yield c
    finally:
        remote_eager.disconnect()
        c.stop()


@pytest.fixture
def connected(cluster):
    tg.config.experimental_connect_to_host(cluster.target)
    try:
        yield cluster
    finally:
        remote_eager.disconnect()


def test_eager_variables_and_functions_run_on_the_named_worker(connected):
    with tg.device("/job:worker/task:1"):
        v = tg.Variable(np.ones(3, "float32"), name="v")
    assert v.device == "/job:worker/replica:0/task:1"
    v.assign_add(np.full(3, 2.0, "float32"))
    np.testing.assert_array_equal(v.numpy(), [3, 3, 3])

    @tg.function
    def step(x):
        v.assign_add(x)
        return v.read_value() * 2.0
    with tg.device("/job:worker/task:0"):
        np.testing.assert_array_equal(step(np.ones(3, "float32")).numpy(), [8, 8, 8])
    graph = step.get_concrete_function(np.ones(3, "float32")).graph
    devices = {op.type: op.device for op in graph.get_operations()}
    assert devices["VarHandleOp"] == "/job:worker/replica:0/task:1"
    assert devices["Mul"] == "/job:worker/task:0"
    np.testing.assert_array_equal(v.numpy(), [4, 4, 4])


def test_connect_errors():
    with pytest.raises(ValueError, match="remote_host"):
        tg.config.experimental_connect_to_host(None)
    with pytest.raises(ValueError, match="ClusterResolver"):
        tg.config.experimental_connect_to_cluster(42)


def _fit(weights, x, y, device):
    keras.backend.clear_session()
    with tg.device(device):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    with tg.device("/job:worker/task:1"):
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model, history.history


def test_keras_fit_on_the_cluster_matches_in_process(cluster):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 6)).astype("float32")
    y = rng.integers(0, 3, 48).astype("int32")
    weights = [rng.standard_normal(s).astype("float32") * 0.3 for s in [(6, 8), (8,), (8, 3), (3,)]]
    local, local_history = _fit(weights, x, y, "/job:worker/task:0")
    tg.config.experimental_connect_to_host(cluster.target)
    try:
        remote, remote_history = _fit(weights, x, y, "/job:worker/task:0")
        assert {v.device for v in remote.weights} == {"/job:worker/replica:0/task:0"}
        remote_weights = remote.get_weights()
    finally:
        remote_eager.disconnect()
    for key in local_history:
        np.testing.assert_allclose(remote_history[key], local_history[key], rtol=1e-6, err_msg=key)
    for a, b in zip(remote_weights, local.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
