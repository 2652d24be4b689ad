"""tg.keras saving: `.weights.h5` round trips in Keras 3's layout (read and written both ways with Keras), `.keras`
archives (architecture + weights), configs, and clear errors for files that are not ones."""

import json
import zipfile

import numpy as np
import pytest

from tensorgrid import keras
from tensorgrid.keras import layers

h5py = pytest.importorskip("h5py")


@pytest.fixture(autouse=True)
def _fresh_names():
    keras.backend.clear_session()
    yield


def _mlp(k):
    return k.Sequential([k.Input((5,)), k.layers.Dense(4, activation="relu"), k.layers.BatchNormalization(),
                         k.layers.Dense(2)])


def _lstm(k):
    return k.Sequential([k.Input((3, 2)), k.layers.LSTM(3), k.layers.Dense(1)])


def _functional(k):
    a, b = k.Input((4,), name="a"), k.Input((2,), name="b")
    h = k.layers.Dense(3, activation="tanh", name="h")(a)
    out = k.layers.Dense(2, name="out")(k.layers.Concatenate(name="cat")([h, b]))
    return k.Model([a, b], out, name="two_inputs")


X = {"mlp": np.linspace(-1, 1, 15, dtype="float32").reshape(3, 5),
     "lstm": np.linspace(-1, 1, 12, dtype="float32").reshape(2, 3, 2),
     "functional": [np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4), np.ones((2, 2), "float32")]}


@pytest.mark.parametrize("arch", ["mlp", "lstm", "functional"])
def test_weights_round_trip(tmp_path, arch):
    build = {"mlp": _mlp, "lstm": _lstm, "functional": _functional}[arch]
    model = build(keras)
    model.layers[-1].bias.assign(np.arange(model.layers[-1].bias.shape[0], dtype="float32"))
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    keras.backend.clear_session()
    fresh = build(keras)
    fresh.load_weights(path)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.asarray(fresh(X[arch])), np.asarray(model(X[arch])), rtol=1e-6)


def test_weights_file_layout(tmp_path):
    model = keras.Sequential([keras.Input((3, 2)), layers.LSTM(3), layers.Dense(1, name="head")])
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert sorted(names) == ["layers/dense/vars/0", "layers/dense/vars/1", "layers/lstm/cell/vars/0",
                                 "layers/lstm/cell/vars/1", "layers/lstm/cell/vars/2"]
        assert f["layers/lstm/cell/vars"].attrs["name"] == "lstm_cell"
        np.testing.assert_array_equal(f["layers/dense/vars/0"][()], model.layers[1].kernel.numpy())


@pytest.mark.parametrize("arch", ["mlp", "lstm", "functional"])
def test_weights_files_move_between_keras_and_tensorgrid(tmp_path, arch):
    K = pytest.importorskip("keras")
    build = {"mlp": _mlp, "lstm": _lstm, "functional": _functional}[arch]
    K.backend.clear_session()
    theirs = build(K)
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours = build(keras)
    ours.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(np.asarray(ours(X[arch])), np.asarray(theirs(X[arch])), rtol=1e-5, atol=1e-6)
    for v in ours.weights:
        v.assign(v.numpy() * 0.5 + 0.1)
    ours.save_weights(tmp_path / "t.weights.h5")
    theirs.load_weights(tmp_path / "t.weights.h5")
    np.testing.assert_allclose(np.asarray(theirs(X[arch])), np.asarray(ours(X[arch])), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["mlp", "lstm", "functional"])
def test_keras_archive_round_trip(tmp_path, arch):
    build = {"mlp": _mlp, "lstm": _lstm, "functional": _functional}[arch]
    model = build(keras)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(z.read("config.json"))
    assert config["class_name"] == type(model).__name__
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(np.asarray(loaded(X[arch])), np.asarray(model(X[arch])), rtol=1e-6)


def test_configs_round_trip():
    layer = layers.Dense(3, activation="relu", kernel_initializer="he_normal",
                         kernel_regularizer=keras.regularizers.L2(0.1), name="d")
    again = layers.Dense.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    config = keras.saving.serialize_keras_object(layers.Conv2D(2, 3, padding="same"))
    assert config["class_name"] == "Conv2D" and config["module"] == "keras.layers"
    assert keras.saving.deserialize_keras_object(config).padding == "same"


def test_custom_objects_and_registration(tmp_path):
    @keras.saving.register_keras_serializable(package="tests")
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    model = keras.Sequential([keras.Input((2,)), Scale(3.0), layers.Dense(1)])
    model.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    assert loaded.layers[0].factor == 3.0


def test_lambda_needs_safe_mode_off(tmp_path):
    model = keras.Sequential([keras.Input((2,)), layers.Lambda(lambda t: t * 3.0 + 1.0)])
    model.save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(tmp_path / "l.keras")
    loaded = keras.models.load_model(tmp_path / "l.keras", safe_mode=False)
    np.testing.assert_allclose(np.asarray(loaded(np.ones((1, 2), "float32"))), [[4.0, 4.0]])


def test_bad_files_give_clear_errors(tmp_path):
    model = _mlp(keras)
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="is not a `.keras` file.*not a zip archive"):
        keras.models.load_model(text)
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="has no config.json, model.weights.h5"):
        keras.models.load_model(tmp_path / "empty.keras")
    with pytest.raises(ValueError, match="File not found"):
        keras.models.load_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="File format not supported"):
        keras.models.load_model(tmp_path / "m.pb")
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        model.save_weights(tmp_path / "m.h5")
    garbage = tmp_path / "g.weights.h5"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable `.weights.h5`"):
        model.load_weights(garbage)
    _lstm(keras).save_weights(tmp_path / "other.weights.h5")
    before = model.get_weights()
    with pytest.raises(ValueError, match="must match.*Target variable: sequential/dense/kernel"):
        model.load_weights(tmp_path / "other.weights.h5")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
