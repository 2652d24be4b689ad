"""A local stand-in for `tensorflow.keras.datasets.cifar10` (no download).

`load_data()` gives CIFAR-10's shapes and dtypes, ((x_train, y_train), (x_test, y_test)) with x uint8
[n, 32, 32, 3] in 0..255 and y uint8 labels of shape [n, 1], made from scikit-learn's handwritten digits
(each 8x8 digit scaled to 32x32, tinted per class in its three channels; the last 300 are the test set).
TENSORGRID_EXAMPLE_TRAIN_SIZE caps the training set, as in mnist.py.
"""

import numpy as np

import mnist


def load_data():
    """((x_train, y_train), (x_test, y_test)), CIFAR-10-shaped (nothing is downloaded)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    small = digits.images.astype(np.float32) / 16.0                       # [n, 8, 8]
    big = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)               # [n, 32, 32]
    tint = np.random.RandomState(0).uniform(0.4, 1.0, (10, 3)).astype(np.float32)
    images = np.round(big[..., None] * tint[digits.target][:, None, None, :] * 255).astype(np.uint8)
    labels = digits.target.astype(np.uint8).reshape(-1, 1)
    return mnist.split(images, labels)
