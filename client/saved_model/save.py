"""tg.saved_model.save: an object's variables, its tg.functions' traced graphs and its signatures."""

import json
import os

from tensorgrid.client import function as function_lib
from tensorgrid.client import nest
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.saved_model import structure
from tensorgrid.client.train import checkpoint as checkpoint_lib
from tensorgrid.runtime import ir

SAVED_MODEL_FILENAME = "saved_model.pb"
VARIABLES_DIRECTORY = "variables"
VARIABLES_FILENAME = "variables"
OBJECT_GRAPH_COLLECTION = "saved_object_graph"
SERVING_DEFAULT = "serving_default"
SERVING_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"


class SaveOptions:
    """tf.saved_model.SaveOptions: accepted for TF programs (tensorgrid has no options to apply)."""

    def __init__(self, namespace_whitelist=None, save_debug_info=False, function_aliases=None,
                 experimental_io_device=None, experimental_variable_policy=None,
                 experimental_custom_gradients=True, experimental_image_format=False,
                 experimental_skip_saver=False, experimental_sharding_callback=None, extra_tags=None):
        self.function_aliases = function_aliases or {}
        self.extra_tags = extra_tags


def functions_of(obj):
    """[(attribute name, tg.Function bound to obj)]: the tg.functions on obj's class and on obj itself."""
    found = {}
    for name in dir(type(obj)):
        if isinstance(getattr(type(obj), name, None), function_lib.Function):
            found[name] = getattr(obj, name)
    for name, value in getattr(obj, "__dict__", {}).items():
        if isinstance(value, function_lib.Function):
            found[name] = value
    return sorted(found.items())


def _concrete_functions(fn):
    if fn.input_signature is not None:
        fn.get_concrete_function()
    return list(fn._concrete.values())


class _Exporter:
    """Collects the object graph, the concrete functions and the signatures of one save."""

    def __init__(self, obj):
        self.graph = checkpoint_lib.ObjectGraph(obj)
        self.handles = {v._shared_name: i for i, v in self.graph.variables() if v._eager()}
        self.functions = []             # ir.Function per concrete function, in order
        self.concrete = {}              # id(ConcreteFunction) -> its entry in the JSON
        self.entries = []

    def concrete_entry(self, cf, label, from_signature=False):
        """The JSON entry of ConcreteFunction cf (written once, whichever object reaches it)."""
        entry = self.concrete.get(id(cf))
        if entry is not None:
            return entry
        graph_ir = cf.graph.to_ir()
        bound = {}
        for node in graph_ir:
            if node.op != "VarHandleOp":
                continue
            shared = node.attrs.get("shared_name")
            shared = shared.decode() if isinstance(shared, bytes) else shared
            if shared not in self.handles:
                raise ValueError(f"tg.saved_model.save: function {label!r} uses variable {node.name!r}, which the "
                                 f"saved object does not hold: assign it to an attribute of the object (or of "
                                 f"an object it holds) so that it is saved with it")
            bound[node.name] = self.handles[shared]
        name = f"__inference_{label}_{len(self.functions) + 1}"
        results = [t.name for t in cf.outputs]
        self.functions.append(ir.Function(name, graph_ir, [ph.op.name for ph in cf.inputs], results,
                                          [(t.dtype, t.shape.as_tuple()) for t in cf.outputs], list(cf._targets)))
        entry = {"name": name,
                 "inputs": [{"name": ph.op.name, "dtype": ph.dtype.name, "shape": _shape(ph.shape)}
                            for ph in cf.inputs],
                 "outputs": structure.to_json(cf._structure),
                 "variables": bound, "inputSignature": from_signature}
        self.concrete[id(cf)] = entry
        self.entries.append(entry)
        return entry


def _shape(shape):
    dims = shape.as_tuple()
    return None if dims is None else list(dims)


def _signature_functions(obj, signatures):
    """{key: ConcreteFunction} of the `signatures` argument (TF's rules: a tg.function with an
    input_signature, a concrete function, or a dict of them; None: the object's only tg.function with an
    input_signature, if it has exactly one)."""
    if signatures is None:
        candidates = [fn for _, fn in functions_of(obj) if fn.input_signature is not None]
        return {SERVING_DEFAULT: candidates[0].get_concrete_function()} if len(candidates) == 1 else {}
    if not isinstance(signatures, dict):
        signatures = {SERVING_DEFAULT: signatures}
    out = {}
    for key, fn in signatures.items():
        if isinstance(fn, function_lib.Function):
            if fn.input_signature is None:
                raise ValueError(f"signature {key!r}: a tg.function used as a signature needs an input_signature "
                                 f"(or pass fn.get_concrete_function(...))")
            fn = fn.get_concrete_function()
        if not isinstance(fn, function_lib.ConcreteFunction):
            raise ValueError(f"signature {key!r} must be a tg.function with an input_signature or a concrete "
                             f"function, got {fn!r}")
        out[key] = fn
    return out


