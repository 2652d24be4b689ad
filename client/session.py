"""tg.Session: runs fetches of a Graph in-process (target "") or on a cluster ("grpc://host:port").

Fetches may be any nesting of lists, tuples, dicts and namedtuples of
Tensors, Operations, names and Variables; the result has the same structure.
Feeds are converted to the fed tensor's dtype and checked against its static
shape on the client (ValueError, as TF1); a lossy conversion (a fraction
into an integer tensor, a non-bool into a bool tensor) is an
InvalidArgumentError naming the tensor.
"""

import contextlib
import os

import numpy as np

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client import nest
from tensorgrid.client import sparse_tensor
from tensorgrid.framework import dtypes, errors, strings
from tensorgrid.observability import stages


class _FetchMapper:
    """Flattens a fetch structure to graph elements and rebuilds results in its shape."""

    def __init__(self, graph, fetches):
        self.graph = graph
        self.leaves = []
        self.structure = nest.flatten(fetches, self._element, self.leaves)

    def _element(self, f):
        if f is None:
            raise TypeError("Fetch argument None has invalid type <class 'NoneType'>")
        try:
            return _dereferenced(self.graph.as_graph_element(f))
        except (KeyError, ValueError) as e:
            raise ValueError(f"Fetch argument {f!r} cannot be interpreted as a Tensor. ({e})") from None
        except TypeError as e:
            raise TypeError(f"Fetch argument {f!r} has invalid type {type(f)}: {e}") from None

    def build(self, values):
        return nest.rebuild(self.structure, values)


def _dereferenced(element):
    """A variable's handle as TF1 fetches its reference tensor ("w:0"): the variable's read `w/read:0`."""
    if isinstance(element, graph_lib.Tensor) and element.dtype is dtypes.resource \
            and element.op.type == "VarHandleOp":
        try:
            read = element.graph.get_operation_by_name(element.op.name + "/read")
        except KeyError:
            return element
        if read.type == "ReadVariableOp" and read.inputs and read.inputs[0] is element:
            return read.outputs[0]
    return element


def _to_result(value):
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value[()]
        return value if value.flags.writeable else value.copy()
    return value


def _convert_feed(tensor, value):
    dt = tensor.dtype
    if type(value) is np.ndarray and value.dtype.kind not in "OSU" and value.dtype == dt.as_numpy_dtype:
        return _check_feed_shape(tensor, value)     # already of the tensor's dtype: only its shape to check
    if isinstance(value, (graph_lib.Tensor, graph_lib.Operation)):
        raise TypeError(f"The value of a feed cannot be a tg.Tensor object; feed {tensor.name} with a numpy array")
    if getattr(value, "_is_eager_tensor", False):
        value = value.numpy()
    try:
        raw = np.asarray(value)
    except Exception as e:
        raise errors.InvalidArgumentError(None, tensor.name, f"cannot convert the value fed for {tensor.name} to an array: {e}") from None
    if raw.dtype.kind in "OSU" and dt is not dtypes.string:
        raise errors.InvalidArgumentError(
            None, tensor.name, f"cannot feed a value of type {raw.dtype} to tensor '{tensor.name}' of dtype {dt.name}")
    if dt.is_integer and raw.dtype.kind == "f" and not np.array_equal(raw, np.trunc(raw)):
        raise errors.InvalidArgumentError(
            None, tensor.name,
            f"cannot feed float values to tensor '{tensor.name}' of dtype {dt.name} without losing their fractions")
    if dt.is_bool and raw.dtype.kind != "b":
        raise errors.InvalidArgumentError(
            None, tensor.name, f"cannot feed a value of dtype {raw.dtype} to bool tensor '{tensor.name}'")
    arr = np.asarray(raw, dtype=dt.as_numpy_dtype) if dt is not dtypes.string else _string_feed(tensor, raw)
    return _check_feed_shape(tensor, arr)


