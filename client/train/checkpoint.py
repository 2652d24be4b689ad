"""tg.train.Checkpoint and CheckpointManager: object-based checkpoints (TF2's).

A Checkpoint saves the variables reachable from the objects it is given,
each under the path of attribute names that leads to it, breadth first from
the Checkpoint (so a variable reachable two ways is saved once, under its
shortest path): `model/layers/0/w/.ATTRIBUTES/VARIABLE_VALUE`,
`save_counter/.ATTRIBUTES/VARIABLE_VALUE`, as TensorFlow names them. Restoring
walks the checkpoint's object graph and the Python objects side by side, so a
program that builds the same objects (under any variable names) gets their
values back.

The trackable protocol (what Checkpoint and tg.saved_model walk):
- a `tg.Variable` is a leaf with one value;
- an object with a method `_trackable_children()` returning a mapping
  {name: value} is a node; a value is a trackable, or a list, tuple or dict
  holding trackables (a node of its own whose children are named "0", "1", ...
  or by key, as TF's ListWrapper/DictWrapper), and other values are skipped;
- such an object may also have `_trackable_slot_variables()` returning
  [(variable, slot name, slot variable)] (an optimizer's per-variable
  accumulators): a slot is saved as
  `<variable's path>/.OPTIMIZER_SLOT/<optimizer's path>/<slot name>/.ATTRIBUTES/VARIABLE_VALUE`.
tg.Module and the TF1 optimizers implement it; a Keras model or optimizer is
checkpointable once it exposes its state the same way (TF 2.21's Keras 3
optimizers name their children `_iterations`, `_learning_rate`,
`_trainable_variables`, `_variables`). What a restore finds no object for yet
waits: `restore_pending()` (called by tg.Module's attribute setter and the TF1
optimizers once they made their slots; a trackable that makes children later
calls it too) gives those objects their values when they exist.

Files: the V1 Saver's format (client/train/saver.py), one file
`<prefix>.tgckpt`, where TF writes `<prefix>.index` and `<prefix>.data-*`. The
object graph is TF's TrackableObjectGraph in its proto3 JSON form (nodes,
each with children {nodeId, localName}, attributes {name, fullName,
checkpointKey} and slotVariables), kept under TF's key
`_CHECKPOINTABLE_OBJECT_GRAPH` as a uint8 vector (TF: a string scalar), since
the format holds numbers only. The directory's `checkpoint` file is TF's
CheckpointState text, timestamps included.
"""

import collections
import contextlib
import json
import logging
import os
import time

import numpy as np

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import module as module_lib
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.train import saver as saver_lib
from tensorgrid.framework import dtypes, errors

__all__ = ["Checkpoint", "CheckpointManager", "CheckpointOptions"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_VALUE = "VARIABLE_VALUE"
_log = logging.getLogger("tensorgrid.checkpoint")


# ---- the object graph ------------------------------------------------------------------------

def _is_variable(x):
    return isinstance(x, variables_lib.Variable)


def is_trackable(value):
    """Whether `value` is, or is a list/tuple/dict holding, something the trackable protocol saves."""
    if _is_variable(value) or hasattr(value, "_trackable_children"):
        return True
    if isinstance(value, dict):
        return any(is_trackable(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_trackable(v) for v in value)
    return False


def children(obj):
    """[(local name, child)] of one node of the object graph, in order."""
    if _is_variable(obj):
        return []
    if hasattr(obj, "_trackable_children"):
        items = list(obj._trackable_children().items())
    elif isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))
    else:
        return []
    return [(str(name), child) for name, child in items if is_trackable(child)]


def _escape(local_name):
    """TF's escaping of '/' and '.' inside one name of a checkpoint key."""
    return local_name.replace(".", ".S").replace("/", "./")


