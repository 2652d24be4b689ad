"""tg.train.Saver: saves and restores variables through a session, in tensorgrid's checkpoint format.

A checkpoint with prefix P (e.g. "/tmp/model.ckpt-100") is the one file
`P.tgckpt`:

    magic    8 bytes   b"TGCKPT\\x00\\x01"
    length   8 bytes   little-endian uint64, the byte size of the header
    header   JSON, UTF-8: {"format": 1, "tensors": [entry, ...]} with one entry per
             variable: {"name", "dtype" (a tensorgrid dtype name), "shape" (list of ints),
             "offset" (from the first byte after the header), "nbytes", "crc32" (zlib)}
    data     each tensor's raw bytes, C order, little-endian, at its offset

Tensors are keyed by the variable's op name ("dense/kernel", "dense/kernel/Adam").
A file is written under a temporary name in the destination directory,
flushed and fsynced, then renamed onto its final name (os.replace), so a
reader finds either the previous complete file or the new complete one,
never a partial one; a failed write removes its temporary file. The
directory's `checkpoint` file is TF's CheckpointState text format
(`model_checkpoint_path: "model.ckpt-100"` and one `all_model_checkpoint_paths`
line per kept checkpoint, relative to the directory), replaced the same way.
Beside each checkpoint `Saver.save` writes the meta graph `P.meta` (a
MetaGraphDef, proto/meta_graph.proto: the graph, its collections and the
Saver's SaverDef), which tg.train.import_meta_graph reads back.

The Saver reads and writes variables with ops it adds to the graph (reads,
and assigns fed through placeholders), so it works with any Session,
in-process or on a cluster.
"""

import contextlib
import json
import numbers
import os
import re
import struct
import tempfile
import zlib

import numpy as np

from tensorgrid.client import array_ops, context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import get_default_graph
from tensorgrid.client import meta_graph
from tensorgrid.client.meta_graph import export_meta_graph
from tensorgrid.framework import dtypes, errors

__all__ = ["Saver", "latest_checkpoint", "get_checkpoint_state", "checkpoint_exists", "list_variables",
           "load_variable", "load_checkpoint", "NewCheckpointReader", "CheckpointReader", "import_meta_graph",
           "export_meta_graph"]

SUFFIX = ".tgckpt"
_MAGIC = b"TGCKPT\x00\x01"
_STATE_FILE = "checkpoint"


# ---- the file format ----------------------------------------------------------------------

def _encode(values):
    """The checkpoint file's bytes for {name: numpy array}, as a list of chunks."""
    entries, blobs, offset = [], [], 0
    for name in sorted(values):
        arr = np.asarray(values[name])
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"cannot checkpoint tensor {name} of numpy dtype {arr.dtype}: only numbers and bools")
        dt = dtypes.as_dtype(arr.dtype)
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        entries.append({"name": name, "dtype": dt.name, "shape": list(arr.shape), "offset": offset,
                        "nbytes": len(raw), "crc32": zlib.crc32(raw)})
        blobs.append(raw)
        offset += len(raw)
    header = json.dumps({"format": 1, "tensors": entries}).encode()
    return [_MAGIC, struct.pack("<Q", len(header)), header] + blobs


def _write_chunks(f, chunks):
    for chunk in chunks:
        f.write(chunk)


def _fsync_dir(directory):
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


def atomic_write(path, chunks):
    """Writes `chunks` to `path` so that `path` is never seen half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=directory)
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
    _fsync_dir(directory)


class _Reader:
    """Reads tensors from one checkpoint file, checking sizes and checksums."""

    def __init__(self, prefix):
        self.path = prefix + SUFFIX
        with open(self.path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[:8] != _MAGIC:
                raise errors.DataLossError(None, None, f"{self.path} is not a tensorgrid checkpoint (bad magic)")
            (length,) = struct.unpack("<Q", head[8:])
            raw = f.read(length)
            try:
                header = json.loads(raw.decode())
            except (UnicodeDecodeError, ValueError) as e:
                raise errors.DataLossError(None, None, f"checkpoint {self.path} has a corrupt header: {e}") from None
        self.data_start = 16 + length
        self.entries = {e["name"]: e for e in header["tensors"]}

    def read(self, name):
        e = self.entries[name]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + e["offset"])
            raw = f.read(e["nbytes"])
        if len(raw) != e["nbytes"] or zlib.crc32(raw) != e["crc32"]:
            raise errors.DataLossError(None, None, f"checkpoint {self.path}: tensor {name} is truncated or corrupt "
                                                   f"(checksum mismatch)")
        np_dtype = np.dtype(dtypes.as_dtype(e["dtype"]).as_numpy_dtype).newbyteorder("<")
        return np.frombuffer(raw, dtype=np_dtype).reshape(e["shape"]).astype(np_dtype.newbyteorder("="))


# ---- the `checkpoint` state file ----------------------------------------------------------------

class CheckpointState:
    """What a directory's `checkpoint` file says: the latest checkpoint and all kept ones (full prefixes)."""

    def __init__(self, model_checkpoint_path, all_model_checkpoint_paths):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths)

    def __repr__(self):
        return f"CheckpointState({self.model_checkpoint_path!r}, {self.all_model_checkpoint_paths!r})"