def _check_feed_shape(tensor, arr):
    if not tensor.shape.is_compatible_with(arr.shape):
        raise ValueError(f"Cannot feed value of shape {arr.shape} for Tensor '{tensor.name}', "
                         f"which has shape '{tensor.shape}'")
    return arr


def _string_feed(tensor, raw):
    try:
        return strings.string_array(raw)
    except TypeError as e:
        raise errors.InvalidArgumentError(None, tensor.name, f"cannot feed string tensor '{tensor.name}': {e}") \
            from None


class BaseSession:
    """A connection to an execution engine that runs steps of one graph."""

    def __init__(self, target=None, graph=None, config=None):
        if graph is None:
            graph = graph_lib.get_default_graph()
        if not isinstance(graph, graph_lib.Graph):
            raise TypeError(f"graph must be a tg.Graph, not {type(graph).__name__}")
        self._graph = graph
        self._config = config
        if target is None:  # not given: $TENSORGRID_MASTER, else in-process
            target = os.environ.get("TENSORGRID_MASTER", "")
        self._target = target
        self._closed = False
        self._last_fetch = None     # (fetches, graph version, _fetch_plan's answer)
        self._default_ctx = None
        if target:
            from tensorgrid.client import remote
            self._backend = remote.RemoteBackend(target, graph, config)
        else:
            from tensorgrid.runtime.local import LocalBackend
            self._backend = LocalBackend(config)

    @property
    def graph(self):
        return self._graph

    @property
    def graph_def(self):
        return self._graph.as_graph_def()

    @property
    def sess_str(self):
        return self._target

    def list_devices(self):
        return [_DeviceAttributes(n, t, m) for n, t, m in self._backend.list_devices()]

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Runs the step that computes `fetches`, feeding `feed_dict`; returns values in the fetches' shape."""
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        if stages.ON:
            stages.mark("c.start")
        mapper, tensor_fetches, targets = self._fetch_plan(fetches)
        feeds = {}
        for key, value in (feed_dict or {}).items():
            if isinstance(key, tuple) or isinstance(key, list):
                raise TypeError(f"feed_dict key {key!r} must be a Tensor or tensor name")
            if hasattr(key, "_as_graph_element") and not isinstance(key, graph_lib.Tensor):
                key = key._as_graph_element()
            pairs = sparse_tensor.feed_parts(key, value) if isinstance(key, sparse_tensor.SparseTensor) \
                else [(key, value)]
            for key, value in pairs:
                try:
                    t = self._graph.as_graph_element(key, allow_operation=False)
                except (KeyError, ValueError) as e:
                    raise TypeError(f"Cannot interpret feed_dict key {key!r} as a Tensor: {e}") from None
                feeds[t.name] = _convert_feed(t, value)
        trace = options is not None and getattr(options, "trace_level", 0) >= 1
        timeout_ms = getattr(options, "timeout_in_ms", 0) if options is not None else 0
        if not timeout_ms and self._config is not None:
            timeout_ms = getattr(self._config, "operation_timeout_in_ms", 0)
        results, stats = self._backend.run(self._graph, feeds, tensor_fetches, targets,
                                           timeout_ms=timeout_ms, trace=trace)
        if run_metadata is not None and trace:
            self._fill_metadata(run_metadata, stats)
        values = []
        for el in mapper.leaves:
            if isinstance(el, graph_lib.Operation):
                values.append(None)
            else:
                values.append(_to_result(results[el.name]))
        if stages.ON:
            stages.mark("c.end")
        return mapper.build(values)

    def _fetch_plan(self, fetches):
        """(mapper, tensor names fetched, op names run) of `fetches`; kept for the last fetch that is one
        Tensor, Operation or name, while the graph is unchanged (a loop of runs resolves it once)."""
        cached = self._last_fetch
        if cached is not None and cached[0] is fetches and cached[1] == self._graph.version:
            return cached[2]
        mapper = _FetchMapper(self._graph, fetches)
        tensor_fetches, targets = [], []
        for el in mapper.leaves:
            if isinstance(el, graph_lib.Operation):
                if el.name not in targets:
                    targets.append(el.name)
            elif el.name not in tensor_fetches:
                if el.dtype is dtypes.resource:
                    raise TypeError(f"cannot fetch resource handle {el.name}; fetch a read of the variable")
                if el.dtype is dtypes.variant:
                    raise TypeError(f"cannot fetch {el.name}: a variant tensor (a TensorArray's list, a dataset) "
                                    "lives on its device; fetch a tensor made from it")
                tensor_fetches.append(el.name)
        plan = (mapper, tensor_fetches, targets)
        if isinstance(fetches, (graph_lib.Tensor, graph_lib.Operation, str)):   # immutable: safe to key by identity
            self._last_fetch = (fetches, self._graph.version, plan)
        return plan

    def _fill_metadata(self, run_metadata, stats):
        from tensorgrid.proto import convert
        if stats is None:
            return
        if hasattr(stats, "step_stats"):  # a RunMetadata from the cluster
            run_metadata.CopyFrom(stats)
            return
        run_metadata.step_stats.CopyFrom(stats)
        del run_metadata.partition_graphs[:]
        last = getattr(self._backend, "last_partitions", None)
        for dev, part in (last() if last else {}).items():
            run_metadata.partition_graphs.add().CopyFrom(convert.graph_ir_to_proto(part))

    def close(self):
        if not self._closed:
            self._closed = True
            self._backend.close()

    def as_default(self):
        return _session_default_context(self)

    def __enter__(self):
        if self._default_ctx is None:
            self._default_ctx = self.as_default()
            self._graph_ctx = self._graph.as_default()
            self._graph_ctx.__enter__()
            self._default_ctx.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._default_ctx is not None:
            self._default_ctx.__exit__(exc_type, exc, tb)
            self._graph_ctx.__exit__(exc_type, exc, tb)
            self._default_ctx = None
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @staticmethod
    def reset(target, containers=None, config=None):
        """Closes every session on the cluster at `target` and clears the resource containers named in
        `containers` (every container when None) on all its workers; see worker/resources.py."""
        from tensorgrid.client import remote
        remote.reset(target, config, containers)