class ObjectGraph:
    """The objects reachable from `root`, numbered breadth first (the root is 0), with their paths."""

    def __init__(self, root):
        self.objects = [root]
        self.paths = [()]
        self.edges = [[]]       # per node: [(local name, node id)]
        ids = {id(root): 0}
        queue = collections.deque([0])
        while queue:
            node = queue.popleft()
            for name, child in children(self.objects[node]):
                if id(child) not in ids:
                    ids[id(child)] = len(self.objects)
                    self.objects.append(child)
                    self.paths.append(self.paths[node] + (name,))
                    self.edges.append([])
                    queue.append(ids[id(child)])
                self.edges[node].append((name, ids[id(child)]))
        self.ids = ids
        self.slots = [[] for _ in self.objects]   # per optimizer node: [(variable id, slot name, slot id)]
        for node, obj in enumerate(list(self.objects)):
            for var, slot_name, slot in getattr(obj, "_trackable_slot_variables", lambda: [])():
                if id(var) not in ids:
                    continue            # a slot of a variable nothing else saves: TF drops it too
                if id(slot) not in ids:
                    ids[id(slot)] = len(self.objects)
                    self.objects.append(slot)
                    self.paths.append(None)
                    self.edges.append([])
                    self.slots.append([])
                self.slots[node].append((ids[id(var)], slot_name, ids[id(slot)]))

    def key(self, node):
        """The checkpoint key of variable node `node`."""
        path = self.paths[node]
        if path is None:
            for opt, entries in enumerate(self.slots):
                for var, slot_name, slot in entries:
                    if slot == node:
                        return (f"{self._joined(var)}/.OPTIMIZER_SLOT/{self._joined(opt)}/{_escape(slot_name)}"
                                f"/.ATTRIBUTES/{VARIABLE_VALUE}")
        return f"{self._joined(node)}/.ATTRIBUTES/{VARIABLE_VALUE}"

    def _joined(self, node):
        return "/".join(_escape(p) for p in self.paths[node])

    def variables(self):
        """[(node id, Variable)] in node order."""
        return [(i, o) for i, o in enumerate(self.objects) if _is_variable(o)]

    def to_json(self):
        """TF's TrackableObjectGraph, in proto3's JSON form."""
        nodes = []
        for i, obj in enumerate(self.objects):
            node = {}
            if self.edges[i]:
                node["children"] = [{"nodeId": c, "localName": n} for n, c in self.edges[i]]
            if _is_variable(obj):
                node["attributes"] = [{"name": VARIABLE_VALUE, "fullName": obj._op_name(),
                                       "checkpointKey": self.key(i)}]
            if self.slots[i]:
                node["slotVariables"] = [{"originalVariableNodeId": v, "slotName": n, "slotVariableNodeId": s}
                                         for v, n, s in self.slots[i]]
            nodes.append(node)
        return {"nodes": nodes}


# ---- reading and writing values ---------------------------------------------------------------

def _session_for(var):
    from tensorgrid.client import session as session_lib
    sess = session_lib.get_default_session()
    if sess is None:
        raise ValueError(f"variable {var.name} belongs to a graph: tg.train.Checkpoint reads and writes it "
                         f"through the default session; run it inside `with session.as_default():`")
    return sess


class _GraphReads:
    """One read op per graph variable, built once, so saving again adds no ops."""

    def __init__(self):
        self._reads = {}

    def values(self, var_list):
        values = {}
        graph_vars = [v for v in var_list if not v._eager()]
        with variables_lib._init_scope():
            for v in var_list:
                if v._eager():
                    values[id(v)] = v.numpy()
        if graph_vars:
            for v in graph_vars:
                if id(v) not in self._reads:
                    with v.graph.as_default():
                        self._reads[id(v)] = v.read_value()
            sess = _session_for(graph_vars[0])
            for v, value in zip(graph_vars, sess.run([self._reads[id(v)] for v in graph_vars])):
                values[id(v)] = value
        return values


def _assign(var, value):
    if var._eager():
        with variables_lib._init_scope():
            var.assign(value)
    else:
        var.load(value, _session_for(var))


def write_objects(root, prefix, reads):
    """Writes the variables reachable from `root` to checkpoint `prefix` (see the module docstring)."""
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    graph = ObjectGraph(root)
    variables = graph.variables()
    values = reads.values([v for _, v in variables])
    tensors = {graph.key(i): values[id(v)] for i, v in variables}
    tensors[OBJECT_GRAPH_KEY] = np.frombuffer(json.dumps(graph.to_json()).encode(), dtype=np.uint8)
    saver_lib.atomic_write(prefix + saver_lib.SUFFIX, saver_lib._encode(tensors))
    return prefix


