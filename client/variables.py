"""Variables: resource variables, their collections and initializers, and TF1's get_variable.

A Variable is a VarHandleOp (its handle in the device's resource store,
keyed by the variable's unique name) with ReadVariableOp reads and
Assign*VariableOp writes colocated with it. In graph mode it is built as
TF1 builds a variable `v`: `v` (the handle), `v/initial_value` (or ops under
`v/Initializer` when the initial value is a callable), `v/Assign` (the
initializer) and `v/read`, the one read every use of the variable shares.
Inside a `control_dependencies` block a use gets a fresh read that carries
those dependencies, so reading after an assign sees the new value, as TF1's
reference variables behave.

In eager mode the variable lives in the eager resource store under a name
unique to it; every read goes through the same handle tensor, which is what
GradientTape differentiates with respect to. A tg.function that uses an
eager variable looks the same store entry up with a VarHandleOp of its own.
"""

import contextlib
import inspect
import itertools
import math
import weakref

import numpy as np

from tensorgrid.client import array_ops, context, random_ops, remote_eager, scopes
from tensorgrid.client import tape as tape_lib
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import TensorOps, apply_op, convert_to_tensor, get_default_graph
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape
from tensorgrid.ops import state_ops  # noqa: F401 - registers UninitializedNames

__all__ = [
    "Variable", "GraphKeys", "global_variables", "trainable_variables", "local_variables",
    "global_variables_initializer", "initialize_all_variables", "local_variables_initializer",
    "variables_initializer", "report_uninitialized_variables", "is_variable_initialized",
    "assign", "assign_add", "assign_sub",
    "get_variable", "variable_scope", "get_variable_scope", "VariableScope", "AUTO_REUSE",
    "zeros_initializer", "ones_initializer", "constant_initializer", "random_normal_initializer",
    "truncated_normal_initializer", "random_uniform_initializer", "glorot_uniform_initializer",
    "glorot_normal_initializer", "variance_scaling_initializer",
    "add_to_collection", "add_to_collections", "get_collection", "get_collection_ref",
]


class GraphKeys:
    """Names of the graph collections variables and training use (TF1's tf.GraphKeys)."""

    GLOBAL_VARIABLES = "variables"
    VARIABLES = GLOBAL_VARIABLES
    LOCAL_VARIABLES = "local_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    MODEL_VARIABLES = "model_variables"
    GLOBAL_STEP = "global_step"
    TRAIN_OP = "train_op"
    LOSSES = "losses"
    REGULARIZATION_LOSSES = "regularization_losses"
    SUMMARIES = "summaries"
    UPDATE_OPS = "update_ops"
    # What MonitoredSession's Scaffold finds or makes (TF's keys).
    INIT_OP = "init_op"
    LOCAL_INIT_OP = "local_init_op"
    READY_OP = "ready_op"
    READY_FOR_LOCAL_INIT_OP = "ready_for_local_init_op"
    SUMMARY_OP = "summary_op"
    SAVERS = "savers"
    QUEUE_RUNNERS = "queue_runners"


def add_to_collection(name, value):
    """Adds `value` to the default graph's collection `name`."""
    graph_lib.get_default_graph().add_to_collection(name, value)


def add_to_collections(names, value):
    for name in [names] if isinstance(names, str) else names:
        add_to_collection(name, value)


def get_collection(key, scope=None):
    """A copy of the default graph's collection `key` (items whose name matches `scope`, if given)."""
    return graph_lib.get_default_graph().get_collection(key, scope)


def get_collection_ref(key):
    """The default graph's collection `key` itself, to change in place."""
    return graph_lib.get_default_graph().get_collection_ref(key)


_eager_ids = itertools.count(1)
_by_eager_handle = weakref.WeakValueDictionary()


def variable_for_handle(handle):
    """The eager Variable whose handle tensor is `handle`, or None."""
    return _by_eager_handle.get(id(handle))


@contextlib.contextmanager
def _init_scope():
    """Leaves every graph being traced by tg.function, so a variable made there is made eagerly."""
    stack = context.graph_stack()
    saved = list(stack)
    del stack[:]
    try:
        yield
    finally:
        stack[:] = saved


def _in_function_trace():
    from tensorgrid.client import function
    return context.eager_enabled() and isinstance(get_default_graph(), function.FuncGraph)


# Called with every new Variable (tg.distribute: a strategy's scope makes its variables its own).
CREATED_HOOKS = []


