"""Model training: compile, fit, evaluate, predict, train_on_batch, test_on_batch (Keras 3's behaviour).

The train step (forward under a GradientTape, loss plus the layers' losses,
gradients, `optimizer.apply`, the loss tracker and the compiled metrics) is
one tg.function: traced once per batch signature (a last, smaller batch
traces a second graph), then every step is one run of that graph, placed and
partitioned like any other, against the eager variable store. Before the
first trace the model's output shapes are found symbolically, so the losses,
metrics and the optimizer's slots are made eagerly, outside the trace, as
Keras's `_symbolic_build` does.

Logs are dicts of Python floats with their keys in sorted order: TensorFlow's
Keras returns them from a tf.function, whose dicts come back sorted, so its
progress bar prints `accuracy` before `loss`; tensorgrid prints the same.
"""

import contextlib

import numpy as np

from tensorgrid.client import array_ops, scopes
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.keras.models import data_adapter
from tensorgrid.client.tape import GradientTape

__all__ = ["Trainer"]


def _keras(name):
    import importlib
    return importlib.import_module(f"tensorgrid.client.keras.{name}")


class _CompiledOutputs:
    """compile()'s losses and metrics, resolved per output once the output shapes are known."""

    def __init__(self, model, loss, loss_weights, metrics, weighted_metrics):
        self.model = model
        self.loss_spec, self.loss_weights = loss, loss_weights
        self.metric_spec, self.weighted_spec = metrics, weighted_metrics
        self.built = False
        self.losses = []             # one Loss (or None) per output
        self.weights = []
        self.metrics = []            # (output index, Metric, weighted)
        self.loss_trackers = []      # per-output loss Means, when there are several outputs

    def _per_output(self, spec, names, what):
        if isinstance(spec, dict):
            unknown = set(spec) - set(names)
            if unknown:
                raise ValueError(f"In the dict argument `{what}`, key '{sorted(unknown)[0]}' does not correspond to "
                                 f"any model output. Received:\n{what}={spec}")
            return [spec.get(n) for n in names]
        if isinstance(spec, (list, tuple)) and len(names) > 1 and what == "loss":
            if len(spec) != len(names):
                raise ValueError(f"For a model with multiple outputs, when providing the `{what}` argument as a "
                                 f"list, it should have as many entries as the model has outputs. Received:\n"
                                 f"{what}={spec}\nof length {len(spec)} whereas the model has {len(names)} outputs.")
            return list(spec)
        return [spec] * len(names)

    def build(self, y_true, y_pred):
        losses_lib, metrics_lib = _keras("losses"), _keras("metrics")
        y_true, y_pred = _as_list(y_true), _as_list(y_pred)
        names = self.model.output_names
        if len(y_true) != len(y_pred):
            raise ValueError(f"The model has {len(y_pred)} outputs, but the targets hold {len(y_true)} arrays")
        self.losses = [losses_lib.get_loss(spec, t, p) for spec, t, p in
                       zip(self._per_output(self.loss_spec, names, "loss"), y_true, y_pred)]
        weights = self.loss_weights
        if isinstance(weights, dict):
            weights = [weights.get(n, 1.0) for n in names]
        self.weights = list(weights) if weights is not None else [1.0] * len(names)
        for weighted, spec in ((False, self.metric_spec), (True, self.weighted_spec)):
            if spec is None:
                continue
            if isinstance(spec, dict):
                per_output = self._per_output(spec, names, "metrics")
            elif len(names) > 1 and spec and all(isinstance(s, (list, tuple)) for s in spec):
                per_output = list(spec)
            else:
                per_output = [spec] + [None] * (len(names) - 1) if len(names) > 1 else [spec]
            for i, output_metrics in enumerate(per_output):
                for m in _as_list(output_metrics) if output_metrics is not None else []:
                    metric = metrics_lib.get_metric(m, y_true[i], y_pred[i])
                    if len(names) > 1:
                        metric.name = f"{names[i]}_{metric.name}"
                    if weighted and self.metric_spec is not None:
                        metric.name = f"weighted_{metric.name}"
                    self.metrics.append((i, metric, weighted))
        if len(names) > 1:
            self.loss_trackers = [metrics_lib.Mean(name=f"{n}_loss") for n in names]
        self.built = True

    def loss(self, y_true, y_pred, sample_weight):
        y_true, y_pred = _as_list(y_true), _as_list(y_pred)
        sample_weights = _as_list(sample_weight) if isinstance(sample_weight, (list, tuple)) else \
            [sample_weight] * len(y_pred)
        total = None
        for i, (loss_fn, w, t, p, sw) in enumerate(zip(self.losses, self.weights, y_true, y_pred, sample_weights)):
            if loss_fn is None:
                continue
            value = loss_fn(t, p, sample_weight=sw)
            if self.loss_trackers:
                self.loss_trackers[i].update_state(value)
            value = value * w if w != 1.0 else value
            total = value if total is None else total + value
        return total

    def update_metrics(self, y_true, y_pred, sample_weight):
        y_true, y_pred = _as_list(y_true), _as_list(y_pred)
        for i, metric, weighted in self.metrics:
            sw = sample_weight[i] if isinstance(sample_weight, (list, tuple)) else sample_weight
            metric.update_state(y_true[i], y_pred[i], sample_weight=sw if weighted else None)

    def all_metrics(self):
        return [m for _, m, _ in self.metrics] + self.loss_trackers


