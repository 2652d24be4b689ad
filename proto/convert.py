"""Converts between the wire protos (types_pb2) and the runtime's Python values.

Tensors: numpy arrays <-> TensorProto, bit for bit (NaN payloads, -0.0,
float16 and bool included), always little-endian on the wire. Strings are
numpy object arrays of bytes <-> string_val.

Attrs: int, float, bool, str, bytes, DType, TensorShape, numpy array, and
lists (or tuples) of one of those kinds <-> AttrValue. Floats travel as
doubles, so they come back exactly, NaN payloads too (except under
protobuf's pure-Python backend, which writes every NaN double as the
canonical NaN; tensors are raw bytes and keep their NaNs everywhere). A str
is sent as its UTF-8 bytes, and every s that is valid UTF-8 comes back as a
str, other bytes as bytes: so b"abc" comes back as "abc". Tuples come back
as lists.

Graphs: runtime.ir Node/GraphIR <-> NodeDef/GraphDef. Data inputs are
"node:i" (a bare "node" from another producer is read as "node:0"), control
inputs "^node"; Node.source (file, line) <-> source_file/source_line.

Functions: an attr holding a runtime.ir.Function travels as a NameAttrList
naming a FunctionDef of the GraphDef's library. graph_ir_to_proto puts every
function the graph reaches (through attrs of its nodes and of its functions'
nodes) in the library once, renaming where two functions share a name;
graph_def_to_ir rebuilds one Function per FunctionDef, shared by all the
attrs that name it.
"""

import sys

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.proto import types_pb2
from tensorgrid.runtime.ir import Function, GraphIR, Node

AttrValue = types_pb2.AttrValue
GraphDef = types_pb2.GraphDef
NodeDef = types_pb2.NodeDef
TensorProto = types_pb2.TensorProto
TensorShapeProto = types_pb2.TensorShapeProto
_Dim = TensorShapeProto.Dim

_STRING = dtypes.string.as_datatype_enum
_DEVICE_ONLY = (dtypes.resource.as_datatype_enum, dtypes.variant.as_datatype_enum)
# DataType number -> little-endian numpy dtype, for every dtype whose elements travel as raw bytes.
_WIRE_NUMPY = {
    d.as_datatype_enum: np.dtype(d.as_numpy_dtype).newbyteorder("<")
    for d in dtypes.ALL if d.as_numpy_dtype is not np.object_
}
_BIG_ENDIAN_HOST = sys.byteorder == "big"
# numpy dtype -> DataType number, filled on first use of each dtype (big-endian ones included).
_ENUM_OF_NUMPY = {}


# ---------------------------------------------------------------- tensors

def _enum_of_numpy(np_dtype):
    enum = _ENUM_OF_NUMPY.get(np_dtype)
    if enum is None:
        enum = dtypes.as_dtype(np_dtype if np_dtype.isnative else np_dtype.newbyteorder("=")).as_datatype_enum
        _ENUM_OF_NUMPY[np_dtype] = enum
    return enum


def _to_bytes(element):
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode("utf-8")
    raise TypeError(f"a string tensor holds bytes or str elements, not {type(element).__name__} ({element!r})")


def _fill_shape(shape_proto, dims):
    """Writes dims (a tuple of int-or-None, or None for unknown rank) into a TensorShapeProto."""
    if dims is None:
        shape_proto.unknown_rank = True
    elif dims:
        shape_proto.dim.extend([_Dim(size=-1 if d is None else d) for d in dims])