class Variable(TensorOps):
    """A mutable tensor that keeps its value across steps (a resource variable)."""

    def __new__(cls, *args, **kwargs):
        if cls is Variable:     # a strategy may make its own kind (MirroredStrategy: one per device)
            from tensorgrid.client.distribute import distribute_lib
            made = distribute_lib.create_variable(cls, args, kwargs)
            if made is not None:
                return made
            cls = ResourceVariable      # TF2's tf.Variable(...) is a ResourceVariable
        return super().__new__(cls)

    def __init__(self, initial_value=None, trainable=None, *, name=None, dtype=None, validate_shape=True,
                 collections=None, shape=None, use_resource=None):
        """`use_resource` is accepted for TF1 programs: every tensorgrid variable is a resource variable.

        Made inside a cond branch or loop body being built, it belongs to the graph outside them."""
        if initial_value is None:
            raise ValueError("initial_value must be specified.")
        from tensorgrid.client.control_flow import outside_bodies
        with outside_bodies():
            self._make(initial_value, trainable, name, dtype, validate_shape, collections, shape)
        for hook in CREATED_HOOKS:
            hook(self)

    def _make(self, initial_value, trainable, name, dtype, validate_shape, collections, shape):
        self._trainable = True if trainable is None else bool(trainable)
        dtype = None if dtype is None else dtypes.as_dtype(dtype)
        lift = not context.executing_eagerly() and _in_function_trace()
        if lift and isinstance(initial_value, graph_lib.Tensor):
            raise ValueError(f"a tg.Variable made inside tg.function is made eagerly, once, so its initial value "
                             f"cannot be the traced tensor {initial_value.name}; pass a Python or numpy value, "
                             f"or a callable (lambda: ...)")
        # An eager variable's name takes the name scope it is made in (a trace's, when lifted out of one).
        scope = get_default_graph().get_name_scope() if lift else context.eager_name_scope()
        if lift:
            get_default_graph().variable_created()
        with _init_scope() if lift else contextlib.nullcontext():
            if context.executing_eagerly():
                name = name or "Variable"
                self._init_eager(initial_value, f"{scope}/{name}" if scope else name, dtype, validate_shape, shape)
            else:
                self._init_graph(initial_value, name or "Variable", dtype, validate_shape, shape, collections)

    def _static_shape(self, initial, validate_shape, shape):
        if shape is not None:
            shape = as_shape(shape)
            if not shape.is_compatible_with(initial.shape):
                raise ValueError(f"The initial value's shape ({initial.shape}) is not compatible with "
                                 f"the explicitly supplied `shape` argument ({shape}).")
            return shape
        if not validate_shape:
            return TensorShape(None)
        if not initial.shape.is_fully_defined():
            raise ValueError(f"initial_value must have a shape specified: {initial!r}")
        return initial.shape

    def _handle_attrs(self):
        attrs = {"shared_name": self._shared_name, "dtype": self._dtype, "shape": self._shape}
        container = getattr(self, "_container", "")
        if container:  # set by tg.compat.v1.container; the resource store keys variables by it
            attrs["container"] = container
        return attrs

    def _init_graph(self, initial_value, name, dtype, validate_shape, shape, collections):
        g = get_default_graph()
        # The handle must be called exactly `full`; the name is only reserved when the handle is made,
        # so the initial value's ops are built under `full/` without claiming `full` itself.
        full = g.unique_name(name, mark_as_used=False)
        with g.control_dependencies(None):
            with g.name_scope(full + "/"):
                if callable(initial_value):
                    with g.name_scope("Initializer"), g.device(None):
                        initial = convert_to_tensor(initial_value(), dtype=dtype, name="initial_value")
                else:
                    initial = convert_to_tensor(initial_value, dtype=dtype, name="initial_value")
            self._graph = g
            self._dtype = initial.dtype
            self._shape = self._static_shape(initial, validate_shape, shape)
            self._shared_name = full
            self._container = scopes.current_container(g)
            self._handle = apply_op("VarHandleOp", [], self._handle_attrs(), name=name)
            assert self._handle.op.name == full, (self._handle.op.name, full)
            self._name = full
            with g.name_scope(full + "/"), g.colocate_with(self._handle.op):
                self._initializer_op = apply_op(
                    "AssignVariableOp", [self._handle, initial],
                    {"dtype": self._dtype, "validate_shape": bool(validate_shape)}, name="Assign").op
                self._snapshot = apply_op("ReadVariableOp", [self._handle],
                                          {"dtype": self._dtype, "shape": self._shape}, name="read")
        self._initial_value = initial
        if collections is None:
            collections = [GraphKeys.GLOBAL_VARIABLES]
        collections = list(collections)
        if self._trainable and GraphKeys.TRAINABLE_VARIABLES not in collections:
            collections.append(GraphKeys.TRAINABLE_VARIABLES)
        for key in dict.fromkeys(collections):
            g.add_to_collection(key, self)

    def _init_eager(self, initial_value, name, dtype, validate_shape, shape):
        if callable(initial_value):
            initial_value = initial_value()
        initial = convert_to_tensor(initial_value, dtype=dtype)
        self._graph = None
        self._dtype = initial.dtype
        self._shape = self._static_shape(initial, validate_shape, shape)
        self._name = name
        self._shared_name = f"{name}_{next(_eager_ids)}"
        self._trace_handles = weakref.WeakKeyDictionary()
        self._initial_value = initial
        self._initializer_op = None
        self._remote = remote_eager.current()
        if self._remote is not None:
            self._init_remote(initial)
            return
        self._handle = apply_op("VarHandleOp", [], self._handle_attrs(), name=name)
        _by_eager_handle[id(self._handle)] = self
        apply_op("AssignVariableOp", [self._handle, initial], {"dtype": self._dtype})

    def _init_remote(self, initial):
        """The variable on the connected cluster, on the device of the enclosing tg.device scope."""
        rc = self._remote
        self._remote_device = rc.variable_device()

        def build():
            with rc.graph.device(self._remote_device or None):
                handle = apply_op("VarHandleOp", [], self._handle_attrs(), name=self._name)
                with rc.graph.colocate_with(handle.op):
                    read = apply_op("ReadVariableOp", [handle], {"dtype": self._dtype, "shape": self._shape},
                                    name=f"{self._name}/read")
            return handle, read
        self._remote_handle, self._remote_read = rc.build(build)
        self._handle = self._remote_handle
        remote_eager.update(self, "AssignVariableOp", initial.numpy())

    # ---- meta graphs -----------------------------------------------------------------
    def to_proto(self, export_scope=None):
        """This graph variable as a VariableDef (its ops' names, relative to export_scope), as meta graphs keep it."""
        if self._eager():
            raise RuntimeError(f"to_proto is only available for a graph's variables, not eager {self.name}")
        from tensorgrid.proto import meta_graph_pb2

        def rel(name):
            if export_scope and not name.startswith(export_scope + "/"):
                raise ValueError(f"variable {self.name}: {name} is not under export_scope {export_scope!r}")
            return name[len(export_scope) + 1:] if export_scope else name
        return meta_graph_pb2.VariableDef(
            variable_name=rel(self._handle.name), initializer_name=rel(self._initializer_op.name),
            snapshot_name=rel(self._snapshot.name), is_resource=True,
            initial_value_name=rel(self._initial_value.name), trainable=self._trainable)

    @staticmethod
    def from_proto(variable_def, import_scope=None):
        """The Variable of the default graph whose ops `variable_def` names (under import_scope, if given)."""
        g = get_default_graph()

        def find(name):
            return g.as_graph_element(f"{import_scope}/{name}" if import_scope else name)
        v = Variable.__new__(Variable)
        v._graph = g
        v._handle = find(variable_def.variable_name)
        if v._handle.op.type != "VarHandleOp":
            raise ValueError(f"VariableDef names {v._handle.name}, a {v._handle.op.type}, not a variable's handle")
        v._name = v._handle.op.name
        v._dtype = dtypes.as_dtype(v._handle.op.get_attr("dtype"))
        v._shape = as_shape(v._handle.op.get_attr("shape"))
        shared = v._handle.op.get_attr("shared_name")
        v._shared_name = shared.decode() if isinstance(shared, bytes) else shared
        v._initializer_op = find(variable_def.initializer_name)
        v._snapshot = find(variable_def.snapshot_name)
        v._initial_value = find(variable_def.initial_value_name) if variable_def.initial_value_name else None
        v._trainable = variable_def.trainable
        return v

    # ---- identity -------------------------------------------------------------------
    @property
    def name(self):
        return f"{self._name}:0"

    @property
    def dtype(self):
        return self._dtype

    @property
    def shape(self):
        return self._shape

    def get_shape(self):
        return self._shape

    @property
    def trainable(self):
        return self._trainable

    @property
    def handle(self):
        """The resource handle tensor (in a tg.function trace, the trace's own handle)."""
        return self._current_handle()

    @property
    def op(self):
        if self._graph is None:
            raise AttributeError("Variable.op is meaningless when eager execution is enabled.")
        return self._handle.op

    @property
    def graph(self):
        return self._graph

    @property
    def device(self):
        if self._graph is None:
            # the device a strategy made it for (a MirroredVariable's component), else its handle's
            return getattr(self, "_local_device", None) or self._handle.device
        return self._handle.op.device

    @property
    def initializer(self):
        """The op that assigns the initial value (None for an eager variable, assigned at creation)."""
        return self._initializer_op

    @property
    def initial_value(self):
        return self._initial_value

    def _op_name(self):
        """The variable's name without ':0' (its op's name in graph mode)."""
        return self._name

    def _eager(self):
        return self._graph is None

    # ---- reading -----------------------------------------------------------------------
    def _current_handle(self):
        if not self._eager() or context.executing_eagerly():
            return self._handle
        # One handle per tg.function trace, made in its outermost graph: a cond's or loop's body
        # inside it captures that handle, so its reads stay connected for gradients.
        g = get_default_graph()
        while getattr(g, "outer_graph", None) is not None:
            g = g.outer_graph
        handle = self._trace_handles.get(g)
        if handle is None:
            # on a cluster, the handle sits on its variable's device (none: the master places both alike)
            pinned = g.device(self._remote_device or None) if self._remote is not None else contextlib.nullcontext()
            with g.as_default(), g.control_dependencies(None), g.colocate_with(None), pinned:
                handle = apply_op("VarHandleOp", [], self._handle_attrs(), name=self._name)
            self._trace_handles[g] = handle
        return handle

    def _colocated(self, handle):
        if getattr(handle, "_is_eager_tensor", False):
            return contextlib.nullcontext()
        return handle.graph.colocate_with(handle.op)

    def _read(self, name="read"):
        tape_lib.variable_accessed(self)
        if self._eager() and self._remote is not None and context.executing_eagerly():
            from tensorgrid.client.eager import EagerTensor
            return EagerTensor(remote_eager.read(self), self._dtype)
        handle = self._current_handle()
        with self._colocated(handle):
            return apply_op("ReadVariableOp", [handle], {"dtype": self._dtype, "shape": self._shape}, name=name)

    def sparse_read(self, indices, name=None):
        """Rows `indices` of the variable, read where it lives (its gradient is an IndexedSlices)."""
        tape_lib.variable_accessed(self)
        handle = self._current_handle()
        with self._colocated(handle):
            return apply_op("ResourceGather", [handle, array_ops._int_tensor(indices)],
                            {"dtype": self._dtype, "shape": self._shape, "batch_dims": 0, "validate_indices": True},
                            name=name or "Gather")

    def read_value(self):
        """A fresh read of the current value (it picks up enclosing control dependencies)."""
        return self._read()

    def value(self):
        """The variable's value as a tensor, as the variable converts to one."""
        return self._as_tensor()

    def _as_tensor(self):
        if self._eager():
            return self._read()
        if context.executing_eagerly():
            raise ValueError(f"variable {self.name} belongs to a graph and cannot be used while executing eagerly")
        g = get_default_graph()
        if g is self._graph and (g._current_control_inputs() or tape_lib.recording_in(g)):
            return self._read()
        if g is not self._graph and getattr(g, "outer_graph", None) is not None:
            return self._read()  # a function body reads at every call, through its captured handle
        return self._snapshot

    def _as_graph_element(self):
        if self._eager():
            raise TypeError(f"eager variable {self.name} is not an element of a graph")
        return self._snapshot

    def _grad_source(self):
        """The tensor gradients are taken with respect to: the handle every read takes as input."""
        return self._current_handle()

    def numpy(self):
        if not self._eager() or not context.executing_eagerly():
            raise NotImplementedError("numpy() is only available when eager execution is enabled.")
        return self._read().numpy()

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.numpy(), dtype=dtype)

    def eval(self, session=None):
        """The value in `session` (or the default session)."""
        if self._eager():
            return self.numpy()
        return self._snapshot.eval(session=session)

    def __iter__(self):
        raise TypeError("'Variable' object is not iterable.")

    def __eq__(self, other):
        # TF2: eagerly, == of a variable compares element-wise; in a graph it is identity
        if other is not None and self._eager() and context.executing_eagerly():
            from tensorgrid.client import math_ops
            return math_ops.equal(self, other)
        return self is other

    def __ne__(self, other):
        if other is not None and self._eager() and context.executing_eagerly():
            from tensorgrid.client import math_ops
            return math_ops.not_equal(self, other)
        return self is not other

    __hash__ = object.__hash__

    # ---- writing -----------------------------------------------------------------------
    def _update(self, op_type, value, name, read_value):
        if self._eager() and self._remote is not None and context.executing_eagerly():
            remote_eager.update(self, op_type, convert_to_tensor(value, dtype=self._dtype).numpy())
            return self if read_value else None
        handle = self._current_handle()
        value = convert_to_tensor(value, dtype=self._dtype)
        if op_type == "AssignVariableOp" and self._eager() and context.executing_eagerly() and \
                not self._shape.is_compatible_with(value.shape):   # TF's eager assign: a ValueError
            raise ValueError(f"Cannot assign value to variable ' {self.name}': Shape mismatch.The variable shape "
                             f"{self._shape}, and the assigned value shape {value.shape} are incompatible.")
        with self._colocated(handle):
            out = apply_op(op_type, [handle, value], {"dtype": self._dtype}, name=name)
        if self._eager() and context.executing_eagerly():
            return self if read_value else None
        return out if read_value else out.op

    def count_up_to(self, limit):
        """Adds 1 to this integer variable and returns its old value; OutOfRangeError once it reached limit."""
        handle = self._current_handle()
        with self._colocated(handle):
            return apply_op("ResourceCountUpTo", [handle], {"limit": int(limit), "T": self._dtype},
                            name="CountUpTo")

    def assign(self, value, use_locking=None, name=None, read_value=True):
        """Sets the variable to `value`; returns the new value (the op when read_value=False).

        Eagerly it returns the variable itself (None when read_value=False). `use_locking` is accepted
        for TF1 programs: every assign holds its variable's lock.
        """
        return self._update("AssignVariableOp", value, name or "Assign", read_value)

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        """Adds `delta` to the variable; returns the new value (the op when read_value=False)."""
        return self._update("AssignAddVariableOp", delta, name or "AssignAdd", read_value)

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        """Subtracts `delta` from the variable; returns the new value (the op when read_value=False)."""
        return self._update("AssignSubVariableOp", delta, name or "AssignSub", read_value)

    def _scatter(self, op_type, sparse_delta, name):
        from tensorgrid.client.indexed_slices import IndexedSlices
        if not isinstance(sparse_delta, IndexedSlices):
            raise TypeError(f"sparse_delta is not IndexedSlices: {sparse_delta!r}")
        return self._scatter_rows(op_type, sparse_delta.indices, sparse_delta.values, name)

    def _scatter_rows(self, op_type, indices, updates, name):
        handle = self._current_handle()
        updates = convert_to_tensor(updates, dtype=self._dtype)
        with self._colocated(handle):
            op = apply_op(op_type, [handle, array_ops._int_tensor(indices), updates], {"dtype": self._dtype},
                          name=name or op_type)
        if self._eager() and context.executing_eagerly():
            return self
        with graph_lib.get_default_graph().control_dependencies([op]):
            return self._read()

    def scatter_add(self, sparse_delta, use_locking=False, name=None):
        """Adds the IndexedSlices `sparse_delta` to the variable's rows; returns the updated value."""
        return self._scatter("ResourceScatterAdd", sparse_delta, name)

    def scatter_sub(self, sparse_delta, use_locking=False, name=None):
        """Subtracts the IndexedSlices `sparse_delta` from the variable's rows; returns the updated value."""
        return self._scatter("ResourceScatterSub", sparse_delta, name)

    def scatter_update(self, sparse_delta, use_locking=False, name=None):
        """Sets the variable's rows sparse_delta.indices to sparse_delta.values; returns the updated value."""
        return self._scatter("ResourceScatterUpdate", sparse_delta, name)

    def load(self, value, session=None):
        """Writes `value` into the variable through `session` (or the default session) without new ops."""
        if self._eager():
            self.assign(value)
            return
        from tensorgrid.client import session as session_lib
        sess = session_lib.default_session_for(self._graph, session)
        sess.run(self._initializer_op, {self._initializer_op.inputs[1]: value})

    def __repr__(self):
        if self._eager() and context.executing_eagerly():
            from tensorgrid.client.eager import numpy_text
            return (f"<tg.Variable '{self.name}' shape={self._shape} dtype={self._dtype.name}, "
                    f"numpy={numpy_text(self.numpy(), True)}>")
        return f"<tg.Variable '{self.name}' shape={self._shape} dtype={self._dtype.name}>"



