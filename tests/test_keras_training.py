"""tg.keras training: compile / train_on_batch / fit / evaluate / predict against Keras 3 from identical weights,
the train step traced once, datasets, validation, History, sample and class weights."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import keras
from tensorgrid.keras import layers


@pytest.fixture(scope="module")
def K():
    return pytest.importorskip("keras")


def _pair(K, build):
    keras.backend.clear_session()
    K.backend.clear_session()
    ours, theirs = build(keras), build(K)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def _data(n=48, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype("float32")
    y = (np.abs(x[:, 0] * 2 + x[:, 1]).astype("int32")) % classes
    return x, y


MODELS = {
    "mlp": (lambda k: k.Sequential([k.Input((6,)), k.layers.Dense(16, activation="relu"),
                                    k.layers.Dense(3, activation="softmax")]),
            lambda: _data()),
    "cnn": (lambda k: k.Sequential([k.Input((6, 6, 1)), k.layers.Conv2D(3, 3, activation="relu"),
                                    k.layers.BatchNormalization(), k.layers.MaxPooling2D(), k.layers.Flatten(),
                                    k.layers.Dense(3, activation="softmax")]),
            lambda: (_data(n=32, features=36)[0].reshape(32, 6, 6, 1), _data(n=32, features=36)[1])),
    "lstm": (lambda k: k.Sequential([k.Input((5, 3)), k.layers.LSTM(4), k.layers.Dense(3, activation="softmax")]),
             lambda: (_data(n=32, features=15)[0].reshape(32, 5, 3), _data(n=32, features=15)[1])),
    "embedding": (lambda k: k.Sequential([k.Input((7,), dtype="int32"), k.layers.Embedding(12, 4),
                                          k.layers.GlobalAveragePooling1D(),
                                          k.layers.Dense(3, activation="softmax")]),
                  lambda: (np.random.default_rng(3).integers(0, 12, (32, 7)).astype("int32"),
                           np.random.default_rng(4).integers(0, 3, 32).astype("int32"))),
}


@pytest.mark.parametrize("arch,optimizer", [("mlp", "sgd"), ("mlp", "adam"), ("cnn", "adam"), ("lstm", "sgd"),
                                            ("embedding", "adam")])
def test_train_on_batch_matches_keras(K, arch, optimizer):
    """A few train steps from identical weights give the same weights, losses and accuracies."""
    build, data = MODELS[arch]
    ours, theirs = _pair(K, build)
    make = {"sgd": lambda k: k.optimizers.SGD(0.1, momentum=0.9), "adam": lambda k: k.optimizers.Adam(0.01)}
    for model, k in ((ours, keras), (theirs, K)):
        model.compile(optimizer=make[optimizer](k), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data()
    for step in range(4):
        a = ours.train_on_batch(x, y, return_dict=True)
        b = theirs.train_on_batch(x, y, return_dict=True)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(a[key], float(b[key]), rtol=2e-4, atol=1e-5, err_msg=f"{key} step {step}")
    for w_ours, w_theirs, v in zip(ours.get_weights(), theirs.get_weights(), theirs.weights):
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-5, err_msg=v.path)
    assert ours._functions["train"].experimental_get_tracing_count() == 1


def test_regularized_functional_two_inputs_matches_keras(K):
    def build(k):
        a, b = k.Input((4,), name="a"), k.Input((3,), name="b")
        h = k.layers.Dense(5, activation="tanh", kernel_regularizer=k.regularizers.l2(0.01))(a)
        out = k.layers.Dense(1)(k.layers.Concatenate()([h, b]))
        return k.Model([a, b], out)
    ours, theirs = _pair(K, build)
    rng = np.random.default_rng(5)
    xa, xb = rng.standard_normal((16, 4)).astype("float32"), rng.standard_normal((16, 3)).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")
    for model, k in ((ours, keras), (theirs, K)):
        model.compile(optimizer=k.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    for _ in range(3):
        a = ours.train_on_batch([xa, xb], y, return_dict=True)
        b = theirs.train_on_batch([xa, xb], y, return_dict=True)
        for key in a:
            np.testing.assert_allclose(a[key], float(b[key]), rtol=1e-4, atol=1e-6, err_msg=key)
    for w_ours, w_theirs in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-6)


def test_fit_matches_keras_and_returns_history(K):
    build, data = MODELS["mlp"]
    ours, theirs = _pair(K, build)
    for model, k in ((ours, keras), (theirs, K)):
        model.compile(optimizer=k.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    x, y = data()
    h_ours = ours.fit(x, y, batch_size=10, epochs=3, shuffle=False, validation_split=0.25, verbose=0)
    h_theirs = theirs.fit(x, y, batch_size=10, epochs=3, shuffle=False, validation_split=0.25, verbose=0)
    assert sorted(h_ours.history) == sorted(h_theirs.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key in h_ours.history:
        np.testing.assert_allclose(h_ours.history[key], h_theirs.history[key], rtol=2e-4, atol=1e-5, err_msg=key)
    assert h_ours.epoch == [0, 1, 2]
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=2e-4)
    np.testing.assert_allclose(ours.predict(x, batch_size=7, verbose=0), theirs.predict(x, batch_size=7, verbose=0),
                               rtol=1e-4, atol=1e-6)
    # 36 training samples in batches of 10: a full-batch graph and one for the last 6
    assert ours._functions["train"].experimental_get_tracing_count() == 2


def test_fit_on_a_dataset_with_validation_data():
    x, y = _data(n=64)
    model = keras.Sequential([keras.Input((6,)), layers.Dense(16, activation="relu"), layers.Dense(3)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train = tg.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=1).batch(16)
    history = model.fit(train, epochs=4, validation_data=(x[:16], y[:16]), verbose=0)
    assert len(history.history["loss"]) == 4
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(tg.data.Dataset.from_tensor_slices((x, y)).batch(32), verbose=0)
    assert 0 <= accuracy <= 1 and loss > 0


def test_sample_and_class_weights(K):
    build, data = MODELS["mlp"]
    ours, theirs = _pair(K, build)
    for model, k in ((ours, keras), (theirs, K)):
        model.compile(optimizer=k.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x, y = data()
    weights = np.linspace(0.1, 2.0, len(x)).astype("float32")
    a = ours.fit(x, y, sample_weight=weights, batch_size=16, shuffle=False, epochs=2, verbose=0)
    b = theirs.fit(x, y, sample_weight=weights, batch_size=16, shuffle=False, epochs=2, verbose=0)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=2e-4)
    a = ours.fit(x, y, class_weight={0: 1.0, 1: 3.0, 2: 0.5}, batch_size=16, shuffle=False, verbose=0)
    b = theirs.fit(x, y, class_weight={0: 1.0, 1: 3.0, 2: 0.5}, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=2e-4)


def test_errors():
    model = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
    with pytest.raises(ValueError, match="You must call `compile\\(\\)` before using the model"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="not sufficient to split"):
        model.fit(np.ones((1, 2)), np.ones((1, 1)), validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="Data cardinality is ambiguous"):
        model.fit(np.ones((4, 2)), np.ones((3, 1)), verbose=0)


def test_custom_training_loop_with_apply_gradients(K):
    """The tutorials' custom loop: a tg.function with a GradientTape, loss_fn and optimizer.apply_gradients."""
    build, data = MODELS["mlp"]
    ours, theirs = _pair(K, build)
    x, y = data()
    opt_ours, opt_theirs = keras.optimizers.Adam(0.01), K.optimizers.Adam(0.01)
    loss_ours = keras.losses.SparseCategoricalCrossentropy()
    loss_theirs = K.losses.SparseCategoricalCrossentropy()

    @tg.function
    def step(x, y):
        with tg.GradientTape() as tape:
            loss = loss_ours(y, ours(x, training=True))
        opt_ours.apply_gradients(zip(tape.gradient(loss, ours.trainable_weights), ours.trainable_weights))
        return loss
    import tensorflow as tf
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss_t = loss_theirs(y, theirs(x, training=True))
        opt_theirs.apply_gradients(zip(tape.gradient(loss_t, theirs.trainable_weights), theirs.trainable_weights))
        np.testing.assert_allclose(float(step(x, y)), float(loss_t), rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
