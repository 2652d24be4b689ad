"""shuffle: TF's buffer algorithm, vectorized over blocks.

The semantics are TF's: the buffer first fills with `buffer_size`
elements; then each incoming element takes the place of a buffered one
drawn uniformly at random, which is output; at the end of the input the
rest of the buffer comes out in random order. For a block of k incoming
elements the k draws are made at once and the k outputs computed with a
few NumPy gathers (which element each draw finds in its slot follows from
the earlier draws of the same slot), so a shuffle over an in-memory source
costs no Python per element. Buffers of elements whose shapes differ
fall back to a list of elements, with the same draws.

The random numbers come from NumPy's Philox seeded with (seed, seed2,
pass number), so the order is deterministic for a given seed but differs
from TF's for the same seed. Each pass over the dataset (a new iterator,
or a new epoch of a repeat after it) draws a new order unless
reshuffle_each_iteration is off; in eager mode the dataset object lives on,
so iterating it again reshuffles, while in graph mode each initialization
of an iterator builds the dataset anew and so starts the same sequence of
orders over, as TF's graph mode does.
"""

import itertools

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.worker.data.base import Dataset, length

DRAIN_ROWS = 1024  # rows per block when the buffer empties at the end


class Shuffle(Dataset):
    """The input's elements in an order drawn through a buffer of `buffer_size` elements."""

    def __init__(self, input_dataset, buffer_size, seed, seed2, reshuffle_each_iteration):
        if buffer_size <= 0:
            raise errors.InvalidArgumentError(None, None, f"buffer_size must be greater than zero, got {buffer_size}.")
        self.input = input_dataset
        self.buffer_size = int(buffer_size)
        self.reshuffle = bool(reshuffle_each_iteration)
        seed, seed2 = int(seed), int(seed2)
        # (0, 0) means unseeded: fresh entropy, drawn once, so passes still differ (or, without
        # reshuffling, repeat) as they do with a seed.
        self._key = [np.random.SeedSequence().entropy] if seed == 0 and seed2 == 0 else [seed & (2**63 - 1),
                                                                                       seed2 & (2**63 - 1)]
        self._passes = itertools.count()

    def _rng(self):
        number = next(self._passes) if self.reshuffle else 0
        return np.random.Generator(np.random.Philox(np.random.SeedSequence(self._key + [number])))

    def blocks(self, ctx):
        rng = self._rng()
        size = self.buffer_size
        buf = _Buffer(size)
        for block in self.input.blocks(ctx):
            k = length(block)
            if buf.count < size:
                need = size - buf.count
                if k <= need:
                    buf.append(block)
                    continue
                buf.append([c[:need] for c in block])
                block = [c[need:] for c in block]
                k -= need
            yield from buf.exchange(rng.integers(0, size, size=k), block)
        yield from buf.drain(rng.permutation(buf.count))

    def cardinality(self):
        return self.input.cardinality()


class _Buffer:
    """The shuffle buffer: one array per component (rows are slots) while shapes agree, else a list."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.count = 0
        self.arrays = None   # per component, rows [0, count) in use
        self.items = None    # list mode: elements (lists of component arrays)

    def append(self, block):
        k = length(block)
        if self.items is None and self.arrays is not None and not self._fits(block):
            self._to_list()
        if self.items is not None:
            self.items.extend([c[r, ...] for c in block] for r in range(k))
            self.count += k
            return
        if self.arrays is None:
            self.arrays = [np.empty((min(self.capacity, max(k, 1024)),) + c.shape[1:], c.dtype) for c in block]
        need = self.count + k
        if need > self.arrays[0].shape[0]:
            rows = min(self.capacity, max(need, 2 * self.arrays[0].shape[0]))
            grown = []
            for a in self.arrays:
                b = np.empty((rows,) + a.shape[1:], a.dtype)
                b[:self.count] = a[:self.count]
                grown.append(b)
            self.arrays = grown
        for a, c in zip(self.arrays, block):
            a[self.count:need] = c
        self.count = need

    def _fits(self, block):
        return all(a.shape[1:] == c.shape[1:] and a.dtype == c.dtype for a, c in zip(self.arrays, block))

    def _to_list(self):
        self.items = [[a[r, ...].copy() for a in self.arrays] for r in range(self.count)]
        self.arrays = None

    def exchange(self, draws, incoming):
        """Blocks of the elements the draws pick; each incoming element takes its draw's slot."""
        if self.items is None and not self._fits(incoming):
            self._to_list()
        if self.items is not None:
            items = self.items
            for r, j in enumerate(draws.tolist()):
                out = items[j]
                items[j] = [c[r, ...] for c in incoming]
                yield [np.asarray(v)[None] for v in out]
            return
        order = np.argsort(draws, kind="stable")   # steps grouped by slot, in step order within a slot
        slots = draws[order]
        later = np.flatnonzero(slots[1:] == slots[:-1]) + 1   # positions of a slot's second, third, ... draw
        last = np.ones(len(draws), dtype=bool)
        last[later - 1] = False
        # A slot's first draw finds what the buffer held; a later one the element the previous draw put there.
        refilled, earlier = order[later], order[later - 1]
        kept_slots, kept_steps = slots[last], order[last]
        out = []
        for a, c in zip(self.arrays, incoming):
            o = np.take(a, draws, axis=0)
            if len(refilled):
                o[refilled] = c[earlier]
            a[kept_slots] = c[kept_steps]
            out.append(o)
        yield out

    def drain(self, permutation):
        """The buffered elements in the order of `permutation`, in blocks."""
        if self.items is not None:
            for j in permutation.tolist():
                yield [np.asarray(v)[None] for v in self.items[j]]
            return
        for start in range(0, len(permutation), DRAIN_ROWS):
            picked = permutation[start:start + DRAIN_ROWS]
            yield [a[picked] for a in self.arrays]
