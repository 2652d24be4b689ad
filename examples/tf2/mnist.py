"""A local stand-in for `tensorflow.keras.datasets.mnist` (no download).

`load_data()` gives MNIST's shapes and dtypes, ((x_train, y_train), (x_test, y_test)) with x uint8
[n, 28, 28] in 0..255 and y uint8 labels, made from scikit-learn's handwritten digits as
examples/tf1/input_data.py makes them (the last 300 images are the test set).
TENSORGRID_EXAMPLE_TRAIN_SIZE caps the training set, so a program's epochs stay short in tests.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tf1"))
import input_data  # noqa: E402


def load_data(path="mnist.npz"):
    """((x_train, y_train), (x_test, y_test)), MNIST-shaped (`path` is ignored: nothing is downloaded)."""
    images, labels = input_data._mnist_like()
    return split(np.round(images.reshape(-1, 28, 28) * 255).astype(np.uint8), labels.astype(np.uint8))


def split(images, labels):
    """((x_train, y_train), (x_test, y_test)): the last 300 for testing, the training set capped by
    TENSORGRID_EXAMPLE_TRAIN_SIZE."""
    train, test = slice(0, len(images) - 300), slice(len(images) - 300, None)
    x_train, y_train = images[train], labels[train]
    cap = os.environ.get("TENSORGRID_EXAMPLE_TRAIN_SIZE")
    if cap:
        x_train, y_train = x_train[:int(cap)], y_train[:int(cap)]
    return (x_train, y_train), (images[test], labels[test])