def _fill_tensor(tp, value, dtype=None):
    """Writes a numpy array (or anything np.asarray takes) into the TensorProto tp."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if dtype is not None:
        dtype = dtypes.as_dtype(dtype)
        if dtype.as_datatype_enum in _DEVICE_ONLY:
            raise TypeError(f"{dtype.name} tensors live on one device and do not travel as TensorProtos")
        if dtype.as_numpy_dtype is not np.object_ and arr.dtype != dtype.as_numpy_dtype:
            arr = arr.astype(dtype.as_numpy_dtype)
        enum = dtype.as_datatype_enum
    else:
        enum = _enum_of_numpy(arr.dtype)
    tp.dtype = enum
    if arr.ndim:
        tp.tensor_shape.dim.extend([_Dim(size=d) for d in arr.shape])
    else:
        tp.tensor_shape.SetInParent()
    if enum == _STRING:
        tp.string_val.extend([_to_bytes(x) for x in arr.ravel().tolist()])
        return tp
    order = arr.dtype.byteorder
    if order == ">" or (order == "=" and _BIG_ENDIAN_HOST):
        # byteswap + view moves bytes only, so every bit pattern (NaN payloads too) survives
        arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
    tp.tensor_content = arr.tobytes()
    return tp


def ndarray_to_tensor_proto(arr, dtype=None):
    """A TensorProto holding arr (cast to dtype when given), little-endian, bit for bit.

    String tensors (numpy object, bytes or str arrays, or dtype tg.string)
    go into string_val, str elements encoded as UTF-8.
    """
    return _fill_tensor(TensorProto(), arr, dtype)


def tensor_proto_to_ndarray(tp, writable=False):
    """The numpy array a TensorProto holds, in native byte order, bit for bit.

    Numeric arrays are read-only views of the bytes taken from the message
    unless writable=True, which costs one copy. String tensors come back as
    numpy object arrays of bytes.
    """
    shape_proto = tp.tensor_shape
    if shape_proto.unknown_rank:
        raise errors.InvalidArgumentError("a TensorProto must have a fully known shape, not unknown rank")
    shape = tuple([d.size for d in shape_proto.dim])
    count = 1
    for d in shape:
        if d < 0:
            raise errors.InvalidArgumentError(f"a TensorProto must have a fully known shape, got {list(shape)}")
        count *= d
    enum = tp.dtype
    np_dtype = _WIRE_NUMPY.get(enum)
    if np_dtype is not None:
        content = tp.tensor_content
        if len(content) != count * np_dtype.itemsize:
            raise errors.InvalidArgumentError(
                f"TensorProto of {dtypes.from_enum(enum).name} {list(shape)} needs "
                f"{count * np_dtype.itemsize} bytes of tensor_content, got {len(content)}")
        arr = np.frombuffer(content, dtype=np_dtype).reshape(shape)
        if not np_dtype.isnative:
            arr = arr.byteswap().view(np_dtype.newbyteorder("="))
        return arr.copy() if writable and not arr.flags.writeable else arr
    if enum == _STRING:
        values = tp.string_val
        if len(values) != count:
            raise errors.InvalidArgumentError(
                f"string TensorProto of shape {list(shape)} needs {count} string_val entries, got {len(values)}")
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    raise errors.InvalidArgumentError(f"TensorProto dtype {enum} ({_enum_name(enum)}) cannot be turned into an array")


def _enum_name(enum):
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return "not a DataType"


# ---------------------------------------------------------------- attrs

def _list_kind(values):
    """The ListValue field a list of attr values goes into."""
    kinds = set()
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            kinds.add("b")
        elif isinstance(v, (int, np.integer)):
            kinds.add("i")
        elif isinstance(v, (float, np.floating)):
            kinds.add("f")
        elif isinstance(v, (str, bytes)):
            kinds.add("s")
        elif isinstance(v, dtypes.DType):
            kinds.add("type")
        elif isinstance(v, TensorShape):
            kinds.add("shape")
        elif isinstance(v, np.ndarray):
            kinds.add("tensor")
        elif isinstance(v, Function):
            kinds.add("func")
        else:
            raise TypeError(f"an attr list cannot hold {type(v).__name__} ({v!r})")
    if kinds == {"i", "f"}:
        return "f"  # [1, 2.5] is a float list, as numpy would make it
    if len(kinds) > 1:
        raise TypeError(f"an attr list must hold values of one kind, got {sorted(kinds)}: {values!r}")
    return kinds.pop()


def _fill_list(lv, values, lib):
    if not values:
        return
    kind = _list_kind(values)
    if kind == "s":
        lv.s.extend([v.encode("utf-8") if isinstance(v, str) else v for v in values])
    elif kind == "i":
        lv.i.extend([int(v) for v in values])
    elif kind == "f":
        lv.f.extend([float(v) for v in values])
    elif kind == "b":
        lv.b.extend([bool(v) for v in values])
    elif kind == "type":
        lv.type.extend([v.as_datatype_enum for v in values])
    elif kind == "shape":
        for v in values:
            _fill_shape(lv.shape.add(), v.as_tuple())
    elif kind == "func":
        for v in values:
            lv.func.add(name=_function_name(v, lib))
    else:
        for v in values:
            _fill_tensor(lv.tensor.add(), v)


def _function_name(fn, lib):
    """The library name of `fn`: its own name when there is no library to put it in."""
    return fn.name if lib is None else lib.name_of(fn)


def _fill_attr(av, value, lib=None):
    """Writes one Python attr value into the AttrValue av; functions are added to `lib`."""
    kind = type(value)
    # exact types first (the common case); bool before int, since bool is an int
    if kind is bool:
        av.b = value
    elif kind is int:
        av.i = value
    elif kind is str:
        av.s = value.encode("utf-8")
    elif kind is float:
        av.f = value
    elif isinstance(value, dtypes.DType):
        av.type = value.as_datatype_enum
    elif isinstance(value, TensorShape):
        shape = av.shape
        shape.SetInParent()
        _fill_shape(shape, value.as_tuple())
    elif isinstance(value, (list, tuple)):
        lv = av.list
        lv.SetInParent()
        _fill_list(lv, value, lib)
    elif isinstance(value, np.ndarray):
        _fill_tensor(av.tensor, value)
    elif isinstance(value, Function):
        av.func.name = _function_name(value, lib)
    elif isinstance(value, bytes):
        av.s = value
    elif isinstance(value, (bool, np.bool_)):
        av.b = bool(value)
    elif isinstance(value, (int, np.integer)):
        av.i = int(value)
    elif isinstance(value, (float, np.floating)):
        av.f = float(value)
    elif isinstance(value, str):
        av.s = value.encode("utf-8")
    else:
        raise TypeError(
            f"cannot encode attr value {value!r} of type {type(value).__name__}; attrs are int, float, bool, "
            "str, bytes, DType, TensorShape, numpy arrays, Functions or lists of those")
    return av


def attr_to_proto(value):
    """An AttrValue holding a Python attr value (see the module docstring for the kinds)."""
    return _fill_attr(AttrValue(), value)


def _text(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _shape_from_proto(sp):
    if sp.unknown_rank:
        return TensorShape(None)
    return TensorShape([None if d.size < 0 else d.size for d in sp.dim])


def _list_from_proto(lv, lib=None):
    if lv.func:
        return [_resolve(f.name, lib) for f in lv.func]
    if lv.i:
        return list(lv.i)
    if lv.s:
        return [_text(b) for b in lv.s]
    if lv.f:
        return list(lv.f)
    if lv.b:
        return list(lv.b)
    if lv.type:
        return [dtypes.from_enum(t) for t in lv.type]
    if lv.shape:
        return [_shape_from_proto(s) for s in lv.shape]
    if lv.tensor:
        return [tensor_proto_to_ndarray(t) for t in lv.tensor]
    return []


_FROM_PROTO = {
    "i": lambda av: av.i,
    "s": lambda av: _text(av.s),
    "f": lambda av: av.f,
    "b": lambda av: av.b,
    "type": lambda av: dtypes.from_enum(av.type),
    "shape": lambda av: _shape_from_proto(av.shape),
    "tensor": lambda av: tensor_proto_to_ndarray(av.tensor),
    "list": lambda av: _list_from_proto(av.list),
}


def attr_from_proto(av, lib=None):
    """The Python value an AttrValue holds; TypeError when none of its fields is set.

    A func attr is looked up in `lib` (the _LibraryReader of its GraphDef)."""
    which = av.WhichOneof("value")
    if which is None:
        raise TypeError("AttrValue has no value set")
    if which == "func":
        return _resolve(av.func.name, lib)
    if which == "list" and av.list.func:
        return _list_from_proto(av.list, lib)
    return _FROM_PROTO[which](av)


def _resolve(name, lib):
    if lib is None:
        raise errors.InvalidArgumentError(
            None, None, f"attr names function '{name}' but the message carries no function library")
    return lib.get(name)


# ---------------------------------------------------------------- nodes and graphs

def _node_fields(node):
    """NodeDef constructor arguments for everything of an ir.Node but its attrs."""
    fields = {"name": node.name, "op": node.op}
    if node.control_inputs:
        fields["input"] = node.inputs + ["^" + c for c in node.control_inputs]
    elif node.inputs:
        fields["input"] = node.inputs
    if node.device:
        fields["device"] = node.device
    if node.source:
        fields["source_file"] = str(node.source[0])
        fields["source_line"] = node.source[1] or 0
    return fields


def _fill_attrs(nd, attrs, lib=None):
    attr = nd.attr
    for key, value in attrs.items():
        _fill_attr(attr[key], value, lib)
    return nd


def node_to_proto(node):
    """The NodeDef for an ir.Node: data inputs, then control inputs as '^name'."""
    nd = NodeDef(**_node_fields(node))
    return _fill_attrs(nd, node.attrs) if node.attrs else nd


def node_from_proto(nd, lib=None):
    """The ir.Node for a NodeDef, with data inputs as 'node:i' and '^x' inputs as control inputs.

    Func attrs are looked up in `lib`, the _LibraryReader of the NodeDef's GraphDef."""
    inputs, control = [], []
    refs = nd.input
    if refs:
        for ref in refs:
            if ref[:1] == "^":
                control.append(ref[1:])
            else:
                _, sep, idx = ref.rpartition(":")
                inputs.append(ref if sep and idx.isdigit() else ref + ":0")
    attr = nd.attr
    # keys-then-lookup: twice as fast as a protobuf map's items()
    attrs = {key: attr_from_proto(attr[key], lib) for key in attr} if attr else {}
    source_file = nd.source_file
    return Node(nd.name, nd.op, inputs, control, nd.device, attrs,
                (source_file, nd.source_line) if source_file else None)


