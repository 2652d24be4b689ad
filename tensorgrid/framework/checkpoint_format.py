"""tensorgrid's checkpoint files (`.tgckpt`): one file, or an index and one data file per task.

A checkpoint with prefix P (e.g. "/tmp/model.ckpt-100") is the file `P.tgckpt`:

    magic    8 bytes   b"TGCKPT\\x00\\x01"
    length   8 bytes   little-endian uint64, the byte size of the header
    header   JSON, UTF-8: {"format": 1, "tensors": [entry, ...]}
    data     each tensor's raw bytes, C order, little-endian, at its offset

An entry is {"name", "dtype" (a tensorgrid dtype name), "shape" (list of
ints), "offset" (from the first byte after the header), "nbytes", "crc32"
(zlib)}. A slice of a partitioned variable adds "slice", TF's slice spec
("10 4 0,5:0,4": the full shape, then start,length per dimension): its name
is the full variable's, its shape the slice's, and a reader assembles the
slices of a name into the full tensor.

A sharded checkpoint (Saver(sharded=True): each task writes its own
variables) is data files `P.tgckpt-00000-of-00003`, ... (each a complete
file as above) and the index `P.tgckpt`, whose header adds "shards" (their
number) and whose entries say "shard" (which file holds the tensor) and its
crc32, with no data of their own. Each task writes its file under a
temporary name; the merge renames them to their final names and then writes
the index, so a checkpoint exists (for latest_checkpoint, restore) only once
every shard is complete; a data file that does not match the index's
checksums (left by another save to the same prefix) is a DataLossError.

Every file is written under a temporary name in its directory, flushed and
fsynced, then renamed onto its final name (os.replace): a reader finds the
previous complete file or the new one, never a partial one.
"""

import contextlib
import json
import os
import socket
import struct
import tempfile
import time
import zlib

import numpy as np

from tensorgrid.framework import dtypes, errors

SUFFIX = ".tgckpt"
MAGIC = b"TGCKPT\x00\x01"


# ---- slices ------------------------------------------------------------------------------------------

def format_slice(full_shape, offsets, lengths):
    """TF's slice spec string: "10 4 0,5:0,4"."""
    return " ".join(str(int(d)) for d in full_shape) + " " + ":".join(
        f"{int(o)},{int(n)}" for o, n in zip(offsets, lengths))


def parse_slice(spec):
    """(full shape, [(offset, length)] per dimension) of a slice spec; None for "" (the whole tensor)."""
    if not spec:
        return None
    parts = spec.split(" ")
    try:
        full = [int(d) for d in parts[:-1]]
        ranges = [tuple(int(x) for x in r.split(",")) for r in parts[-1].split(":")]
    except ValueError:
        raise errors.InvalidArgumentError(None, None, f"malformed slice spec {spec!r}") from None
    if len(ranges) != len(full) or any(len(r) != 2 for r in ranges):
        raise errors.InvalidArgumentError(None, None, f"malformed slice spec {spec!r}: "
                                                      f"{len(full)} dimensions, {len(ranges)} ranges")
    return full, ranges


def _index(ranges):
    return tuple(slice(o, o + n) for o, n in ranges)


# ---- writing -------------------------------------------------------------------------------------------

def encode_items(items):
    """The bytes of a checkpoint file holding `items`, [(name, array, slice spec or "")], as chunks."""
    entries, blobs, offset = [], [], 0
    for name, value, spec in sorted(items, key=lambda item: (item[0], item[2])):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"cannot checkpoint tensor {name} of numpy dtype {arr.dtype}: only numbers and bools")
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        entry = {"name": name, "dtype": dtypes.as_dtype(arr.dtype).name, "shape": list(arr.shape),
                 "offset": offset, "nbytes": len(raw), "crc32": zlib.crc32(raw)}
        if spec:
            entry["slice"] = spec
        entries.append(entry)
        blobs.append(raw)
        offset += len(raw)
    return _framed({"format": 1, "tensors": entries}, blobs)


def _framed(header, blobs):
    raw = json.dumps(header).encode()
    return [MAGIC, struct.pack("<Q", len(raw)), raw] + list(blobs)


def _encode(values):
    """The checkpoint file's bytes for {name: numpy array}, as a list of chunks."""
    return encode_items([(name, value, "") for name, value in values.items()])


