"""Sources: datasets of in-memory tensors, of a range of integers, and of a Python generator."""

import numpy as np

from tensorgrid.client.nest import flatten_up_to
from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.misc_ops import python_error
from tensorgrid.worker.data.base import INFINITE, Dataset, block_rows, single


def _encode(x):
    return x.encode("utf-8") if isinstance(x, str) else x


def _as_bytes(arr):
    """A string array with every element bytes, as TF's strings are (str elements encoded as UTF-8)."""
    if arr.size and any(isinstance(x, str) for x in arr.flat):
        return np.vectorize(_encode, otypes=[object])(arr)
    return arr


def _readonly(arr):
    """A read-only view of arr: elements handed out are views of the source, which must not change."""
    arr = np.asarray(arr)
    arr = (_as_bytes(arr) if arr.dtype == object else arr).view()
    arr.flags.writeable = False
    return arr


class TensorSlices(Dataset):
    """The slices of its components along their first dimension, in blocks of views."""

    def __init__(self, components):
        components = [_readonly(c) for c in components]
        for i, c in enumerate(components):
            if c.ndim == 0:
                raise errors.InvalidArgumentError(None, None, f"component {i} is a scalar; slicing needs rank >= 1")
        sizes = {c.shape[0] for c in components}
        if len(sizes) > 1:
            shapes = ", ".join(str(list(c.shape)) for c in components)
            raise errors.InvalidArgumentError(
                None, None, f"all components must have the same size in the 0th dimension, got shapes {shapes}")
        self.components = components
        self.size = components[0].shape[0]

    def blocks(self, ctx):
        step = block_rows(self.components)
        for start in range(0, self.size, step):
            yield [c[start:start + step] for c in self.components]

    def cardinality(self):
        return self.size


class Tensors(Dataset):
    """One element: its components."""

    def __init__(self, components):
        self.block = [_readonly(c)[None] for c in components]

    def blocks(self, ctx):
        yield self.block

    def cardinality(self):
        return 1


class Elements(Dataset):
    """Single-component elements of any shapes, in blocks of one (a window of elements that differ)."""

    def __init__(self, values):
        self.values = [_readonly(v) for v in values]

    def blocks(self, ctx):
        for v in self.values:
            yield [v[None]]

    def cardinality(self):
        return len(self.values)


class Random(Dataset):
    """Random int64 values without end from NumPy's Philox, seeded by (seed, seed2): each pass the same
    sequence unless `rerandomize` (then pass k is seeded by k as well); (0, 0) draws a fresh seed once."""

    def __init__(self, seed, seed2, rerandomize):
        self._key = [np.random.SeedSequence().entropy] if seed == 0 and seed2 == 0 else \
            [seed & (2 ** 63 - 1), seed2 & (2 ** 63 - 1)]
        self.rerandomize, self._passes = bool(rerandomize), 0

    def blocks(self, ctx):
        self._passes += 1
        key = self._key + ([self._passes] if self.rerandomize else [])
        rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(key)))
        info = np.iinfo(np.int64)
        while True:
            yield [rng.integers(info.min, info.max, size=1024, dtype=np.int64, endpoint=True)]

    def cardinality(self):
        return INFINITE


class Range(Dataset):
    """start, start + step, ... up to (not including) stop, as TF's range (and Python's)."""

    def __init__(self, start, stop, step, dtype):
        if step == 0:
            raise errors.InvalidArgumentError(None, None, "step must be a non-zero integer.")
        self.start, self.stop, self.step = int(start), int(stop), int(step)
        self.dtype = np.dtype(dtype)
        self.size = len(range(self.start, self.stop, self.step))

    def blocks(self, ctx):
        chunk = 4096
        for i in range(0, self.size, chunk):
            n = min(chunk, self.size - i)
            first = self.start + i * self.step
            yield [np.arange(first, first + n * self.step, self.step, dtype=np.int64).astype(self.dtype, copy=False)]

    def cardinality(self):
        return self.size


def convert_component(value, dtype, shape, where):
    """value as an array of `dtype` whose shape fits `shape` (TensorShape); InvalidArgumentError otherwise."""
    try:
        if dtype is dtypes.string:
            arr = _as_bytes(np.asarray(value, dtype=object))
        else:
            arr = np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError):
        raise errors.InvalidArgumentError(
            None, None, f"{where}: TypeError: `generator` yielded an element that could not be converted to the "
            f"expected type. The expected type was {dtype.name}, but the yielded element was {value!r:.200}.") from None
    if not TensorShape(shape).is_compatible_with(arr.shape):
        raise errors.InvalidArgumentError(
            None, None, f"{where}: `generator` yielded an element of shape {tuple(arr.shape)} where an element of "
            f"shape {TensorShape(shape)} was expected.")
    return arr


class Generator(Dataset):
    """The elements a Python generator yields: `make(*args)` is called once per pass.

    `structure` is the client's nest spec of an element, `types`/`shapes`
    its components' dtypes and TensorShapes; each yielded value is
    flattened along the structure and converted (as TF's from_generator
    converts, with numpy's rules), its shape checked.
    """

    def __init__(self, make, args, structure, types, shapes, where):
        self.make, self.args = make, args
        self.structure, self.types, self.shapes = structure, types, shapes
        self.where = where

    def blocks(self, ctx):
        where = self.where
        try:
            values = iter(self.make(*self.args))
        except Exception as e:  # the user's callable failed
            raise python_error(e, where) from None
        while True:
            try:
                value = next(values)
            except StopIteration:
                return
            except Exception as e:  # the user's generator failed: its class mapped as py_func maps it
                raise python_error(e, where) from None
            try:
                leaves = flatten_up_to(self.structure, value, "`generator` yielded an element that did not match "
                                       "the expected structure")
            except TypeError as e:
                raise errors.InvalidArgumentError(None, None, f"{where}: TypeError: {e}") from None
            yield single(convert_component(v, t, s, where) for v, t, s in zip(leaves, self.types, self.shapes))