def graph_ir_to_proto(graph, version=0):
    """The GraphDef for a GraphIR, nodes in the graph's order, with the library of its functions."""
    gd = GraphDef(version=version)
    lib = _LibraryWriter()
    _fill_nodes(gd.node, graph, lib)
    if lib.pending:
        lib.write(gd.library.function)
    return gd


def _fill_nodes(field, graph, lib):
    add = field.add
    for node in graph:
        nd = add(**_node_fields(node))
        if node.attrs:
            _fill_attrs(nd, node.attrs, lib)


class _LibraryWriter:
    """Collects the functions a graph reaches and gives each a name unique in the library."""

    def __init__(self):
        self.names = {}      # id(Function) -> library name
        self.taken = set()
        self.pending = []    # (Function, name) not yet written

    def name_of(self, fn):
        name = self.names.get(id(fn))
        if name is None:
            name, n = fn.name, 1
            while name in self.taken:
                name, n = f"{fn.name}_{n}", n + 1
            self.names[id(fn)] = name
            self.taken.add(name)
            self.pending.append((fn, name))
        return name

    def write(self, field):
        """Appends a FunctionDef per function to `field`, including those their bodies reach."""
        while self.pending:
            fn, name = self.pending.pop(0)
            fd = field.add(name=name, arg=fn.args, ret=fn.results, control_ret=fn.control_results)
            for dtype, shape in fn.result_specs:
                fd.ret_type.append(dtypes.as_dtype(dtype).as_datatype_enum)
                _fill_shape(fd.ret_shape.add(), shape)
            _fill_nodes(fd.node_def, fn.graph, self)


