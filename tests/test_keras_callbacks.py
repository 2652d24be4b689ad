"""tg.keras.callbacks and tg.keras.utils.Progbar: against Keras 3 fed the same logs, and around a real
training loop (a linear model trained with tg.keras's optimizer, loss and metrics, driven through a
CallbackList the way fit drives it)."""

import csv
import io
import sys
from unittest import mock

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.keras import callbacks, losses, metrics, optimizers
from tensorgrid.client.keras.utils import Progbar

keras = pytest.importorskip("keras")

LOGS = [{"loss": 0.9, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.4},
        {"loss": 0.7, "accuracy": 0.6, "val_loss": 0.8, "val_accuracy": 0.55},
        {"loss": 0.6, "accuracy": 0.7, "val_loss": 0.85, "val_accuracy": 0.6},
        {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.79995, "val_accuracy": 0.6},
        {"loss": 0.4, "accuracy": 0.9, "val_loss": 0.9, "val_accuracy": 0.58},
        {"loss": 0.3, "accuracy": 0.95, "val_loss": 0.95, "val_accuracy": 0.57}]


class LinearModel:
    """A softmax regression with Keras's model surface that callbacks use (weights, optimizer, metrics)."""

    def __init__(self, optimizer):
        rng = np.random.default_rng(0)
        self.w = tg.Variable(rng.normal(size=(4, 3)).astype("float32") * 0.1)
        self.b = tg.Variable(np.zeros(3, "float32"))
        self.optimizer = optimizer
        self.loss = losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_tracker = metrics.Mean(name="loss")
        self.accuracy = metrics.SparseCategoricalAccuracy(name="accuracy")
        self.metrics = [self.loss_tracker, self.accuracy]
        self.stop_training = False
        self.saved = []

    @tg.function
    def train_step(self, x, y):
        with tg.GradientTape() as tape:
            logits = tg.matmul(x, self.w) + self.b
            loss = self.loss(y, logits)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, [self.w, self.b]), [self.w, self.b]))
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(y, logits)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy.result()}

    def evaluate(self, x, y):
        logits = tg.matmul(x, self.w) + self.b
        acc = metrics.SparseCategoricalAccuracy()
        acc.update_state(y, logits)
        return {"loss": float(self.loss(y, logits).numpy()), "accuracy": float(acc.result().numpy())}

    def get_weights(self):
        return [self.w.numpy().copy(), self.b.numpy().copy()]

    def set_weights(self, weights):
        self.w.assign(weights[0])
        self.b.assign(weights[1])

    def save_weights(self, filepath, overwrite=True):
        with open(filepath, "wb") as f:
            np.savez(f, *self.get_weights())
        self.saved.append(filepath)

    save = save_weights


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(96, 3)), axis=1).astype("int32")
    return x, y


def fit(model, epochs, callback_list, verbose=0, batch_size=32):
    """fit's loop: what Keras's fit calls on its CallbackList, with the logs it passes."""
    x, y = _data()
    steps = len(x) // batch_size
    cbs = callbacks.CallbackList(callback_list, add_history=True, add_progbar=verbose != 0, model=model,
                                 verbose=verbose, epochs=epochs, steps=steps)
    cbs.on_train_begin()
    for epoch in range(epochs):
        for m in model.metrics:
            m.reset_state()
        cbs.on_epoch_begin(epoch)
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            logs = model.train_step(x[step * batch_size:(step + 1) * batch_size],
                                    y[step * batch_size:(step + 1) * batch_size])
            cbs.on_train_batch_end(step, logs)
        epoch_logs = dict(logs)
        epoch_logs.update({f"val_{k}": v for k, v in model.evaluate(x[-32:], y[-32:]).items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    cbs.on_train_end(epoch_logs)
    return model.history


def test_history_and_real_training():
    model = LinearModel(optimizers.Adam(learning_rate=0.05))
    history = fit(model, 5, [])
    assert history.epoch == [0, 1, 2, 3, 4]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(isinstance(v, float) for v in history.history["loss"])
    assert history.history["loss"][-1] < history.history["loss"][0]


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


def test_early_stopping_stops_real_training_and_restores_the_best_weights():
    model = LinearModel(optimizers.SGD(learning_rate=0.5))
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        (logs["val_loss"], model.get_weights())))
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0, restore_best_weights=True)
    history = fit(model, 10, [record, stop])
    assert len(history.epoch) == 2      # nothing beats the first epoch by 10, so the second stops it
    np.testing.assert_array_equal(model.get_weights()[0], seen[0][1][0])


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


