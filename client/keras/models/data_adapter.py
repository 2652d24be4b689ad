"""What fit/evaluate/predict take: numpy arrays (and nests of them) or a tg.data Dataset, cut into batches.

Arrays are sliced into batches of `batch_size` (32 by default; the last one
smaller), in a fresh random order each epoch when shuffling; a Dataset is
iterated as it is (its elements `x`, `(x, y)` or `(x, y, sample_weight)`).
"""

import math

import numpy as np

from tensorgrid.client.keras.layers.base import KerasTensor, flatten, map_structure

__all__ = ["Batches", "unpack_x_y_sample_weight", "train_validation_split"]


def is_dataset(x):
    from tensorgrid.client.data import dataset_ops
    return isinstance(x, dataset_ops.Dataset)


def unpack_x_y_sample_weight(data):
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, sample_weight)`, "
                     f"found: {data!r:.200}")


def _num_samples(arrays):
    sizes = {int(np.shape(a)[0]) for a in flatten(arrays) if a is not None}
    if len(sizes) > 1:
        raise ValueError(f"Data cardinality is ambiguous: the arrays hold {sorted(sizes)} samples. Make sure all "
                         f"arrays contain the same number of samples.")
    return sizes.pop() if sizes else 0


def _to_array(x):
    if x is None:
        return None
    if hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    return np.asarray(x)


def _take(structure, indices):
    return map_structure(lambda a: None if a is None else a[indices], structure)


def train_validation_split(arrays, validation_split):
    """(train, validation) of `arrays`: the last `validation_split` of the samples validate, as Keras."""
    arrays = map_structure(_to_array, arrays)
    n = _num_samples(arrays)
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split it into a "
                         f"validation and training set as specified by `validation_split={validation_split}`. "
                         f"Either provide more data, or a different value for the `validation_split` argument.")
    return _take(arrays, slice(0, split_at)), _take(arrays, slice(split_at, n))


def class_weights_to_sample_weights(y, class_weight, sample_weight=None):
    """Per-sample weights from {class: weight} (labels as indices, or one-hot rows)."""
    y = _to_array(y)
    labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
    weights = np.array([class_weight.get(int(c), 1.0) for c in labels], dtype="float32")
    if sample_weight is not None:
        weights = weights * _to_array(sample_weight)
    return weights


class Batches:
    """The batches of one epoch, again for every epoch: (step, (x, y, sample_weight)) pairs."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=None, steps=None, shuffle=False,
                 class_weight=None):
        self.steps = steps
        if is_dataset(x):
            if y is not None:
                raise ValueError("`y` argument is not supported when using dataset as input.")
            self.dataset = x
            self.num_batches = steps
            self._iterator = None
            return
        self.dataset = None
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
            raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size}")
        self.batch_size = int(batch_size or 32)
        self.x, self.y = map_structure(_to_array, x), map_structure(_to_array, y)
        self.sample_weight = map_structure(_to_array, sample_weight)
        if class_weight is not None:
            if y is None:
                raise ValueError("`class_weight` needs targets `y`")
            self.sample_weight = class_weights_to_sample_weights(self.y, class_weight, self.sample_weight)
        self.n = _num_samples((self.x, self.y, self.sample_weight))
        self.shuffle = shuffle
        full = math.ceil(self.n / self.batch_size)
        self.num_batches = min(full, steps) if steps is not None else full

    def epoch(self):
        if self.dataset is not None:
            yield from self._dataset_epoch()
            return
        order = np.random.permutation(self.n) if self.shuffle else None
        for step in range(self.num_batches):
            part = slice(step * self.batch_size, min((step + 1) * self.batch_size, self.n))
            indices = order[part] if order is not None else part
            yield step, (_take(self.x, indices), _take(self.y, indices), _take(self.sample_weight, indices))

    def _dataset_epoch(self):
        if self.steps is None or self._iterator is None:
            self._iterator = iter(self.dataset)
        step = 0
        while self.steps is None or step < self.steps:
            try:
                element = next(self._iterator)
            except StopIteration:
                if self.steps is not None:
                    import warnings
                    warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset "
                                  "or generator can generate at least `steps_per_epoch * epochs` batches.")
                break
            yield step, unpack_x_y_sample_weight(element)
            step += 1
        if self.num_batches is None:
            self.num_batches = step


def to_tensors(data):
    """The batch with numpy arrays (and eager tensors) as they go into the step function."""
    return map_structure(lambda a: a if a is None or hasattr(a, "_is_eager_tensor") else np.asarray(a), data)


def specs(x):
    """KerasTensors shaped like the arrays of batch x, to find the model's output shapes without running it."""
    def spec(a):
        dtype = a.dtype.name if hasattr(a.dtype, "name") and not isinstance(a.dtype, np.dtype) else str(a.dtype)
        if dtype == "float64":
            dtype = "float32"
        return KerasTensor(tuple(np.shape(a)), dtype)
    return map_structure(spec, x)


def concat_outputs(outputs):
    """The per-batch outputs of predict joined along the batch axis, in the outputs' structure."""
    first = outputs[0]
    leaves = [flatten(o) for o in outputs]
    joined = [np.concatenate([np.asarray(batch[i]) for batch in leaves], axis=0) for i in range(len(leaves[0]))]
    it = iter(joined)
    return map_structure(lambda _: next(it), first)