class Session(BaseSession):
    """TF1's Session."""


class InteractiveSession(BaseSession):
    """A Session that installs itself as the default session on creation."""

    def __init__(self, target=None, graph=None, config=None):
        super().__init__(target, graph, config)
        self._interactive_ctx = self.as_default()
        self._interactive_ctx.__enter__()

    def close(self):
        super().close()
        ctx = getattr(self, "_interactive_ctx", None)
        if ctx is not None:
            self._interactive_ctx = None
            stack = context.session_stack()
            if self in stack:
                stack.remove(self)


class _DeviceAttributes:
    def __init__(self, name, device_type, memory_limit_bytes):
        self.name = name
        self.device_type = device_type
        self.memory_limit_bytes = memory_limit_bytes

    def __repr__(self):
        return f"_DeviceAttributes({self.name}, {self.device_type}, {self.memory_limit_bytes})"


@contextlib.contextmanager
def _session_default_context(sess):
    stack = context.session_stack()
    stack.append(sess)
    try:
        yield sess
    finally:
        if stack and stack[-1] is sess:
            stack.pop()


def get_default_session():
    stack = context.session_stack()
    return stack[-1] if stack else None


def default_session_for(graph, session=None):
    sess = session or get_default_session()
    if sess is None:
        raise ValueError("Cannot evaluate tensor using `eval()`: No default session is registered. "
                         "Use `with sess.as_default()` or pass an explicit session to `eval(session=sess)`")
    if sess.graph is not graph:
        raise ValueError("Cannot use the given session to evaluate tensor: the tensor's graph is different "
                         "from the session's graph.")
    return sess
