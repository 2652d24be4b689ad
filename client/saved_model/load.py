"""tg.saved_model.load: the objects of a SavedModel, with their variables and callable functions."""

import json
import os

import numpy as np

from tensorgrid.client import context
from tensorgrid.client import function as function_lib
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import nest
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.module import Module
from tensorgrid.client.saved_model import save as save_lib
from tensorgrid.client.saved_model import structure
from tensorgrid.client.train import checkpoint as checkpoint_lib
from tensorgrid.client.train import saver as saver_lib
from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.framework.tensor_spec import TensorSpec


class LoadOptions:
    """tf.saved_model.LoadOptions: accepted for TF programs (tensorgrid has no options to apply)."""

    def __init__(self, allow_partial_checkpoint=False, experimental_io_device=None,
                 experimental_skip_checkpoint=False, experimental_variable_policy=None,
                 experimental_load_function_aliases=False):
        self.experimental_skip_checkpoint = experimental_skip_checkpoint


class _UserObject(Module):
    """A saved tg.Module (or other trackable) as loaded: its attributes, variables and functions."""

    def __init__(self, name):
        super().__init__(name=name)

    def __call__(self, *args, **kwargs):
        call = self.__dict__.get("__call__")    # a saved __call__ is restored as an instance attribute
        if call is None:
            raise TypeError(f"the loaded object {self.name!r} is not callable: it was saved without a "
                            f"__call__ tg.function")
        return call(*args, **kwargs)


def contains_saved_model(export_dir):
    """Whether `export_dir` holds a saved_model.pb."""
    return os.path.isfile(os.path.join(os.fspath(export_dir), save_lib.SAVED_MODEL_FILENAME))


def _read_meta_graph(export_dir):
    from google.protobuf.message import DecodeError
    from tensorgrid.proto import saved_model_pb2
    path = os.path.join(export_dir, save_lib.SAVED_MODEL_FILENAME)
    if not os.path.isfile(path):
        raise OSError(f"SavedModel file does not exist at: {export_dir}/{{saved_model.pbtxt|saved_model.pb}}")
    not_ours = (f"{export_dir} holds a SavedModel that tensorgrid did not write (TensorFlow's, most likely): "
                f"tg.saved_model.load reads only SavedModels written by tg.saved_model.save")
    model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        try:
            model.ParseFromString(f.read())
        except DecodeError:
            raise ValueError(not_ours) from None
    if len(model.meta_graphs) != 1 or save_lib.OBJECT_GRAPH_COLLECTION not in model.meta_graphs[0].collection_def:
        raise ValueError(not_ours)
    meta = model.meta_graphs[0]
    return meta, json.loads(meta.collection_def[save_lib.OBJECT_GRAPH_COLLECTION].bytes_list.value[0].decode())


def load(export_dir, tags=None, options=None):
    """The object tg.saved_model.save wrote to `export_dir`, rebuilt.

    Eagerly its variables hold the saved values and its functions run in this process; in a graph
    (`tg.compat.v1`), its variables are the graph's, initialized to the saved values by their
    initializers (tg.compat.v1.global_variables_initializer()), and calling a function adds its graph to
    the default graph, so a Session on any target (a cluster too) runs it.
    """
    export_dir = os.fspath(export_dir)
    meta, saved = _read_meta_graph(export_dir)
    if tags is not None:
        wanted = {tags} if isinstance(tags, str) else set(tags)
        if not wanted <= set(meta.meta_info_def.tags):
            raise RuntimeError(f"MetaGraphDef associated with tags {sorted(wanted)} could not be found in "
                               f"SavedModel, with available tags '{list(meta.meta_info_def.tags)}'")
    values = _variable_values(export_dir)
    library = meta.graph_def.library
    concrete = {e["name"]: e for e in saved["concreteFunctions"]}
    objects = []
    for node_id, node in enumerate(saved["nodes"]):
        kind = node["kind"]
        if kind == "variable":
            spec = node["variable"]
            objects.append(_make_variable(values[node_id], spec))
        elif kind == "list":
            objects.append([])
        elif kind == "dict":
            objects.append({})
        else:
            objects.append(_UserObject(node.get("name") or "user_object"))
    restored = {}

    def function_named(name):
        if name not in restored:
            restored[name] = _LoadedConcreteFunction(library, concrete[name], objects)
        return restored[name]
    for node_id, node in enumerate(saved["nodes"]):
        obj = objects[node_id]
        for ref in node["children"]:
            child = objects[ref["nodeId"]]
            if isinstance(obj, list):
                obj.append(child)
            elif isinstance(obj, dict):
                obj[ref["localName"]] = child
            else:
                setattr(obj, ref["localName"], child)
        for name, concrete_names in node.get("functions", {}).items():
            setattr(obj, name, RestoredFunction(name, [function_named(n) for n in concrete_names]))
    root = objects[0]
    signatures = {key: _SignatureFunction(key, function_named(sig["function"]), sig["outputs"])
                  for key, sig in saved["signatures"].items()}
    if isinstance(root, _UserObject):
        root.signatures = signatures
    return root