class ResourceVariable(Variable):
    """The kind `tg.Variable(...)` makes, named as TF2's (`type(tf.Variable(1.0)).__name__`); every tensorgrid
    variable is a resource variable, so it adds nothing to Variable."""

def assign(ref, value, validate_shape=None, use_locking=None, name=None):
    """TF1's tf.assign: `ref.assign(value)`."""
    return ref.assign(value, name=name)


def assign_add(ref, value, use_locking=None, name=None):
    """TF1's tf.assign_add: `ref.assign_add(value)`."""
    return ref.assign_add(value, name=name)


def assign_sub(ref, value, use_locking=None, name=None):
    """TF1's tf.assign_sub: `ref.assign_sub(value)`."""
    return ref.assign_sub(value, name=name)


def scatter_add(ref, indices, updates, use_locking=False, name=None):
    """TF1's tf.scatter_add: adds `updates` to rows `indices` of variable `ref`; returns its new value."""
    return ref._scatter_rows("ResourceScatterAdd", indices, updates, name)


def scatter_sub(ref, indices, updates, use_locking=False, name=None):
    """TF1's tf.scatter_sub: subtracts `updates` from rows `indices` of variable `ref`; returns its new value."""
    return ref._scatter_rows("ResourceScatterSub", indices, updates, name)


