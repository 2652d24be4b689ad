"""File readers: the records of TFRecord files (tensorgrid/framework/tfrecord.py's framing)."""

import csv
import io

import numpy as np

from tensorgrid.framework import errors, tfrecord
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


class CsvRecords(Dataset):
    """The rows of CSV files (tf.data.experimental.CsvDataset): one component per selected column, of the
    dtype of its record default; an empty field (or one equal to na_value) takes the default, and a required
    column (a default with no value) must not be empty."""

    def __init__(self, filenames, defaults, header, field_delim, use_quote_delim, na_value, select_cols, open_file):
        self.filenames = [f.decode("utf-8") if isinstance(f, bytes) else str(f) for f in filenames]
        self.defaults = defaults            # [(numpy dtype, default value or None)] per output column
        self.header, self.delim, self.quote, self.na_value = header, field_delim, use_quote_delim, na_value
        self.select_cols = select_cols      # the column indices read, increasing (None: every column)
        self.open_file = open_file

    def _field(self, text, col, default, path, line):
        dtype, value = default
        if text == "" or text == self.na_value:
            if value is None:
                raise errors.InvalidArgumentError(f"Field {col} is required but missing in record {line} of {path}!")
            return value
        try:
            if dtype == object:
                return text.encode("utf-8")
            return dtype.type(int(text) if dtype.kind in "iu" else float(text))
        except ValueError:
            raise errors.InvalidArgumentError(f"Field {col} in record {line} of {path} is not a valid "
                                              f"{np.dtype(dtype).name}: {text!r}") from None

    def blocks(self, ctx):
        quoting = {"quotechar": '"', "quoting": csv.QUOTE_MINIMAL} if self.quote else {"quoting": csv.QUOTE_NONE}
        for path in self.filenames:
            with self.open_file(path) as raw:
                rows = []
                reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""), delimiter=self.delim,
                                    **quoting)
                for line, record in enumerate(reader):
                    if line == 0 and self.header:
                        continue
                    cols = self.select_cols if self.select_cols is not None else range(len(self.defaults))
                    if len(record) <= max(cols, default=-1) or (self.select_cols is None
                                                                 and len(record) != len(self.defaults)):
                        raise errors.InvalidArgumentError(
                            f"Expect {len(self.defaults)} fields but have {len(record)} in record {line} of {path}")
                    rows.append([self._field(record[c], c, d, path, line) for c, d in zip(cols, self.defaults)])
                    if len(rows) == RECORDS_PER_BLOCK:
                        yield self._block(rows)
                        rows = []
                if rows:
                    yield self._block(rows)

    def _block(self, rows):
        out = []
        for j, (dtype, _) in enumerate(self.defaults):
            column = np.empty(len(rows), dtype=dtype)
            column[:] = [r[j] for r in rows]
            out.append(column)
        return out