def test_model_checkpoint_names_files_and_keeps_only_the_best(tmp_path):
    model = LinearModel(optimizers.SGD(learning_rate=0.3))
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.weights.h5")
    every = callbacks.ModelCheckpoint(pattern, save_weights_only=True)
    best = callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), save_weights_only=True,
                                     save_best_only=True, monitor="val_accuracy", mode="max")
    history = fit(model, 3, [every, best])
    for epoch, val_loss in enumerate(history.history["val_loss"]):
        assert (tmp_path / f"ckpt-{epoch + 1:02d}-{val_loss:.2f}.weights.h5").exists()
    improved = sum(1 for i, v in enumerate(history.history["val_accuracy"])
                   if i == 0 or v > max(history.history["val_accuracy"][:i]))
    assert model.saved.count(str(tmp_path / "best.weights.h5")) == improved
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        callbacks.ModelCheckpoint(str(tmp_path / "x.h5"), save_weights_only=True)
    with pytest.raises(ValueError, match="must end in `.keras`"):
        callbacks.ModelCheckpoint(str(tmp_path / "x.ckpt"))
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        callbacks.ModelCheckpoint(str(tmp_path / "{nope}.keras"))._file_path(0, None, {})


def test_model_checkpoint_auto_mode_reads_the_metric_direction(tmp_path):
    model = LinearModel(optimizers.SGD(learning_rate=0.3))
    cb = callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_accuracy", save_best_only=True)
    cb.set_model(model)
    cb.on_epoch_end(0, {"val_accuracy": 0.5})
    assert cb.monitor_op is np.greater      # SparseCategoricalAccuracy goes up
    unknown = callbacks.EarlyStopping(monitor="val_mystery")
    unknown.set_model(model)
    with pytest.raises(ValueError, match="isn't able to automatically determine"):
        unknown.on_epoch_end(0, {"val_mystery": 1.0})


def test_csv_logger_writes_what_keras_writes(tmp_path):
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    for cls, path in ((callbacks.CSVLogger, ours), (keras.callbacks.CSVLogger, theirs)):
        cb = cls(str(path))
        cb.on_train_begin()
        for epoch, logs in enumerate(LOGS[:3]):
            cb.on_epoch_end(epoch, {k: v for k, v in logs.items() if not k.startswith("val_")})
        cb.on_train_end()
    assert ours.read_text() == theirs.read_text()
    model = LinearModel(optimizers.SGD(learning_rate=0.3))
    path = tmp_path / "log.csv"
    fit(model, 2, [callbacks.CSVLogger(str(path))])
    fit(model, 1, [callbacks.CSVLogger(str(path), append=True)])
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "0"]
    assert set(rows[0]) == {"epoch", "accuracy", "loss", "val_accuracy", "val_loss"}


def _scalar(event):
    proto = event.tensor_proto
    return proto.float_val[0] if proto.float_val else np.frombuffer(proto.tensor_content, np.float32)[0]


def test_tensorboard_writes_event_files_tensorboard_reads(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea
    model = LinearModel(optimizers.Adam(learning_rate=0.05))
    history = fit(model, 3, [callbacks.TensorBoard(log_dir=str(tmp_path), update_freq=2)])
    train = ea.EventAccumulator(str(tmp_path / "train"), size_guidance={ea.TENSORS: 0})
    train.Reload()
    validation = ea.EventAccumulator(str(tmp_path / "validation"), size_guidance={ea.TENSORS: 0})
    validation.Reload()
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss"} <= set(train.Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy"} <= set(validation.Tags()["tensors"])
    for name in ("loss", "accuracy"):
        events = train.Tensors(f"epoch_{name}")
        assert [e.step for e in events] == [0, 1, 2]
        np.testing.assert_allclose([_scalar(e) for e in events], history.history[name], rtol=1e-6)
        np.testing.assert_allclose([_scalar(e) for e in validation.Tensors(f"epoch_{name}")],
                                   history.history[f"val_{name}"], rtol=1e-6)
    # every second batch, at the optimizer's step
    assert [e.step for e in train.Tensors("batch_loss")] == [2, 4, 6, 8]


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


def test_lambda_learning_rate_scheduler_and_terminate_on_nan():
    model = LinearModel(optimizers.SGD(learning_rate=0.1))
    calls = []
    lam = callbacks.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                                   on_train_batch_end=lambda batch, logs: calls.append(batch))
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    history = fit(model, 2, [lam, sched])
    assert calls == ["begin", 0, 1, 2, 0, 1, 2]
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.025])
    nan = callbacks.TerminateOnNaN()
    holder = _Holder()
    nan.set_model(holder)
    nan.on_batch_end(0, {"loss": float("nan")})
    assert holder.stop_training
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        callbacks.TerminateOnNaN(raise_error=True).on_batch_end(3, {"loss": float("inf")})
