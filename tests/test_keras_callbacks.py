"""tg.keras.callbacks and tg.keras.utils.Progbar against Keras 3 fed the same logs (decisions, files and
printed output); tests/test_keras_callbacks_fit.py runs them inside Model.fit."""

import io
import sys
from unittest import mock

import numpy as np
import pytest

from tensorgrid.client.keras import callbacks, optimizers
from tensorgrid.client.keras.utils import Progbar

keras = pytest.importorskip("keras")

LOGS = [{"loss": 0.9, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.4},
        {"loss": 0.7, "accuracy": 0.6, "val_loss": 0.8, "val_accuracy": 0.55},
        {"loss": 0.6, "accuracy": 0.7, "val_loss": 0.85, "val_accuracy": 0.6},
        {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.79995, "val_accuracy": 0.6},
        {"loss": 0.4, "accuracy": 0.9, "val_loss": 0.9, "val_accuracy": 0.58},
        {"loss": 0.3, "accuracy": 0.95, "val_loss": 0.95, "val_accuracy": 0.57}]


class _Holder:
    """What Keras's own callbacks need of a model when fed logs directly: a place for stop_training."""

    def __init__(self, optimizer=None):
        self.stop_training = False
        self.optimizer = optimizer
        self.metrics = []
        self.weights = [np.zeros(1)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = weights


def _feed(cb, model, logs_list):
    cb.set_model(model)
    cb.on_train_begin()
    stopped = None
    for epoch, logs in enumerate(logs_list):
        model.weights = [np.full(1, epoch)]
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            stopped = epoch
            break
    cb.on_train_end()
    return stopped


@pytest.mark.parametrize("kwargs", [dict(patience=1), dict(patience=2, min_delta=0.01),
                                    dict(monitor="val_accuracy", patience=1, mode="max"),
                                    dict(monitor="loss", patience=0), dict(patience=1, baseline=0.5),
                                    dict(patience=2, restore_best_weights=True, start_from_epoch=1)])
def test_early_stopping_decides_as_keras(kwargs):
    ours, theirs = callbacks.EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
    mine, keras_model = _Holder(), _Holder()
    assert _feed(ours, mine, LOGS) == _feed(theirs, keras_model, LOGS)
    assert ours.best == theirs.best and ours.stopped_epoch == theirs.stopped_epoch
    np.testing.assert_array_equal(mine.weights[0], keras_model.weights[0])


def test_reduce_lr_on_plateau_matches_keras():
    kwargs = dict(monitor="val_loss", factor=0.5, patience=1, cooldown=1, min_lr=0.02)
    ours = callbacks.ReduceLROnPlateau(**kwargs)
    theirs = keras.callbacks.ReduceLROnPlateau(**kwargs)
    ours_model, keras_model = _Holder(optimizers.SGD(learning_rate=0.1)), _Holder(keras.optimizers.SGD(0.1))
    for cb, model in ((ours, ours_model), (theirs, keras_model)):
        cb.set_model(model)
        cb.on_train_begin()
    for epoch, logs in enumerate(LOGS):
        ours.on_epoch_end(epoch, dict(logs))
        theirs.on_epoch_end(epoch, dict(logs))
        assert float(ours_model.optimizer.learning_rate.numpy()) == pytest.approx(
            float(keras_model.optimizer.learning_rate.numpy()))
    assert float(ours_model.optimizer.learning_rate.numpy()) < 0.1


def test_csv_logger_writes_what_keras_writes(tmp_path):
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    for cls, path in ((callbacks.CSVLogger, ours), (keras.callbacks.CSVLogger, theirs)):
        cb = cls(str(path))
        cb.on_train_begin()
        for epoch, logs in enumerate(LOGS[:3]):
            cb.on_epoch_end(epoch, {k: v for k, v in logs.items() if not k.startswith("val_")})
        cb.on_train_end()
    assert ours.read_text() == theirs.read_text()



def _capture(fn):
    buf = io.StringIO()
    clock = [1000.0]

    def tick():
        clock[0] += 0.004
        return clock[0]
    with mock.patch("time.time", tick), mock.patch.object(sys, "stdout", buf):
        fn()
    return buf.getvalue()


@pytest.mark.parametrize("verbose", [1, 2])
def test_progbar_logger_prints_what_keras_prints(verbose):
    def drive(module):
        cbs = module.CallbackList([], add_history=True, add_progbar=True, model=_Holder(), verbose=verbose,
                                  epochs=2, steps=12)
        cbs.on_train_begin()
        for epoch in range(2):
            cbs.on_epoch_begin(epoch)
            for step in range(12):
                cbs.on_train_batch_begin(step)
                cbs.on_train_batch_end(step, {"loss": 1.0 / (step + 1), "accuracy": step / 12.0 + 1e-4})
            cbs.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 0.9, "val_loss": 0.3, "val_accuracy": 0.85})
        cbs.on_train_end()
    ours, theirs = _capture(lambda: drive(callbacks)), _capture(lambda: drive(keras.callbacks))
    assert ours == theirs
    assert "Epoch 2/2" in ours
    if verbose == 2:
        assert ("12/12 - 0s - 333us/step - accuracy: 0.9000 - loss: 0.2500 - val_accuracy: 0.8500 - val_loss: 0.3000\n"
                in ours)
    else:
        assert "\x1b[1m12/12\x1b[0m \x1b[32m" + "━" * 20 in ours


@pytest.mark.parametrize("kwargs", [{}, {"stateful_metrics": ["acc"]}, {"target": None}, {"width": 30},
                                    {"verbose": 2}, {"unit_name": "sample"}])
def test_progbar_matches_keras_character_for_character(kwargs):
    def drive(cls):
        options = {"target": 7, **kwargs}
        bar = cls(**options)
        for i in range(1, 8):
            bar.update(i, [("loss", 2.0 / i), ("acc", i / 7.0), ("tiny", 1e-5 * i)], finalize=i == 7)
        bar.add(0, [("loss", 0.1)])
    assert _capture(lambda: drive(Progbar)) == _capture(lambda: drive(keras.utils.Progbar))


def test_terminate_on_nan_and_model_checkpoint_arguments(tmp_path):
    nan = callbacks.TerminateOnNaN()
    holder = _Holder()
    nan.set_model(holder)
    nan.on_batch_end(0, {"loss": float("nan")})
    assert holder.stop_training
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        callbacks.TerminateOnNaN(raise_error=True).on_batch_end(3, {"loss": float("inf")})
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        callbacks.ModelCheckpoint(str(tmp_path / "x.h5"), save_weights_only=True)
    with pytest.raises(ValueError, match="must end in `.keras`"):
        callbacks.ModelCheckpoint(str(tmp_path / "x.ckpt"))
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        callbacks.ModelCheckpoint(str(tmp_path / "{nope}.keras"))._file_path(0, None, {})
