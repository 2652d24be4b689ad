"""tg.keras layers and models: numbers and gradients against Keras 3 (from identical weights), NumPy and
finite differences; names, weights, summary() text, errors."""

import io
import contextlib

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import keras
from tensorgrid.keras import layers


@pytest.fixture(scope="module")
def K():
    """Keras 3 itself (TensorFlow's backend), for differential tests."""
    return pytest.importorskip("keras")


@pytest.fixture(autouse=True)
def _fresh_names():
    keras.backend.clear_session()
    yield


def _copy(tg_model, keras_model, x):
    """Copies Keras's initial weights into the tensorgrid model and returns both outputs on x."""
    tg_model.set_weights(keras_model.get_weights())
    return np.asarray(tg_model(x)), np.asarray(keras_model(x))


# ---- forward numbers against Keras 3, identical weights --------------------------------------------------------

def _pair(K, build):
    """The same architecture built by `build(keras_module)` in tensorgrid and in Keras, with the same names."""
    keras.backend.clear_session()
    K.backend.clear_session()
    return build(keras), build(K)


ARCHITECTURES = {
    "mlp": (lambda k: k.Sequential([k.Input((12,)), k.layers.Dense(16, activation="relu"),
                                    k.layers.Dense(8, activation="tanh"), k.layers.Dense(3, activation="softmax")]),
            (5, 12), "float32"),
    "cnn": (lambda k: k.Sequential([k.Input((10, 10, 2)), k.layers.Conv2D(4, 3, activation="relu"),
                                    k.layers.MaxPooling2D(), k.layers.Conv2D(3, (2, 2), padding="same",
                                                                             strides=2),
                                    k.layers.AveragePooling2D(pool_size=2, padding="same"), k.layers.Flatten(),
                                    k.layers.Dense(4)]),
            (3, 10, 10, 2), "float32"),
    "cnn_global": (lambda k: k.Sequential([k.Input((9, 9, 3)), k.layers.Conv2D(5, 3, dilation_rate=2),
                                           k.layers.BatchNormalization(), k.layers.Activation("elu"),
                                           k.layers.GlobalAveragePooling2D(), k.layers.Dense(2)]),
                   (4, 9, 9, 3), "float32"),
    "lstm": (lambda k: k.Sequential([k.Input((7, 4)), k.layers.LSTM(6, return_sequences=True),
                                     k.layers.LSTM(5), k.layers.Dense(2)]),
             (3, 7, 4), "float32"),
    "gru": (lambda k: k.Sequential([k.Input((6, 3)), k.layers.GRU(4, return_sequences=True, go_backwards=True),
                                    k.layers.SimpleRNN(3), k.layers.Dense(1)]),
            (2, 6, 3), "float32"),
    "embedding": (lambda k: k.Sequential([k.Input((8,), dtype="int32"), k.layers.Embedding(20, 6),
                                          k.layers.GlobalAveragePooling1D(), k.layers.Dense(4, activation="relu"),
                                          k.layers.Dense(1, activation="sigmoid")]),
                  (5, 8), "int32"),
    "conv1d": (lambda k: k.Sequential([k.Input((12, 3)), k.layers.Conv1D(4, 3, padding="same"),
                                       k.layers.MaxPooling1D(2), k.layers.LayerNormalization(),
                                       k.layers.GlobalMaxPooling1D(), k.layers.Dense(2)]),
               (2, 12, 3), "float32"),
    "conv_transpose": (lambda k: k.Sequential([k.Input((5, 5, 3)), k.layers.Conv2DTranspose(4, 3, strides=2,
                                                                                            padding="same"),
                                               k.layers.Conv2DTranspose(2, (3, 2), strides=(2, 1), activation="relu"),
                                               k.layers.Flatten(), k.layers.Dense(2)]),
                       (2, 5, 5, 3), "float32"),
    # dynamic_rnn's Masking -> LSTM: rows padded with -1 after a random length, the padded steps skipped
    "masked_lstm": (lambda k: k.Sequential([k.Input((9, 2)), k.layers.Masking(mask_value=-1.0),
                                            k.layers.LSTM(5, return_sequences=True), k.layers.GRU(3),
                                            k.layers.Dense(2)]),
                    (4, 9, 2), "padded"),
    "reshape": (lambda k: k.Sequential([k.Input((6,)), k.layers.Reshape((2, 3)), k.layers.Permute((2, 1)),
                                        k.layers.Flatten(), k.layers.RepeatVector(2), k.layers.Reshape((-1,)),
                                        k.layers.Dense(3, activation="selu")]),
                (4, 6), "float32"),
}


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "int32":
        return rng.integers(0, 20, shape).astype("int32")
    if dtype == "padded":
        x = rng.standard_normal(shape).astype("float32")
        for row, length in enumerate(rng.integers(2, shape[1], shape[0])):
            x[row, length:] = -1.0
        return x
    return rng.standard_normal(shape).astype("float32")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_forward_matches_keras(K, arch):
    build, shape, dtype = ARCHITECTURES[arch]
    ours, theirs = _pair(K, build)
    x = _inputs(shape, dtype)
    a, b = _copy(ours, theirs, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert [v.path for v in ours.weights] == [v.path for v in theirs.weights]


@pytest.mark.parametrize("arch", ["mlp", "cnn_global", "lstm", "gru", "embedding", "conv_transpose", "masked_lstm"])
def test_gradients_match_keras(K, arch):
    """The gradient of a loss w.r.t. every weight, tg.GradientTape in a tg.function against tf.GradientTape."""
    import tensorflow as tf
    build, shape, dtype = ARCHITECTURES[arch]
    ours, theirs = _pair(K, build)
    x = _inputs(shape, dtype, seed=1)
    ours.set_weights(theirs.get_weights())

    @tg.function
    def grads(x):
        with tg.GradientTape() as tape:
            loss = tg.reduce_sum(tg.square(ours(x, training=True)))
        return tape.gradient(loss, ours.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(theirs(x, training=True)))
    expected = tape.gradient(loss, theirs.trainable_variables)
    for g, e, v in zip(grads(x), expected, theirs.trainable_variables):
        np.testing.assert_allclose(np.asarray(tg.convert_to_tensor(g)), tf.convert_to_tensor(e).numpy(),
                                   rtol=2e-4, atol=2e-5, err_msg=v.path)


def test_functional_two_inputs_two_outputs_match_keras(K):
    def build(k):
        a = k.Input((5,), name="a")
        b = k.Input((3,), name="b")
        h = k.layers.Dense(4, activation="relu", name="ha")(a)
        merged = k.layers.Concatenate(name="merged")([h, b])
        added = k.layers.Add(name="added")([k.layers.Dense(7, name="p")(merged), merged])
        out1 = k.layers.Dense(2, name="out1")(added)
        out2 = k.layers.Multiply(name="out2")([k.layers.Dense(3, name="q")(added), b])
        return k.Model(inputs=[a, b], outputs=[out1, out2], name="two_heads")
    ours, theirs = _pair(K, build)
    ours.set_weights(theirs.get_weights())
    xa, xb = _inputs((4, 5), "float32"), _inputs((4, 3), "float32", seed=2)
    for a, b in zip(ours([xa, xb]), theirs([xa, xb])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert _summary(ours) == _summary(theirs)


def test_batch_normalization_training_updates_moving_statistics(K):
    ours, theirs = layers.BatchNormalization(momentum=0.9), K.layers.BatchNormalization(momentum=0.9)
    x = _inputs((8, 5), "float32") * 3 + 1
    y_ours = np.asarray(ours(x, training=True))
    y_theirs = np.asarray(theirs(x, training=True))
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.moving_mean.numpy(), 0.1 * x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-5, atol=1e-5)
    assert [v.name for v in ours.trainable_weights] == ["gamma", "beta"]
    assert [v.name for v in ours.non_trainable_weights] == ["moving_mean", "moving_variance"]


# ---- per-layer numbers against NumPy, gradients against finite differences -------------------------------------

def test_dense_against_numpy():
    layer = layers.Dense(3, activation="relu", kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-1.0))
    x = np.arange(8, dtype="float32").reshape(2, 4) / 4
    np.testing.assert_allclose(np.asarray(layer(x)), np.maximum(x @ np.ones((4, 3)) - 1, 0), rtol=1e-6)
    x3 = np.ones((2, 5, 4), "float32")
    assert layer(x3).shape == (2, 5, 3)


