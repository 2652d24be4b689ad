"""tg.keras.utils: seeds, label encoding, and the progress bar (client/keras/utils/progbar.py)."""

import random

import numpy as np

from tensorgrid.client.keras.utils.progbar import Progbar  # noqa: F401 - the progress bar, in its own module

__all__ = ["set_random_seed", "to_categorical", "normalize", "pad_sequences", "Progbar"]


def set_random_seed(seed):
    """Seeds Python's `random`, NumPy, tensorgrid's graph seed and Keras's initial values, as Keras does."""
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed} (of type {type(seed)})")
    from tensorgrid.client import random_ops
    from tensorgrid.client.keras import backend
    random.seed(seed)
    np.random.seed(seed)
    random_ops.set_seed(seed)
    backend.set_seed(seed)


def to_categorical(x, num_classes=None):
    """One-hot rows (float32) of the integer labels x; num_classes defaults to max(x) + 1."""
    x = np.asarray(x, dtype="int64")
    shape = x.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    x = x.reshape(-1)
    if num_classes is None:
        num_classes = int(x.max()) + 1
    out = np.zeros((x.shape[0], num_classes), dtype="float32")
    out[np.arange(x.shape[0]), x] = 1
    return out.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Sequences as one (len(sequences), maxlen) array: longer ones cut, shorter ones padded with `value`
    (both at the front by default, as Keras)."""
    if padding not in ("pre", "post"):
        raise ValueError(f'`padding` must be "pre" or "post". Received: padding={padding}')
    if truncating not in ("pre", "post"):
        raise ValueError(f'`truncating` must be "pre" or "post". Received: truncating={truncating}')
    lengths = [len(s) for s in sequences]
    if maxlen is None:
        maxlen = max(lengths, default=0)
    sample_shape = ()
    for s in sequences:
        if len(s):
            sample_shape = np.asarray(s).shape[1:]
            break
    out = np.full((len(sequences), maxlen) + sample_shape, value, dtype=dtype)
    for i, s in enumerate(sequences):
        if not len(s) or not maxlen:
            continue
        trunc = np.asarray(s[-maxlen:] if truncating == "pre" else s[:maxlen], dtype=dtype)
        if padding == "post":
            out[i, :len(trunc)] = trunc
        else:
            out[i, -len(trunc):] = trunc
    return out
