"""Graph, Operation and Tensor: the client's dataflow graph and how ops get added to it.

Every Operation wraps one runtime IR Node (runtime/ir.py), so turning a
graph into the master's input costs nothing, and a GraphDef is that IR
serialized. `apply_op` is the single entry by which every op front-end
function adds a node (graph mode) or runs a kernel at once (eager mode).
"""

import contextlib
import os
import sys
import threading

import numpy as np

from tensorgrid.client import context
from tensorgrid.framework import device_spec, dtypes, strings
from tensorgrid.framework.shapes import TensorShape, as_shape
from tensorgrid.ops import registry
from tensorgrid.runtime import ir

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In a source checkout tests/ and examples/ sit beside the package folders; installed, all of _ROOT is ours.
if os.path.isfile(os.path.join(_ROOT, "pyproject.toml")):
    _INTERNAL_DIRS = tuple(os.path.join(_ROOT, d) + os.sep
                           for d in ("client", "runtime", "worker", "proto", "tensorgrid"))
else:
    _INTERNAL_DIRS = (_ROOT + os.sep,)


def user_source():
    """(file, line) of the innermost stack frame outside tensorgrid itself."""
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_INTERNAL_DIRS) and "contextlib" not in fn:
            return (fn, f.f_lineno)
        f = f.f_back
    return None


class TensorOps:
    """Operators shared by graph Tensors, EagerTensors and Variables."""

    __array_priority__ = 100

    def _m(self):
        from tensorgrid.client import math_ops
        return math_ops

    def __add__(self, o): return self._m().add(self, o, name="add")
    def __radd__(self, o): return self._m().add(o, self, name="add")
    def __sub__(self, o): return self._m().subtract(self, o, name="sub")
    def __rsub__(self, o): return self._m().subtract(o, self, name="sub")
    def __mul__(self, o): return self._m().multiply(self, o, name="mul")
    def __rmul__(self, o): return self._m().multiply(o, self, name="mul")
    def __truediv__(self, o): return self._m().truediv(self, o, name="truediv")
    def __rtruediv__(self, o): return self._m().truediv(o, self, name="truediv")
    def __floordiv__(self, o): return self._m().floordiv(self, o, name="floordiv")
    def __rfloordiv__(self, o): return self._m().floordiv(o, self, name="floordiv")
    def __mod__(self, o): return self._m().mod(self, o, name="mod")
    def __rmod__(self, o): return self._m().mod(o, self, name="mod")
    def __pow__(self, o): return self._m().pow(self, o, name="pow")
    def __rpow__(self, o): return self._m().pow(o, self, name="pow")
    def __matmul__(self, o): return self._m().matmul(self, o, name="matmul")
    def __rmatmul__(self, o): return self._m().matmul(o, self, name="matmul")
    def __neg__(self): return self._m().negative(self)
    def __abs__(self): return self._m().abs(self)
    def __lt__(self, o): return self._m().less(self, o)
    def __le__(self, o): return self._m().less_equal(self, o)
    def __gt__(self, o): return self._m().greater(self, o)
    def __ge__(self, o): return self._m().greater_equal(self, o)
    def __and__(self, o): return self._m().logical_and(self, o)
    def __rand__(self, o): return self._m().logical_and(o, self)
    def __or__(self, o): return self._m().logical_or(self, o)
    def __ror__(self, o): return self._m().logical_or(o, self)
    def __invert__(self): return self._m().logical_not(self)

    def __getitem__(self, key):
        from tensorgrid.client import array_ops
        return array_ops.slice_helper(self, key)

    __hash__ = object.__hash__