def _read_object_graph(reader, prefix):
    if OBJECT_GRAPH_KEY not in reader.entries:
        raise ValueError(f"The checkpoint {prefix} has no object graph: it was written by tg.train.Saver "
                         f"(name-based). Restore it with tg.compat.v1.train.Saver.")
    return json.loads(reader.read(OBJECT_GRAPH_KEY).tobytes().decode())["nodes"]


class _Restore:
    """Matches a checkpoint's object graph with the Python objects under `root` and assigns values."""

    def __init__(self, root, prefix):
        if not saver_lib.checkpoint_exists(prefix):
            if os.path.exists(prefix + ".index"):
                raise errors.NotFoundError(None, None, f"{prefix} is a TensorFlow checkpoint (.index/.data files): "
                                                       f"tensorgrid reads only its own .tgckpt checkpoints")
            raise errors.NotFoundError(None, None, f"Failed to find any matching files for {prefix}")
        self.prefix = prefix
        self.reader = saver_lib._Reader(prefix)
        self.nodes = _read_object_graph(self.reader, prefix)
        self.matched = {}       # checkpoint node id -> Python object
        self.restored = set()   # checkpoint keys assigned
        self.pending = []       # (Python object, local name, checkpoint node id) not there yet
        self._match(root)

    def _match(self, root):
        self.matched[0] = root
        self._match_below(0, root)
        self._restore_slots()

    def _restore_node(self, node_id, obj):
        for attr in self.nodes[node_id].get("attributes", []):
            if attr["name"] != VARIABLE_VALUE or not _is_variable(obj):
                continue
            self._restore_value(obj, attr["checkpointKey"])

    def _restore_value(self, var, key):
        entry = self.reader.entries.get(key)
        if entry is None:
            raise errors.NotFoundError(None, None, f"Key {key} not found in checkpoint {self.prefix}")
        saved_dtype = dtypes.as_dtype(entry["dtype"])
        if saved_dtype != var.dtype:
            raise errors.InvalidArgumentError(None, None, f"restoring {var.name} from {key} in {self.prefix}: the "
                                                          f"checkpoint holds {saved_dtype.name}, the variable is "
                                                          f"{var.dtype.name}")
        if not var.shape.is_compatible_with(entry["shape"]):
            raise ValueError(f"Received incompatible tensor with shape {tuple(entry['shape'])} when attempting to "
                             f"restore variable with shape {var.shape} and name {var.name} (checkpoint key {key}).")
        _assign(var, self.reader.read(key))
        self.restored.add(key)

    def _restore_slots(self):
        for node_id, obj in list(self.matched.items()):
            saved = self.nodes[node_id].get("slotVariables", [])
            if not saved or not hasattr(obj, "_trackable_slot_variables"):
                continue
            live = {(id(v), name): slot for v, name, slot in obj._trackable_slot_variables()}
            for ref in saved:
                if ref["slotVariableNodeId"] in self.matched:
                    continue
                var = self.matched.get(ref["originalVariableNodeId"])
                slot = live.get((id(var), ref["slotName"])) if var is not None else None
                if slot is None:
                    continue
                self.matched[ref["slotVariableNodeId"]] = slot
                self._restore_node(ref["slotVariableNodeId"], slot)

    def retry(self):
        """Matches and restores the pending children that exist now, and slots made since (delayed
        restoration); returns whether anything is still missing."""
        waiting, self.pending = self.pending, []
        for parent, name, node_id in waiting:
            if node_id in self.matched:
                continue
            child = dict(children(parent)).get(name)
            if child is None:
                self.pending.append((parent, name, node_id))
                continue
            self.matched[node_id] = child
            self._match_below(node_id, child)
        self._restore_slots()
        return self.incomplete()

    def incomplete(self):
        """Whether some child or slot variable of the checkpoint has no Python object yet."""
        slots = [ref["slotVariableNodeId"] for node_id in self.matched
                 for ref in self.nodes[node_id].get("slotVariables", [])]
        return bool(self.pending) or any(s not in self.matched for s in slots)

    def _match_below(self, node_id, obj):
        """Matches and restores the checkpoint's nodes below `node_id` with the objects below `obj`."""
        queue = collections.deque([(node_id, obj)])
        while queue:
            node_id, obj = queue.popleft()
            self._restore_node(node_id, obj)
            present = dict(children(obj))
            for ref in self.nodes[node_id].get("children", []):
                if ref["nodeId"] in self.matched:
                    continue
                child = present.get(ref["localName"])
                if child is None:
                    self.pending.append((obj, ref["localName"], ref["nodeId"]))
                    continue
                self.matched[ref["nodeId"]] = child
                queue.append((ref["nodeId"], child))