class _LibraryReader:
    """The Functions of one GraphDef's library, built on first reference (cycles refused)."""

    def __init__(self, function_defs):
        self.defs = {}
        for fd in function_defs:
            if fd.name in self.defs:
                raise errors.InvalidArgumentError(None, None, f"function '{fd.name}' is defined twice in the library")
            self.defs[fd.name] = fd
        self.built = {}
        self.building = set()

    def get(self, name):
        fn = self.built.get(name)
        if fn is not None:
            return fn
        fd = self.defs.get(name)
        if fd is None:
            raise errors.InvalidArgumentError(None, None, f"attr names function '{name}', which the library lacks")
        if name in self.building:
            raise errors.InvalidArgumentError(None, None, f"function '{name}' calls itself through its attrs")
        if len(fd.ret_type) != len(fd.ret) or len(fd.ret_shape) != len(fd.ret):
            raise errors.InvalidArgumentError(
                None, None, f"function '{name}' has {len(fd.ret)} results but "
                f"{len(fd.ret_type)} result types and {len(fd.ret_shape)} result shapes")
        self.building.add(name)
        try:
            body = GraphIR([node_from_proto(nd, self) for nd in fd.node_def])
        finally:
            self.building.discard(name)
        specs = [(dtypes.from_enum(t), _shape_from_proto(sp).as_tuple()) for t, sp in zip(fd.ret_type, fd.ret_shape)]
        fn = Function(name, body, list(fd.arg), list(fd.ret), specs, list(fd.control_ret))
        self.built[name] = fn
        return fn


def graph_def_to_ir(graph_def):
    """The GraphIR for a GraphDef; InvalidArgumentError on a duplicate node name or a bad library."""
    lib = _LibraryReader(graph_def.library.function) if graph_def.library.function else None
    return GraphIR([node_from_proto(nd, lib) for nd in graph_def.node])


def write_functions(functions, library):
    """Adds a FunctionDef to FunctionDefLibrary `library` per Function (and per function their bodies
    call); returns the names the given ones got, in order."""
    lib = _LibraryWriter()
    names = [lib.name_of(fn) for fn in functions]
    lib.write(library.function)
    return names


def function_from_library(library, name):
    """The Function called `name` in FunctionDefLibrary `library` (the functions it calls built too)."""
    return _LibraryReader(library.function).get(name)
