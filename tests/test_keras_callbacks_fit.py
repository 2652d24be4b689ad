"""tg.keras.callbacks inside Model.fit, against Keras 3 running the same program from the same weights."""

import csv
import re

import numpy as np
import pytest

from tensorgrid import keras as tk

keras = pytest.importorskip("keras")

rng = np.random.default_rng(2)
X = rng.normal(size=(64, 6)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("int64")


def _models():
    """The same MLP in tg.keras and in Keras, with identical initial weights."""
    def build(k):
        model = k.Sequential([k.Input((6,)), k.layers.Dense(8, activation="relu"), k.layers.Dense(2)])
        model.compile(optimizer=k.optimizers.SGD(learning_rate=0.2),
                      loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model
    ours, theirs = build(tk), build(keras)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def test_fit_history_and_callbacks_match_keras(tmp_path):
    ours, theirs = _models()
    runs = {}
    for name, k, model in (("ours", tk, ours), ("theirs", keras, theirs)):
        cbs = [k.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
               k.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.5),
               k.callbacks.CSVLogger(str(tmp_path / f"{name}.csv"))]
        history = model.fit(X, Y, batch_size=16, epochs=6, validation_split=0.25, shuffle=False, verbose=0,
                            callbacks=cbs)
        runs[name] = history
    ours_h, theirs_h = runs["ours"].history, runs["theirs"].history
    assert sorted(ours_h) == sorted(theirs_h)
    for key in theirs_h:
        np.testing.assert_allclose(ours_h[key], theirs_h[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    rows = list(csv.DictReader((tmp_path / "ours.csv").open()))
    keras_rows = list(csv.DictReader((tmp_path / "theirs.csv").open()))
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in keras_rows]
    assert list(rows[0]) == list(keras_rows[0])


def test_model_checkpoint_in_fit_saves_loadable_weights(tmp_path):
    ours, _ = _models()
    pattern = str(tmp_path / "w-{epoch:02d}-{val_loss:.3f}.weights.h5")
    best = str(tmp_path / "best.keras")
    history = ours.fit(X, Y, batch_size=16, epochs=3, validation_split=0.25, verbose=0, callbacks=[
        tk.callbacks.ModelCheckpoint(pattern, save_weights_only=True),
        tk.callbacks.ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True)])
    last = tmp_path / f"w-03-{history.history['val_loss'][-1]:.3f}.weights.h5"
    assert last.exists()
    again, _ = _models()
    again.load_weights(str(last))
    for a, b in zip(again.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)
    restored = tk.models.load_model(best)
    assert restored.predict(X[:4], verbose=0).shape == (4, 2)


def test_fit_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea
    ours, _ = _models()
    ours.fit(X, Y, batch_size=16, epochs=2, validation_split=0.25, verbose=0,
             callbacks=[tk.callbacks.TensorBoard(log_dir=str(tmp_path))])
    for kind, tags in (("train", {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}),
                       ("validation", {"epoch_loss", "epoch_accuracy"})):
        acc = ea.EventAccumulator(str(tmp_path / kind), size_guidance={ea.TENSORS: 0})
        acc.Reload()
        assert tags <= set(acc.Tags()["tensors"])
        assert [e.step for e in acc.Tensors("epoch_loss")] == [0, 1]


def test_fit_verbose_2_lines_as_keras_prints_them(capsys):
    ours, theirs = _models()
    ours.fit(X, Y, batch_size=16, epochs=2, verbose=2)
    out = capsys.readouterr().out
    theirs.fit(X, Y, batch_size=16, epochs=2, verbose=2)
    keras_out = capsys.readouterr().out

    def shape(text):   # the times differ; everything else is the same
        return re.sub(r"\d+(ms|us|s)/step", "T/step", re.sub(r" - \d+s - ", " - Ns - ", text))
    ours_lines = [re.sub(r"\d\.\d{4}", "V", line) for line in shape(out).splitlines()]
    keras_lines = [re.sub(r"\d\.\d{4}", "V", line) for line in shape(keras_out).splitlines()]
    assert ours_lines == keras_lines
    assert ours_lines[0] == "Epoch 1/2"
    assert re.fullmatch(r"4/4 - Ns - T/step - accuracy: V - loss: V", ours_lines[1])


def test_lambda_and_learning_rate_scheduler_in_fit_match_keras():
    ours, theirs = _models()
    calls = {"ours": [], "theirs": []}
    for name, k, model in (("ours", tk, ours), ("theirs", keras, theirs)):
        seen = calls[name]
        cbs = [k.callbacks.LambdaCallback(on_train_begin=lambda logs, seen=seen: seen.append("begin"),
                                          on_train_batch_end=lambda batch, logs, seen=seen: seen.append(batch)),
               k.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)]
        calls[name + "_history"] = model.fit(X, Y, batch_size=32, epochs=2, verbose=0, shuffle=False,
                                             callbacks=cbs).history
    assert calls["ours"] == calls["theirs"] == ["begin", 0, 1, 0, 1]
    np.testing.assert_allclose(calls["ours_history"]["learning_rate"], calls["theirs_history"]["learning_rate"])
    np.testing.assert_allclose(calls["ours_history"]["loss"], calls["theirs_history"]["loss"], rtol=1e-4)


def test_monitor_mode_auto_reads_the_compiled_metrics_direction(tmp_path):
    ours, _ = _models()
    ours.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    checkpoint = tk.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_accuracy", save_best_only=True)
    checkpoint.set_model(ours)
    checkpoint._set_monitor_op()
    assert checkpoint.monitor_op is np.greater      # "accuracy" goes up
    unknown = tk.callbacks.EarlyStopping(monitor="val_mystery")
    unknown.set_model(ours)
    with pytest.raises(ValueError, match="isn't able to automatically determine"):
        unknown.on_epoch_end(0, {"val_mystery": 1.0})
