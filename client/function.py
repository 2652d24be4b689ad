"""tg.function: traces a Python function into a graph once per input signature and runs the graph.

Tensor and numpy arguments are part of the signature by dtype and shape;
other Python values by value. Inside the trace, stateful ops (variable reads
and writes, prints, asserts) run in program order, as TF's automatic control
dependencies make them. A traced graph runs through the same plan/executor
as a Session step, on this process's CPU, against the eager variable store.

`trace_function` is the other use of the same tracing: it turns a Python
function into a runtime.ir.Function, the value of a function-valued attr
(a while loop's body, a cond's branch, a dataset's map function), with the
tensors it reads from enclosing graphs captured as extra arguments.
"""

import dataclasses
import functools
import inspect
import itertools
import weakref

import numpy as np

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import nest, remote_eager
from tensorgrid.ops import registry
from tensorgrid.framework.tensor_spec import TensorSpec
from tensorgrid.runtime import ir

__all__ = ["function"]

# Stateful ops that order among themselves; handle lookups and random draws do not need to.
_UNORDERED = {"VarHandleOp", "_Feed", "_Recv", "Placeholder"}


class FuncGraph(graph_lib.Graph):
    """A graph being traced from a Python function, with automatic control dependencies.

    `outer_graph` is the graph the function is built inside (None for a
    tg.function, whose outside is eager). A tensor of the outer graph (or of
    one further out) used here is captured: it becomes a Placeholder of this
    graph, and `captures` lists (outer tensor, placeholder) pairs in order,
    for the caller to pass in as extra arguments. Ops take the outer graph's
    device scopes and graph seed.
    """

    def __init__(self, name, outer_graph=None):
        super().__init__()
        self.name = name
        self._last_stateful = None
        self.outer_graph = outer_graph
        self.captures = []
        self._captured = {}  # id(outer tensor) -> placeholder
        self.seed = None
        self.variable_policy = "allowed"    # "allowed", "singleton" or "forbidden" (see Function)
        self.variables_created = 0
        self.variables_read = {}            # id -> Variable read while tracing, for a tape around a call
        # Traced from eager code (at the root), tensors compare element-wise with ==, as in TF2.
        self.elementwise_equality = outer_graph.elementwise_equality if outer_graph is not None else True
        if outer_graph is not None:
            self.seed = outer_graph.seed
            self._device_stack = list(outer_graph._device_stack)
        elif remote_eager.current() is not None:
            self._device_stack = list(context.eager_device_stack())   # placed on the connected cluster
        self._pin_to_resources = remote_eager.current() is not None

    def _capture(self, tensor, op_type):
        placeholder = self._captured.get(id(tensor))
        if placeholder is not None:
            return placeholder
        if self.outer_graph is None:
            return super()._capture(tensor, op_type)
        inner = tensor
        if tensor.graph is not self.outer_graph:
            inner = self.outer_graph._capture(tensor, op_type)
        with self.as_default(), self.control_dependencies(None), self.device(None):
            placeholder = graph_lib.apply_op(
                "Placeholder", [], {"dtype": tensor.dtype, "shape": tensor.shape},
                name="capture_" + tensor.op.name.replace("/", "_"))
        self._captured[id(tensor)] = placeholder
        self.captures.append((inner, placeholder))
        return placeholder

    def variable_created(self):
        """Called before a tg.Variable is made while tracing: ValueError where TF2 forbids it."""
        if self.variable_policy == "forbidden":
            raise ValueError(f"Creating variables on a non-first call to a function decorated with tg.function "
                             f"('{self.name}').")
        if self.variable_policy == "singleton":
            raise ValueError(f"tg.function ('{self.name}') only supports singleton tg.Variables created on the "
                             f"first call. Make sure the tg.Variable is only created once or created outside "
                             f"tg.function.")
        self.variables_created += 1

    def _create_op(self, op_type, inputs, attrs, name, output_specs, source, extra_control=()):
        opdef = registry.get(op_type)
        ordered = opdef.stateful and op_type not in _UNORDERED and not op_type.startswith("Random") \
            and op_type not in ("TruncatedNormal",)
        extra = list(extra_control)
        if ordered and self._last_stateful is not None:
            extra.append(self._last_stateful)
        op = super()._create_op(op_type, inputs, attrs, name, output_specs, source, extra)
        if ordered:
            self._last_stateful = op
        if self._pin_to_resources:
            # on a cluster, an op on a variable (an optimizer's fused update) runs where the variable is,
            # whatever device scope the step was traced in
            handle = next((t for t in inputs if t.op.type == "VarHandleOp" and t.op.device), None)
            if handle is not None:
                op._node.device = handle.op.device
        return op