# Restorations waiting for objects to appear (the latest per Checkpoint).
_waiting_restores = []


def restore_pending():
    """Gives objects made since a restore (a Module attribute set later, an optimizer's slots made at
    its first step) the values the checkpoint holds for them: TF's delayed restoration. tg.Module and
    the TF1 optimizers call it; other trackables call it after they create new children."""
    if _waiting_restores:
        _waiting_restores[:] = [r for r in _waiting_restores if r.retry()]


def _attribute_set(obj, name, value):
    if is_trackable(value):
        restore_pending()


module_lib.setattr_hooks.append(_attribute_set)


class CheckpointLoadStatus:
    """What `Checkpoint.restore` gives: assertions about how the checkpoint matched the objects."""

    def __init__(self, restore, root):
        self._restore = restore
        self._root = root

    def _unmatched_python_objects(self):
        graph = ObjectGraph(self._root)
        bound = {id(o) for o in self._restore.matched.values()}
        return [o for _, o in graph.variables() if id(o) not in bound]

    def assert_consumed(self):
        """AssertionError unless every object and value of the checkpoint was matched and restored, and
        every variable of the Python objects got a value."""
        for node_id, node in enumerate(self._restore.nodes):
            if node_id not in self._restore.matched:
                raise AssertionError(f"Unresolved object in checkpoint {self._describe(node_id)}: {node}")
            for attr in node.get("attributes", []):
                if attr["checkpointKey"] not in self._restore.restored:
                    raise AssertionError(f"Unrestored value in checkpoint {self._describe(node_id)}: "
                                         f"{attr['checkpointKey']}")
        self.assert_existing_objects_matched()
        return self

    def assert_existing_objects_matched(self):
        """AssertionError when a variable reachable from the checkpointed objects got no value."""
        unmatched = self._unmatched_python_objects()
        if unmatched:
            raise AssertionError(f"Some Python objects were not bound to checkpointed values, likely due to "
                                 f"changes in the Python program: {[v.name for v in unmatched]}")
        return self

    def assert_nontrivial_match(self):
        """AssertionError unless something besides the root was matched."""
        if len(self._restore.matched) <= 1:
            raise AssertionError(f"Nothing except the root object matched a checkpointed value "
                                 f"({self._restore.prefix}).")
        return self

    def expect_partial(self):
        """Says a partial restore is intended (tensorgrid does not warn about one anyway)."""
        return self

    def run_restore_ops(self, session=None):
        """Nothing to run: values are assigned when `restore` is called."""

    def initialize_or_restore(self, session=None):
        """Nothing to run: values are assigned when `restore` is called."""

    def _describe(self, node_id):
        path = self._path_of(node_id)
        return "(root)" + "".join(f".{p}" for p in path) if path is not None else f"(node {node_id})"

    def _path_of(self, node_id):
        queue, seen = collections.deque([(0, ())]), {0}
        while queue:
            n, path = queue.popleft()
            if n == node_id:
                return path
            for ref in self._restore.nodes[n].get("children", []):
                if ref["nodeId"] not in seen:
                    seen.add(ref["nodeId"])
                    queue.append((ref["nodeId"], path + (ref["localName"],)))
        return None


