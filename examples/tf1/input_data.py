"""A local stand-in for TF1's `tensorflow.examples.tutorials.mnist.input_data` (no download).

`read_data_sets(train_dir, one_hot=False)` gives MNIST's shapes and API
(`.train/.validation/.test` with `images` [n, 784] float32 in [0, 1],
`labels`, `num_examples`, `next_batch(batch_size, shuffle=True)`) from
scikit-learn's handwritten digits (8x8, 1,797 images), each upscaled to 28x28
by pixel repetition and padding. TENSORGRID_EXAMPLE_TRAIN_SIZE caps the
training set, so a program's epochs stay short in tests.
"""

import os

import numpy as np


class DataSet:
    """Images and labels with MNIST's next_batch: epochs of shuffled batches."""

    def __init__(self, images, labels, seed=0):
        self._images, self._labels = images, labels
        self._rng = np.random.RandomState(seed)
        self._epochs_completed = 0
        self._index = 0

    @property
    def images(self):
        return self._images

    @property
    def labels(self):
        return self._labels

    @property
    def num_examples(self):
        return len(self._images)

    @property
    def epochs_completed(self):
        return self._epochs_completed

    def next_batch(self, batch_size, fake_data=False, shuffle=True):
        """The next batch_size examples, reshuffled at each epoch's start."""
        if self._index == 0 and shuffle:
            order = self._rng.permutation(self.num_examples)
            self._images, self._labels = self._images[order], self._labels[order]
        end = self._index + batch_size
        if end > self.num_examples:
            self._epochs_completed += 1
            rest = slice(self._index, self.num_examples)
            head_images, head_labels = self._images[rest], self._labels[rest]
            self._index = 0
            more_images, more_labels = self.next_batch(batch_size - len(head_images), shuffle=shuffle)
            return np.concatenate([head_images, more_images]), np.concatenate([head_labels, more_labels])
        batch = slice(self._index, end)
        self._index = end % self.num_examples
        return self._images[batch], self._labels[batch]


class Datasets:
    def __init__(self, train, validation, test):
        self.train, self.validation, self.test = train, validation, test


def _mnist_like():
    from sklearn.datasets import load_digits
    digits = load_digits()
    small = digits.images.astype(np.float32) / 16.0                 # [n, 8, 8]
    big = np.repeat(np.repeat(small, 3, axis=1), 3, axis=2)          # [n, 24, 24]
    big = np.pad(big, ((0, 0), (2, 2), (2, 2)))                      # [n, 28, 28], as MNIST centres its digits
    return big.reshape(len(big), 784), digits.target.astype(np.int64)


def read_data_sets(train_dir="", one_hot=False, dtype=None, reshape=True, validation_size=200, seed=None,
                   source_url=None):
    """MNIST-shaped train / validation / test splits of the digits (train_dir is ignored: nothing is downloaded)."""
    images, labels = _mnist_like()
    if one_hot:
        labels = np.eye(10, dtype=np.float32)[labels]
    if not reshape:
        images = images.reshape(-1, 28, 28, 1)
    order = np.random.RandomState(0).permutation(len(images))
    images, labels = images[order], labels[order]
    test, validation, train = slice(0, 300), slice(300, 300 + validation_size), slice(300 + validation_size, None)
    cap = int(os.environ.get("TENSORGRID_EXAMPLE_TRAIN_SIZE", "0"))
    train_images, train_labels = images[train], labels[train]
    if cap:
        train_images, train_labels = train_images[:cap], train_labels[:cap]
    return Datasets(DataSet(train_images, train_labels), DataSet(images[validation], labels[validation]),
                    DataSet(images[test], labels[test]))