_STATE_LINE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*(".*")\s*$')


def _write_state(directory, latest, paths, latest_filename):
    def rel(p):
        return os.path.relpath(p, directory) if os.path.dirname(os.path.abspath(p)) == os.path.abspath(directory) \
            else p
    lines = [f"model_checkpoint_path: {json.dumps(rel(latest), ensure_ascii=False)}"]
    lines += [f"all_model_checkpoint_paths: {json.dumps(rel(p), ensure_ascii=False)}" for p in paths]
    atomic_write(os.path.join(directory, latest_filename or _STATE_FILE), ["\n".join(lines).encode() + b"\n"])


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """The CheckpointState of `checkpoint_dir`, or None when it has no (readable) `checkpoint` file."""
    path = os.path.join(checkpoint_dir, latest_filename or _STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    latest, paths = None, []
    for line in text.splitlines():
        m = _STATE_LINE.match(line)
        if not m:
            continue
        value = json.loads(m.group(2))
        if not os.path.isabs(value):
            value = os.path.join(checkpoint_dir, value)
        if m.group(1) == "model_checkpoint_path":
            latest = value
        else:
            paths.append(value)
    if latest is None:
        return None
    return CheckpointState(latest, paths)


def checkpoint_exists(checkpoint_prefix):
    """Whether a checkpoint with this prefix is on disk."""
    return os.path.isfile(checkpoint_prefix + SUFFIX)


def latest_checkpoint(checkpoint_dir, latest_filename=None):
    """The prefix of the newest checkpoint recorded in `checkpoint_dir`, or None."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None or not checkpoint_exists(state.model_checkpoint_path):
        return None
    return state.model_checkpoint_path


def _resolve(ckpt_dir_or_file):
    if os.path.isdir(ckpt_dir_or_file):
        latest = latest_checkpoint(ckpt_dir_or_file)
        if latest is None:
            raise ValueError(f"Couldn't find 'checkpoint' file or checkpoints in given directory {ckpt_dir_or_file}")
        return latest
    return ckpt_dir_or_file[:-len(SUFFIX)] if ckpt_dir_or_file.endswith(SUFFIX) else ckpt_dir_or_file


class CheckpointReader:
    """Reads the tensors of one checkpoint by key (TF's CheckpointReader, as load_checkpoint gives it)."""

    def __init__(self, prefix):
        if not checkpoint_exists(prefix):
            raise errors.NotFoundError(None, None, f"Unsuccessful TensorSliceReader constructor: Failed to find any "
                                                   f"matching files for {prefix}")
        self._prefix = prefix
        self._reader = _Reader(prefix)

    def has_tensor(self, name):
        return name in self._reader.entries

    def get_tensor(self, name):
        """The value of tensor `name`, a numpy array; NotFoundError when the checkpoint has none."""
        if name not in self._reader.entries:
            raise errors.NotFoundError(None, None, f"Key {name} not found in checkpoint {self._prefix}")
        return self._reader.read(name)

    def get_variable_to_shape_map(self):
        """{key: shape as a list of ints}."""
        return {name: list(e["shape"]) for name, e in self._reader.entries.items()}

    def get_variable_to_dtype_map(self):
        """{key: tg.DType}."""
        return {name: dtypes.as_dtype(e["dtype"]) for name, e in self._reader.entries.items()}

    def debug_string(self):
        """One line per tensor: key (dtype) [shape], sorted by key, as bytes (as TF gives it)."""
        return "".join(f"{name} ({e['dtype']}) {list(e['shape'])}\n"
                       for name, e in sorted(self._reader.entries.items())).encode()


def NewCheckpointReader(filepattern):  # noqa: N802 - TF's spelling
    """A CheckpointReader of the checkpoint with prefix `filepattern`."""
    return CheckpointReader(filepattern)


def load_checkpoint(ckpt_dir_or_file):
    """A CheckpointReader of a checkpoint (a prefix, or the latest checkpoint of a directory)."""
    return CheckpointReader(_resolve(ckpt_dir_or_file))


def list_variables(ckpt_dir_or_file):
    """[(name, shape)] of the tensors in a checkpoint (or the latest one of a directory), sorted by name."""
    return sorted(load_checkpoint(ckpt_dir_or_file).get_variable_to_shape_map().items())


def load_variable(ckpt_dir_or_file, name):
    """The value of tensor `name` in a checkpoint, as a numpy array."""
    return load_checkpoint(ckpt_dir_or_file).get_tensor(name)


# ---- the Saver --------------------------------------------------------------------------------------

def _named_variables(var_list):
    if var_list is None:
        var_list = variables_lib.global_variables()
    if isinstance(var_list, dict):
        named = dict(var_list)
    else:
        named = {}
        for v in var_list:
            if not isinstance(v, variables_lib.Variable):
                raise TypeError(f"Saver can only save Variables, not {v!r}")
            name = v._op_name()
            if name in named and named[name] is not v:
                raise ValueError(f"At least two variables have the same name: {name}")
            named[name] = v
    return named


class Saver:
    """Saves variables to checkpoints and restores them (see the module docstring for the format).

    Its ops live under one name scope S ("save"): S/tensor_names (the checkpoint keys), S/save_value_<i>
    (the i-th key's value), S/restore_value_<i> (the placeholder restoring it) and S/restore_all. A Saver
    given a `saver_def` (as import_meta_graph does) finds those ops in the default graph instead of
    building them.
    """

    def __init__(self, var_list=None, max_to_keep=5, name=None, allow_empty=False, saver_def=None,
                 keep_checkpoint_every_n_hours=10000.0):
        if context.executing_eagerly():
            raise RuntimeError("tg.train.Saver builds save and restore ops and needs graph mode; "
                               "call it inside a graph (tg.compat.v1.disable_eager_execution()).")
        self._keep_hours = keep_checkpoint_every_n_hours
        self._last_checkpoints = []
        if saver_def is not None:
            self._max_to_keep = saver_def.max_to_keep
            self._from_saver_def(saver_def)
            return
        self._max_to_keep = max_to_keep
        named = _named_variables(var_list)
        if not named and not allow_empty:
            raise ValueError("No variables to save")
        g = get_default_graph()
        self._keys = sorted(named)
        with g.name_scope(name or "save"), g.control_dependencies(None):
            array_ops.constant(np.array(self._keys, dtype=object), dtypes.string, name="tensor_names")
            self._reads, self._feeds, assigns = [], [], []
            for i, n in enumerate(self._keys):
                v = named[n]
                self._reads.append(v._read(name=f"save_value_{i}"))
                ph = array_ops.placeholder(v.dtype, v.shape, name=f"restore_value_{i}")
                self._feeds.append(ph)
                assigns.append(v.assign(ph, read_value=False))
            self._restore_op = array_ops.group(*assigns, name="restore_all")

    def _from_saver_def(self, saver_def):
        g = get_default_graph()
        self._restore_op = g.as_graph_element(saver_def.restore_op_name, allow_tensor=False)
        scope = saver_def.restore_op_name.rpartition("/")[0]
        names = graph_lib._const_value(g.get_tensor_by_name(f"{scope}/tensor_names:0"))
        self._keys = [k.decode() if isinstance(k, bytes) else str(k) for k in np.asarray(names).ravel()]
        self._reads = [g.get_tensor_by_name(f"{scope}/save_value_{i}:0") for i in range(len(self._keys))]
        self._feeds = [g.get_tensor_by_name(f"{scope}/restore_value_{i}:0") for i in range(len(self._keys))]

    @property
    def saver_def(self):
        return self.as_saver_def()

    def as_saver_def(self):
        """The SaverDef that finds this Saver's ops again (what the .meta file holds)."""
        from tensorgrid.proto import meta_graph_pb2
        return meta_graph_pb2.SaverDef(restore_op_name=self._restore_op.name, max_to_keep=self._max_to_keep or 0,
                                       keep_checkpoint_every_n_hours=self._keep_hours,
                                       version=meta_graph_pb2.SaverDef.V2)

    def to_proto(self, export_scope=None):
        """This Saver's SaverDef with names relative to export_scope (None when its ops lie outside it)."""
        saver_def = self.as_saver_def()
        if export_scope:
            if not saver_def.restore_op_name.startswith(export_scope + "/"):
                return None
            saver_def.restore_op_name = saver_def.restore_op_name[len(export_scope) + 1:]
        return saver_def

    @staticmethod
    def from_proto(saver_def, import_scope=None):
        """The Saver whose ops `saver_def` names in the default graph (under import_scope, if given)."""
        if import_scope:
            scoped = type(saver_def)()
            scoped.CopyFrom(saver_def)
            scoped.restore_op_name = f"{import_scope}/{saver_def.restore_op_name}"
            saver_def = scoped
        return Saver(saver_def=saver_def)

    @property
    def last_checkpoints(self):
        """The prefixes of the checkpoints this Saver keeps, oldest first."""
        return list(self._last_checkpoints)

    def recover_last_checkpoints(self, checkpoint_paths):
        """Adopts existing checkpoints (e.g. after a restart) so max_to_keep counts them."""
        self._last_checkpoints = [p for p in checkpoint_paths if checkpoint_exists(p)]

    def save(self, sess, save_path, global_step=None, latest_filename=None, meta_graph_suffix="meta",
             write_meta_graph=True, write_state=True, strip_default_attrs=False, save_debug_info=False):
        """Writes every variable's value to checkpoint `save_path[-global_step]`; returns that prefix.

        Unless write_meta_graph=False, the session's graph goes with it, as the meta graph
        `<prefix>.meta` (see tg.train.import_meta_graph).
        """
        directory = os.path.dirname(os.path.abspath(save_path))
        if not os.path.isdir(directory):
            raise ValueError(f"Parent directory of {save_path} doesn't exist, can't save.")
        if global_step is not None:
            if not isinstance(global_step, numbers.Number):
                global_step = sess.run(global_step)
            save_path = f"{save_path}-{int(global_step)}"
        values = dict(zip(self._keys, sess.run(self._reads))) if self._reads else {}
        atomic_write(save_path + SUFFIX, _encode(values))
        if write_meta_graph:
            self.export_meta_graph(f"{save_path}.{meta_graph_suffix}", graph=sess.graph)
        if save_path in self._last_checkpoints:
            self._last_checkpoints.remove(save_path)
        self._last_checkpoints.append(save_path)
        if self._max_to_keep:
            while len(self._last_checkpoints) > self._max_to_keep:
                old = self._last_checkpoints.pop(0)
                for path in (old + SUFFIX, f"{old}.{meta_graph_suffix}"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
        if write_state:
            _write_state(directory, save_path, self._last_checkpoints, latest_filename)
        return save_path

    def export_meta_graph(self, filename=None, collection_list=None, as_text=False, export_scope=None,
                          clear_devices=False, clear_extraneous_savers=False, strip_default_attrs=False,
                          save_debug_info=False, graph=None):
        """tg.train.export_meta_graph of the (default) graph with this Saver's SaverDef."""
        return meta_graph.export_meta_graph(filename, saver_def=self.as_saver_def(),
                                            collection_list=collection_list, as_text=as_text,
                                            graph=graph or self._restore_op.graph, export_scope=export_scope,
                                            clear_devices=clear_devices)

    def restore(self, sess, save_path):
        """Sets every variable to its value in checkpoint `save_path`.

        NotFoundError names a variable the checkpoint lacks; InvalidArgumentError a dtype or shape mismatch.
        """
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        if not checkpoint_exists(save_path):
            raise ValueError(f"The passed save_path is not a valid checkpoint: {save_path}")
        reader = _Reader(save_path)
        feeds = {}
        for name, ph in zip(self._keys, self._feeds):
            entry = reader.entries.get(name)
            if entry is None:
                raise errors.NotFoundError(None, None, f"Key {name} not found in checkpoint {save_path}")
            if dtypes.as_dtype(entry["dtype"]) != ph.dtype:
                raise errors.InvalidArgumentError(
                    None, None, f"tensor_name = {name}; expected dtype {ph.dtype.name} does not equal original "
                                f"dtype {entry['dtype']} in checkpoint {save_path}")
            if not ph.shape.is_compatible_with(entry["shape"]):
                raise errors.InvalidArgumentError(
                    None, None, f"Restoring {name} from checkpoint {save_path}: shapes of the variable and the "
                                f"saved tensor differ: lhs shape= {ph.shape} rhs shape= {entry['shape']}")
            feeds[ph] = reader.read(name)
        sess.run(self._restore_op, feeds)


def import_meta_graph(meta_graph_or_file, clear_devices=False, import_scope=None, **kwargs):
    """Adds the graph and collections of a meta graph (a MetaGraphDef or a .meta file) to the default graph.

    Returns the Saver that restores its variables (the one whose SaverDef the meta graph holds, else a
    new Saver of its variables), or None when it has no variables.
    """
    meta, scope = meta_graph.import_scoped_meta_graph(meta_graph_or_file, clear_devices, import_scope)
    if meta.HasField("saver_def"):
        return Saver.from_proto(meta.saver_def, scope)
    if variables_lib.global_variables():
        return Saver()
    return None


def _saver_from_proto(raw, import_scope):
    from tensorgrid.proto import meta_graph_pb2
    return Saver.from_proto(meta_graph_pb2.SaverDef.FromString(raw), import_scope)


meta_graph.register_proto_function(variables_lib.GraphKeys.SAVERS, lambda s, scope: s.to_proto(scope),
                                   _saver_from_proto)