class Tensor(TensorOps):
    """A symbolic output of an Operation in a Graph."""

    __slots__ = ("op", "value_index", "dtype", "_shape", "_name")

    def __init__(self, op, value_index, dtype, shape):
        self.op = op
        self.value_index = value_index
        self.dtype = dtype
        self._shape = TensorShape(shape)
        self._name = f"{op.name}:{value_index}"

    @property
    def name(self):
        return self._name

    @property
    def shape(self):
        return self._shape

    def get_shape(self):
        return self._shape

    def set_shape(self, shape):
        self._shape = self._shape.merge_with(as_shape(shape))

    @property
    def graph(self):
        return self.op.graph

    @property
    def device(self):
        return self.op.device

    def consumers(self):
        return [op for op in self.op.graph.get_operations() if any(t is self for t in op.inputs)]

    def eval(self, feed_dict=None, session=None):
        from tensorgrid.client import session as session_lib
        return session_lib.default_session_for(self.graph, session).run(self, feed_dict)

    def __repr__(self):
        return f"<tg.Tensor '{self.name}' shape={self._shape} dtype={self.dtype.name}>"

    def __bool__(self):
        raise TypeError("Using a graph tensor as a Python bool is not allowed; use tg.cond or run it in a session")

    def __iter__(self):
        if self._shape.ndims is None or self._shape[0] is None:
            raise TypeError(f"cannot iterate over {self.name}: its first dimension is not known statically")
        return iter(self[i] for i in range(self._shape[0]))

    def __len__(self):
        if self._shape.ndims is None or self._shape[0] is None:
            raise TypeError(f"len() of {self.name} is not known statically")
        return self._shape[0]

    def __eq__(self, other):
        # TF2: in a function traced from eager code == compares element-wise; in a TF1 graph, identity.
        if other is not None and self.op.graph.elementwise_equality:
            return self._m().equal(self, other)
        return self is other

    def __ne__(self, other):
        if other is not None and self.op.graph.elementwise_equality:
            return self._m().not_equal(self, other)
        return self is not other

    __hash__ = object.__hash__


class Operation:
    """A node of a Graph: its op type, inputs, attrs, device and output tensors."""

    def __init__(self, graph, node, inputs, control_inputs, output_specs):
        self.graph = graph
        self._node = node
        self._inputs = list(inputs)
        self._control_inputs = list(control_inputs)
        self.outputs = [Tensor(self, i, dt, shape) for i, (dt, shape) in enumerate(output_specs)]

    @property
    def name(self):
        return self._node.name

    @property
    def type(self):
        return self._node.op

    @property
    def inputs(self):
        return tuple(self._inputs)

    @property
    def control_inputs(self):
        return list(self._control_inputs)

    @property
    def device(self):
        return self._node.device

    def _set_device(self, device):
        self._node.device = device_spec.canonical(device)
        self.graph._bump_version()

    @property
    def node_def(self):
        from tensorgrid.proto import convert
        return convert.node_to_proto(self._node)

    @property
    def attrs(self):
        return self._node.attrs

    def get_attr(self, name):
        try:
            return self._node.attrs[name]
        except KeyError:
            raise ValueError(f"Operation '{self.name}' has no attr named '{name}'") from None

    @property
    def source(self):
        return self._node.source

    def _add_control_input(self, op):
        if op not in self._control_inputs:
            self._control_inputs.append(op)
            self._node.control_inputs.append(op.name)
            self.graph._bump_version()

    def run(self, feed_dict=None, session=None):
        from tensorgrid.client import session as session_lib
        session_lib.default_session_for(self.graph, session).run(self, feed_dict)

    def values(self):
        return tuple(self.outputs)

    def __repr__(self):
        return f"<tg.Operation '{self.name}' type={self.type}>"


