"""`tensorgrid demo --keras`: a Keras CNN on the handwritten digits, trained with `fit` across a cluster.

The client connects with `tg.config.experimental_connect_to_host`; the
model's variables are made under `tg.device("/job:ps/task:0")`, so they live
on the parameter server; the model's `call` puts the convolution block on
/job:worker/task:0 and the dense block on /job:worker/task:1, so every train
step (one tg.function: forward, gradients, Adam) is partitioned over three
tasks with send/recv between them. `fit` shows Keras's progress bar; the
test accuracy is printed, and one traced train step is written as a Chrome
trace (trace.json) and a picture of its partitions (partitions.svg).
"""

import os

import numpy as np


def build_model(keras, tg, worker_devices):
    """The digits CNN: Conv2D(16, 3) + max-pool on the first worker, Dense(64) + Dense(10) on the second."""
    layers = keras.layers

    class DigitsCNN(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = layers.Conv2D(16, 3, padding="same", activation="relu")
            self.pool = layers.MaxPooling2D()
            self.flatten = layers.Flatten()
            self.hidden = layers.Dense(64, activation="relu")
            self.classes = layers.Dense(10, activation="softmax")

        def call(self, x, training=None):
            with tg.device(worker_devices[0]):
                h = self.flatten(self.pool(self.conv(x)))
            with tg.device(worker_devices[1]):
                return self.classes(self.hidden(h))
    return DigitsCNN(name="digits_cnn")


def trace_train_step(model, x, y):
    """Runs one more train step with FULL_TRACE; its RunMetadata (step stats and partition graphs)."""
    from tensorgrid.client.keras.models import data_adapter
    data = data_adapter.to_tensors((x, y, None))
    concrete = model._function("train").get_concrete_function(data)
    feeds = {ph.name: np.asarray(a, dtype=ph.dtype.as_numpy_dtype) for ph, a in zip(concrete.inputs, (x, y))}
    _, metadata = concrete._backend.run(concrete.graph, feeds, [t.name for t in concrete.outputs],
                                        concrete._targets, trace=True)
    return metadata


def train(target, out_dir, epochs=12, batch_size=32, ps_device="/job:ps/task:0",
          worker_devices=("/job:worker/task:0", "/job:worker/task:1"), verbose=1):
    """Trains the CNN on `target` with Keras's fit; returns the test accuracy."""
    import tensorgrid as tg
    from tensorgrid import keras
    from tensorgrid.client import remote_eager
    from tensorgrid.demo import load_digits, write_step_views
    x_train, y_train, x_test, y_test = load_digits()
    x_train, x_test = x_train.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    tg.config.experimental_connect_to_host(target)
    try:
        with tg.device(ps_device):
            model = build_model(keras, tg, worker_devices)
            model.build((None, 8, 8, 1))
            model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose)
        _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        metadata = trace_train_step(model, x_train[:batch_size], y_train[:batch_size])
    finally:
        remote_eager.disconnect()
    print(f"test accuracy: {accuracy:.4f}")
    write_step_views(metadata, out_dir, "one Keras train step of the digits CNN, partitioned per device")
    return accuracy