def scatter_update(ref, indices, updates, use_locking=True, name=None):
    """TF1's tf.scatter_update: sets rows `indices` of variable `ref` to `updates`; returns its new value."""
    return ref._scatter_rows("ResourceScatterUpdate", indices, updates, name)


# ---- collections and initialization ------------------------------------------------------

def _collection(key, scope):
    if context.executing_eagerly():
        return []
    return get_default_graph().get_collection(key, scope)


def global_variables(scope=None):
    """The default graph's global variables (those whose name matches regex `scope`, if given)."""
    return _collection(GraphKeys.GLOBAL_VARIABLES, scope)


def trainable_variables(scope=None):
    """The default graph's trainable variables (those whose name matches regex `scope`, if given)."""
    return _collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def local_variables(scope=None):
    """The default graph's local variables (collection LOCAL_VARIABLES)."""
    return _collection(GraphKeys.LOCAL_VARIABLES, scope)


def variables_initializer(var_list, name="init"):
    """One op that runs the initializer of every variable in `var_list`."""
    if context.executing_eagerly():
        return None
    if not var_list:
        return array_ops.no_op(name=name)
    return array_ops.group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer():
    """The op that initializes every global variable of the default graph."""
    return variables_initializer(global_variables(), name="init")


initialize_all_variables = global_variables_initializer


