"""The runtime dataset protocol: datasets produce blocks of elements.

A dataset kernel's output is a `Dataset`: a small description of a pipeline
stage (its inputs, parameters and compiled functions) that makes iterators.
`blocks(ctx)` returns an iterator over blocks: a block is a list holding one
numpy array per component of the element, all with the same leading
dimension k >= 1, the k consecutive elements the block carries. In-memory
sources hand out large blocks of views (a slice of the source arrays), so a
`batch` downstream slices batches out of them without touching elements one
by one; a stage that works element by element (map, a generator) hands out
blocks of one.

A new source (a file reader, say) subclasses `Dataset`, implements
`blocks(ctx)` (a generator is the easy way) and, when it knows it,
`cardinality()`, and registers the op whose kernel builds it with
`tensorgrid.ops.dataset_ops.register_dataset`.
"""

import functools
import os

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.worker.executor import Step

INFINITE = -1
UNKNOWN = -2

# Rows an in-memory source puts in one block: enough to amortize Python per block,
# few enough bytes that a shuffle's gather of one block stays small.
BLOCK_BYTES = 1 << 22
MAX_BLOCK_ROWS = 4096


class Context:
    """What the iterators of one pipeline share: the step its functions run in, and its stop event.

    Functions (map, filter, ...) run outside any session step, in a step of
    the iterator's own; `stop()` cancels it, so functions still running end,
    and background threads (prefetch, parallel map) see `stopped`.
    """

    def __init__(self):
        self.step = Step(0, None)

    @property
    def stopped(self):
        return self.step.cancelled.is_set()

    def stop(self):
        self.step.cancelled.set()


class Dataset:
    """A pipeline stage on a device; see the module docstring for the block protocol."""

    def blocks(self, ctx):
        """An iterator over this dataset's blocks for one pass (an epoch), in `ctx`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement blocks()")

    def cardinality(self):
        """The number of elements, INFINITE or UNKNOWN."""
        return UNKNOWN

    def __repr__(self):
        return f"<runtime {type(self).__name__}>"


def block_rows(components):
    """Rows per block for slicing `components` (arrays with a common leading dimension)."""
    row_bytes = sum(max(1, c[:1].nbytes) for c in components) or 1
    return int(max(1, min(MAX_BLOCK_ROWS, BLOCK_BYTES // row_bytes)))


def single(values):
    """A block of one element from its component values."""
    return [np.asarray(v)[None] for v in values]


def length(block):
    return block[0].shape[0] if block else 0


def elements(blocks):
    """The elements (lists of component arrays) of an iterator over blocks, one by one."""
    for block in blocks:
        if len(block) == 1:
            c, = block
            for r in range(c.shape[0]):
                yield [c[r, ...]]
        else:
            for r in range(block[0].shape[0]):
                yield [c[r, ...] for c in block]


class Reader:
    """Reads rows from an iterator over blocks, a view of at most one block at a time."""

    __slots__ = ("_blocks", "_block", "_row", "_rows", "done")

    def __init__(self, blocks):
        self._blocks = blocks
        self._block = None
        self._row = 0
        self._rows = 0
        self.done = False

    def available(self):
        """Rows left in the current block, reading the next block when it is used up; 0 at the end."""
        while self._row >= self._rows:
            if self.done:
                return 0
            try:
                block = next(self._blocks)
            except StopIteration:
                self.done = True
                self._block = None
                return 0
            self._block, self._row, self._rows = block, 0, length(block)
        return self._rows - self._row

    def take(self, n):
        """The next n rows (n <= available()) as views into the current block."""
        r = self._row
        self._row = r + n
        if r == 0 and n == self._rows:
            return self._block
        return [c[r:r + n] for c in self._block]

    def read(self, n):
        """Up to n rows as a list of pieces (blocks), fewer only at the end."""
        pieces, got = [], 0
        while got < n:
            avail = self.available()
            if not avail:
                break
            k = min(avail, n - got)
            pieces.append(self.take(k))
            got += k
        return pieces, got

    def close(self):
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()


def concat(pieces, what="batch"):
    """Joins blocks row-wise into one block; InvalidArgumentError, as TF words it, for shapes that differ."""
    if len(pieces) == 1:
        return pieces[0]
    out = []
    for i in range(len(pieces[0])):
        parts = [p[i] for p in pieces]
        first = parts[0].shape[1:]
        for j, p in enumerate(parts):
            if p.shape[1:] != first:
                index = sum(length(q) for q in pieces[:j])
                raise errors.InvalidArgumentError(
                    None, None, f"Cannot {what} tensors with different shapes in component {i}. First element had "
                    f"shape {list(first)} and element {index} had shape {list(p.shape[1:])}.")
        out.append(np.concatenate(parts))
    return out


def close_quietly(it):
    """Closes a block iterator (a generator's finally clauses run), if it can be closed."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


@functools.cache
def autotune_parallelism():
    """The parallelism AUTOTUNE stands for here: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