class Graph:
    """A dataflow graph: Operations, name and device scopes, collections."""

    def __init__(self):
        self._lock = threading.RLock()
        self._ops = {}
        self._names_in_use = {}
        self._version = 0
        self._finalized = False
        self._name_stack = ""
        self._device_stack = []       # strings or callables(op) -> device string
        self._control_stack = []      # lists of Operations, or None to clear
        self._colocation_stack = []   # Operations
        self._collections = {}
        self.seed = None
        self._last_op_id = 0
        self.elementwise_equality = False  # Tensor ==: identity, as in TF1 graphs

    # ---- identity and growth -------------------------------------------------
    @property
    def version(self):
        return self._version

    def _bump_version(self):
        self._version += 1

    @property
    def finalized(self):
        return self._finalized

    def finalize(self):
        self._finalized = True

    def _unsafe_unfinalize(self):
        self._finalized = False

    def as_default(self):
        return _graph_default_context(self)

    def get_operations(self):
        return list(self._ops.values())

    def get_operation_by_name(self, name):
        if not isinstance(name, str):
            raise TypeError(f"operation name must be a string, not {type(name).__name__}")
        try:
            return self._ops[name]
        except KeyError:
            raise KeyError(f"The name '{name}' refers to an Operation not in the graph.") from None

    def get_tensor_by_name(self, name):
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be a string, not {type(name).__name__}")
        op_name, sep, idx = name.rpartition(":")
        if not sep or not idx.isdigit():
            raise ValueError(f"The name '{name}' looks like an (invalid) Operation name, not a Tensor. "
                             "Tensor names must be of the form \"<op_name>:<output_index>\".")
        if op_name not in self._ops:
            raise KeyError(f"The name '{name}' refers to a Tensor which does not exist. "
                           f"The operation, '{op_name}', does not exist in the graph.")
        op = self._ops[op_name]
        if int(idx) >= len(op.outputs):
            raise KeyError(f"The name '{name}' refers to a Tensor which does not exist. "
                           f"The operation, '{op_name}', exists but only has {len(op.outputs)} outputs.")
        return op.outputs[int(idx)]

    def as_graph_element(self, obj, allow_tensor=True, allow_operation=True):
        """Resolves a Tensor, Operation or name to an element of this graph."""
        if hasattr(obj, "_as_graph_element"):
            obj = obj._as_graph_element()
        if isinstance(obj, str):
            if ":" in obj and allow_tensor:
                return self.get_tensor_by_name(obj)
            if allow_operation:
                return self.get_operation_by_name(obj)
            raise ValueError(f"name '{obj}' names an operation where a tensor was expected")
        if isinstance(obj, Tensor) and allow_tensor:
            if obj.graph is not self:
                raise ValueError(f"Tensor {obj.name} is not an element of this graph.")
            return obj
        if isinstance(obj, Operation) and allow_operation:
            if obj.graph is not self:
                raise ValueError(f"Operation {obj.name} is not an element of this graph.")
            return obj
        raise TypeError(f"cannot interpret {obj!r} as a Tensor or Operation of this graph")

    def unique_name(self, name, mark_as_used=True):
        if self._name_stack:
            name = self._name_stack + "/" + name
        key = name.lower()
        count = self._names_in_use.get(key, 0)
        if mark_as_used:
            self._names_in_use[key] = count + 1
        if count:
            base = name
            while True:
                name = f"{base}_{count}"
                if name.lower() not in self._names_in_use:
                    break
                count += 1
            if mark_as_used:
                self._names_in_use[name.lower()] = 1
        return name

    def get_name_scope(self):
        return self._name_stack

    def _capture(self, tensor, op_type):
        """The tensor of this graph that stands for `tensor` of another graph: none in a plain
        graph (a function's graph captures tensors of the graphs it is nested in)."""
        raise ValueError(f"{op_type}: input {tensor.name} is from a different graph than the one being built")

    # ---- scopes ----------------------------------------------------------------
    @contextlib.contextmanager
    def name_scope(self, name):
        old = self._name_stack
        if name is None or name == "":
            self._name_stack = "" if name == "" else old
        elif name.endswith("/"):
            self._name_stack = name[:-1]
        else:
            self._name_stack = self.unique_name(name)
        try:
            yield (self._name_stack + "/") if self._name_stack else ""
        finally:
            self._name_stack = old

    @contextlib.contextmanager
    def device(self, spec):
        self._device_stack.append(spec)
        try:
            yield
        finally:
            self._device_stack.pop()

    @contextlib.contextmanager
    def control_dependencies(self, control_inputs):
        if control_inputs is None:
            self._control_stack.append(None)
        else:
            ops = []
            for c in control_inputs:
                if hasattr(c, "_as_graph_element"):
                    c = c._as_graph_element()
                if isinstance(c, Tensor):
                    c = c.op
                if not isinstance(c, Operation):
                    raise TypeError(f"control_dependencies expects Operations or Tensors, got {c!r}")
                ops.append(c)
            self._control_stack.append(ops)
        try:
            yield
        finally:
            self._control_stack.pop()

    @contextlib.contextmanager
    def colocate_with(self, op, ignore_existing=False):
        if op is None:
            self._colocation_stack.append(None)
        else:
            if hasattr(op, "_as_graph_element"):
                op = op._as_graph_element()
            if isinstance(op, Tensor):
                op = op.op
            self._colocation_stack.append(op)
        try:
            yield
        finally:
            self._colocation_stack.pop()

    def _current_device(self, node):
        spec = ""
        for d in self._device_stack:
            if d is None:
                spec = ""
                continue
            if callable(d):
                d = d(_PendingOp(node))
                if d is None:
                    continue
                if isinstance(d, device_spec.DeviceSpec):
                    d = d.to_string()
            spec = device_spec.merge(spec, d)
        return spec

    def _current_control_inputs(self):
        ops = []
        for entry in self._control_stack:
            if entry is None:
                ops = []
            else:
                ops.extend(entry)
        return ops

    # ---- collections -------------------------------------------------------------
    def add_to_collection(self, name, value):
        self._collections.setdefault(name, []).append(value)

    def get_collection(self, name, scope=None):
        items = list(self._collections.get(name, []))
        if scope is None:
            return items
        import re
        pat = re.compile(scope)
        return [v for v in items if pat.match(getattr(v, "name", "") or "")]

    def get_collection_ref(self, name):
        return self._collections.setdefault(name, [])

    def get_all_collection_keys(self):
        return list(self._collections)

    def clear_collection(self, name):
        self._collections.pop(name, None)

    # ---- node creation ------------------------------------------------------------
    def _create_op(self, op_type, inputs, attrs, name, output_specs, source, extra_control=()):
        with self._lock:
            if self._finalized:
                raise RuntimeError("Graph is finalized and cannot be modified.")
            # A name ending in "/" is a scope name already made unique (TF's convention).
            name = name[:-1] if name.endswith("/") else self.unique_name(name)
            if name in self._ops:
                raise ValueError(f"duplicate op name '{name}' in the graph")
            node = ir.Node(name, op_type, [t.name for t in inputs], [], "", attrs, source)
            node.device = device_spec.canonical(self._current_device(node)) if self._device_stack else ""
            ctrl = []
            for c in list(self._current_control_inputs()) + list(extra_control):
                if c not in ctrl and c.graph is self:
                    ctrl.append(c)
            node.control_inputs = [c.name for c in ctrl]
            coloc = [c for c in self._colocation_stack if c is not None]
            if self._colocation_stack and self._colocation_stack[-1] is not None:
                target = coloc[-1]
                node.attrs["_class"] = [f"loc:@{_colocation_root(target)}"]
                if target.device:
                    node.device = target.device
            op = Operation(self, node, inputs, ctrl, output_specs)
            self._ops[name] = op
            self._bump_version()
            return op

    def as_graph_def(self, add_shapes=False):
        from tensorgrid.proto import convert
        return convert.graph_ir_to_proto(self.to_ir(), version=self._version)

    def to_ir(self):
        """A GraphIR sharing this graph's Node objects (passes copy before they change one)."""
        g = ir.GraphIR()
        g.nodes = {name: op._node for name, op in self._ops.items()}
        return g

    @property
    def graph_def_versions(self):
        return self._version


