"""Transformations of the sequence of elements: repeat, take, skip, shard, zip, concatenate and
choose_from_datasets's directed interleave.

They work on whole blocks (slicing them where a count falls inside one),
so they cost nothing per element.
"""

from tensorgrid.framework import errors
from tensorgrid.worker.data.base import INFINITE, UNKNOWN, Dataset, Reader, close_quietly, elements, length


class Repeat(Dataset):
    """The input `count` times over (count < 0: forever); each pass is a new pass of the input,
    so a shuffle before the repeat shuffles each pass anew."""

    def __init__(self, input_dataset, count):
        self.input, self.count = input_dataset, int(count)

    def blocks(self, ctx):
        done = 0
        while self.count < 0 or done < self.count:
            produced = False
            for block in self.input.blocks(ctx):
                produced = True
                yield block
            if not produced:
                return  # an empty input stays empty however often it is repeated
            done += 1

    def cardinality(self):
        n = self.input.cardinality()
        if self.count < 0:
            return 0 if n == 0 else INFINITE
        if self.count == 0:
            return 0
        if n in (INFINITE, UNKNOWN):
            return n
        return self.count * n


class Take(Dataset):
    """The first `count` elements (count < 0: all); reads no further than it must."""

    def __init__(self, input_dataset, count):
        self.input, self.count = input_dataset, int(count)

    def blocks(self, ctx):
        if self.count < 0:
            yield from self.input.blocks(ctx)
            return
        remaining = self.count
        if not remaining:
            return
        source = self.input.blocks(ctx)
        try:
            for block in source:
                k = length(block)
                if k < remaining:
                    remaining -= k
                    yield block
                    continue
                yield block if k == remaining else [c[:remaining] for c in block]
                return
        finally:
            close_quietly(source)

    def cardinality(self):
        n = self.input.cardinality()
        if n == UNKNOWN:
            return UNKNOWN
        if self.count < 0:
            return n
        if n == INFINITE:
            return self.count
        return min(n, self.count)


class Skip(Dataset):
    """All but the first `count` elements (count < 0: none)."""

    def __init__(self, input_dataset, count):
        self.input, self.count = input_dataset, int(count)

    def blocks(self, ctx):
        remaining = self.count
        for block in self.input.blocks(ctx):
            if remaining < 0:
                continue
            k = length(block)
            if remaining >= k:
                remaining -= k
                continue
            yield [c[remaining:] for c in block] if remaining else block
            remaining = 0

    def cardinality(self):
        n = self.input.cardinality()
        if n in (INFINITE, UNKNOWN):
            return n
        if self.count < 0:
            return 0
        return max(0, n - self.count)


class Shard(Dataset):
    """Every `num_shards`-th element, starting with element `index`."""

    def __init__(self, input_dataset, num_shards, index):
        num_shards, index = int(num_shards), int(index)
        if num_shards < 1:
            raise errors.InvalidArgumentError(None, None, f"Number of shards must be greater than zero (got {num_shards}).")
        if not 0 <= index < num_shards:
            raise errors.InvalidArgumentError(
                None, None, f"Index must be between 0 and {num_shards - 1} (currently index = {index}).")
        self.input, self.num_shards, self.index = input_dataset, num_shards, index

    def blocks(self, ctx):
        n, offset = self.num_shards, 0
        for block in self.input.blocks(ctx):
            k = length(block)
            first = (self.index - offset) % n
            offset += k
            if first < k:
                yield [c[first::n] for c in block]

    def cardinality(self):
        n = self.input.cardinality()
        if n in (INFINITE, UNKNOWN):
            return n
        return n // self.num_shards + (1 if self.index < n % self.num_shards else 0)


class Zip(Dataset):
    """Elements of several datasets side by side, components concatenated; ends with the shortest."""

    def __init__(self, inputs):
        self.inputs = list(inputs)

    def blocks(self, ctx):
        readers = [Reader(d.blocks(ctx)) for d in self.inputs]
        try:
            while True:
                k = min(r.available() for r in readers)
                if not k:
                    return
                yield [c for r in readers for c in r.take(k)]
        finally:
            for r in readers:
                r.close()

    def cardinality(self):
        out = INFINITE
        for d in self.inputs:
            n = d.cardinality()
            if n == UNKNOWN:
                return UNKNOWN
            if n != INFINITE:
                out = n if out == INFINITE else min(out, n)
        return out


class Concatenate(Dataset):
    """The elements of one dataset, then those of another."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def blocks(self, ctx):
        yield from self.first.blocks(ctx)
        yield from self.second.blocks(ctx)

    def cardinality(self):
        a, b = self.first.cardinality(), self.second.cardinality()
        if INFINITE in (a, b):
            return INFINITE
        if UNKNOWN in (a, b):
            return UNKNOWN
        return a + b


class DirectedInterleave(Dataset):
    """For each index the selector gives, the next element of that input; an exhausted input ends the
    whole (stop_on_empty) or is skipped from then on (the end: when every input is exhausted)."""

    def __init__(self, selector, inputs, stop_on_empty):
        self.selector, self.inputs, self.stop_on_empty = selector, list(inputs), bool(stop_on_empty)

    def blocks(self, ctx):
        readers = [Reader(d.blocks(ctx)) for d in self.inputs]
        n, live = len(readers), len(readers)
        exhausted = [False] * n
        choices = elements(self.selector.blocks(ctx))
        try:
            for choice in choices:
                i = int(choice[0])
                if not 0 <= i < n:
                    raise errors.InvalidArgumentError(None, None, f"Selector index out of range: {i} >= {n}")
                if exhausted[i]:
                    continue
                if readers[i].available():
                    yield readers[i].take(1)
                    continue
                exhausted[i] = True
                live -= 1
                if self.stop_on_empty or not live:
                    return
        finally:
            choices.close()
            for r in readers:
                r.close()
