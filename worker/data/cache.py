"""cache: the first complete pass over the input is kept, in memory or in a file, and replayed.

In memory the cache lives as long as the dataset object: in eager mode
the dataset itself, in graph mode one initialization of an iterator (a
repeat after the cache replays it every epoch). A pass that stops early
keeps nothing, as in TF.

With a filename the blocks go to `<filename>.tgcache`, written under a
temporary name and renamed when the pass completes, so a half-written
cache is never read; a later pass (in any process) that finds the file
reads it instead of the input. The file is a sequence of NumPy `.npy`
records (no pickles): per block its component count, then per component
either the array, or for strings its shape, the byte lengths and the
concatenated bytes.
"""

import itertools
import os

import numpy as np
from numpy.lib import format as npy

from tensorgrid.worker import file_access
from tensorgrid.worker.data.base import Dataset

SUFFIX = ".tgcache"
_temp_ids = itertools.count()


class Cache(Dataset):
    """The input's elements, computed once (see the module docstring)."""

    def __init__(self, input_dataset, filename, who=None):
        self.input = input_dataset
        self.filename = filename.decode() if isinstance(filename, bytes) else str(filename)
        # the file is both read and written: a worker's --allow-file-access must cover it
        self.path = file_access.check_path(self.filename + SUFFIX, "w", who) if self.filename else None
        self._blocks = None

    def blocks(self, ctx):
        if self.filename:
            yield from self._through_file(ctx)
            return
        if self._blocks is not None:
            yield from self._blocks
            return
        recorded = []
        for block in self.input.blocks(ctx):
            recorded.append(block)
            yield block
        self._blocks = recorded

    def _through_file(self, ctx):
        path = self.path
        if os.path.exists(path):
            yield from read_blocks(path)
            return
        temp = f"{path}.tmp-{os.getpid()}-{next(_temp_ids)}"
        complete = False
        try:
            with open(temp, "wb") as f:
                for block in self.input.blocks(ctx):
                    write_block(f, block)
                    yield block
            complete = True
            os.replace(temp, path)
        finally:
            if not complete and os.path.exists(temp):
                os.remove(temp)

    def cardinality(self):
        return self.input.cardinality()


def write_block(f, block):
    npy.write_array(f, np.array([len(block)], np.int64))
    for c in block:
        if c.dtype == object:
            data = [bytes(x) for x in c.ravel()]
            npy.write_array(f, np.array([1, c.ndim] + list(c.shape), np.int64))
            npy.write_array(f, np.array([len(x) for x in data], np.int64))
            npy.write_array(f, np.frombuffer(b"".join(data), np.uint8))
        else:
            npy.write_array(f, np.array([0], np.int64))
            npy.write_array(f, np.ascontiguousarray(c))


def read_blocks(path):
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            count = int(npy.read_array(f)[0])
            block = []
            for _ in range(count):
                head = npy.read_array(f)
                if head[0] == 0:
                    block.append(npy.read_array(f))
                    continue
                shape = tuple(int(d) for d in head[2:2 + int(head[1])])
                lengths = npy.read_array(f)
                data = npy.read_array(f).tobytes()
                ends = np.cumsum(lengths)
                out = np.empty(len(lengths), dtype=object)
                out[:] = [data[e - n:e] for e, n in zip(ends.tolist(), lengths.tolist())]
                block.append(out.reshape(shape))
            yield block