def local_variables_initializer():
    """The op that initializes every local variable of the default graph."""
    return variables_initializer(local_variables(), name="init")


def is_variable_initialized(variable):
    """A bool tensor: whether `variable` holds a value."""
    handle = variable._current_handle()
    with variable._colocated(handle):
        return apply_op("VarIsInitializedOp", [handle], name="IsVariableInitialized")


def report_uninitialized_variables(var_list=None, name="report_uninitialized_variables"):
    """A string vector of the names of the variables in `var_list` (default: all) that hold no value."""
    if var_list is None:
        var_list = global_variables() + local_variables()
    g = get_default_graph()
    with g.name_scope(name) as scope:
        flags = [is_variable_initialized(v) for v in var_list]
        return apply_op("UninitializedNames", flags, {"names": [v._op_name() for v in var_list]}, name=scope)


# ---- initializers (TF1's init_ops) ---------------------------------------------------------

def _compute_fans(shape):
    """(fan_in, fan_out) of a weight of `shape`, as TF computes them."""
    shape = list(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = 1
    for d in shape[:-2]:
        receptive *= d
    return shape[-2] * receptive, shape[-1] * receptive


class _Initializer:
    """Base of the initializers: `init(shape, dtype=None)` returns a tensor of that shape."""

    def __init__(self, dtype=dtypes.float32):
        self.dtype = dtypes.as_dtype(dtype)

    def _dtype(self, dtype):
        return self.dtype if dtype is None else dtypes.as_dtype(dtype)


class zeros_initializer(_Initializer):  # noqa: N801 - TF's spelling
    """Initializes to zeros."""

    def __call__(self, shape, dtype=None, partition_info=None):
        return array_ops.zeros(shape, dtype=self._dtype(dtype))


class ones_initializer(_Initializer):  # noqa: N801
    """Initializes to ones."""

    def __call__(self, shape, dtype=None, partition_info=None):
        return array_ops.ones(shape, dtype=self._dtype(dtype))


class constant_initializer(_Initializer):  # noqa: N801
    """Initializes to `value` (a scalar broadcast to the shape, or a value with that many elements)."""

    def __init__(self, value=0, dtype=dtypes.float32, verify_shape=False):
        super().__init__(dtype)
        self.value = value
        self.verify_shape = verify_shape

    def __call__(self, shape, dtype=None, partition_info=None):
        return array_ops.constant(self.value, dtype=self._dtype(dtype), shape=shape, verify_shape=self.verify_shape)


class random_normal_initializer(_Initializer):  # noqa: N801
    """Initializes from a normal distribution."""

    _draw = staticmethod(random_ops.random_normal)

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=dtypes.float32):
        super().__init__(dtype)
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None, partition_info=None):
        return self._draw(shape, self.mean, self.stddev, self._dtype(dtype), seed=self.seed)