class _PendingOp:
    """What a device function sees while an op is being created (type, name, attrs)."""

    def __init__(self, node):
        self.type = node.op
        self.name = node.name
        self.node_def = node
        self.device = node.device
        self.attrs = node.attrs

    def get_attr(self, k):
        return self.attrs[k]


def _colocation_root(op):
    cls = op.attrs.get("_class")
    if cls:
        return cls[0][len("loc:@"):]
    return op.name


@contextlib.contextmanager
def _graph_default_context(graph):
    stack = context.graph_stack()
    stack.append(graph)
    try:
        yield graph
    finally:
        stack.pop()


def get_default_graph():
    stack = context.graph_stack()
    return stack[-1] if stack else context.global_default_graph()


def reset_default_graph():
    context.reset_global_graph()


# ---- converting Python values to tensors ------------------------------------------------

def _infer_value_dtype(value):
    arr = np.asarray(value)
    if arr.dtype == np.float64 and not isinstance(value, np.ndarray) and not isinstance(value, np.floating):
        return dtypes.float32
    if arr.dtype == np.int64 and not isinstance(value, np.ndarray) and not isinstance(value, np.integer):
        return dtypes.int32 if arr.size == 0 or (np.abs(arr).max() < 2**31) else dtypes.int64
    return dtypes.as_dtype(arr.dtype)