def _variable_values(export_dir):
    """{object node id: numpy value} from variables/variables.tgckpt."""
    prefix = os.path.join(export_dir, save_lib.VARIABLES_DIRECTORY, save_lib.VARIABLES_FILENAME)
    if not saver_lib.checkpoint_exists(prefix):
        raise errors.NotFoundError(None, None, f"the SavedModel in {export_dir} has no variables file {prefix}"
                                               f"{saver_lib.SUFFIX}")
    reader = saver_lib._Reader(prefix)
    nodes = checkpoint_lib._read_object_graph(reader, prefix)
    values = {}
    for node_id, node in enumerate(nodes):
        for attr in node.get("attributes", []):
            values[node_id] = reader.read(attr["checkpointKey"])
    return values


def _make_variable(value, spec):
    dtype = dtypes.as_dtype(spec["dtype"])
    return variables_lib.Variable(np.asarray(value, dtype.as_numpy_dtype), trainable=spec["trainable"],
                                  name=spec["name"], dtype=dtype, shape=TensorShape(spec["shape"]))


class _LoadedConcreteFunction:
    """One saved concrete function: a ConcreteFunction of this process eagerly, or imported into the
    default graph at each call when building a graph."""

    def __init__(self, library, entry, objects):
        from tensorgrid.proto import convert
        self.name = entry["name"]
        self._fn = convert.function_from_library(library, self.name)
        self._entry = entry
        self._variables = {node: objects[i] for node, i in entry["variables"].items()}
        self.specs = [TensorSpec(TensorShape(s["shape"]), dtypes.as_dtype(s["dtype"]), s["name"])
                      for s in entry["inputs"]]
        self._structure = structure.from_json(entry["outputs"])
        self.has_signature = entry.get("inputSignature", False)
        self._eager = None

    def matches(self, tensors):
        return len(tensors) == len(self.specs) and all(
            s.dtype == t.dtype and s.shape.is_compatible_with(t.shape) for s, t in zip(self.specs, tensors))

    def __call__(self, *tensors):
        if context.executing_eagerly():
            return self._eager_function()(*tensors)
        return self._call_in_graph(tensors)

    def _body(self, handles=None):
        """The function's body as a GraphDef; `handles` renames its variables' handles' shared names."""
        from tensorgrid.proto import convert
        from tensorgrid.runtime import ir
        body = ir.GraphIR([n.copy(attrs=dict(n.attrs, shared_name=handles[n.name], container=""))
                           if handles and n.name in handles else n for n in self._fn.graph])
        return convert.graph_ir_to_proto(body)

    def _eager_function(self):
        if self._eager is None:
            from tensorgrid.client.importer import import_graph_def
            g = function_lib.FuncGraph(self.name)
            handles = {node: v._shared_name for node, v in self._variables.items()}
            with g.as_default():
                import_graph_def(self._body(handles), name="")
            inputs = [g.get_tensor_by_name(a + ":0") for a in self._fn.args]
            outputs = [g.get_tensor_by_name(r) for r in self._fn.results]
            for node, v in self._variables.items():     # so a GradientTape differentiates through a call
                g.variables_read[id(v)] = v
                v._trace_handles[g] = g.get_tensor_by_name(node + ":0")
            self._eager = function_lib.ConcreteFunction(g, inputs, self._structure, outputs,
                                                        list(self._fn.control_results))
        return self._eager

    def _call_in_graph(self, tensors):
        from tensorgrid.client.importer import import_graph_def
        input_map = {f"{a}:0": t for a, t in zip(self._fn.args, tensors)}
        for node, v in self._variables.items():
            if v._eager():
                raise ValueError(f"the loaded function {self.name} reads eager variable {v.name}; load the "
                                 f"SavedModel inside the graph that calls it")
            input_map[f"{node}:0"] = v.handle
        wanted = list(self._fn.results) + list(self._fn.control_results)
        found = import_graph_def(self._body(), input_map=input_map, return_elements=wanted,
                                 name=graph_lib.get_default_graph().unique_name("StatefulPartitionedCall"))
        outputs, controls = found[:len(self._fn.results)], found[len(self._fn.results):]
        if controls:    # side effects run whenever a result is used, as a call op's do
            from tensorgrid.client import array_ops
            with graph_lib.get_default_graph().control_dependencies(controls):
                outputs = [array_ops.identity(t) for t in outputs]
        return nest.rebuild(self._structure, outputs)


