"""Transformations that call a traced function per element: map (sequential and parallel),
filter, flat_map and interleave, and the reduction of a whole dataset.

Each holds a worker.functions.CompiledFunction (compiled once by its
kernel) and the values of the outer tensors the function captured; a call
runs the body within the iterator's own step (see base.Context).
"""

import collections
import concurrent.futures

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.worker.data.base import INFINITE, Dataset, Reader, close_quietly, elements, length, single


class Call:
    """A compiled function with its captured values: call(ctx, element) -> the list of results."""

    __slots__ = ("fn", "captured")

    def __init__(self, fn, captured):
        self.fn = fn
        self.captured = list(captured)

    def __call__(self, ctx, element):
        return self.fn(ctx.step, element + self.captured if self.captured else element)


class Map(Dataset):
    """fn of each element, in order."""

    def __init__(self, input_dataset, call):
        self.input, self.call = input_dataset, call

    def blocks(self, ctx):
        call = self.call
        for element in elements(self.input.blocks(ctx)):
            yield single(call(ctx, element))

    def cardinality(self):
        return self.input.cardinality()


class ParallelMap(Map):
    """fn of each element, up to `parallelism` calls running at once on threads, results in input order.

    The body's kernels release the GIL in NumPy, so heavy per-element work
    (decoding, image ops) overlaps; at most 2 x parallelism elements are in flight.
    """

    def __init__(self, input_dataset, call, parallelism):
        super().__init__(input_dataset, call)
        self.parallelism = max(1, int(parallelism))

    def blocks(self, ctx):
        call, n = self.call, self.parallelism
        pool = concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="tg-data-map")
        pending = collections.deque()
        try:
            for element in elements(self.input.blocks(ctx)):
                pending.append(pool.submit(call, ctx, element))
                if len(pending) >= 2 * n:
                    yield single(pending.popleft().result())
            while pending:
                yield single(pending.popleft().result())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class Filter(Dataset):
    """The elements for which the predicate (a bool scalar function) is true."""

    def __init__(self, input_dataset, call):
        self.input, self.call = input_dataset, call

    def blocks(self, ctx):
        call = self.call
        for block in self.input.blocks(ctx):
            k = length(block)
            if k == 1:
                if _truth(call(ctx, [c[0, ...] for c in block])):
                    yield block
                continue
            keep = np.fromiter((_truth(call(ctx, e)) for e in elements([block])), dtype=bool, count=k)
            if keep.all():
                yield block
            elif keep.any():
                yield [c[keep] for c in block]


class TakeWhile(Dataset):
    """The elements before the first one for which the predicate is false."""

    def __init__(self, input_dataset, call):
        self.input, self.call = input_dataset, call

    def blocks(self, ctx):
        source = self.input.blocks(ctx)
        try:
            for block in source:
                for r, element in enumerate(elements([block])):
                    if not _truth(self.call(ctx, element)):
                        if r:
                            yield [c[:r] for c in block]
                        return
                yield block
        finally:
            close_quietly(source)


def single_element(dataset, ctx):
    """The components of the one element of `dataset`; InvalidArgumentError, as TF's, for none or more."""
    source = elements(dataset.blocks(ctx))
    try:
        first = next(source, None)
        if first is None:
            raise errors.InvalidArgumentError(None, None, "Dataset was empty.")
        if next(source, None) is not None:
            raise errors.InvalidArgumentError(None, None, "Dataset had more than one element.")
        return first
    finally:
        source.close()


def _truth(results):
    return bool(results[0])


class FlatMap(Dataset):
    """The elements of the dataset fn returns for each input element, one dataset after the other."""

    def __init__(self, input_dataset, call):
        self.input, self.call = input_dataset, call

    def blocks(self, ctx):
        for element in elements(self.input.blocks(ctx)):
            inner, = self.call(ctx, element)
            yield from inner.blocks(ctx)


class Interleave(Dataset):
    """Elements of the datasets fn returns, `cycle_length` of them open at once, `block_length`
    consecutive elements from each in turn (TF's order: an exhausted one's place in the cycle
    is refilled from the next input element when the cycle comes back to it)."""

    def __init__(self, input_dataset, call, cycle_length, block_length):
        if cycle_length < 1 or block_length < 1:
            raise errors.InvalidArgumentError(
                None, None, f"interleave: cycle_length ({cycle_length}) and block_length ({block_length}) must be >= 1")
        self.input, self.call = input_dataset, call
        self.cycle_length, self.block_length = int(cycle_length), int(block_length)

    def blocks(self, ctx):
        inputs = elements(self.input.blocks(ctx))
        cycle = [None] * self.cycle_length
        index, open_count, end_of_input = 0, 0, False
        try:
            while not end_of_input or open_count:
                reader = cycle[index]
                if reader is not None:
                    pieces, got = reader.read(self.block_length)
                    yield from pieces
                    if got < self.block_length:
                        cycle[index] = None
                        open_count -= 1
                    index = (index + 1) % self.cycle_length
                elif not end_of_input:
                    try:
                        element = next(inputs)
                    except StopIteration:
                        end_of_input = True
                        continue
                    inner, = self.call(ctx, element)
                    cycle[index] = Reader(inner.blocks(ctx))
                    open_count += 1
                else:
                    index = (index + 1) % self.cycle_length
        finally:
            for reader in cycle:
                if reader is not None:
                    reader.close()


def reduce_dataset(dataset, call, state, ctx):
    """The final state of state = fn(state, element) over every element of `dataset`."""
    if dataset.cardinality() == INFINITE:
        raise errors.InvalidArgumentError(None, None, "cannot reduce an infinite dataset")
    state = list(state)
    for element in elements(dataset.blocks(ctx)):
        state = call(ctx, state + element)
    return state