class truncated_normal_initializer(random_normal_initializer):  # noqa: N801
    """Initializes from a normal distribution with draws beyond two stddevs redrawn."""

    _draw = staticmethod(random_ops.truncated_normal)


class random_uniform_initializer(_Initializer):  # noqa: N801
    """Initializes from a uniform distribution over [minval, maxval) (maxval 1 for floats by default)."""

    def __init__(self, minval=0, maxval=None, seed=None, dtype=dtypes.float32):
        super().__init__(dtype)
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = self._dtype(dtype)
        maxval = 1 if self.maxval is None and dtype.is_floating else self.maxval
        return random_ops.random_uniform(shape, self.minval, maxval, dtype, seed=self.seed)


class variance_scaling_initializer(_Initializer):  # noqa: N801
    """Initializes with variance scale / fan (fan_in, fan_out or their mean), as TF1's VarianceScaling."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, dtype=dtypes.float32):
        super().__init__(dtype)
        if scale <= 0.0:
            raise ValueError("`scale` must be positive float.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: {mode}")
        if distribution not in ("normal", "truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"Invalid `distribution` argument: {distribution}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = self._dtype(dtype)
        fan_in, fan_out = _compute_fans(as_shape(shape).as_list())
        divisor = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, divisor)
        if self.distribution in ("normal", "truncated_normal"):
            # 0.879... is the stddev of a unit normal truncated to [-2, 2] (scipy.stats.truncnorm).
            stddev = math.sqrt(scale) / 0.87962566103423978
            return random_ops.truncated_normal(shape, 0.0, stddev, dtype, seed=self.seed)
        if self.distribution == "untruncated_normal":
            return random_ops.random_normal(shape, 0.0, math.sqrt(scale), dtype, seed=self.seed)
        limit = math.sqrt(3.0 * scale)
        return random_ops.random_uniform(shape, -limit, limit, dtype, seed=self.seed)


class glorot_uniform_initializer(variance_scaling_initializer):  # noqa: N801
    """Xavier uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)); get_variable's default."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "uniform", seed, dtype)


