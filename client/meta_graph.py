"""Meta graphs: a graph with its collections and Saver, as a MetaGraphDef (proto/meta_graph.proto).

`export_meta_graph` writes one; `import_scoped_meta_graph` adds one to a
graph and refills its collections, so a program reloaded in a fresh process
finds its variables, global step, train op and its own collections by name.
Collections are written as TF writes them: the variable collections as
VariableDefs and "savers" as SaverDefs (any collection can be given its
proto with register_proto_function), tensors and operations by name,
numbers and strings as values (CollectionDef in the .proto). A collection holding anything else
(a Python object, a mix of kinds) is left out with a warning, as TF does;
tensorgrid's own collections (names starting "__") are left out silently.
"""

import warnings

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import variables as variables_lib
from tensorgrid.framework import errors

__all__ = ["export_meta_graph"]

GraphKeys = variables_lib.GraphKeys

# The collections whose items are serialized as VariableDefs (TF registers the same keys).
VARIABLE_COLLECTIONS = (GraphKeys.GLOBAL_VARIABLES, GraphKeys.TRAINABLE_VARIABLES, GraphKeys.LOCAL_VARIABLES,
                        GraphKeys.MODEL_VARIABLES, "moving_average_variables", GraphKeys.GLOBAL_STEP,
                        "metric_variables")


def _pb2():
    from tensorgrid.proto import meta_graph_pb2
    return meta_graph_pb2


def _check_graph_mode(what):
    if context.executing_eagerly():
        raise RuntimeError(f"{what}: exporting/importing meta graphs is not supported when eager execution is "
                           f"enabled. No graph exists when eager execution is enabled.")


def _in_scope(name, scope):
    return not scope or name.startswith(scope + "/")


def _strip(name, scope):
    return name[len(scope) + 1:] if scope else name


def _prefix(name, scope):
    return f"{scope}/{name}" if scope else name


# ---- collections ------------------------------------------------------------------------------

_PROTO_FUNCTIONS = {}   # collection key -> (to_proto, from_proto); see register_proto_function


def register_proto_function(collection_name, to_proto, from_proto):
    """Makes collection `collection_name` travel as serialized protos (a bytes_list), as TF's
    ops.register_proto_function: to_proto(item, export_scope) gives a message (None leaves the item
    out), from_proto(serialized bytes, import_scope) the item again, in the default graph."""
    _PROTO_FUNCTIONS[collection_name] = (to_proto, from_proto)


def _variable_to_proto(v, scope):
    return v.to_proto(scope) if isinstance(v, variables_lib.Variable) and _in_scope(v._op_name(), scope) else None


def _variable_from_proto(raw, scope):
    """The Variable a VariableDef names: the one an earlier collection of this import made, or a new one."""
    vd = _pb2().VariableDef.FromString(raw)
    name = _prefix(vd.variable_name, scope)
    g = graph_lib.get_default_graph()
    for key in VARIABLE_COLLECTIONS:
        for v in g.get_collection(key):
            if isinstance(v, variables_lib.Variable) and v.handle.name == name:
                return v
    return variables_lib.Variable.from_proto(vd, scope)


for _key in VARIABLE_COLLECTIONS:
    register_proto_function(_key, _variable_to_proto, _variable_from_proto)


def _item_kind(item):
    if isinstance(item, variables_lib.Variable):
        return "variable"
    if isinstance(item, (graph_lib.Tensor, graph_lib.Operation)):
        return "node"
    if isinstance(item, (bool, int)):
        return "int64"
    if isinstance(item, float):
        return "float"
    if isinstance(item, (str, bytes)):
        return "bytes"
    return None


def _collection_def(key, items, scope):
    """The CollectionDef of collection `key`, or None when its items cannot be serialized."""
    cd = _pb2().CollectionDef()
    if key in _PROTO_FUNCTIONS:
        to_proto = _PROTO_FUNCTIONS[key][0]
        protos = [to_proto(x, scope) for x in items]
        cd.bytes_list.value.extend(p.SerializeToString() for p in protos if p is not None)
        return cd
    kinds = {_item_kind(x) for x in items}
    if len(kinds) != 1 or None in kinds:
        return None
    kind = kinds.pop()
    if kind in ("variable", "node"):
        names = [x.handle.name if kind == "variable" else x.name for x in items]
        cd.node_list.value.extend(_strip(n, scope) for n in names if _in_scope(n, scope))
    elif kind == "int64":
        cd.int64_list.value.extend(int(x) for x in items)
    elif kind == "float":
        cd.float_list.value.extend(items)
    else:
        cd.bytes_list.value.extend(x.encode() if isinstance(x, str) else x for x in items)
    return cd


def _add_collections(meta, graph, collection_list, scope):
    keys = graph.get_all_collection_keys() if collection_list is None else list(collection_list)
    for key in keys:
        if key.startswith("__"):
            continue
        items = graph.get_collection(key)
        if not items:
            continue
        cd = _collection_def(key, items, scope)
        if cd is None:
            warnings.warn(f"collection {key!r} is left out of the meta graph: its items are not all variables, "
                          f"tensors, operations, numbers or strings of one kind", stacklevel=3)
            continue
        meta.collection_def[key].CopyFrom(cd)