def test_dropout_scales_in_training_only():
    layer = layers.Dropout(0.5, seed=3)
    x = np.ones((200, 50), "float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    y = np.asarray(layer(x, training=True))
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6


def test_layer_normalization_against_numpy():
    layer = layers.LayerNormalization(epsilon=1e-3)
    x = _inputs((3, 6), "float32")
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(layer(x)), (x - mean) / np.sqrt(var + 1e-3), rtol=1e-5, atol=1e-5)


def _finite_difference_check(layer, x, eps=1e-6):
    """Tape gradients of sum(w * layer(x)) w.r.t. x and every weight, float64, against central differences."""
    x = tg.constant(x)
    out_shape = layer(x).shape
    w = tg.constant(np.random.default_rng(0).uniform(0.5, 1.5, tuple(out_shape)))

    def loss():
        return tg.reduce_sum(layer(x, training=False) * w)
    with tg.GradientTape() as tape:
        tape.watch(x)
        value = loss()
    targets = [x] + layer.trainable_weights
    grads = tape.gradient(value, targets)
    for i, (target, grad) in enumerate(zip(targets, grads)):
        base = np.array(target.numpy())
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            for sign in (1, -1):
                bumped = base.copy()
                bumped[idx] += sign * eps
                if i == 0:
                    x = tg.constant(bumped)
                else:
                    target.assign(bumped)
                numeric[idx] += sign * float(loss().numpy()) / (2 * eps)
            if i == 0:
                x = tg.constant(base)
            else:
                target.assign(base)
        np.testing.assert_allclose(np.asarray(tg.convert_to_tensor(grad)), numeric, rtol=1e-5, atol=1e-7,
                                   err_msg=getattr(target, "path", "input"))


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Dense(3, activation="tanh", dtype="float64"), (2, 4)),
    (lambda: layers.Conv2D(2, 2, padding="same", dtype="float64"), (1, 3, 3, 2)),
    (lambda: layers.LSTM(2, dtype="float64"), (2, 3, 2)),
    (lambda: layers.GRU(2, dtype="float64", return_sequences=True), (1, 3, 2)),
    (lambda: layers.SimpleRNN(2, dtype="float64"), (2, 3, 2)),
    (lambda: layers.LayerNormalization(dtype="float64"), (2, 4)),
    (lambda: layers.BatchNormalization(dtype="float64"), (3, 2)),
])
def test_layer_gradients_against_finite_differences(make, shape):
    _finite_difference_check(make(), np.random.default_rng(1).standard_normal(shape))