def constant_value_array(value, dtype=None):
    """The numpy array a constant of `value` holds, with TF1's default dtypes (float32, int32)."""
    if dtype is None:
        dtype = _infer_value_dtype(value)
    dtype = dtypes.as_dtype(dtype)
    if dtype is dtypes.string:   # string tensors hold bytes, as TF's
        return strings.string_array(value), dtype
    try:
        arr = np.asarray(value)
        if dtype.is_integer and arr.dtype.kind == "f" and not np.array_equal(arr, np.trunc(arr)):
            raise TypeError(f"Expected {dtype.name}, got {value!r} of type float instead.")
        if dtype.is_bool and arr.dtype.kind != "b":
            raise TypeError(f"Expected bool, got {value!r} instead.")
        arr = np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (ValueError, OverflowError) as e:
        raise TypeError(f"cannot convert {value!r} to a tensor of {dtype.name}: {e}") from None
    return arr, dtype


def convert_to_tensor(value, dtype=None, name=None, dtype_hint=None):
    """Turns a Tensor, Variable, numpy array or Python value into a tensor of the current mode."""
    if hasattr(value, "_as_tensor"):
        value = value._as_tensor()
    if isinstance(value, TensorOps) and not isinstance(value, (Tensor,)) and hasattr(value, "_value"):
        pass  # EagerTensor: handled below
    if isinstance(value, Tensor) or getattr(value, "_is_eager_tensor", False):
        if dtype is not None and dtypes.as_dtype(dtype) != value.dtype:
            raise ValueError(f"Tensor conversion requested dtype {dtypes.as_dtype(dtype).name} "
                             f"for Tensor with dtype {value.dtype.name}: {value!r}")
        if isinstance(value, Tensor) and context.executing_eagerly():
            raise ValueError(f"graph tensor {value.name} used while executing eagerly")
        if getattr(value, "_is_eager_tensor", False) and not context.executing_eagerly():
            from tensorgrid.client import array_ops
            return array_ops.constant(value.numpy(), dtype=value.dtype, name=name or "Const")
        return value
    if isinstance(value, Operation):
        raise TypeError(f"cannot convert Operation '{value.name}' to a Tensor; use one of its outputs")
    if isinstance(value, (list, tuple)) and any(isinstance(v, TensorOps) or hasattr(v, "_as_tensor") for v in _flatten(value)):
        from tensorgrid.client import array_ops
        return array_ops.stack([convert_to_tensor(v, dtype=dtype, dtype_hint=dtype_hint) for v in value], name=name or "packed")
    if dtype is None and dtype_hint is not None:
        try:
            arr, dt = constant_value_array(value, dtype_hint)
            if np.array_equal(np.asarray(arr, dtype=np.asarray(value).dtype), np.asarray(value)) or np.asarray(value).dtype.kind in "iub":
                from tensorgrid.client import array_ops
                return array_ops.constant(arr, dtype=dt, name=name or "Const")
        except (TypeError, ValueError):
            pass
    from tensorgrid.client import array_ops
    return array_ops.constant(value, dtype=dtype, name=name or "Const")


def _flatten(value):
    for v in value:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


def _const_value(t):
    """The numpy value of `t` when it is known while the graph is being built."""
    op = t.op
    if op.type == "Const":
        return op._node.attrs["value"]
    if op.type == "Shape" and op.inputs[0].shape.is_fully_defined():
        return np.array(op.inputs[0].shape.as_list(), dtype=op.outputs[0].dtype.as_numpy_dtype)
    if op.type == "Identity":
        return _const_value(op.inputs[0])
    return None


def apply_op(op_type, inputs, attrs=None, name=None, control_inputs=()):
    """Adds op `op_type` to the default graph (or runs it eagerly) and returns its outputs.

    Returns one Tensor when the op has one output, else a list.
    """
    opdef = registry.get(op_type)
    attrs = {} if attrs is None else attrs
    if context.executing_eagerly():
        from tensorgrid.client import eager
        return eager.execute(opdef, inputs, attrs, name)
    graph = get_default_graph()
    tensors = []
    for t in inputs:
        t = convert_to_tensor(t)
        if t.graph is not graph:
            t = graph._capture(t, op_type)
        tensors.append(t)
    source = user_source()
    ctx = registry.InferContext(
        op_type, name or op_type, [t.dtype for t in tensors],
        [t.shape.as_tuple() for t in tensors], attrs, [_const_value(t) for t in tensors],
        f"{source[0]}:{source[1]}" if source else "")
    specs = opdef.infer(ctx)
    op = graph._create_op(op_type, tensors, attrs, name or op_type, specs, source, control_inputs)
    if len(op.outputs) == 1:
        return op.outputs[0]
    if not op.outputs:
        return op
    return op.outputs