def _restore_collections(meta, graph, scope):
    """Refills `graph`'s collections from `meta` (`graph` is the default graph)."""
    for key in sorted(meta.collection_def):
        cd = meta.collection_def[key]
        kind = cd.WhichOneof("kind")
        if kind == "bytes_list" and key in _PROTO_FUNCTIONS:
            from_proto = _PROTO_FUNCTIONS[key][1]
            items = [from_proto(raw, scope) for raw in cd.bytes_list.value]
        elif kind == "node_list":
            items = [graph.as_graph_element(_prefix(n, scope)) for n in cd.node_list.value]
        elif kind == "bytes_list":
            # as TF does: bytes as they are, or under an import scope taken as names and prefixed with it
            items = [f"{scope}/{_text(b)}" if scope else b for b in cd.bytes_list.value]
        elif kind == "int64_list":
            items = list(cd.int64_list.value)
        elif kind == "float_list":
            items = list(cd.float_list.value)
        else:
            continue
        ref = graph.get_collection_ref(key)
        ref.extend(x for x in items if not any(x is y for y in ref))


def _text(b):
    return b.decode("utf-8", errors="replace")


# ---- the graph --------------------------------------------------------------------------------

def _scoped_graph_def(graph_def, scope):
    """graph_def's nodes under `scope`, with the scope stripped from their names; ValueError on an input outside."""
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    del out.node[:]
    for node in graph_def.node:
        if not _in_scope(node.name, scope):
            continue
        nd = out.node.add()
        nd.CopyFrom(node)
        nd.name = _strip(node.name, scope)
        del nd.input[:]
        for ref in node.input:
            ctrl = ref.startswith("^")
            src = ref[1:] if ctrl else ref
            if not _in_scope(src, scope):
                raise ValueError(f"export_meta_graph(export_scope={scope!r}): node {node.name} reads {src}, "
                                 f"which is outside the scope")
            nd.input.append(("^" if ctrl else "") + _strip(src, scope))
        if "_class" in nd.attr:
            locs = [s.decode()[len("loc:@"):] for s in nd.attr["_class"].list.s]
            nd.attr["_class"].list.s[:] = [b"loc:@" + _strip(n, scope).encode() for n in locs if _in_scope(n, scope)]
    return out


def export_meta_graph(filename=None, meta_info_def=None, graph_def=None, saver_def=None, collection_list=None,
                      as_text=False, graph=None, export_scope=None, clear_devices=False,
                      clear_extraneous_savers=False, strip_default_attrs=False, save_debug_info=False, **kwargs):
    """The MetaGraphDef of `graph` (the default graph), written to `filename` when given.

    `collection_list` limits the collections (default: all); `export_scope` keeps only the nodes under that
    name scope, with it stripped from their names; `clear_devices` drops device specs; `as_text` writes
    the text format. `strip_default_attrs`, `clear_extraneous_savers` and `save_debug_info` are accepted
    for TF programs and change nothing (tensorgrid writes every attr, one Saver, no debug info).
    """
    _check_graph_mode("export_meta_graph")
    from tensorgrid.client.train import saver as saver_lib
    pb2 = _pb2()
    graph = graph or graph_lib.get_default_graph()
    meta = pb2.MetaGraphDef()
    meta.meta_info_def.tensorflow_version = f"tensorgrid {_version()}"
    if meta_info_def is not None:
        meta.meta_info_def.MergeFrom(meta_info_def)
    gd = graph_def if graph_def is not None else graph.as_graph_def()
    if export_scope:
        gd = _scoped_graph_def(gd, export_scope)
    meta.graph_def.CopyFrom(gd)
    if clear_devices:
        for node in meta.graph_def.node:
            node.device = ""
    if saver_def is not None:
        meta.saver_def.CopyFrom(saver_def)
        if export_scope:
            meta.saver_def.restore_op_name = _strip(saver_def.restore_op_name, export_scope)
    _add_collections(meta, graph, collection_list, export_scope)
    if filename:
        if as_text:
            from google.protobuf import text_format
            data = text_format.MessageToString(meta).encode()
        else:
            data = meta.SerializeToString()
        saver_lib.atomic_write(filename, [data])
    return meta


def _version():
    from importlib import metadata
    try:
        return metadata.version("tensorgrid")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_meta_graph_file(filename):
    """The MetaGraphDef in `filename`, in the text format or binary (OSError when there is no such file)."""
    from google.protobuf import message, text_format
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise OSError(f"File {filename} does not exist.") from None
    meta = _pb2().MetaGraphDef()
    # Text first: binary parsing skips unknown fields, so it can "succeed" on text and give garbage.
    try:
        text_format.Merge(data.decode("utf-8"), meta)
        return meta
    except (UnicodeDecodeError, text_format.ParseError):
        meta.Clear()
    try:
        meta.ParseFromString(data)
    except message.DecodeError as e:
        raise errors.DataLossError(None, None, f"{filename} is not a MetaGraphDef (binary or text): {e}") from None
    return meta


def import_scoped_meta_graph(meta_graph_or_file, clear_devices=False, import_scope=None, graph=None):
    """Adds a MetaGraphDef's graph (under `import_scope`) and collections to `graph`.

    Returns (the MetaGraphDef, the name scope it went under: "" or import_scope, made unique).
    """
    _check_graph_mode("import_meta_graph")
    from tensorgrid.client import importer
    meta = meta_graph_or_file
    if isinstance(meta, str):
        meta = read_meta_graph_file(meta)
    graph = graph or graph_lib.get_default_graph()
    gd = meta.graph_def
    if clear_devices:
        gd = type(gd)()
        gd.CopyFrom(meta.graph_def)
        for node in gd.node:
            node.device = ""
    with graph.as_default():
        # the scope the importer opens: import_scope, made unique if the graph already uses that name
        scope = graph.unique_name(import_scope, mark_as_used=False) if import_scope else ""
        importer.import_graph_def(gd, name=scope)
        _restore_collections(meta, graph, scope)
    return meta, scope