def _is_tensor_like(x):
    return isinstance(x, (graph_lib.Tensor, np.ndarray, variables_lib.Variable)) or \
        getattr(x, "_is_eager_tensor", False)


class RestoredFunction:
    """A loaded tg.function: calls the saved concrete function whose input signature fits the arguments."""

    def __init__(self, name, concrete_functions):
        self.__name__ = name
        self.concrete_functions = concrete_functions

    def __call__(self, *args, **kwargs):
        """Tensors (and numpy arrays) are matched against each concrete function's inputs; other Python
        values count only for a function saved with an input_signature, which converts every argument."""
        given = list(args) + list(kwargs.values())
        tensors = []

        def collect(a):
            if _is_tensor_like(a):
                tensors.append(a)
            elif isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
                for x in a:
                    collect(x)
        for a in given:
            collect(a)
        for cf in self.concrete_functions:
            values = given if cf.has_signature else tensors
            if len(values) != len(cf.specs):
                continue
            try:
                converted = [graph_lib.convert_to_tensor(v, dtype=s.dtype) for v, s in zip(values, cf.specs)]
            except (TypeError, ValueError):
                continue
            if cf.matches(converted):
                return cf(*converted)
        expected = "\n".join(f"  Option {i + 1}: {cf.specs}" for i, cf in enumerate(self.concrete_functions))
        raise ValueError(f"Could not find matching concrete function to call loaded from the SavedModel. Got "
                         f"{len(given)} argument(s): {[getattr(v, 'shape', v) for v in given]}. "
                         f"Expected one of:\n{expected}")

    def get_concrete_function(self, *args):
        """The loaded concrete function for these TensorSpecs (or the only one, without arguments)."""
        if not args and len(self.concrete_functions) == 1:
            return self.concrete_functions[0]
        for cf in self.concrete_functions:
            if len(args) == len(cf.specs) and all(
                    a.dtype == s.dtype and a.shape.is_compatible_with(s.shape) for a, s in zip(args, cf.specs)):
                return cf
        raise ValueError(f"{self.__name__}: no saved concrete function for {args}")


class _SignatureFunction:
    """A serving signature: called with its inputs by name, it returns {output name: tensor} (TF's)."""

    def __init__(self, key, concrete, outputs):
        self.name = key
        self._concrete = concrete
        self._outputs = outputs     # output name -> flat result index

    @property
    def structured_input_signature(self):
        return (), {s.name: s for s in self._concrete.specs}

    def __call__(self, *args, **kwargs):
        names = [s.name for s in self._concrete.specs]
        if len(args) > len(names):
            raise TypeError(f"signature {self.name!r} takes {len(names)} inputs, got {len(args)} positional")
        given = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names or k in given:
                raise TypeError(f"signature {self.name!r}: unexpected or repeated input {k!r}; its inputs are "
                                f"{names}")
            given[k] = v
        missing = [n for n in names if n not in given]
        if missing:
            raise TypeError(f"signature {self.name!r} is missing inputs {missing}")
        tensors = [graph_lib.convert_to_tensor(given[s.name], dtype=s.dtype) for s in self._concrete.specs]
        if not self._concrete.matches(tensors):
            raise ValueError(f"signature {self.name!r} takes {self._concrete.specs}, got "
                             f"{[t.shape for t in tensors]}")
        result = self._concrete(*tensors)
        flat = []
        nest.flatten(result, lambda t: t, flat)
        return {name: flat[index] for name, index in self._outputs.items()}