class InitializationOnlyStatus:
    """What `Checkpoint.restore(None)` gives: nothing restored, every assertion but the weakest fails."""

    def assert_consumed(self):
        raise AssertionError("No checkpoint specified (save_path=None); nothing is being restored.")

    def assert_existing_objects_matched(self):
        raise AssertionError("No checkpoint specified (save_path=None); nothing is being restored.")

    def assert_nontrivial_match(self):
        raise AssertionError("No checkpoint specified (save_path=None); nothing is being restored.")

    def expect_partial(self):
        return self

    def run_restore_ops(self, session=None):
        """Nothing to run."""

    def initialize_or_restore(self, session=None):
        """Nothing to run: variables made eagerly hold their initial values already."""


class CheckpointOptions:
    """tf.train.CheckpointOptions: accepted for TF programs; tensorgrid writes on this machine."""

    def __init__(self, experimental_io_device=None, experimental_enable_async_checkpoint=False,
                 experimental_write_callbacks=None, enable_async=False, experimental_sharding_callback=None,
                 experimental_skip_slot_variables=False):
        self.experimental_io_device = experimental_io_device
        self.enable_async = enable_async or experimental_enable_async_checkpoint


class Checkpoint:
    """Saves and restores the objects given as keyword arguments (see the module docstring).

        ckpt = tg.train.Checkpoint(model=model, optimizer=opt)
        path = ckpt.save("/tmp/ckpts/ckpt")        # /tmp/ckpts/ckpt-1
        ckpt.restore(tg.train.latest_checkpoint("/tmp/ckpts")).assert_consumed()
    """

    def __init__(self, root=None, **kwargs):
        if root is not None and not is_trackable(root):
            raise ValueError(f"`Checkpoint` was expecting root to be a trackable object (an object with "
                             f"variables or `_trackable_children`), got {root!r}.")
        object.__setattr__(self, "_tg_root", root)
        object.__setattr__(self, "_tg_save_counter", None)
        object.__setattr__(self, "_tg_reads", _GraphReads())
        for name, value in sorted(kwargs.items()):
            if root is not None and name in dict(children(root)):
                raise ValueError(f"Cannot save {name!r}: the root object already has a child of that name.")
            setattr(self, name, value)

    def __setattr__(self, name, value):
        if not name.startswith("_tg_") and not is_trackable(value):
            raise ValueError(f"`Checkpoint` was expecting {name} to be a trackable object (a tg.Variable, "
                             f"tg.Module, optimizer, or an object with `_trackable_children`), got {value!r}.")
        object.__setattr__(self, name, value)
        if not name.startswith("_tg_"):
            restore_pending()

    def _trackable_children(self):
        items = dict(children(self._tg_root)) if self._tg_root is not None else {}
        items.update((k, v) for k, v in vars(self).items() if not k.startswith("_tg_"))
        if self._tg_save_counter is not None:
            items["save_counter"] = self._tg_save_counter
        return items

    @property
    def save_counter(self):
        """An int64 tg.Variable counting the calls to `save` (made on first use)."""
        if self._tg_save_counter is None:
            from tensorgrid.client import function
            lift = isinstance(graph_lib.get_default_graph(), function.FuncGraph)
            with variables_lib._init_scope() if lift else contextlib.nullcontext():
                counter = variables_lib.Variable(np.int64(0), trainable=False, name="save_counter")
            if not counter._eager():
                _session_for(counter).run(counter.initializer)
            object.__setattr__(self, "_tg_save_counter", counter)
        return self._tg_save_counter

    def _bump_save_counter(self):
        """Adds 1 to save_counter; returns its new value."""
        counter = self.save_counter
        number = int(self._tg_reads.values([counter])[id(counter)]) + 1
        if counter._eager():
            _assign(counter, number)
        else:
            counter.load(number, _session_for(counter))
        return number

    def write(self, file_prefix, options=None):
        """Writes a checkpoint at exactly `file_prefix` (no counter, no `checkpoint` file); returns the path."""
        return write_objects(self, os.fspath(file_prefix), self._tg_reads)

    def save(self, file_prefix, options=None):
        """Increments `save_counter`, writes checkpoint `<file_prefix>-<save_counter>` and records it as the
        directory's latest in its `checkpoint` file; returns the path."""
        path = self.write(f"{os.fspath(file_prefix)}-{self._bump_save_counter()}", options)
        directory = os.path.dirname(os.path.abspath(path))
        write_state(directory, path, {path: None}, None)
        return path

    def read(self, save_path, options=None):
        """Restores the values of checkpoint `save_path` (a prefix); returns a CheckpointLoadStatus."""
        restore = _Restore(self, _resolve(save_path))
        _waiting_restores[:] = [r for r in _waiting_restores if r.matched[0] is not self]
        if restore.incomplete():
            _waiting_restores.append(restore)
        return CheckpointLoadStatus(restore, self)

    def restore(self, save_path, options=None):
        """As `read`, `save_counter` included; `save_path=None` restores nothing (InitializationOnlyStatus)."""
        if save_path is None:
            return InitializationOnlyStatus()
        self.save_counter  # noqa: B018 - made now so that it is restored too
        return self.read(save_path, options)


