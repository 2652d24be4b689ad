"""batch, padded_batch, unbatch and window: elements into batches and back, or into windows."""

import collections

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.worker.data.base import INFINITE, UNKNOWN, Dataset, Reader, close_quietly, concat, elements, length


def _batched_cardinality(n, batch_size, drop_remainder):
    if n in (INFINITE, UNKNOWN):
        return n
    return n // batch_size if drop_remainder else -(-n // batch_size)


def _check_batch_size(batch_size):
    if batch_size <= 0:
        raise errors.InvalidArgumentError(None, None, f"Batch size must be greater than zero, got {batch_size}.")
    return int(batch_size)


class Batch(Dataset):
    """Consecutive elements stacked `batch_size` at a time (the last batch smaller unless drop_remainder).

    Where the input hands out a block with several batches' worth of rows
    (an in-memory source), those batches are one reshaped view of it: no
    element is touched one by one and nothing is copied.
    """

    def __init__(self, input_dataset, batch_size, drop_remainder):
        self.input = input_dataset
        self.batch_size = _check_batch_size(batch_size)
        self.drop_remainder = bool(drop_remainder)

    def blocks(self, ctx):
        n = self.batch_size
        reader = Reader(self.input.blocks(ctx))
        try:
            while True:
                avail = reader.available()
                if not avail:
                    return
                if avail >= n:
                    m = avail // n
                    yield [c.reshape((m, n) + c.shape[1:]) for c in reader.take(m * n)]
                    continue
                pieces, got = reader.read(n)
                if got < n and self.drop_remainder:
                    return
                yield [c[None] for c in concat(pieces)]
        finally:
            reader.close()

    def cardinality(self):
        return _batched_cardinality(self.input.cardinality(), self.batch_size, self.drop_remainder)


class PaddedBatch(Dataset):
    """Batches of elements padded to `padded_shapes` (-1: the largest in the batch) with `padding_values`."""

    def __init__(self, input_dataset, batch_size, padded_shapes, padding_values, drop_remainder):
        self.input = input_dataset
        self.batch_size = _check_batch_size(batch_size)
        self.padded_shapes = [tuple(int(d) for d in np.ravel(s)) for s in padded_shapes]
        self.padding_values = [np.asarray(v) for v in padding_values]
        self.drop_remainder = bool(drop_remainder)

    def blocks(self, ctx):
        batch = []
        for element in elements(self.input.blocks(ctx)):
            batch.append(element)
            if len(batch) == self.batch_size:
                yield self._pad(batch)
                batch = []
        if batch and not self.drop_remainder:
            yield self._pad(batch)

    def _pad(self, batch):
        out = []
        for i, (want, pad) in enumerate(zip(self.padded_shapes, self.padding_values)):
            parts = [e[i] for e in batch]
            rank = len(want)
            for p in parts:
                if p.ndim != rank:
                    raise errors.InvalidArgumentError(
                        None, None, f"padded_batch: component {i} has rank {p.ndim}, its padded shape "
                        f"{list(want)} rank {rank}")
            shape = tuple(max(p.shape[d] for p in parts) if want[d] < 0 else want[d] for d in range(rank))
            for p in parts:
                if any(p.shape[d] > shape[d] for d in range(rank)):
                    raise errors.InvalidArgumentError(
                        None, None, f"Attempted to pad to a smaller size than the input element: component {i} "
                        f"has shape {list(p.shape)}, padded shape {list(shape)}.")
            result = np.full((len(parts),) + shape, pad, dtype=parts[0].dtype)
            for j, p in enumerate(parts):
                result[(j,) + tuple(slice(0, d) for d in p.shape)] = p
            out.append(result[None])
        return out

    def cardinality(self):
        return _batched_cardinality(self.input.cardinality(), self.batch_size, self.drop_remainder)


class Unbatch(Dataset):
    """The rows of each element: a block of k elements of n rows each becomes a block of k * n."""

    def __init__(self, input_dataset):
        self.input = input_dataset

    def blocks(self, ctx):
        for block in self.input.blocks(ctx):
            sizes = {c.shape[1] for c in block}
            if len(sizes) > 1:
                raise errors.InvalidArgumentError(
                    None, None, "Input element must have the same batch size in each component. Component sizes: "
                    + ", ".join(str(c.shape[1]) for c in block))
            rows = length(block) * sizes.pop()
            if rows:
                yield [c.reshape((rows,) + c.shape[2:]) for c in block]


class Window(Dataset):
    """Windows of `size` elements taken every `stride`, one starting every `shift` elements (TF's window):
    each output element has, per component, a dataset of that component's values in the window."""

    def __init__(self, input_dataset, size, shift, stride, drop_remainder):
        for what, v in (("size", size), ("shift", shift), ("stride", stride)):
            if v <= 0:
                raise errors.InvalidArgumentError(None, None, f"Window {what} must be greater than zero, but got "
                                                  f"{v}.")
        self.input = input_dataset
        self.size, self.shift, self.stride = int(size), int(shift), int(stride)
        self.drop_remainder = bool(drop_remainder)

    def blocks(self, ctx):
        span = (self.size - 1) * self.stride + 1
        source = elements(self.input.blocks(ctx))
        buffer, first, done = collections.deque(), 0, False   # `first`: the input index of buffer[0]
        start = 0
        try:
            while True:
                while not done and first + len(buffer) < start + span:
                    element = next(source, None)
                    if element is None:
                        done = True
                    elif first + len(buffer) < start:
                        first += 1   # between windows (shift > span): skipped
                    else:
                        buffer.append(element)
                while first < start and buffer:
                    buffer.popleft()
                    first += 1
                picked = [buffer[i] for i in range(0, min(span, len(buffer)), self.stride)]
                if not picked or (len(picked) < self.size and self.drop_remainder):
                    return
                yield [_dataset_of([e[i] for e in picked]) for i in range(len(picked[0]))]
                start += self.shift
        finally:
            close_quietly(source)

    def cardinality(self):
        n = self.input.cardinality()
        if n in (INFINITE, UNKNOWN):
            return n
        if self.drop_remainder:
            span = (self.size - 1) * self.stride + 1
            return 0 if n < span else (n - span) // self.shift + 1
        return -(-n // self.shift)


def _dataset_of(values):
    """A block of one element: a 0-d variant holding the dataset of `values` (one component's)."""
    from tensorgrid.worker.data.sources import TensorSlices, Elements
    try:
        inner = TensorSlices([np.stack(values)])
    except ValueError:  # shapes differ: element by element
        inner = Elements(values)
    out = np.empty(1, dtype=object)
    out[0] = inner
    return out
