"""Scopes that shape the ops created inside them: names, devices, control deps, colocation."""

import contextlib

from tensorgrid.client import context
from tensorgrid.client.graph import get_default_graph

__all__ = ["device", "name_scope", "control_dependencies", "colocate_with"]  # container: TF1 only (compat.v1)


@contextlib.contextmanager
def device(device_name_or_function):
    """Ops created inside run on this device (a partial spec merged with outer ones, or a function of the op)."""
    if context.executing_eagerly():
        # recorded for eager code connected to a cluster (client/remote_eager.py); ignored in-process
        stack = context.eager_device_stack()
        stack.append(device_name_or_function)
        try:
            yield
        finally:
            stack.pop()
        return
    with get_default_graph().device(device_name_or_function):
        yield


@contextlib.contextmanager
def name_scope(name, default_name=None, values=None):
    """Prefixes the names of ops created inside with `name/`."""
    if name is None:
        name = default_name
    if context.executing_eagerly():
        outer = context.eager_name_scope()
        if not name:
            inner = "" if name == "" else outer
        elif name.endswith("/"):
            inner = name[:-1]
        else:
            inner = f"{outer}/{name}" if outer else name
        context.set_eager_name_scope(inner)
        try:
            yield (inner + "/") if inner else ""
        finally:
            context.set_eager_name_scope(outer)
        return
    with get_default_graph().name_scope(name) as scope:
        yield scope


@contextlib.contextmanager
def control_dependencies(control_inputs):
    """Ops created inside run only after `control_inputs` (None clears outer dependencies)."""
    if context.executing_eagerly():
        yield
        return
    with get_default_graph().control_dependencies(control_inputs):
        yield


@contextlib.contextmanager
def container(container_name):
    """Stateful ops created inside (variables, queues) keep their resources in container
    `container_name` on their device, which `Session.reset(target, [container_name])` clears alone;
    containers also keep resources of the same name apart (worker/resources.py)."""
    graph = get_default_graph()
    old = current_container(graph)
    graph._container = container_name or ""
    try:
        yield container_name
    finally:
        graph._container = old


def current_container(graph=None):
    """The container of resources created now ("" outside any `container` scope, and eagerly)."""
    if graph is None:
        if context.executing_eagerly():
            return ""
        graph = get_default_graph()
    return getattr(graph, "_container", "")


@contextlib.contextmanager
def colocate_with(op, ignore_existing=False):
    """Ops created inside are placed on the same device as `op`."""
    if context.executing_eagerly():
        yield
        return
    with get_default_graph().colocate_with(op, ignore_existing):
        yield