def _resolve(save_path):
    save_path = os.fspath(save_path)
    if os.path.isdir(save_path):
        latest = saver_lib.latest_checkpoint(save_path)
        if latest is None:
            raise errors.NotFoundError(None, None, f"no checkpoint in directory {save_path}")
        return latest
    return save_path[:-len(saver_lib.SUFFIX)] if save_path.endswith(saver_lib.SUFFIX) else save_path


# ---- the `checkpoint` state file, with timestamps -------------------------------------------------

def write_state(directory, latest, timestamps, last_preserved):
    """The directory's `checkpoint` file: the latest checkpoint, every kept one (oldest first) and when
    each was written (`timestamps`: {path: time or None}), paths relative to the directory (TF's
    CheckpointState text format)."""
    def rel(p):
        return os.path.relpath(p, directory) if os.path.dirname(os.path.abspath(p)) == os.path.abspath(directory) \
            else p
    lines = [f"model_checkpoint_path: {json.dumps(rel(latest))}"]
    lines += [f"all_model_checkpoint_paths: {json.dumps(rel(p))}" for p in timestamps]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in timestamps.values() if t is not None]
    if last_preserved is not None:
        lines.append(f"last_preserved_timestamp: {last_preserved!r}")
    saver_lib.atomic_write(os.path.join(directory, "checkpoint"), ["\n".join(lines).encode() + b"\n"])