class glorot_normal_initializer(variance_scaling_initializer):  # noqa: N801
    """Xavier normal: truncated normal with stddev sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, dtype)


# ---- get_variable and variable scopes -------------------------------------------------------

class _ReuseMode:
    def __repr__(self):
        return "tg.AUTO_REUSE"


AUTO_REUSE = _ReuseMode()


class VariableScope:
    """A variable scope: the name prefix, reuse mode and defaults get_variable uses inside it."""

    def __init__(self, reuse, name="", initializer=None, dtype=dtypes.float32, name_scope="", partitioner=None):
        self._reuse = reuse
        self._partitioner = partitioner
        self._name = name
        self._initializer = initializer
        self._dtype = dtypes.as_dtype(dtype)
        self._name_scope = name_scope

    @property
    def name(self):
        return self._name

    @property
    def original_name_scope(self):
        return self._name_scope

    @property
    def reuse(self):
        return self._reuse

    @property
    def initializer(self):
        return self._initializer

    @property
    def dtype(self):
        return self._dtype

    @property
    def partitioner(self):
        return self._partitioner

    def set_partitioner(self, partitioner):
        self._partitioner = partitioner

    def reuse_variables(self):
        """From now on get_variable in this scope returns existing variables."""
        self._reuse = True

    def set_initializer(self, initializer):
        self._initializer = initializer

    def set_dtype(self, dtype):
        self._dtype = dtypes.as_dtype(dtype)

    def global_variables(self):
        return global_variables(self._name)

    def trainable_variables(self):
        return trainable_variables(self._name)

    def get_variable(self, name, shape=None, dtype=None, initializer=None, trainable=None, collections=None,
                     validate_shape=True, regularizer=None, partitioner=None):
        full = f"{self._name}/{name}" if self._name else name
        if initializer is None:
            initializer = self._initializer
        store = _store()
        partitioner = partitioner if partitioner is not None else self._partitioner
        if partitioner is not None and not context.executing_eagerly():
            return store.get_partitioned(full, shape, dtype or self._dtype, initializer, self._reuse, trainable,
                                         collections, validate_shape, partitioner)
        existed = full in store.vars
        v = store.get(full, shape, dtype or self._dtype, initializer, self._reuse, trainable, collections,
                      validate_shape)
        if regularizer is not None and not existed and not context.executing_eagerly():
            _regularize(v, regularizer)
        return v


def _regularize(v, regularizer):
    """Adds regularizer(v), built under `<v>/Regularizer/`, to REGULARIZATION_LOSSES (TF1's get_variable)."""
    from tensorgrid.client import scopes
    with scopes.name_scope(v._op_name() + "/Regularizer/"):
        loss = regularizer(v)
    if loss is not None:
        add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)


