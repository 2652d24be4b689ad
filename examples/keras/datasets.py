"""Local stand-ins for `keras.datasets` (which download): MNIST- and IMDB-shaped arrays from scikit-learn's digits.

- `mnist.load_data()`: ((x_train, y_train), (x_test, y_test)), uint8 images [n, 28, 28] (the 8x8 digits
  upscaled as examples/tf1/input_data.py does, then repeated with a one-pixel shift to 60,000 + 10,000)
  and int labels, MNIST's shapes and dtypes.
- `imdb.load_data(num_words=None, maxlen=None)`: lists of word ids (1 = start, words from 4), labels 0/1:
  each digit read row by row as words (pixel intensity 0-16 at its column: 4 + 17 * column + value), the
  label whether the digit is 5 or more. 25,000 + 25,000 sequences, as IMDB's splits; `get_word_index()`.
"""

import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tf1"))
import input_data  # noqa: E402 - the digits at MNIST's size


def _digits():
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images.astype(np.int64), digits.target.astype(np.int64)


def _mnist_load_data(path="mnist.npz"):
    images, labels = input_data._mnist_like()
    images = (images.reshape(-1, 28, 28) * 255).round().astype(np.uint8)
    rng = np.random.RandomState(0)

    def tile(n, offset):
        index = rng.randint(0, len(images), size=n)
        shift = rng.randint(-1, 2, size=(n, 2))
        out = np.stack([np.roll(np.roll(images[i], dx, 0), dy, 1) for i, (dx, dy) in zip(index, shift)])
        return out, labels[index].astype(np.uint8)
    return tile(60000, 0), tile(10000, 1)


def _imdb_load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
                    index_from=3, **kwargs):
    images, labels = _digits()
    words = 1 + index_from + np.arange(8)[None, None, :] * 17 + images       # [n, 8, 8]
    sequences = [[start_char] + list(w.reshape(-1)) for w in words]
    rng = np.random.RandomState(seed)

    def split(n):
        index = rng.randint(0, len(sequences), size=n)
        xs = [list(sequences[i]) for i in index]
        if num_words is not None:
            xs = [[t if t < num_words else oov_char for t in x] for x in xs]
        if maxlen is not None:
            xs = [x[:maxlen] for x in xs]
        out = np.empty(n, dtype=object)
        out[:] = xs
        return out, (labels[index] >= 5).astype(np.int64)
    return split(25000), split(25000)


def _imdb_word_index(path="imdb_word_index.json"):
    return {f"col{c}_ink{v}": 1 + 17 * c + v for c in range(8) for v in range(17)}


mnist = types.SimpleNamespace(load_data=_mnist_load_data)
imdb = types.SimpleNamespace(load_data=_imdb_load_data, get_word_index=_imdb_word_index)
