"""examples/keras/run.py's import rewriting and its local keras.datasets (MNIST and IMDB shapes, no download)."""

import importlib.util
import os

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "keras")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"keras_examples_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run, datasets = _load("run"), _load("datasets")


def test_imports_become_tensorgrid_and_nothing_else_changes():
    source = "\n".join([
        "import tensorflow as tf", "import keras", "from tensorflow import keras", "import keras_core as keras",
        "from keras import layers", "from tensorflow.keras.layers import Dense, LSTM",
        "from keras.datasets import mnist", "x = keras.layers.Dense(3)  # import keras stays in code", "epochs = 15"])
    new, changed = run.rewrite(source, settings=[("epochs", "1")])
    assert new.splitlines() == [
        "import tensorgrid as tf", "from tensorgrid import keras", "from tensorgrid import keras",
        "from tensorgrid import keras", "from tensorgrid.client.keras import layers",
        "from tensorgrid.client.keras.layers import Dense, LSTM", "from datasets import mnist",
        "x = keras.layers.Dense(3)  # import keras stays in code", "epochs = 1"]
    assert [number for number, _, _ in changed] == [1, 2, 3, 4, 5, 6, 7, 9]


def test_local_datasets_have_keras_shapes_and_learnable_labels():
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8 and set(np.unique(y_test)) == set(range(10))
    (s_train, l_train), (s_test, l_test) = datasets.imdb.load_data(num_words=50, maxlen=40)
    assert len(s_train) == len(s_test) == 25000 and set(np.unique(l_train)) == {0, 1}
    assert all(len(s) <= 40 and max(s) < 50 and s[0] == 1 for s in s_train[:100])