def _signature_outputs(key, cf):
    """{output name: flat output index}: a dict's keys, else output_0, output_1, ... (TF's names)."""
    spec = cf._structure
    if spec[0] == "dict":
        names = {}
        for k, sub in spec[2]:
            if sub[0] != "leaf":
                raise ValueError(f"signature {key!r} must return a flat dict of tensors; {k!r} holds {sub[0]}")
            names[str(k)] = sub[1]
        return names
    leaves = []
    nest.flatten(nest.rebuild(spec, list(range(len(cf.outputs)))), lambda i: i, leaves)
    return {f"output_{i}": index for i, index in enumerate(leaves)}


def save(obj, export_dir, signatures=None, options=None):
    """Writes `obj` (a tg.Module or any trackable) to `export_dir` as a SavedModel.

    Saved: every variable reachable from obj (variables/variables.tgckpt, keyed as tg.train.Checkpoint
    keys them), each tg.function found on obj or the objects it holds with the graphs traced so far (a
    function with an input_signature is traced for it), and `signatures` (serving_default when one
    function is given). tg.saved_model.load gives the objects back with their functions callable.
    """
    from tensorgrid.proto import meta_graph_pb2, saved_model_pb2
    from tensorgrid.proto import convert
    if not checkpoint_lib.is_trackable(obj) and not functions_of(obj):
        raise ValueError(f"Expected an object that holds variables or tg.functions (a tg.Module), got {obj!r}")
    export_dir = os.fspath(export_dir)
    exporter = _Exporter(obj)
    nodes = []
    for node_id, o in enumerate(exporter.graph.objects):
        entry = {"children": [{"nodeId": c, "localName": n} for n, c in exporter.graph.edges[node_id]]}
        if isinstance(o, variables_lib.Variable):
            entry.update(kind="variable", variable={"dtype": o.dtype.name, "shape": _shape(o.shape),
                                                    "trainable": o.trainable, "name": o._op_name()})
        elif isinstance(o, dict) and not hasattr(o, "_trackable_children"):
            entry["kind"] = "dict"
        elif isinstance(o, (list, tuple)) and not hasattr(o, "_trackable_children"):
            entry["kind"] = "list"
        else:
            entry["kind"] = "user_object"
            if isinstance(getattr(o, "name", None), str):
                entry["name"] = o.name
            entry["functions"] = {}
            for name, fn in functions_of(o):
                concrete = [exporter.concrete_entry(cf, name, fn.input_signature is not None)["name"]
                            for cf in _concrete_functions(fn)]
                if concrete:
                    entry["functions"][name] = concrete
        nodes.append(entry)
    sigs = _signature_functions(obj, signatures)
    sig_entries = {key: {"function": exporter.concrete_entry(cf, key, True)["name"],
                         "outputs": _signature_outputs(key, cf)} for key, cf in sigs.items()}

    meta = meta_graph_pb2.MetaGraphDef()
    meta.meta_info_def.tags.append(SERVING_TAG)
    meta.meta_info_def.tensorflow_version = "tensorgrid"
    names = convert.write_functions(exporter.functions, meta.graph_def.library)
    assert names == [e["name"] for e in exporter.entries], names   # each function's name was unique already
    by_name = {e["name"]: (fn, e) for fn, e in zip(exporter.functions, exporter.entries)}
    for key, sig in sig_entries.items():
        fn, entry = by_name[sig["function"]]
        sd = meta.signature_def[key]
        sd.method_name = PREDICT_METHOD
        for spec in entry["inputs"]:
            _tensor_info(sd.inputs[spec["name"]], spec["name"] + ":0", fn.graph[spec["name"]].attrs["dtype"],
                         spec["shape"])
        for out_name, index in sig["outputs"].items():
            dtype, shape = fn.result_specs[index]
            _tensor_info(sd.outputs[out_name], fn.results[index], dtype, None if shape is None else list(shape))
    graph_json = {"nodes": nodes, "concreteFunctions": exporter.entries, "signatures": sig_entries}
    meta.collection_def[OBJECT_GRAPH_COLLECTION].bytes_list.value.append(json.dumps(graph_json).encode())

    os.makedirs(os.path.join(export_dir, VARIABLES_DIRECTORY), exist_ok=True)
    checkpoint_lib.write_objects(obj, os.path.join(export_dir, VARIABLES_DIRECTORY, VARIABLES_FILENAME),
                                 checkpoint_lib._GraphReads())
    model = saved_model_pb2.SavedModel(saved_model_schema_version=1, meta_graphs=[meta])
    from tensorgrid.client.train.saver import atomic_write
    atomic_write(os.path.join(export_dir, SAVED_MODEL_FILENAME), [model.SerializeToString()])


def _tensor_info(info, name, dtype, shape):
    from tensorgrid.framework import dtypes
    info.name = name
    info.dtype = dtypes.as_dtype(dtype).as_datatype_enum
    if shape is None:
        info.tensor_shape.unknown_rank = True
    else:
        for d in shape:
            info.tensor_shape.dim.add(size=-1 if d is None else d)