def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened on some platforms; the rename is durable enough there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_chunks(f, chunks):
    for chunk in chunks:
        f.write(chunk)


# A temporary file of another writer on another host is only taken for stale after this long.
STALE_TEMP_S = 24 * 3600.0


def remove_stale_temps(directory, prefix):
    """Removes the temporaries of earlier writes to the same file whose writer died: on this host, when
    the process its name records is gone; from elsewhere (or unnamed), when older than STALE_TEMP_S."""
    from tensorgrid.worker import shm
    host = socket.gethostname()
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        where, _, rest = name[len(prefix):].rpartition("@")
        pid = rest.split("-", 1)[0]
        full = os.path.join(directory, name)
        if where == host and pid.isdigit():
            stale = not shm.pid_alive(int(pid))
        else:
            try:
                stale = time.time() - os.stat(full).st_mtime > STALE_TEMP_S
            except OSError:
                continue
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(full)


def atomic_write(path, chunks):
    """Writes `chunks` to `path` so that `path` is never seen half-written.

    The temporary file is named after this host and process, so a later write
    removes the ones a killed writer left (remove_stale_temps).
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + ".tmp-"
    remove_stale_temps(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{socket.gethostname()}@{os.getpid()}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_chunks(f, chunks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def shard_path(prefix, shard, num_shards):
    """The final name of a sharded checkpoint's data file."""
    return f"{prefix}{SUFFIX}-{shard:05d}-of-{num_shards:05d}"


def merge_shards(part_prefixes, prefix):
    """Renames each task's part to its final data-file name, then writes the index `prefix.tgckpt`."""
    n = len(part_prefixes)
    index = []
    for i, part in enumerate(part_prefixes):
        for entry in Reader(part).raw_entries:
            index.append({k: entry[k] for k in ("name", "dtype", "shape", "crc32", "slice") if k in entry}
                         | {"shard": i})
        os.replace(part + SUFFIX, shard_path(prefix, i, n))
    fsync_dir(os.path.dirname(os.path.abspath(prefix)))
    atomic_write(prefix + SUFFIX, _framed({"format": 1, "shards": n, "tensors": index}, []))
    for part in part_prefixes:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(part))  # the save's temporary directory, once empty


def files_of(prefix):
    """Every file of the checkpoint `prefix` that is on disk (the index last)."""
    directory = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix) + SUFFIX + "-"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    shards = sorted(os.path.join(directory, n) for n in names if n.startswith(base) and "-of-" in n)
    return shards + ([prefix + SUFFIX] if os.path.exists(prefix + SUFFIX) else [])


# ---- reading ------------------------------------------------------------------------------------------

def _checked_entries(header, data_bytes, path):
    """The entries of a decoded header; DataLossError for any the format does not allow."""
    def corrupt(why):
        return errors.DataLossError(None, None, f"checkpoint {path} has a corrupt header: {why}")

    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    tensors = header.get("tensors") if isinstance(header, dict) else None
    shards = header.get("shards") if isinstance(header, dict) else None
    if not isinstance(tensors, list) or not (shards is None or (count(shards) and shards > 0)):
        raise corrupt("no list of tensors" if not isinstance(tensors, list) else f"shards {shards!r}")
    for e in tensors:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise corrupt(f"entry {str(e)[:80]} has no name")
        name, shape = e["name"], e.get("shape")
        if not (isinstance(shape, list) and all(count(d) for d in shape)) or not count(e.get("crc32")):
            raise corrupt(f"tensor {name}: shape and crc32 must be non-negative integers")
        try:
            itemsize = np.dtype(dtypes.as_dtype(e.get("dtype")).as_numpy_dtype).itemsize
            if "slice" in e and (not isinstance(e["slice"], str) or parse_slice(e["slice"]) is None):
                raise errors.InvalidArgumentError(None, None, f"slice {e['slice']!r}")
        except (TypeError, ValueError, KeyError, errors.InvalidArgumentError) as err:
            raise corrupt(f"tensor {name}: {getattr(err, 'message', None) or err}") from None
        if "shard" in e:
            if shards is None or not count(e["shard"]) or e["shard"] >= shards:
                raise corrupt(f"tensor {name}: shard {e['shard']!r} of {shards} shards")
            continue
        offset, nbytes = e.get("offset"), e.get("nbytes")
        if not (count(offset) and count(nbytes)):
            raise corrupt(f"tensor {name}: offset and nbytes must be non-negative integers")
        if int(np.prod(shape, dtype=object)) * itemsize != nbytes or offset + nbytes > data_bytes:
            raise corrupt(f"tensor {name}: {nbytes} bytes at {offset} do not fit shape {shape} of {e['dtype']} "
                          f"in {data_bytes} bytes of data")
    return tensors