class _VariableStore:
    """The get_variable variables of one graph, the current variable scope, and scope-name counts."""

    def get_partitioned(self, name, shape, dtype, initializer, reuse, trainable, collections, validate_shape,
                        partitioner):
        """The PartitionedVariable `name` (client/partitioned_variables.py), made of one variable per part."""
        from tensorgrid.client import partitioned_variables as pv_lib
        dtype = dtypes.as_dtype(dtype)
        found = self.vars.get(name)
        if found is not None:
            if not isinstance(found, pv_lib.PartitionedVariable):
                raise ValueError(f"Trying to reuse non-partitioned variable {name} as a partitioned one")
            self.get(name, shape, dtype, initializer, reuse, trainable, collections, validate_shape, found=found)
            return found
        if reuse is True:
            raise ValueError(f"PartitionedVariable {name} does not exist, or was not created with "
                             "tf.get_variable(). Did you mean to set reuse=None in VarScope?")
        if shape is None and not callable(initializer) and initializer is not None:
            shape = np.shape(initializer)
        if shape is None or not as_shape(shape).is_fully_defined():
            raise ValueError(f"Shape of a new partitioned variable ({name}) must be fully defined, but instead was "
                             f"{shape}.")
        shape = as_shape(shape)
        partitions = list(partitioner(shape=shape, dtype=dtype))

        def make_part(part_name, part_shape, info):
            if callable(initializer) or initializer is None:
                part_init = _partition_initializer(initializer, info)
            else:
                index = tuple(slice(o, o + d) for o, d in zip(info.var_offset, part_shape))
                part_init, part_shape = np.asarray(initializer)[index], None
            return self.get(part_name, part_shape, dtype, part_init, reuse, trainable, collections, validate_shape)
        pv = pv_lib.make_partitioned(name, shape.as_list(), dtype, partitions, make_part)
        self.vars[name] = pv
        return pv

    def __init__(self):
        self.vars = {}
        self.scope = VariableScope(False)
        self.scope_counts = {}

    def unique_scope(self, name):
        count = self.scope_counts.get(name, 0)
        self.scope_counts[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    def get(self, name, shape, dtype, initializer, reuse, trainable, collections, validate_shape, found=None):
        dtype = dtypes.as_dtype(dtype)
        shape = None if shape is None else as_shape(shape)
        eager = context.executing_eagerly()
        if found is not None or (not eager and name in self.vars):
            found = found if found is not None else self.vars[name]
            if reuse is False or reuse is None:
                source = found.op.source
                where = f"{source[0]}:{source[1]}" if source else "an unknown place"
                raise ValueError(f"Variable {name} already exists, disallowed. Did you mean to set reuse=True "
                                 f"or reuse=tf.AUTO_REUSE in VarScope? Originally defined at {where}")
            if shape is not None and not shape.is_compatible_with(found.shape):
                raise ValueError(f"Trying to share variable {name}, but specified shape {shape} "
                                 f"and found shape {found.shape}.")
            if dtype != found.dtype:
                raise ValueError(f"Trying to share variable {name}, but specified dtype {dtype.name} "
                                 f"and found dtype {found.dtype.name}.")
            return found
        if reuse is True and not eager:
            raise ValueError(f"Variable {name} does not exist, or was not created with tf.get_variable(). "
                             f"Did you mean to set reuse=tf.AUTO_REUSE in VarScope?")
        if isinstance(initializer, type):
            initializer = initializer(dtype=dtype)
        if initializer is None:
            if dtype.is_floating:
                initializer = glorot_uniform_initializer()
            elif dtype.is_integer or dtype.is_bool:
                initializer = zeros_initializer()
            else:
                raise ValueError(f"An initializer for variable {name} of {dtype.name} is required")
        if callable(initializer):
            if shape is None or not shape.is_fully_defined():
                raise ValueError(f"Shape of a new variable ({name}) must be fully defined, but instead was {shape}.")

            def initial():
                return initializer(shape.as_list(), dtype=dtype)
        else:
            if shape is not None:
                raise ValueError(f"If initializer is a constant, do not specify shape (variable {name}).")
            initial = initializer
        if eager:
            return Variable(initial, trainable, name=name, dtype=dtype, validate_shape=validate_shape,
                            collections=collections)
        g = get_default_graph()
        with g.name_scope(""):
            v = Variable(initial, trainable, name=name, dtype=dtype, validate_shape=validate_shape,
                         collections=collections)
        self.vars[name] = v
        return v


def _partition_initializer(initializer, info):
    """`initializer` called for one part: with partition_info, as TF calls initializers."""
    if initializer is None or isinstance(initializer, type):
        return initializer

    try:
        takes_info = "partition_info" in inspect.signature(initializer).parameters
    except (TypeError, ValueError):
        takes_info = False
    if not takes_info:
        return initializer
    return lambda shape, dtype=None: initializer(shape, dtype=dtype, partition_info=info)


_eager_store = None


def _store():
    """The default graph's variable store (one process-wide store in eager mode)."""
    global _eager_store
    if context.executing_eagerly():
        if _eager_store is None:
            _eager_store = _VariableStore()
        return _eager_store
    ref = get_default_graph().get_collection_ref("__variable_store")
    if not ref:
        ref.append(_VariableStore())
    return ref[0]


def get_variable_scope():
    """The current VariableScope."""
    return _store().scope


def get_variable(name, shape=None, dtype=None, initializer=None, regularizer=None, trainable=None,
                 collections=None, caching_device=None, partitioner=None, validate_shape=True, use_resource=None):
    """Returns the variable `scope/name`, creating it unless the scope reuses variables.

    `initializer` is an initializer (called with the shape and dtype) or a value, which then fixes
    the shape. A new variable's `regularizer(v)` goes into REGULARIZATION_LOSSES. Raises ValueError
    when it exists and reuse is off, or does not exist and reuse=True. With a `partitioner` (or the
    scope's), a graph-mode variable is made of parts: see client/partitioned_variables.py.
    """
    return get_variable_scope().get_variable(name, shape, dtype, initializer, trainable, collections,
                                             validate_shape, regularizer, partitioner)


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, values=None, initializer=None, reuse=None, dtype=None,
                   auxiliary_name_scope=True, partitioner=None):
    """Opens variable scope `name_or_scope` (or a unique `default_name`) and the name scope of the same name."""
    store = _store()
    old = store.scope
    if name_or_scope is None and default_name is None:
        raise TypeError("If default_name is None then name_or_scope is required")
    if isinstance(name_or_scope, VariableScope):
        name = name_or_scope.name
        reuse = reuse or name_or_scope.reuse
        initializer = name_or_scope.initializer if initializer is None else initializer
        dtype = dtype or name_or_scope.dtype
        partitioner = name_or_scope.partitioner if partitioner is None else partitioner
        name_scope = name_or_scope.original_name_scope
    else:
        if name_or_scope is None:
            if reuse is True:
                raise ValueError("reuse=True cannot be used without a name_or_scope")
            prefix = f"{old.name}/" if old.name else ""
            name = store.unique_scope(prefix + default_name)
            scope_base = default_name
        else:
            name = f"{old.name}/{name_or_scope}" if old.name else name_or_scope
            scope_base = name_or_scope
        reuse = reuse or old.reuse
        initializer = old.initializer if initializer is None else initializer
        dtype = dtype or old.dtype
        partitioner = old.partitioner if partitioner is None else partitioner
        name_scope = scope_base
    from tensorgrid.client import scopes
    ctx = scopes.name_scope(name_scope) if auxiliary_name_scope else contextlib.nullcontext(name_scope)
    with ctx as opened:
        new = VariableScope(reuse, name, initializer, dtype, opened if isinstance(opened, str) else "", partitioner)
        store.scope = new
        try:
            yield new
        finally:
            store.scope = old


from tensorgrid.client import state_grad  # noqa: E402,F401 - registers the variable ops' gradients
