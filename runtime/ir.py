"""The graph IR that the master's passes and the workers' executor work on.

A GraphIR is a plain, ordered table of Nodes, independent of the client's
Graph objects and of protobuf, so every pass can be tested on a literal graph.
Attribute values are Python values: int, float, bool, str, bytes, DType,
TensorShape, numpy.ndarray (a tensor) or a list of those.
"""

import dataclasses
import heapq
from typing import Any

from tensorgrid.framework import errors


@dataclasses.dataclass(slots=True)
class Node:
    """One node: op type, data inputs as 'node:i', control inputs as node names."""

    name: str
    op: str
    inputs: list = dataclasses.field(default_factory=list)
    control_inputs: list = dataclasses.field(default_factory=list)
    device: str = ""
    attrs: dict = dataclasses.field(default_factory=dict)
    source: Any = None  # (file, line) of the user code that created the node

    def copy(self, **changes):
        """A copy with `changes` applied; attrs are shared, since passes replace attrs, never edit them."""
        n = Node(self.name, self.op, self.inputs, self.control_inputs, self.device, self.attrs, self.source)
        for k, v in changes.items():
            setattr(n, k, v)
        if "inputs" not in changes:
            n.inputs = list(self.inputs)
        if "control_inputs" not in changes:
            n.control_inputs = list(self.control_inputs)
        return n

    def where(self):
        """'file:line' of the creating user code, or '' when unknown."""
        return f"{self.source[0]}:{self.source[1]}" if self.source else ""

    def describe(self):
        """'op 'name' on device (created at file:line)', for error messages."""
        text = f"{self.op} '{self.name}'"
        if self.device:
            text += f" on {self.device}"
        if self.source:
            text += f" (created at {self.where()})"
        return text

    def __repr__(self):
        ins = ", ".join(self.inputs + ["^" + c for c in self.control_inputs])
        dev = f" @{self.device}" if self.device else ""
        return f"<Node {self.name} = {self.op}({ins}){dev}>"


@dataclasses.dataclass(eq=False)
class Function:
    """A graph with ordered arguments and results: the value of a function-valued attr.

    The body of a While, a branch of an If, a dataset's map function. Each
    argument is a Placeholder node of `graph`; each result a tensor ref
    'node:i' of it, with its (DType, shape tuple or None) in `result_specs`;
    `control_results` name nodes that run whenever the function runs though
    no result needs them (side effects). Compared by identity: two traces of
    the same Python code are two functions.
    """

    name: str
    graph: "GraphIR"
    args: list
    results: list
    result_specs: list
    control_results: list = dataclasses.field(default_factory=list)

    def arg_specs(self):
        """(DType, shape tuple or None) of each argument, from its Placeholder's attrs."""
        specs = []
        for a in self.args:
            attrs = self.graph[a].attrs
            shape = attrs.get("shape")
            specs.append((attrs["dtype"], None if shape is None else shape.as_tuple()))
        return specs

    def validate(self, known_ops=None, _seen=None):
        """InvalidArgumentError for a bad body (see GraphIR.validate) or an argument, result or
        control result that names no node of it."""
        if _seen is not None:
            if id(self) in _seen:
                return
            _seen.add(id(self))
        where = f"function '{self.name}'"
        for a in self.args:
            if a not in self.graph.nodes or self.graph[a].op != "Placeholder":
                raise errors.InvalidArgumentError(None, None, f"{where}: argument '{a}' is not a Placeholder of its body")
        for ref in self.results:
            if split_input(ref)[0] not in self.graph.nodes:
                raise errors.InvalidArgumentError(None, None, f"{where}: result '{ref}' names no node of its body")
        if len(self.result_specs) != len(self.results):
            raise errors.InvalidArgumentError(
                None, None, f"{where}: {len(self.results)} results but {len(self.result_specs)} result types")
        for c in self.control_results:
            if c not in self.graph.nodes:
                raise errors.InvalidArgumentError(None, None, f"{where}: control result '{c}' names no node of its body")
        try:
            self.graph.validate(known_ops, _seen)
        except errors.InvalidArgumentError as e:
            raise errors.InvalidArgumentError(None, None, f"{where}: {e.message}") from None

    def __repr__(self):
        return (f"<Function {self.name}({', '.join(self.args)}) -> [{', '.join(self.results)}], "
                f"{len(self.graph)} nodes>")


