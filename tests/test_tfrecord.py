"""TFRecord framing (tensorgrid/framework/tfrecord.py): CRC32C, records TF reads, and TF's records read back."""

import io

import numpy as np
import pytest

from tensorgrid.framework import errors, tfrecord


@pytest.mark.parametrize("crc32c", [tfrecord.crc32c, tfrecord.python_crc32c], ids=["google-crc32c", "python"])
def test_crc32c_known_values(crc32c):
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283


def _records(*payloads):
    return b"".join(tfrecord.encode_record(p) for p in payloads)


def test_records_round_trip_and_a_truncated_tail_ends_them():
    data = _records(b"first", b"", bytes(range(256)) * 3)
    assert list(tfrecord.read_records(io.BytesIO(data))) == [b"first", b"", bytes(range(256)) * 3]
    assert list(tfrecord.read_records(io.BytesIO(data[:-3]))) == [b"first", b""]


@pytest.mark.parametrize("where", [3, 14], ids=["length", "data"])
def test_corrupt_record_is_data_loss(where):
    data = bytearray(_records(b"payload"))
    data[where] ^= 0x01
    with pytest.raises(errors.DataLossError, match="corrupted record at offset 0 of f.tfrecord"):
        list(tfrecord.read_records(io.BytesIO(bytes(data)), "f.tfrecord"))


def test_tensorflow_reads_our_records_and_we_read_theirs(tmp_path):
    tf = pytest.importorskip("tensorflow")
    payloads = [np.random.RandomState(i).bytes(n) for i, n in enumerate([0, 1, 100, 5000])]
    ours = tmp_path / "ours.tfrecord"
    ours.write_bytes(_records(*payloads))
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == payloads
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as w:
        for p in payloads:
            w.write(p)
    with open(theirs, "rb") as f:
        assert list(tfrecord.read_records(f)) == payloads