# ---- names, weights, models ------------------------------------------------------------------------------------

def test_names_are_uniquified_as_keras_and_clear_session_resets():
    assert [layers.Dense(1).name, layers.Dense(1).name, layers.Dense(1, name="x").name, layers.Dense(1).name] == \
        ["dense", "dense_1", "x", "dense_2"]
    keras.backend.clear_session()
    assert layers.Dense(1).name == "dense"
    assert keras.Sequential().name == "sequential"


def test_weights_are_variables_with_keras_names_and_paths():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2, name="d")])
    kernel, bias = model.weights
    assert isinstance(kernel, tg.Variable)
    assert (kernel.name, kernel.path, bias.name, bias.path) == ("kernel", "sequential/d/kernel", "bias",
                                                               "sequential/d/bias")
    np.testing.assert_array_equal(bias.numpy(), np.zeros(2))
    limit = np.sqrt(6 / 5)
    assert np.all(np.abs(kernel.numpy()) <= limit)
    assert model.count_params() == 8
    assert model.trainable_variables == model.weights


def test_trainable_false_moves_weights_to_non_trainable():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2), layers.Dense(1)])
    model.layers[0].trainable = False
    assert [v.path for v in model.trainable_weights] == ["sequential/dense_1/kernel", "sequential/dense_1/bias"]
    assert len(model.non_trainable_weights) == 2


def test_set_weights_errors_name_the_layer():
    layer = layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match="layer 'dense' with a weight list of length 1, but the layer was "
                                         "expecting 2 weights"):
        layer.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"weight shape \(3, 2\) is not compatible with provided weight shape "
                                         r"\(2, 2\)"):
        layer.set_weights([np.zeros((2, 2)), np.zeros(2)])
    with pytest.raises(ValueError, match="isn't built"):
        layers.Dense(2).count_params()
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense"):
        layers.Dense(2, bogus=1)


