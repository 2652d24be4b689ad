"""TFRecord framing: the record format of TensorBoard event files and TFRecord data files.

A record is
    uint64 length (little-endian)
    uint32 masked crc32c of the length's 8 bytes
    byte   data[length]
    uint32 masked crc32c of data
CRC32C is the Castagnoli CRC (iSCSI, RFC 3720); "masked" is TF's rotate-and-add
that keeps a CRC of data which itself holds CRCs from looking like one.
"""

import struct

from tensorgrid.framework import errors

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8


def _table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _table()


def crc32c(data, crc=0):
    """The CRC-32C of `data` (bytes-like), continuing from `crc`."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for b in memoryview(data).cast("B"):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TF's masked CRC-32C of `data`."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data):
    """`data` framed as one TFRecord."""
    header = struct.pack("<Q", len(data))
    return b"".join([header, struct.pack("<I", masked_crc32c(header)), data,
                     struct.pack("<I", masked_crc32c(data))])


def read_records(f, path="<stream>", check_crc=True):
    """Yields the data of each record of binary file object `f`; a corrupt record is a DataLossError.

    A truncated last record (a writer still writing it) ends the sequence, as TF's readers treat it.
    """
    offset = 0
    while True:
        header = f.read(12)
        if len(header) < 12:
            return
        (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
        if check_crc and masked_crc32c(header[:8]) != length_crc:
            raise errors.DataLossError(None, None, f"corrupted record at offset {offset} of {path}: "
                                                   "the length's CRC does not match")
        body = f.read(length + 4)
        if len(body) < length + 4:
            return
        data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
        if check_crc and masked_crc32c(data) != data_crc:
            raise errors.DataLossError(None, None, f"corrupted record at offset {offset} of {path}: "
                                                   "the data's CRC does not match")
        offset += 12 + length + 4
        yield data