def _tensor_leaf(x):
    """Tensors and Variables are a traced function's outputs; an Operation returns None, Python values themselves."""
    if isinstance(x, graph_lib.Tensor) or hasattr(x, "_as_tensor"):
        return graph_lib.convert_to_tensor(x)
    return nest.Keep(None if isinstance(x, graph_lib.Operation) else x)


def side_effects(g):
    """Names of the ops of FuncGraph g that must run though nothing needs their results.

    Its ordered stateful ops form one chain of control edges, so that is the last of them: running it
    runs them all, even those only a group (a NoOp) consumes, such as an optimizer's updates.
    """
    return [] if g._last_stateful is None else [g._last_stateful.name]


@dataclasses.dataclass
class TracedFunction:
    """What trace_function gives: the Function, the graph it was traced into, the outer tensors
    to pass after the declared arguments, and the Python structure of the results."""

    function: ir.Function
    graph: FuncGraph
    captures: list       # outer tensors, one per argument after the declared ones
    structure: object    # nest spec of the Python function's return value
    outputs: list        # the result tensors of `graph`, in `function.results` order

    def rebuild(self, values):
        """The Python function's return structure with `values` (one per result) as its tensors."""
        return nest.rebuild(self.structure, values)


_function_ids = itertools.count(1)


def trace_function(python_fn, arg_specs, name="function", outer_graph=None, arg_names=None, func_graph=None):
    """Traces python_fn(*placeholders) into a Function, one Placeholder per (dtype, shape) of arg_specs.

    `outer_graph` is the graph being built (the default graph when omitted;
    none when executing eagerly); tensors of it that python_fn reads are captured. The return value may be
    any nest of tensors, Variables and Python values; its tensors are the
    Function's results. Stateful ops whose results nothing uses (assignments,
    prints) are its control results, so they run on every call. `func_graph`,
    when given, is the (empty) FuncGraph to trace into, for callers that
    capture or share state differently (control flow's branch and body graphs).
    """
    if outer_graph is None and not context.executing_eagerly():
        outer_graph = graph_lib.get_default_graph()
    g = func_graph if func_graph is not None else FuncGraph(f"{name}_{next(_function_ids)}", outer_graph)
    names = arg_names or [f"arg{i}" for i in range(len(arg_specs))]
    with g.as_default():
        placeholders = [graph_lib.apply_op("Placeholder", [], {"dtype": dt, "shape": graph_lib.TensorShape(shape)},
                                           name=n)
                        for (dt, shape), n in zip(arg_specs, names)]
        result = python_fn(*placeholders)
        leaves = []
        structure = nest.flatten(result, _tensor_leaf, leaves)
    args = [ph.op.name for ph in placeholders] + [ph.op.name for _, ph in g.captures]
    fn = ir.Function(g.name, g.to_ir(), args, [t.name for t in leaves],
                     [(t.dtype, t.shape.as_tuple()) for t in leaves], side_effects(g))
    return TracedFunction(fn, g, [outer for outer, _ in g.captures], structure, leaves)


class ConcreteFunction:
    """One traced graph of a tg.function: its inputs, outputs and a compiled runner."""

    def __init__(self, graph, inputs, output_structure, outputs, targets):
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs
        self._structure = output_structure
        self._targets = targets
        self._backend = None
        self._backward = None   # its gradient graph, once a tape records a call (client/function_grad.py)

    def __call__(self, *tensor_args):
        from tensorgrid.client import eager
        if context.tapes():
            from tensorgrid.client import function_grad
            values = function_grad.call_recorded(self, tensor_args)
            if values is not None:
                return nest.rebuild(self._structure, values)
        feeds = {ph.name: np.asarray(getattr(a, "_value", a), dtype=ph.dtype.as_numpy_dtype)
                 for ph, a in zip(self.inputs, tensor_args)}
        results = self._run([t.name for t in self.outputs], feeds, self._targets)
        values = [eager.EagerTensor(results[t.name], t.dtype) for t in self.outputs]
        return nest.rebuild(self._structure, values)

    def _run(self, fetches, feeds, targets):
        """{name: array} of `fetches`, running this graph against the eager variable store."""
        from tensorgrid.client import eager
        from tensorgrid.runtime.local import LocalBackend
        if self._backend is None:
            remote = remote_eager.current()
            if remote is not None:
                from tensorgrid.client.remote import RemoteBackend
                self._backend = RemoteBackend(remote.target, self.graph, remote.config)
            else:
                self._backend = LocalBackend(config=_local_devices(self.graph), resources=eager.resources())
        return self._backend.run(self.graph, feeds, fetches, targets)[0]

    @property
    def structured_outputs(self):
        return nest.rebuild(self._structure, self.outputs)


