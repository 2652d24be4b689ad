"""TFRecord framing: the record format of TensorBoard event files and TFRecord data files.

A record is
    uint64 length (little-endian)
    uint32 masked crc32c of the length's 8 bytes
    byte   data[length]
    uint32 masked crc32c of data
CRC32C is the Castagnoli CRC (iSCSI, RFC 3720); "masked" is TF's rotate-and-add
that keeps a CRC of data which itself holds CRCs from looking like one.

A TFRecord file may be compressed as a whole, as TF writes it: "ZLIB" is
one zlib stream (RFC 1950), "GZIP" one gzip stream (RFC 1952), "" none.
The CRCs come from google-crc32c (Google's C library, with hardware CRC32C
instructions where the CPU has them: ~7 GB/s here, against ~5 MB/s for a
table-driven loop in Python). It is a dependency of the package; an
environment made before it was one falls back to the Python loop, with a
warning the first time.
"""

import gzip
import io
import struct
import warnings
import zlib

from tensorgrid.framework import errors

try:
    import google_crc32c as _c
except ImportError:  # an environment installed before google-crc32c was a dependency
    _c = None

_MASK_DELTA = 0xA282EAD8
COMPRESSION_TYPES = ("", "ZLIB", "GZIP")
_Q, _I = struct.Struct("<Q"), struct.Struct("<I")


def _table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C's polynomial, reflected
        table.append(c)
    return tuple(table)


_TABLE = _table()


def python_crc32c(data, crc=0):
    """The CRC-32C of `data` continuing from `crc`, computed in Python (where google-crc32c is missing)."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for b in memoryview(data).cast("B"):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _python_extend(crc, data):
    if not getattr(_python_extend, "warned", False):
        _python_extend.warned = True
        warnings.warn("google-crc32c is not installed (pip install google-crc32c): TFRecord CRCs are computed "
                      "in Python, at a few MB/s", RuntimeWarning, stacklevel=3)
    return python_crc32c(data, crc)


_extend = _c.extend if _c is not None else _python_extend


def crc32c(data, crc=0):
    """The CRC-32C of `data` (bytes-like), continuing from `crc`."""
    return _extend(crc, bytes(data))


def masked_crc32c(data):
    """TF's masked CRC-32C of `data`."""
    crc = _extend(0, data if type(data) is bytes else bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data):
    """`data` framed as one TFRecord."""
    data = bytes(data)
    header = _Q.pack(len(data))
    return b"".join([header, _I.pack(masked_crc32c(header)), data, _I.pack(masked_crc32c(data))])


def read_records(f, path="<stream>", check_crc=True, strict=False):
    """Yields the data of each record of binary file object `f`; a corrupt record is a DataLossError.

    A truncated last record (a writer still writing it) ends the sequence, as
    TensorBoard's event readers treat it; with `strict`, as TF's TFRecord
    readers do, a record cut anywhere after its first byte is a DataLossError.
    """
    offset = 0
    read = f.read
    while True:
        header = read(12)
        if len(header) < 12:
            if header and strict:
                raise _truncated(path, offset)
            return
        length, = _Q.unpack_from(header)
        if check_crc and masked_crc32c(header[:8]) != _I.unpack_from(header, 8)[0]:
            raise errors.DataLossError(None, None, f"corrupted record at offset {offset} of {path}: "
                                                   "the length's CRC does not match")
        body = read(length + 4)
        if len(body) < length + 4:
            if strict:
                raise _truncated(path, offset)
            return
        data = body[:length]
        if check_crc and masked_crc32c(data) != _I.unpack_from(body, length)[0]:
            raise errors.DataLossError(None, None, f"corrupted record at offset {offset} of {path}: "
                                                   "the data's CRC does not match")
        offset += 16 + length
        yield data


def _truncated(path, offset):
    return errors.DataLossError(None, None, f"truncated record at offset {offset} of {path}")


def compression_type(value):
    """The compression name ("", "ZLIB", "GZIP") of a string, None, or TF's enum value (0, 1, 2)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 3:
        return COMPRESSION_TYPES[value]
    if isinstance(value, str) and value.upper() in COMPRESSION_TYPES:
        return value.upper()
    raise errors.InvalidArgumentError(None, None, f"Unsupported compression_type: {value!r}; expected one of "
                                      "'', 'ZLIB', 'GZIP'")


class _ZlibReader(io.RawIOBase):
    """The bytes of one zlib stream read from a binary file object, as a readable stream."""

    def __init__(self, raw, chunk=1 << 18):
        self._raw, self._chunk = raw, chunk
        self._z = zlib.decompressobj()
        self._pending = b""

    def readable(self):
        return True

    def readinto(self, buf):
        while not self._pending:
            if self._z.eof:
                return 0
            data = self._raw.read(self._chunk)
            if not data:
                self._pending = self._z.flush()
                if not self._pending:
                    return 0
                break
            self._pending = self._z.decompress(data)
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self):
        self._raw.close()
        super().close()


class _ZlibWriter:
    """Writes one zlib stream to a binary file object: write, flush, close."""

    def __init__(self, raw, level):
        self._raw = raw
        self._z = zlib.compressobj(level)

    def write(self, data):
        self._raw.write(self._z.compress(data))
        return len(data)

    def flush(self):
        if self._z is not None:
            self._raw.write(self._z.flush(zlib.Z_SYNC_FLUSH))
            self._raw.flush()

    def close(self):
        if self._z is not None:
            self._raw.write(self._z.flush())
            self._z = None
            self._raw.close()


def reader(raw, compression="", buffer_size=1 << 18):
    """A buffered binary reader of the records' bytes in `raw` (a binary file object), decompressed."""
    if compression == "GZIP":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size)
    if compression == "ZLIB":
        return io.BufferedReader(_ZlibReader(raw), buffer_size)
    return raw


def writer(raw, compression="", level=-1):
    """A binary writer to `raw` that compresses as `compression` says (level: zlib's, -1 its default)."""
    if compression == "GZIP":
        return _GzipOwning(raw, 6 if level < 0 else level)
    if compression == "ZLIB":
        return _ZlibWriter(raw, level)
    return raw


class _GzipOwning(gzip.GzipFile):
    """A GzipFile that closes the file object it writes to when it closes."""

    def __init__(self, raw, level):
        super().__init__(fileobj=raw, mode="wb", compresslevel=level, mtime=0)
        self._owned = raw

    def close(self):
        try:
            super().close()
        finally:
            self._owned.close()