def _read_timestamps(directory):
    """(all_model_checkpoint_timestamps, last_preserved_timestamp) of the directory's `checkpoint` file."""
    stamps, last = [], None
    try:
        with open(os.path.join(directory, "checkpoint"), encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "all_model_checkpoint_timestamps":
                    stamps.append(float(value))
                elif key.strip() == "last_preserved_timestamp":
                    last = float(value)
    except FileNotFoundError:
        pass
    return stamps, last


class CheckpointManager:
    """Keeps the last `max_to_keep` checkpoints of a Checkpoint in `directory` (TF2's CheckpointManager).

    Checkpoints are named `<directory>/<checkpoint_name>-<number>`, numbered by the Checkpoint's
    `save_counter` unless `save` is given a number. On removal from the kept set, a checkpoint written
    at least `keep_checkpoint_every_n_hours` after the last one so preserved stays on disk. With
    `checkpoint_interval`, `save` writes only when `step_counter` moved that many steps on.
    """

    def __init__(self, checkpoint, directory, max_to_keep, keep_checkpoint_every_n_hours=None,
                 checkpoint_name="ckpt", step_counter=None, checkpoint_interval=None, init_fn=None,
                 last_checkpoint_step=None):
        if max_to_keep is not None and max_to_keep <= 0:
            raise ValueError(f"Expected a positive integer or `None` for `max_to_keep`, got {max_to_keep}.")
        if checkpoint_interval is not None and step_counter is None:
            raise ValueError("`step_counter` should be passed if `checkpoint_interval` is not None.")
        self._checkpoint = checkpoint
        self._max_to_keep = max_to_keep
        self._keep_hours = keep_checkpoint_every_n_hours
        self._directory = os.fspath(directory)
        self._prefix = os.path.join(self._directory, checkpoint_name)
        self._init_fn = init_fn
        self._step_counter = step_counter
        self._checkpoint_interval = checkpoint_interval
        self._last_checkpoint_step = last_checkpoint_step
        self._maybe_delete = collections.OrderedDict()
        now = time.time()
        state = saver_lib.get_checkpoint_state(self._directory)
        if state is None:
            self._latest = None
            self._last_preserved = now - 1.0
            return
        self._latest = state.model_checkpoint_path
        stamps, last = _read_timestamps(self._directory)
        self._last_preserved = min(last, now) if last is not None else now - 1.0
        if len(stamps) != len(state.all_model_checkpoint_paths):
            stamps = [self._last_preserved] * len(state.all_model_checkpoint_paths)
        for path, stamp in zip(state.all_model_checkpoint_paths, stamps):
            stamp = min(stamp, now)
            if stamp > self._last_preserved:
                self._maybe_delete[path] = stamp

    @property
    def directory(self):
        return self._directory

    @property
    def checkpoint(self):
        return self._checkpoint

    @property
    def checkpoint_interval(self):
        return self._checkpoint_interval

    @property
    def latest_checkpoint(self):
        """The prefix of the newest checkpoint, or None."""
        return self._latest

    @property
    def checkpoints(self):
        """The kept checkpoints' prefixes, oldest first (those kept by the hours rule not among them)."""
        return list(self._maybe_delete)

    def save(self, checkpoint_number=None, check_interval=True, options=None):
        """Writes a checkpoint, forgets and deletes the oldest beyond max_to_keep; returns its prefix
        (None when `checkpoint_interval` says it is not yet time)."""
        if self._checkpoint_interval is not None:
            step = int(_value_of(self._step_counter))
            if self._last_checkpoint_step is not None:
                if step == self._last_checkpoint_step:
                    return None
                if check_interval and step < self._last_checkpoint_step + self._checkpoint_interval:
                    return None
            self._last_checkpoint_step = step
        number = self._checkpoint._bump_save_counter()
        if checkpoint_number is not None:
            number = _value_of(checkpoint_number)
        path = self._checkpoint.write(f"{self._prefix}-{int(number)}", options)
        self._maybe_delete.pop(path, None)
        self._maybe_delete[path] = time.time()
        self._latest = path
        self._record_state()
        self._sweep()
        self._record_state()
        return path

    def _record_state(self):
        write_state(self._directory, self._latest, self._maybe_delete, self._last_preserved)

    def _sweep(self):
        if not self._max_to_keep:
            return
        while len(self._maybe_delete) > self._max_to_keep:
            path, stamp = self._maybe_delete.popitem(last=False)
            if self._keep_hours and stamp - self._keep_hours * 3600.0 >= self._last_preserved:
                self._last_preserved = stamp
                continue
            try:
                os.remove(path + saver_lib.SUFFIX)
            except FileNotFoundError:
                pass

    def restore_or_initialize(self):
        """Restores the latest checkpoint and returns its path; else calls init_fn (if any) and returns None."""
        if self._latest is not None:
            self._checkpoint.restore(self._latest)
            if self._checkpoint_interval is not None:
                self._last_checkpoint_step = int(_value_of(self._step_counter))
            return self._latest
        if self._init_fn is not None:
            self._init_fn()
            _log.info("Customized initialization is done through the passed `init_fn`.")
        return None


def _value_of(x):
    """A Python/numpy number for an int, a tg.Variable or a tensor."""
    if isinstance(x, (int, np.integer)):
        return x
    if _is_variable(x):
        if x._eager():
            return x.numpy()
        return _session_for(x).run(x.read_value())
    if getattr(x, "_is_eager_tensor", False):
        return x.numpy()
    if context.executing_eagerly():
        return np.asarray(x)
    from tensorgrid.client import session as session_lib
    return session_lib.get_default_session().run(x)