def test_get_layer_and_errors():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2, name="a"), layers.Dense(1, name="b")])
    assert model.get_layer("b") is model.layers[1]
    assert model.get_layer(index=0).name == "a"
    with pytest.raises(ValueError, match=r"No such layer: c. Existing layers are: \['a', 'b'\]"):
        model.get_layer("c")
    with pytest.raises(ValueError, match="Graph disconnected"):
        a, b = keras.Input((2,)), keras.Input((2,))
        keras.Model(a, layers.Add()([a, b]))


class TwoLayer(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = layers.Dense(4, activation="relu")
        self.drop = layers.Dropout(0.5)
        self.out = layers.Dense(2)

    def call(self, x, training=None):
        return self.out(self.drop(self.hidden(x), training=training))


def test_subclassed_model_tracks_layers_and_training_flag():
    model = TwoLayer()
    assert model.name == "two_layer"
    x = np.ones((50, 3), "float32")
    y_inference = np.asarray(model(x))
    np.testing.assert_allclose(np.asarray(model(x)), y_inference)
    assert [layer.name for layer in model.layers] == ["dense", "dropout", "dense_1"]
    assert len(model.trainable_variables) == 4
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    assert not np.allclose(np.asarray(model(x, training=True)), y_inference)


def test_regularizers_add_to_losses():
    layer = layers.Dense(2, kernel_regularizer=keras.regularizers.l2(0.1), bias_regularizer="l1",
                         kernel_initializer="ones", bias_initializer="ones")
    layer(np.ones((1, 3), "float32"))
    assert len(layer.losses) == 2
    np.testing.assert_allclose(sorted(float(v.numpy()) for v in layer.losses), [0.02, 0.1 * 6], rtol=1e-6)


def test_lambda_and_keras_tensor_operators():
    x = keras.Input((3,))
    y = layers.Lambda(lambda t: t * 2.0)(x) + 1.0
    model = keras.Model(x, -y)
    np.testing.assert_allclose(np.asarray(model(np.ones((2, 3), "float32"))), -3 * np.ones((2, 3)))


def test_import_forms_are_one_module():
    import tensorgrid.keras as k
    import tensorgrid.keras.layers as kl
    from tensorgrid.keras.layers import Dense
    assert k is tg.keras and kl is tg.keras.layers and Dense is tg.keras.layers.Dense


# ---- summary() exactly as Keras 3 prints it --------------------------------------------------------------------

def _summary(model, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.summary(**kwargs)
    return out.getvalue()


@pytest.mark.parametrize("arch", ["mlp", "cnn_global", "lstm", "embedding"])
def test_summary_text_matches_keras(K, arch, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    build = ARCHITECTURES[arch][0]
    ours = build(keras)
    K.backend.clear_session()
    theirs = build(K)
    lines = []
    theirs.summary(print_fn=lambda text, line_break=True: lines.append(text))
    assert _summary(ours) == "".join(lines)


def test_summary_of_unbuilt_and_wide_models(K, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    ours, theirs = keras.Sequential([layers.Dense(3, name="d")], name="s"), \
        K.Sequential([K.layers.Dense(3, name="d")], name="s")
    lines = []
    theirs.summary(print_fn=lambda text, line_break=True: lines.append(text))
    assert _summary(ours) == "".join(lines)
    assert "0 (unbuilt)" in _summary(ours)


def test_activation_layers_match_keras(K):
    x = np.linspace(-3, 3, 24, dtype="float32").reshape(2, 3, 4)
    for make in (lambda k: k.layers.ReLU(max_value=2.0, negative_slope=0.1), lambda k: k.layers.LeakyReLU(),
                 lambda k: k.layers.LeakyReLU(negative_slope=0.05), lambda k: k.layers.ELU(0.5),
                 lambda k: k.layers.Softmax(axis=1), lambda k: k.layers.PReLU(alpha_initializer="ones")):
        np.testing.assert_allclose(np.asarray(make(keras)(x)), np.asarray(make(K)(x)), rtol=1e-6, atol=1e-6)


def test_pad_sequences_matches_keras(K):
    seqs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    for kwargs in ({}, {"maxlen": 3}, {"maxlen": 4, "padding": "post", "truncating": "post", "value": -1}):
        np.testing.assert_array_equal(keras.utils.pad_sequences(seqs, **kwargs), K.utils.pad_sequences(seqs, **kwargs))
