"""Process-wide mode state: eager or graph, the default-graph stack, the default session."""

import threading


class _State(threading.local):
    def __init__(self):
        self.graph_stack = []      # graphs entered with as_default(), innermost last
        self.session_stack = []    # sessions entered with as_default()
        self.tapes = []            # GradientTapes entered and not yet exited, innermost last
        self.eager_name_scope = ""  # the name scope eager ops and TF2 summary tags see
        self.eager_device_stack = []  # tg.device specs entered eagerly (they place variables on a cluster)


_state = _State()
_eager_enabled = True
_global_graph = None


def eager_enabled():
    return _eager_enabled


def set_eager(enabled):
    global _eager_enabled
    _eager_enabled = enabled


def executing_eagerly():
    """True outside any graph context while eager execution is on (TF2's default)."""
    return _eager_enabled and not _state.graph_stack


def graph_stack():
    return _state.graph_stack


def session_stack():
    return _state.session_stack


def tapes():
    return _state.tapes


def eager_device_stack():
    return _state.eager_device_stack


def eager_name_scope():
    return _state.eager_name_scope


def set_eager_name_scope(scope):
    _state.eager_name_scope = scope


def global_default_graph():
    global _global_graph
    if _global_graph is None:
        from tensorgrid.client.graph import Graph
        _global_graph = Graph()
    return _global_graph


def reset_global_graph():
    global _global_graph
    if _state.graph_stack:
        raise AssertionError("reset_default_graph() called inside a graph context (a `with g.as_default()` block)")
    _global_graph = None
