"""Eager code against a cluster: tg.config.experimental_connect_to_host / experimental_connect_to_cluster.

Once connected, a variable made eagerly lives on the cluster, on the device
of the `tg.device` scope it is made in (by default the first task of the
job connected to, /job:worker/task:0, as TF's default device), and every tg.function runs its traced graph on the cluster: the
master places and partitions it like any step, its variable handles pinned
to their variables' devices and found there by shared name, so the same
program trains with the same numbers in-process and on the cluster (a
Keras `fit` included). Reading or assigning such a variable eagerly is a
small step of one client graph that holds, per variable, its handle and its
read and assign nodes; other eager ops still run in this process, on values
read back.
"""

import contextlib
import threading

import numpy as np

from tensorgrid.client import context
from tensorgrid.framework import device_spec

__all__ = ["experimental_connect_to_host", "experimental_connect_to_cluster", "current", "disconnect"]


class RemoteContext:
    """The cluster eager code runs against: its target and the client graph of its eager variable steps."""

    def __init__(self, target, config=None, default_device=""):
        from tensorgrid.client.graph import Graph
        from tensorgrid.client.remote import RemoteBackend
        self.target = target
        self.config = config
        self.default_device = default_device
        self.graph = Graph()
        self.backend = RemoteBackend(target, self.graph, config)
        self._lock = threading.Lock()
        self._nodes = {}      # (variable shared name, what) -> (op or tensor, placeholder)

    def run(self, fetches, feeds=None, targets=()):
        with self._lock:
            return self.backend.run(self.graph, feeds or {}, list(fetches), list(targets))[0]

    def build(self, build_fn):
        """build_fn() run in this context's graph (under its lock, so nodes are added one thread at a time)."""
        with self._lock, self.graph.as_default():
            return build_fn()

    def device(self):
        """The device an eager variable made now goes to: the innermost eager tg.device scope, merged."""
        spec = self.default_device
        for d in context.eager_device_stack():
            if d is None:
                spec = ""
            elif isinstance(d, str):
                spec = device_spec.merge(spec, d)
        return spec

    def variable_device(self):
        """The device an eager variable made now goes to: an enclosing tg.device scope's, else the current
        strategy's choice (ParameterServerStrategy: the next ps task, round-robin), else the default."""
        if not any(isinstance(d, str) and d for d in context.eager_device_stack()):
            from tensorgrid.client.distribute import distribute_lib
            chosen = distribute_lib.get_strategy().extended._variable_device()
            if chosen:
                return chosen
        return self.device()

    def close(self):
        self.backend.close()


_current = None


@contextlib.contextmanager
def variables_on(device):
    """Eager variables made inside (lifted out of a trace too) go to `device` of the connected cluster."""
    stack = context.eager_device_stack()
    stack.append(device)
    try:
        yield
    finally:
        stack.pop()


def current():
    """The RemoteContext eager code runs against, or None (in-process)."""
    return _current


def experimental_connect_to_host(remote_host=None, job_name="worker", config=None):
    """Runs eager variables and tg.functions on the cluster whose master is `remote_host` ("grpc://host:port")."""
    if not remote_host:
        raise ValueError("Must provide at least one remote_host")
    if isinstance(remote_host, (list, tuple)):
        remote_host = remote_host[0]
    target = remote_host if "://" in remote_host else f"grpc://{remote_host}"
    return _connect(target, config, f"/job:{job_name}/replica:0/task:0")


def experimental_connect_to_cluster(cluster_spec_or_resolver, job_name="localhost", task_index=0, protocol=None,
                                    make_master_device_default=True, cluster_device_filters=None, config=None):
    """experimental_connect_to_host for a cluster resolver (its `master()` is the target) or a target string."""
    what = cluster_spec_or_resolver
    if isinstance(what, str):
        target = what
    elif hasattr(what, "master"):
        target = what.master()
    else:
        raise ValueError(f"`cluster_spec_or_resolver` must be a ClusterResolver with master() (the tensorgrid "
                         f"master's grpc:// target) or a target string; got {what!r}")
    if not target:
        raise ValueError(f"the cluster resolver {what!r} gives no master target")
    return _connect(target if "://" in target else f"grpc://{target}", config,
                    "/job:worker/replica:0/task:0" if make_master_device_default else "")


def _connect(target, config, default_device):
    global _current
    if _current is not None:
        _current.close()
    _current = RemoteContext(target, config, default_device)
    _current.backend.list_devices()   # fails now, naming the target, when no master answers there
    return None


def disconnect():
    """Back to in-process eager execution (tensorgrid's; TensorFlow has no public counterpart)."""
    global _current
    if _current is not None:
        _current.close()
    _current = None


def read(variable):
    rc = variable._remote
    return np.asarray(rc.run([variable._remote_read.name])[variable._remote_read.name])


def update(variable, op_type, value):
    """Runs the variable's `op_type` (AssignVariableOp, AssignAddVariableOp, ...) on the cluster with `value`."""
    from tensorgrid.client import array_ops
    from tensorgrid.client.graph import apply_op
    rc = variable._remote
    key = (variable._shared_name, op_type)
    node = rc._nodes.get(key)
    if node is None:
        def build():
            with rc.graph.colocate_with(variable._remote_handle.op):
                ph = array_ops.placeholder(variable.dtype, shape=variable.shape, name=f"{variable._name}/value")
                op = apply_op(op_type, [variable._remote_handle, ph], {"dtype": variable.dtype},
                              name=f"{variable._name}/{op_type}")
            return op, ph
        node = rc._nodes[key] = rc.build(build)
    op, ph = node
    target = op.op.name if hasattr(op, "op") else op.name
    rc.run([], {ph.name: np.asarray(value, dtype=variable.dtype.as_numpy_dtype)}, [target])
