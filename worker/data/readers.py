"""File readers: the records of TFRecord files (tensorgrid/framework/tfrecord.py's framing)."""

import numpy as np

from tensorgrid.framework import tfrecord
from tensorgrid.worker.data.base import Dataset

RECORDS_PER_BLOCK = 256
BLOCK_BYTES = 1 << 20


class TFRecords(Dataset):
    """The records of each file in turn, as string scalars, read through `open_file(path)` (the
    kernel's file-access rule) and decompressed as `compression` says; blocks of up to 256 records."""

    def __init__(self, filenames, compression, buffer_size, open_file):
        self.filenames = [f.decode("utf-8") if isinstance(f, bytes) else str(f) for f in filenames]
        self.compression = tfrecord.compression_type(compression)
        self.buffer_size = int(buffer_size) if buffer_size > 0 else 1 << 18
        self.open_file = open_file

    def blocks(self, ctx):
        for path in self.filenames:
            with self.open_file(path) as raw:
                records = tfrecord.read_records(tfrecord.reader(raw, self.compression, self.buffer_size), path,
                                                strict=True)
                pending, size = [], 0
                for record in records:
                    pending.append(record)
                    size += len(record)
                    if len(pending) == RECORDS_PER_BLOCK or size >= BLOCK_BYTES:
                        yield [_strings(pending)]
                        pending, size = [], 0
                if pending:
                    yield [_strings(pending)]


def _strings(records):
    out = np.empty(len(records), dtype=object)
    out[:] = records
    return out
