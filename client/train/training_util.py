"""The global step: the int64 variable `global_step` that counts training steps."""

from tensorgrid.client import context, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import get_default_graph
from tensorgrid.framework import dtypes

__all__ = ["get_global_step", "create_global_step", "get_or_create_global_step", "global_step"]


def get_global_step(graph=None):
    """The graph's global step variable (collection GLOBAL_STEP, else the variable named global_step), or None."""
    if context.executing_eagerly() and graph is None:
        return None
    graph = graph or get_default_graph()
    found = graph.get_collection(variables_lib.GraphKeys.GLOBAL_STEP)
    if len(found) > 1:
        raise TypeError("There are multiple items in collection global_step; there should be only one.")
    if found:
        return found[0]
    for v in graph.get_collection(variables_lib.GraphKeys.GLOBAL_VARIABLES):
        if v.name == "global_step:0":
            return v
    return None


def create_global_step(graph=None):
    """Creates the global step (an int64 scalar starting at 0); ValueError if one exists."""
    def make():
        return variables_lib.get_variable(
            "global_step", shape=[], dtype=dtypes.int64, initializer=variables_lib.zeros_initializer(),
            trainable=False, collections=[variables_lib.GraphKeys.GLOBAL_VARIABLES,
                                          variables_lib.GraphKeys.GLOBAL_STEP])
    if context.executing_eagerly():
        return make()
    graph = graph or get_default_graph()
    if get_global_step(graph) is not None:
        raise ValueError('"global_step" already exists.')
    with graph.as_default(), scopes.name_scope(""):
        return make()


def get_or_create_global_step(graph=None):
    """The graph's global step, created if there is none."""
    step = get_global_step(graph)
    return create_global_step(graph) if step is None else step


def global_step(sess, global_step_tensor):
    """The global step's value, as a Python int, read through `sess`."""
    if context.executing_eagerly():
        return int(global_step_tensor.numpy())
    return int(sess.run(global_step_tensor))