def _as_list(x):
    if isinstance(x, dict):
        return list(x.values())
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Trainer:
    """The training half of keras.Model."""

    def __init__(self):
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._compiled = None
        self._loss_tracker = None
        self._functions = {}
        self._compile_config = None

    # ---- compile ----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Sets the optimizer, the loss(es) and metrics `fit` and `evaluate` use (strings or objects)."""
        self.optimizer = _keras("optimizers").get(optimizer)
        self.loss = loss
        self._compiled = _CompiledOutputs(self, loss, loss_weights, metrics, weighted_metrics)
        self._loss_tracker = _keras("metrics").Mean(name="loss")
        self.run_eagerly = run_eagerly
        self.steps_per_execution = steps_per_execution
        self.compiled = True
        self._functions = {}
        self._compile_config = {"optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
                                "metrics": metrics, "weighted_metrics": weighted_metrics,
                                "run_eagerly": run_eagerly}

    @property
    def output_names(self):
        outputs = getattr(self, "outputs", None)
        if outputs:
            return [t._keras_history[0].name for t in outputs]
        return ["output"]

    @property
    def metrics(self):
        """The loss tracker, then the compiled metrics (what fit's logs hold)."""
        out = []
        if self._loss_tracker is not None:
            out.append(self._loss_tracker)
        if self._compiled is not None:
            out.extend(self._compiled.all_metrics())
        return out

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def get_metrics_result(self):
        """{name: float} of every metric's current result, keys sorted (see the module docstring)."""
        return {k: v for k, v in sorted((m.name, float(np.asarray(m.result()))) for m in self.metrics)}

    def _assert_compiled(self):
        if not self.compiled:
            raise ValueError("You must call `compile()` before using the model.")

    # ---- the steps ----------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of (y, y_pred) plus the layers' losses (regularizers, add_loss)."""
        total = self._compiled.loss(y, y_pred, sample_weight) if self._compiled is not None else None
        for extra in self.losses:
            extra = convert_to_tensor(extra)
            total = extra if total is None else total + array_ops.cast(extra, total.dtype)
        if total is None:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")
        return total

    def _batch_size(self, x):
        first = data_adapter.flatten(x)[0]
        return array_ops.cast(array_ops.shape(first)[0], "float32")

    def _results(self):
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, sample_weight = data_adapter.unpack_x_y_sample_weight(data)
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
        self._loss_tracker.update_state(loss, sample_weight=self._batch_size(x))
        variables = self.trainable_weights
        if variables:
            grads = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(grads, variables))
        self._compiled.update_metrics(y, y_pred, sample_weight)
        return self._results()

    def test_step(self, data):
        x, y, sample_weight = data_adapter.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        self._loss_tracker.update_state(loss, sample_weight=self._batch_size(x))
        self._compiled.update_metrics(y, y_pred, sample_weight)
        return self._results()

    def predict_step(self, data):
        x, _, _ = data_adapter.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _function(self, kind):
        """The step of `kind` as one tg.function (or the plain method with run_eagerly)."""
        fn = self._functions.get(kind)
        if fn is None:
            step = getattr(self, f"{kind}_step")
            if getattr(self, "run_eagerly", False):
                fn = step
            else:
                from tensorgrid.client.function import function
                fn = function(lambda data: step(data))
            self._functions[kind] = fn
        return fn

    def _symbolic_build(self, data):
        """Makes the losses, metrics and optimizer slots eagerly, from the output shapes of one batch."""
        x, y, _ = data_adapter.unpack_x_y_sample_weight(data)
        if not self._compiled.built:
            self._compiled.build(y, self.compute_output_spec(data_adapter.specs(x)))
        if self.optimizer is not None and not getattr(self.optimizer, "built", True):
            variables = self.trainable_weights
            # slots sit with their variables: on a cluster, where the model's variables are
            devices = {getattr(v, "_remote_device", None) for v in variables} if variables else set()
            scope = scopes.device(devices.pop()) if len(devices) == 1 and None not in devices else \
                contextlib.nullcontext()
            with scope:
                self.optimizer.build(variables)

    def _run_step(self, kind, data):
        if kind != "predict":
            self._symbolic_build(data)
        logs = self._function(kind)(data_adapter.to_tensors(data))
        return logs

    # ---- fit ------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Trains for `epochs` epochs over numpy arrays or a tg.data Dataset; returns the History."""
        self._assert_compiled()
        if validation_split and validation_data is None:
            if data_adapter.is_dataset(x):
                raise ValueError("Argument `validation_split` is only supported for tensors or NumPy arrays."
                                 f"Found incompatible type in the input: {type(x)}")
            (x, y, sample_weight), validation_data = data_adapter.train_validation_split(
                (x, y, sample_weight), validation_split)
        batches = data_adapter.Batches(x, y, sample_weight, batch_size=batch_size, steps=steps_per_epoch,
                                       shuffle=shuffle, class_weight=class_weight)
        val_batches = None
        if validation_data is not None:
            vx, vy, vsw = data_adapter.unpack_x_y_sample_weight(validation_data)
            val_batches = data_adapter.Batches(vx, vy, vsw, batch_size=validation_batch_size or batch_size,
                                               steps=validation_steps, shuffle=False)
        verbose = 1 if verbose == "auto" else verbose
        callback_list = self._callbacks(callbacks, verbose, epochs, batches.num_batches)
        self.stop_training = False
        callback_list.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            for step, data in batches.epoch():
                callback_list.on_train_batch_begin(step)
                logs = _floats(self._run_step("train", data))
                callback_list.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(self.get_metrics_result() if logs else {})
            if val_batches is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_batches(val_batches, callback_list)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        callback_list.on_train_end(logs=epoch_logs if epochs > initial_epoch else {})
        return self.history

    def _callbacks(self, callbacks, verbose, epochs, steps):
        callbacks_lib = _keras("callbacks")
        if isinstance(callbacks, callbacks_lib.CallbackList):
            return callbacks
        return callbacks_lib.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                                          epochs=epochs, steps=steps, model=self)

    def _single_pass_callbacks(self, callbacks, verbose, steps):
        """evaluate's and predict's callbacks: the given ones, and a progress bar unless verbose=0."""
        callbacks_lib = _keras("callbacks")
        if isinstance(callbacks, callbacks_lib.CallbackList):
            return callbacks
        verbose = 1 if verbose == "auto" else verbose
        return callbacks_lib.CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose, epochs=1,
                                          steps=steps, model=self)

    def _evaluate_batches(self, batches, callback_list):
        self.reset_metrics()
        callback_list.on_test_begin()
        logs = {}
        for step, data in batches.epoch():
            callback_list.on_test_batch_begin(step)
            logs = _floats(self._run_step("test", data))
            callback_list.on_test_batch_end(step, logs)
        logs = self.get_metrics_result() if logs else {}
        callback_list.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """The loss and metrics over the data: a scalar, a list in `metrics_names` order, or a dict."""
        self._assert_compiled()
        batches = data_adapter.Batches(x, y, sample_weight, batch_size=batch_size, steps=steps, shuffle=False)
        callback_list = self._single_pass_callbacks(callbacks, verbose, batches.num_batches)
        logs = self._evaluate_batches(batches, callback_list)
        return logs if return_dict else self._in_order(logs)

    def _in_order(self, logs):
        names = self.metrics_names
        values = [logs[n] for n in names if n in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs over x, batch by batch, as numpy arrays (one per output)."""
        batches = data_adapter.Batches(x, None, None, batch_size=batch_size, steps=steps, shuffle=False)
        callback_list = self._single_pass_callbacks(callbacks, verbose, batches.num_batches)
        callback_list.on_predict_begin()
        outputs = []
        for step, data in batches.epoch():
            callback_list.on_predict_batch_begin(step)
            out = self._run_step("predict", data)
            outputs.append(out)
            callback_list.on_predict_batch_end(step, {"outputs": out})
        callback_list.on_predict_end()
        if not outputs:
            raise ValueError("Unexpected result of `predict_function` (Empty batch_outputs). Please use "
                             "`Model.compile(..., run_eagerly=True)`, or `tf.config.run_functions_eagerly(True)` "
                             "for more information of where went wrong, or file a issue/bug to `tf.keras`.")
        return data_adapter.concat_outputs(outputs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One train step on this batch (metrics reset first, as Keras 3); its loss and metrics."""
        self._assert_compiled()
        if class_weight is not None:
            sample_weight = data_adapter.class_weights_to_sample_weights(y, class_weight, sample_weight)
        self._symbolic_build((x, y, sample_weight))
        self.reset_metrics()
        logs = _floats(self._run_step("train", (x, y, sample_weight)))
        return logs if return_dict else self._in_order(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled()
        self._symbolic_build((x, y, sample_weight))
        self.reset_metrics()
        logs = _floats(self._run_step("test", (x, y, sample_weight)))
        return logs if return_dict else self._in_order(logs)

    def predict_on_batch(self, x):
        return data_adapter.concat_outputs([self._run_step("predict", (x, None, None))])

    # ---- compile config (for saving) ----------------------------------------------------------
    def get_compile_config(self):
        if not self.compiled:
            return None
        from tensorgrid.client.keras import saving
        config = dict(self._compile_config)
        config["optimizer"] = saving.serialize_keras_object(self.optimizer)
        for key in ("loss", "metrics", "weighted_metrics"):
            config[key] = saving.serialize_keras_object(config[key])
        return config

    def compile_from_config(self, config):
        from tensorgrid.client.keras import saving
        config = dict(config)
        for key in ("optimizer", "loss", "metrics", "weighted_metrics"):
            if config.get(key) is not None:
                config[key] = saving.deserialize_keras_object(config[key])
        self.compile(**config)


def _floats(logs):
    """Step results as {name: float}, keys sorted (TensorFlow's Keras gets them back sorted from tf.function)."""
    if not isinstance(logs, dict):
        return logs
    return {k: float(np.asarray(v)) for k, v in sorted(logs.items())}