def _local_devices(graph):
    """A config with as many virtual CPU devices as the graph's ops name (/cpu:1: two), or None for one."""
    from tensorgrid.framework.device_spec import DeviceSpec
    highest = 0
    for op in graph.get_operations():
        if op.device:
            spec = DeviceSpec.from_string(op.device)
            if (spec.device_type or "").upper() == "CPU" and spec.device_index:
                highest = max(highest, int(spec.device_index))
    if not highest:
        return None
    from tensorgrid.proto import config_pb2
    return config_pb2.ConfigProto(device_count={"CPU": highest + 1})


class Function:
    """A Python function that runs as a traced graph (see module docstring)."""

    def __init__(self, fn, input_signature=None, autograph=True, jit_compile=None):
        self._fn = fn
        self._traced_fn = fn        # fn, or fn with its loops over datasets converted (client/data/loops.py)
        self._autograph = autograph
        self._signature = input_signature
        self._concrete = {}
        self._trace_count = 0
        self._first_traced = False          # the first trace, the one that may create variables, is done
        self._bound = weakref.WeakKeyDictionary()   # instance -> its bound Function, traced once per instance
        functools.update_wrapper(self, fn)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        try:
            bound = self._bound.get(obj)
        except TypeError:               # an instance that cannot be weakly referenced: no cache
            return Function(self._fn.__get__(obj, objtype), self._signature, self._autograph)
        if bound is None:
            bound = self._bound[obj] = Function(_weakly_bound(self._fn, obj), self._signature, self._autograph)
        return bound

    def _key(self, args, kwargs):
        def sig(a):
            if isinstance(a, TensorSpec):
                return ("tensor", a.dtype.name, a.shape.as_tuple())
            if hasattr(a, "_as_tensor") and not getattr(a, "_is_eager_tensor", False):
                return ("var", id(a))
            if getattr(a, "_is_eager_tensor", False) or isinstance(a, np.ndarray):
                arr_dt = a.dtype if getattr(a, "_is_eager_tensor", False) else graph_lib._infer_value_dtype(a)
                return ("tensor", arr_dt.name if hasattr(arr_dt, "name") else str(arr_dt), tuple(np.shape(a)))
            if isinstance(a, (list, tuple)):
                return (type(a).__name__,) + tuple(sig(x) for x in a)
            if isinstance(a, dict):
                return ("dict",) + tuple((k, sig(v)) for k, v in sorted(a.items()))
            try:
                hash(a)
                return ("py", a)
            except TypeError:
                return ("id", id(a))
        return (tuple(sig(a) for a in args), tuple((k, sig(v)) for k, v in sorted(kwargs.items())))

    def _trace(self, args, kwargs, variable_policy):
        from tensorgrid.client.data import loops
        try:
            return self._trace_with(self._traced_fn, args, kwargs, variable_policy)
        except loops.DatasetLoopInTrace as e:
            if not self._autograph or self._traced_fn is not self._fn:
                raise
            self._traced_fn = loops.converted(self._fn, e)   # `for x in dataset:` becomes Dataset.reduce
        return self._trace_with(self._traced_fn, args, kwargs, variable_policy)

    def _trace_with(self, fn, args, kwargs, variable_policy):
        g = FuncGraph(getattr(self._fn, "__name__", "function"))
        g.variable_policy = variable_policy
        from tensorgrid.client import array_ops
        inputs = []

        def to_placeholder(a, name):
            if isinstance(a, TensorSpec):   # an input_signature's entry: its dims may be unknown
                ph = graph_lib.apply_op("Placeholder", [], {"dtype": a.dtype, "shape": a.shape}, name=a.name or name)
                inputs.append(ph)
                return ph
            if getattr(a, "_is_eager_tensor", False) or isinstance(a, np.ndarray):
                dt = a.dtype if getattr(a, "_is_eager_tensor", False) else graph_lib._infer_value_dtype(a)
                ph = graph_lib.apply_op("Placeholder", [], {"dtype": dt, "shape": graph_lib.TensorShape(np.shape(a))},
                                        name=name)
                inputs.append(ph)
                return ph
            if isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
                return type(a)(to_placeholder(x, f"{name}_{i}") for i, x in enumerate(a))
            return a
        with g.as_default():
            targs = [to_placeholder(a, n) for a, n in zip(args, _arg_names(self._fn, len(args)))]
            tkwargs = {k: to_placeholder(v, k) for k, v in kwargs.items()}
            result = fn(*targs, **tkwargs)
            leaves = []
            structure = nest.flatten(result, _tensor_leaf, leaves)
            outputs = [array_ops.identity(t) if t.op.type == "Placeholder" else t for t in leaves]
        self._trace_count += 1
        return ConcreteFunction(g, inputs, structure, outputs, side_effects(g))

    def get_concrete_function(self, *args, **kwargs):
        """The traced graph for these arguments' signature (traced now if it is new).

        As in TF2, only the first trace may create variables (they are made eagerly, once). When it does,
        the function is traced again at once, and that trace must find them and make none; a later trace
        that would create one raises ValueError.
        """
        if self._signature is not None and not args and not kwargs:
            args = tuple(self._signature)
        key = self._key(args, kwargs)
        cf = self._concrete.get(key)
        if cf is None:
            if self._first_traced:
                cf = self._trace(args, kwargs, "forbidden")
            else:
                cf = self._trace(args, kwargs, "allowed")
                self._first_traced = True
                if cf.graph.variables_created:
                    cf = self._trace(args, kwargs, "singleton")
            self._concrete[key] = cf
        return cf

    def experimental_get_tracing_count(self):
        return self._trace_count

    @property
    def input_signature(self):
        return self._signature

    def _check_signature(self, args, kwargs):
        """The call's tensors, checked against input_signature (one tensor per spec, compatible)."""
        values = list(args) + list(kwargs.values())
        if len(values) != len(self._signature):
            raise TypeError(f"{getattr(self._fn, '__name__', 'function')}() takes {len(self._signature)} "
                            f"argument(s) by its input_signature, got {len(values)}")
        converted = []
        for i, (value, spec) in enumerate(zip(values, self._signature)):
            t = graph_lib.convert_to_tensor(value, dtype=spec.dtype)
            if not spec.shape.is_compatible_with(t.shape):
                raise ValueError(f"Python inputs incompatible with input_signature: argument {i} has shape "
                                 f"{t.shape}, the signature says {spec}")
            converted.append(t)
        return converted

    def __call__(self, *args, **kwargs):
        if not context.executing_eagerly():
            return self._fn(*args, **kwargs)
        if self._signature is not None:
            return self.get_concrete_function()(*self._check_signature(args, kwargs))
        cf = self.get_concrete_function(*args, **kwargs)
        tensor_args = []

        def collect(a):
            if getattr(a, "_is_eager_tensor", False) or isinstance(a, np.ndarray):
                tensor_args.append(a)
            elif isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
                for x in a:
                    collect(x)
        for a in args:
            collect(a)
        for _, v in sorted(kwargs.items(), key=lambda kv: list(kwargs).index(kv[0])):
            collect(v)
        return cf(*tensor_args)


def _weakly_bound(fn, obj):
    """`fn` bound to `obj` without keeping `obj` alive (a Function caches one per instance)."""
    ref = weakref.ref(obj)

    @functools.wraps(fn)
    def method(*args, **kwargs):
        return fn(ref(), *args, **kwargs)
    method._tg_rewrap = lambda new_fn: _weakly_bound(new_fn, ref())   # client/data/loops.py converts fn
    method._tg_bound_to = ref
    return method


def _arg_names(fn, count):
    """The names of fn's first `count` positional parameters (TF names a trace's placeholders by them)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    if hasattr(fn, "_tg_bound_to"):
        params = params[1:]     # the signature of the unbound method: its first parameter is the instance
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(count)]


def function(func=None, input_signature=None, autograph=True, jit_compile=None, **_ignored):
    """Decorator: runs `func` as a graph traced once per input signature.

    With `input_signature` (a list of tg.TensorSpec, dims may be None) it is traced once, against the
    specs, and every call must give tensors that fit them.
    """
    if func is None:
        return lambda f: Function(f, input_signature, autograph, jit_compile)
    return Function(func, input_signature, autograph, jit_compile)
