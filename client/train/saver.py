"""tg.train.Saver: saves and restores variables through a session, in tensorgrid's checkpoint format.

The format (one file `P.tgckpt`, or a sharded index and one data file per
task) is described in tensorgrid/framework/checkpoint_format.py; this module
re-exports its writer and reader (`atomic_write`, `_encode`, `_Reader`,
`SUFFIX`). Tensors are keyed by the variable's op name ("dense/kernel",
"dense/kernel/Adam"); the parts of a partitioned variable by the whole
variable's name with TF's slice specs. The directory's `checkpoint` file is
TF's CheckpointState text format (`model_checkpoint_path: "model.ckpt-100"`
and one `all_model_checkpoint_paths` line per kept checkpoint, relative to
the directory), replaced atomically. Beside each checkpoint `Saver.save`
writes the meta graph `P.meta` (a MetaGraphDef, proto/meta_graph.proto: the
graph, its collections and the Saver's SaverDef), which
tg.train.import_meta_graph reads back.

Two ways to save, chosen by `sharded` (default: sharded when the variables
live on more than one task):
- Not sharded: the Saver reads every variable into the client, which writes
  the file; restore feeds the values back through placeholders.
- Sharded: each task that holds variables runs a SaveV2 of its own
  variables into its own part (under a temporary name), in parallel, and a
  MergeV2Checkpoints on the last of them renames the parts and writes the
  index last; a RestoreV2 on each task reads that task's variables and
  assigns them there. No value passes through the client, and a task
  killed mid-save leaves only temporary files: no checkpoint exists under
  the prefix until the index is written.
"""

import contextlib
import json
import numbers
import os
import re
import uuid

import numpy as np

from tensorgrid.client import array_ops, context, scopes
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import apply_op, get_default_graph
from tensorgrid.client import meta_graph
from tensorgrid.client.meta_graph import export_meta_graph
from tensorgrid.framework import checkpoint_format as fmt
from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.checkpoint_format import SUFFIX, _encode, atomic_write  # noqa: F401 - re-exported
from tensorgrid.framework.checkpoint_format import Reader as _Reader  # noqa: F401 - re-exported
from tensorgrid.framework.device_spec import DeviceSpec

__all__ = ["Saver", "latest_checkpoint", "get_checkpoint_state", "checkpoint_exists", "list_variables",
           "load_variable", "load_checkpoint", "NewCheckpointReader", "CheckpointReader", "import_meta_graph",
           "export_meta_graph"]

_STATE_FILE = "checkpoint"


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

def _saveables(var_list):
    """[(checkpoint key, slice spec or "", variable)] of var_list (default: the global variables)."""
    from tensorgrid.client.partitioned_variables import PartitionedVariable
    if var_list is None:
        var_list = variables_lib.global_variables()
    pairs = []
    if isinstance(var_list, dict):
        for name, value in var_list.items():
            parts = list(value) if isinstance(value, (PartitionedVariable, list, tuple)) else [value]
            pairs += [(name, v) for v in parts]
    else:
        for v in var_list:
            for part in (list(v) if isinstance(v, PartitionedVariable) else [v]):
                info = getattr(part, "_save_slice_info", None)
                name = part._op_name() if isinstance(part, variables_lib.Variable) else None
                pairs.append((info.full_name if info else name, part))
    items, seen = [], {}
    for name, v in pairs:
        if not isinstance(v, variables_lib.Variable):
            raise TypeError(f"Saver can only save Variables, not {v!r}")
        info = getattr(v, "_save_slice_info", None)
        spec = info.spec if info is not None else ""
        if seen.get((name, spec), v) is not v:
            raise ValueError(f"At least two variables have the same name: {name}")
        if (name, spec) not in seen:
            seen[(name, spec)] = v
            items.append((name, spec, v))
    return sorted(items, key=lambda item: (item[0], item[1]))


def _task_device(v):
    """The CPU of the task holding variable v ("" when v is not pinned to a task)."""
    spec = DeviceSpec.from_string(v.device or "")
    if spec.job is None and spec.task is None:
        return ""
    return DeviceSpec(spec.job, spec.replica if spec.replica is not None else 0, spec.task if spec.task is not None
                      else 0, "CPU", 0).to_string()


def _by_task(items):
    groups = {}
    for item in items:
        groups.setdefault(_task_device(item[2]), []).append(item)
    return sorted(groups.items())


def _strings(values, name):
    return array_ops.constant(np.array(list(values), dtype=object), dtypes.string, name=name)