class Reader:
    """Reads tensors from one checkpoint (one file, or an index and its data files), checking checksums.

    `entries` maps each name to {"name", "dtype", "shape"} (the full shape of a sliced one)."""

    def __init__(self, prefix, path=None):
        self.prefix = prefix
        self.path = path or prefix + SUFFIX
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                raise errors.DataLossError(None, None, f"{self.path} is not a tensorgrid checkpoint (bad magic)")
            (length,) = struct.unpack("<Q", head[8:])
            if length > size - 16:
                raise errors.DataLossError(None, None, f"checkpoint {self.path} is truncated or corrupt: its header "
                                           f"claims {length} bytes of a {size}-byte file")
            raw = f.read(length)
            try:
                header = json.loads(raw.decode())
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                raise errors.DataLossError(None, None, f"checkpoint {self.path} has a corrupt header: {e}") from None
        self.data_start = 16 + length
        self.num_shards = header.get("shards") if isinstance(header, dict) else None
        self.raw_entries = _checked_entries(header, size - self.data_start, self.path)
        self._shards = {}
        self.entries = {}
        for e in self.raw_entries:
            if "slice" not in e:
                self.entries[e["name"]] = e
                continue
            full, _ = parse_slice(e["slice"])
            whole = self.entries.setdefault(e["name"], {"name": e["name"], "dtype": e["dtype"], "shape": full,
                                                        "slices": []})
            whole["slices"].append(e)

    def _shard(self, i):
        if i not in self._shards:
            path = shard_path(self.prefix, i, self.num_shards)
            if not os.path.exists(path):
                raise errors.DataLossError(None, None, f"checkpoint {self.prefix}: data file {path} is missing")
            self._shards[i] = Reader(self.prefix, path)
        return self._shards[i]

    def _read_raw(self, e):
        if "shard" in e:
            shard = self._shard(e["shard"])
            match = [s for s in shard.raw_entries if s["name"] == e["name"] and s.get("slice") == e.get("slice")]
            if not match or match[0]["crc32"] != e["crc32"]:
                raise errors.DataLossError(None, None, f"checkpoint {self.prefix}: data file {shard.path} does not "
                                                       f"hold the {e['name']} its index names (another save's file?)")
            return shard._read_raw(match[0])
        with open(self.path, "rb") as f:
            f.seek(self.data_start + e["offset"])
            raw = f.read(e["nbytes"])
        if len(raw) != e["nbytes"] or zlib.crc32(raw) != e["crc32"]:
            raise errors.DataLossError(None, None, f"checkpoint {self.path}: tensor {e['name']} is truncated or "
                                                   f"corrupt (checksum mismatch)")
        np_dtype = np.dtype(dtypes.as_dtype(e["dtype"]).as_numpy_dtype).newbyteorder("<")
        return np.frombuffer(raw, dtype=np_dtype).reshape(e["shape"]).astype(np_dtype.newbyteorder("="))

    def read(self, name):
        """The whole tensor `name` (a sliced one assembled from its slices)."""
        e = self.entries[name]
        if "slices" not in e:
            return self._read_raw(e)
        out = np.zeros(e["shape"], dtype=dtypes.as_dtype(e["dtype"]).as_numpy_dtype)
        for s in e["slices"]:
            out[_index(parse_slice(s["slice"])[1])] = self._read_raw(s)
        return out

    def read_slice(self, name, spec):
        """The part `spec` (a slice spec, "" for all) of tensor `name`, whichever way it was saved."""
        parsed = parse_slice(spec)
        e = self.entries[name]
        if parsed is None:
            return self.read(name)
        full, ranges = parsed
        if list(full) != list(e["shape"]):
            raise errors.InvalidArgumentError(
                None, None, f"Restoring {name} from checkpoint {self.prefix}: the variable's full shape {full} "
                f"differs from the saved tensor's {list(e['shape'])}")
        for s in e.get("slices", []):
            if s["slice"] == spec:
                return self._read_raw(s)
        return np.ascontiguousarray(self.read(name)[_index(ranges)])