def functions_of(node):
    """The Functions among `node`'s attr values (also inside lists), in attr order."""
    out = []
    for v in node.attrs.values():
        if isinstance(v, Function):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, Function))
    return out


def split_input(ref):
    """'name:1' -> ('name', 1); 'name' -> ('name', 0)."""
    name, sep, idx = ref.rpartition(":")
    if sep and idx.isdigit():
        return name, int(idx)
    return ref, 0


def tensor_ref(name, index=0):
    return f"{name}:{index}"


class GraphIR:
    """An ordered name -> Node table with the few queries every pass needs."""

    __slots__ = ("nodes",)

    def __init__(self, nodes=()):
        self.nodes = {}
        for n in nodes:
            self.add(n)

    def add(self, node):
        if node.name in self.nodes:
            raise errors.InvalidArgumentError(None, None, f"duplicate node name '{node.name}'")
        self.nodes[node.name] = node
        return node

    def __getitem__(self, name):
        return self.nodes[name]

    def __contains__(self, name):
        return name in self.nodes

    def __iter__(self):
        return iter(self.nodes.values())

    def __len__(self):
        return len(self.nodes)

    def __repr__(self):
        return "GraphIR(\n  " + "\n  ".join(repr(n) for n in self.nodes.values()) + "\n)"

    def validate(self, known_ops=None, _seen=None):
        """Raises InvalidArgumentError for a dangling input, an unknown op or a cycle, here or in
        the body of any function an attr holds (each function checked once)."""
        if _seen is None:
            _seen = set()
        for n in self.nodes.values():
            if known_ops is not None and n.op not in known_ops:
                raise errors.InvalidArgumentError(
                    None, None, f"node '{n.name}' uses unknown op '{n.op}'"
                    + (f" (created at {n.where()})" if n.source else ""))
            for ref in n.inputs:
                src, _ = split_input(ref)
                if src not in self.nodes:
                    raise errors.InvalidArgumentError(
                        None, None, f"node '{n.name}' has input '{ref}' but no node '{src}' exists")
            for c in n.control_inputs:
                if c not in self.nodes:
                    raise errors.InvalidArgumentError(
                        None, None, f"node '{n.name}' has control input '^{c}' but no node '{c}' exists")
            for fn in functions_of(n) if n.attrs else ():
                fn.validate(known_ops, _seen)
        self.topological_order()

    def dependencies(self):
        """(indegree, consumers) by node name: how many distinct nodes of the graph each node waits on
        (data and control inputs), and the names of the nodes that wait on it."""
        indeg = {}
        consumers = {name: [] for name in self.nodes}
        for n in self.nodes.values():
            deps = {split_input(r)[0] for r in n.inputs}
            deps.update(n.control_inputs)
            deps &= self.nodes.keys()
            indeg[n.name] = len(deps)
            for d in deps:
                consumers[d].append(n.name)
        return indeg, consumers

    def topological_order(self, priority=None):
        """Node names in an order where every input comes first; InvalidArgumentError on a cycle.
        With `priority` ({name: number}), of the nodes whose inputs are all ordered the highest
        comes next (ties in node order)."""
        indeg, consumers = self.dependencies()
        order = []
        if priority is None:
            ready = [name for name, d in indeg.items() if d == 0]
            ready.reverse()
            while ready:
                name = ready.pop()
                order.append(name)
                for c in consumers[name]:
                    indeg[c] -= 1
                    if indeg[c] == 0:
                        ready.append(c)
        else:
            position = {name: i for i, name in enumerate(self.nodes)}
            ready = [(-priority.get(name, 0), position[name], name) for name, d in indeg.items() if d == 0]
            heapq.heapify(ready)
            while ready:
                name = heapq.heappop(ready)[2]
                order.append(name)
                for c in consumers[name]:
                    indeg[c] -= 1
                    if indeg[c] == 0:
                        heapq.heappush(ready, (-priority.get(c, 0), position[c], c))
        if len(order) != len(self.nodes):
            stuck = sorted(n for n, d in indeg.items() if d > 0)
            raise errors.InvalidArgumentError(
                None, None, f"graph has a cycle through node(s) {stuck[:10]}")
        return order