class Saver:
    """Saves variables to checkpoints and restores them (see the module docstring for the two ways).

    Its ops live under one name scope S ("save"). Not sharded: S/tensor_names and S/shape_and_slices (the
    checkpoint keys and slice specs), S/save_value_<i> (the i-th value), S/restore_value_<i> (the
    placeholder restoring it) and S/restore_all. Sharded: S/filename (the prefix, fed), S/temp_prefix, per
    task S/ShardedFilename, S/SaveV2, S/RestoreV2, then S/MergeV2Checkpoints, S/control_dependency (the
    save tensor) and S/restore_all. A Saver given a `saver_def` (as import_meta_graph does) finds those ops
    in the default graph instead of building them.
    """

    def __init__(self, var_list=None, max_to_keep=5, name=None, allow_empty=False, saver_def=None,
                 keep_checkpoint_every_n_hours=10000.0, sharded=None):
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
        items = _saveables(var_list)
        if not items and not allow_empty:
            raise ValueError("No variables to save")
        groups = _by_task(items)
        self._sharded = bool(sharded) if sharded is not None else len(groups) > 1
        g = get_default_graph()
        self._keys = [(key, spec) for key, spec, _ in items]
        with g.name_scope(name or "save"), g.control_dependencies(None):
            _strings([k for k, _ in self._keys], "tensor_names")
            _strings([s for _, s in self._keys], "shape_and_slices")
            if self._sharded:
                self._build_sharded(groups)
            else:
                self._build_through_client(items)

    def _build_through_client(self, items):
        self._reads, self._feeds, assigns = [], [], []
        for i, (_, _, v) in enumerate(items):
            self._reads.append(v._read(name=f"save_value_{i}"))
            ph = array_ops.placeholder(v.dtype, v.shape, name=f"restore_value_{i}")
            self._feeds.append(ph)
            assigns.append(v.assign(ph, read_value=False))
        self._restore_op = array_ops.group(*assigns, name="restore_all")

    def _build_sharded(self, groups):
        self._filename = array_ops.placeholder_with_default(
            array_ops.constant("model", dtypes.string, name="filename/input"), [], name="filename")
        self._temp_prefix = array_ops.placeholder_with_default(
            array_ops.constant("model_temp/part", dtypes.string, name="temp_prefix/input"), [], name="temp_prefix")
        saves, parts, restores = [], [], []
        for i, (device, items) in enumerate(groups):
            with scopes.device(device or None):
                part = apply_op("ShardedFilename", [self._temp_prefix, array_ops.constant(i, dtypes.int32),
                                                    array_ops.constant(len(groups), dtypes.int32)], {})
                names = _strings([key for key, _, _ in items], "SaveV2/tensor_names")
                slices = _strings([spec for _, spec, _ in items], "SaveV2/shape_and_slices")
                saves.append(apply_op("SaveV2", [part, names, slices] + [v._read() for _, _, v in items],
                                      {"dtypes": [v.dtype for _, _, v in items]}))
                parts.append(part)
                values = apply_op("RestoreV2", [self._filename, names, slices],
                                  {"dtypes": [v.dtype for _, _, v in items]})
                values = values if isinstance(values, list) else [values]
                restores.append(array_ops.group(*[v.assign(x, read_value=False) for (_, _, v), x in
                                                  zip(items, values)]))
        last = groups[-1][0] if groups else ""
        with scopes.device(last or None), scopes.control_dependencies(saves):
            merge = apply_op("MergeV2Checkpoints", [array_ops.stack(parts), self._filename],
                             {"delete_old_dirs": True})
            with scopes.control_dependencies([merge]):
                self._save_tensor = array_ops.identity(self._filename, name="control_dependency")
        self._restore_op = array_ops.group(*restores, name="restore_all")

    def _from_saver_def(self, saver_def):
        g = get_default_graph()
        self._restore_op = g.as_graph_element(saver_def.restore_op_name, allow_tensor=False)
        scope = saver_def.restore_op_name.rpartition("/")[0]
        keys = _const_strings(g, f"{scope}/tensor_names:0")
        try:
            slices = _const_strings(g, f"{scope}/shape_and_slices:0")
        except (KeyError, ValueError):
            slices = [""] * len(keys)
        self._keys = list(zip(keys, slices))
        self._sharded = saver_def.sharded
        if self._sharded:
            self._filename = g.get_tensor_by_name(saver_def.filename_tensor_name)
            self._temp_prefix = g.get_tensor_by_name(f"{scope}/temp_prefix:0")
            self._save_tensor = g.get_tensor_by_name(saver_def.save_tensor_name)
            return
        self._reads = [g.get_tensor_by_name(f"{scope}/save_value_{i}:0") for i in range(len(self._keys))]
        self._feeds = [g.get_tensor_by_name(f"{scope}/restore_value_{i}:0") for i in range(len(self._keys))]

    @property
    def saver_def(self):
        return self.as_saver_def()

    def as_saver_def(self):
        """The SaverDef that finds this Saver's ops again (what the .meta file holds)."""
        from tensorgrid.proto import meta_graph_pb2
        saver_def = meta_graph_pb2.SaverDef(restore_op_name=self._restore_op.name,
                                            max_to_keep=self._max_to_keep or 0,
                                            keep_checkpoint_every_n_hours=self._keep_hours,
                                            version=meta_graph_pb2.SaverDef.V2, sharded=self._sharded)
        if self._sharded:
            saver_def.filename_tensor_name = self._filename.name
            saver_def.save_tensor_name = self._save_tensor.name
        return saver_def

    def to_proto(self, export_scope=None):
        """This Saver's SaverDef with names relative to export_scope (None when its ops lie outside it)."""
        saver_def = self.as_saver_def()
        if export_scope:
            if not saver_def.restore_op_name.startswith(export_scope + "/"):
                return None
            for field in ("restore_op_name", "filename_tensor_name", "save_tensor_name"):
                value = getattr(saver_def, field)
                if value.startswith(export_scope + "/"):
                    setattr(saver_def, field, value[len(export_scope) + 1:])
        return saver_def

    @staticmethod
    def from_proto(saver_def, import_scope=None):
        """The Saver whose ops `saver_def` names in the default graph (under import_scope, if given)."""
        if import_scope:
            scoped = type(saver_def)()
            scoped.CopyFrom(saver_def)
            for field in ("restore_op_name", "filename_tensor_name", "save_tensor_name"):
                if getattr(saver_def, field):
                    setattr(scoped, field, f"{import_scope}/{getattr(saver_def, field)}")
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
        if self._sharded:
            prefix = os.path.abspath(save_path)
            sess.run(self._save_tensor, {self._filename: prefix,
                                         self._temp_prefix: f"{prefix}_temp_{uuid.uuid4().hex}/part"})
        else:
            values = sess.run(self._reads) if self._reads else []
            atomic_write(save_path + SUFFIX, fmt.encode_items(
                [(key, value, spec) for (key, spec), value in zip(self._keys, values)]))
        if write_meta_graph:
            self.export_meta_graph(f"{save_path}.{meta_graph_suffix}", graph=sess.graph)
        if save_path in self._last_checkpoints:
            self._last_checkpoints.remove(save_path)
        self._last_checkpoints.append(save_path)
        if self._max_to_keep:
            while len(self._last_checkpoints) > self._max_to_keep:
                old = self._last_checkpoints.pop(0)
                for path in fmt.files_of(old) + [f"{old}.{meta_graph_suffix}"]:
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
        """Sets every variable to its value in checkpoint `save_path` (sharded or not, any partitioning).

        NotFoundError names a variable the checkpoint lacks; InvalidArgumentError a dtype or shape mismatch.
        """
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        if not checkpoint_exists(save_path):
            raise ValueError(f"The passed save_path is not a valid checkpoint: {save_path}")
        if self._sharded:
            sess.run(self._restore_op, {self._filename: os.path.abspath(save_path)})
            return
        reader = _Reader(save_path)
        feeds = {}
        for (name, spec), ph in zip(self._keys, self._feeds):
            entry = reader.entries.get(name)
            if entry is None:
                raise errors.NotFoundError(None, None, f"Key {name} not found in checkpoint {save_path}")
            if dtypes.as_dtype(entry["dtype"]) != ph.dtype:
                raise errors.InvalidArgumentError(
                    None, None, f"tensor_name = {name}; expected dtype {ph.dtype.name} does not equal original "
                                f"dtype {entry['dtype']} in checkpoint {save_path}")
            value = reader.read_slice(name, spec)
            if not ph.shape.is_compatible_with(value.shape):
                raise errors.InvalidArgumentError(
                    None, None, f"Restoring {name} from checkpoint {save_path}: shapes of the variable and the "
                                f"saved tensor differ: lhs shape= {ph.shape} rhs shape= {list(value.shape)}")
            feeds[ph] = value
        sess.run(self._restore_op, feeds)


def _const_strings(g, name):
    values = graph_lib._const_value(g.get_tensor_by_name(name))
    return [k.decode() if isinstance(k, bytes) else str(k) for k in np.asarray(values).ravel()]


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
