"""tg.io: TFRecord files, tf.train.Example parsing, file and byte ops (TF's tf.io).

- TFRecord files: `TFRecordWriter(path, options)` writes records in the
  client's process (options: "", "ZLIB", "GZIP" or a TFRecordOptions),
  `tf_record_iterator` (TF1) reads them; `tg.data.TFRecordDataset` reads
  them in a pipeline, on the device the pipeline runs on. The framing and
  compression are tensorgrid/framework/tfrecord.py's, byte for byte TF's.
- Example parsing: parse_example, parse_single_example and the feature
  specs (client/parsing_ops.py); the protos are tg.train.Example & co.
- Ops: read_file, write_file, matching_files, decode_raw,
  serialize_tensor, parse_tensor (tensorgrid/ops/io_ops.py). They run where
  they are placed: eagerly and in in-process sessions on this machine's
  files, on a cluster worker on that worker's.
- `gfile`: TF's file API, in the client's process (client/gfile.py).
"""

import enum
import os

from tensorgrid.client import gfile  # noqa: F401 - tg.io.gfile
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.parsing_ops import (  # noqa: F401
    FixedLenFeature, FixedLenSequenceFeature, VarLenFeature, parse_example, parse_single_example)
from tensorgrid.framework import dtypes, errors, tfrecord
from tensorgrid.ops import io_ops as _ops
from tensorgrid.ops import registry

__all__ = ["TFRecordWriter", "TFRecordOptions", "TFRecordCompressionType", "read_file",
           "write_file", "matching_files", "decode_raw", "serialize_tensor", "parse_tensor", "gfile",
           "FixedLenFeature", "FixedLenSequenceFeature", "VarLenFeature", "parse_example", "parse_single_example"]


class TFRecordCompressionType(enum.IntEnum):
    """How a whole TFRecord file is compressed."""

    NONE = 0
    ZLIB = 1
    GZIP = 2


class TFRecordOptions:
    """Options of a TFRecord file: its compression (and zlib's settings, of which compression_level is used)."""

    compression_type_map = {TFRecordCompressionType.ZLIB: "ZLIB", TFRecordCompressionType.GZIP: "GZIP",
                            TFRecordCompressionType.NONE: ""}

    def __init__(self, compression_type=None, flush_mode=None, input_buffer_size=None, output_buffer_size=None,
                 window_bits=None, compression_level=None, compression_method=None, mem_level=None,
                 compression_strategy=None):
        self.compression_type = tfrecord.compression_type(compression_type)
        self.flush_mode, self.window_bits, self.compression_method = flush_mode, window_bits, compression_method
        self.input_buffer_size, self.output_buffer_size = input_buffer_size, output_buffer_size
        self.compression_level, self.mem_level = compression_level, mem_level
        self.compression_strategy = compression_strategy

    @classmethod
    def get_compression_type_string(cls, options):
        """The compression name of a TFRecordOptions, a string, a TFRecordCompressionType or None."""
        if isinstance(options, TFRecordOptions):
            return options.compression_type
        return tfrecord.compression_type(options)

    def __repr__(self):
        return f"TFRecordOptions(compression_type={self.compression_type!r})"


def _options(options):
    return options if isinstance(options, TFRecordOptions) else TFRecordOptions(options)


class TFRecordWriter:
    """Writes records (bytes) to a TFRecord file: write, flush, close; a context manager."""

    def __init__(self, path, options=None):
        opts = _options(options)
        self._path = os.fspath(path)
        with _ops.os_errors(self._path):
            raw = open(self._path, "wb")
        level = -1 if opts.compression_level is None else int(opts.compression_level)
        self._f = tfrecord.writer(raw, opts.compression_type, level)

    def write(self, record):
        """Appends one record (bytes; str is encoded as UTF-8)."""
        if self._f is None:
            raise errors.FailedPreconditionError(None, None, f"{self._path}: the TFRecordWriter is closed")
        self._f.write(tfrecord.encode_record(record.encode("utf-8") if isinstance(record, str) else record))

    def flush(self):
        if self._f is not None:
            self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tf_record_iterator(path, options=None):
    """TF1: the records of a TFRecord file, one bytes value at a time (DataLossError for a corrupt one)."""
    compression = _options(options).compression_type
    path = os.fspath(path)
    with _ops.os_errors(path):
        raw = open(path, "rb")
    with raw:
        yield from tfrecord.read_records(tfrecord.reader(raw, compression), path, strict=True)


def read_file(filename, name=None):
    """The bytes of a file, as a string scalar tensor."""
    return apply_op("ReadFile", [convert_to_tensor(filename, dtype=dtypes.string)], name=name or "ReadFile")


def write_file(filename, contents, name=None):
    """Writes contents (a string scalar) to filename, making its directory; an op in graph mode."""
    return apply_op("WriteFile", [convert_to_tensor(filename, dtype=dtypes.string),
                                  convert_to_tensor(contents, dtype=dtypes.string)], name=name or "WriteFile")


def matching_files(pattern, name=None):
    """The file names (sorted) a glob pattern, or a vector of them, matches."""
    return apply_op("MatchingFiles", [convert_to_tensor(pattern, dtype=dtypes.string)], name=name or "MatchingFiles")


def decode_raw(input_bytes, out_type, little_endian=True, fixed_length=None, name=None):
    """Each string's bytes as a vector of out_type: shape input.shape + [length / size of out_type]."""
    out_type = dtypes.as_dtype(out_type)
    t = convert_to_tensor(input_bytes, dtype=dtypes.string)
    attrs = {"out_type": out_type, "little_endian": bool(little_endian)}
    if fixed_length is None:
        return apply_op("DecodeRaw", [t], attrs, name=name or "DecodeRaw")
    return apply_op("DecodePaddedRaw", [t, convert_to_tensor(fixed_length, dtype=dtypes.int32)], attrs,
                    name=name or "DecodePaddedRaw")


def decode_raw_v1(bytes=None, out_type=None, little_endian=True, name=None, input_bytes=None):  # noqa: A002
    """TF1's decode_raw, whose first argument is named `bytes`."""
    return decode_raw(bytes if input_bytes is None else input_bytes, out_type, little_endian, name=name)


def serialize_tensor(tensor, name=None):
    """The tensor as a serialized TensorProto (a string scalar), as TF serializes it."""
    t = convert_to_tensor(tensor)
    return apply_op("SerializeTensor", [t], {"T": t.dtype}, name=name or "SerializeTensor")


def parse_tensor(serialized, out_type, name=None):
    """The tensor a serialized TensorProto holds; InvalidArgumentError when its dtype is not out_type."""
    return apply_op("ParseTensor", [convert_to_tensor(serialized, dtype=dtypes.string)],
                    {"out_type": dtypes.as_dtype(out_type)}, name=name or "ParseTensor")


registry.not_differentiable("ReadFile", "WriteFile", "MatchingFiles", "DecodeRaw", "DecodePaddedRaw",
                            "SerializeTensor", "ParseTensor")
