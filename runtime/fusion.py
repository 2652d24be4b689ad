"""Elementwise fusion: a pass that replaces each chain of elementwise ops of a partition with one
_FusedElementwise node (tensorgrid/ops/fused_ops.py), whose kernel evaluates the chain in one pass.

Pure: a partition in, a new partition out. It runs on partitions, after
placement and partitioning, so a chain never spans devices, and a tensor that
is fetched, fed or sent to another partition (a _Fetch, _Feed or _Send
consumes it) or that any node outside the chain reads is never an
intermediate of one: only a chain's last node, whose name the fused node
keeps, has consumers outside it. A node that is another's control input is
never an intermediate either; the members' own control inputs become the fused
node's. The client's graph, and so every gradient, is unchanged.

On by default; ConfigProto.graph_options.rewrite_options.remapping = OFF
(TensorFlow's switch for its grappler pass that fuses ops) or
TENSORGRID_FUSION=0 turns it off.
"""

import os

from tensorgrid.ops import registry
from tensorgrid.ops.fused_ops import member_attr_key
from tensorgrid.runtime.ir import GraphIR, Node, split_input

FUSION_ENV = "TENSORGRID_FUSION"
MIN_CHAIN = 2  # a chain of one op gains nothing


_OFF = 2  # RewriterConfig.OFF


def enabled(config=None):
    """Whether a session with ConfigProto `config` (or None) fuses: unless TENSORGRID_FUSION is 0, false,
    off or no, or config.graph_options.rewrite_options.remapping is OFF."""
    if os.environ.get(FUSION_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    options = getattr(config, "graph_options", None)
    return getattr(getattr(options, "rewrite_options", None), "remapping", 0) != _OFF


def _fusible(node, ops):
    opdef = ops.get(node.op)
    return opdef is not None and (opdef.ufunc is not None or opdef.elementwise is not None)


def fuse_elementwise(graph, ops=None, min_chain=MIN_CHAIN):
    """`graph` with every chain of at least `min_chain` elementwise ops (registry `ufunc` or
    `elementwise`) replaced
    by one _FusedElementwise node; `graph` itself is not changed."""
    ops = registry.OPS if ops is None else ops
    consumers = {n.name: set() for n in graph}
    controlled = set()  # nodes some node waits on
    for n in graph:
        for ref in n.inputs:
            consumers[split_input(ref)[0]].add(n.name)
        controlled.update(n.control_inputs)
    member_of = {}  # node name -> its chain's root
    chains = {}     # root -> member names (any order)
    for name in reversed(graph.topological_order()):
        root = graph[name]
        if name in member_of or not _fusible(root, ops):
            continue
        chain = {name}
        frontier = [name]
        while frontier:
            for ref in graph[frontier.pop()].inputs:
                src = split_input(ref)[0]
                p = graph[src]
                if (src in chain or src in member_of or src in controlled or not _fusible(p, ops)
                        or not consumers[src] <= chain):
                    continue
                chain.add(src)
                frontier.append(src)
        if len(chain) >= min_chain:
            chains[name] = chain
            for m in chain:
                member_of[m] = name
    if not chains:
        return graph
    order = graph.topological_order()
    out = GraphIR()
    for name in order:
        root = member_of.get(name)
        if root is None:
            out.add(graph[name].copy())
        elif root == name:
            out.add(_fused_node(graph, [m for m in order if m in chains[name]]))
    return out


def _fused_node(graph, members):
    """The _FusedElementwise node for `members` (topological order, the root last)."""
    position = {m: i for i, m in enumerate(members)}
    inputs, input_pos, operands, control = [], {}, [], []
    for m in members:
        node = graph[m]
        spec = []
        for ref in node.inputs:
            src, idx = split_input(ref)
            if src in position:
                spec.append(f"@{position[src]}")
            else:
                key = f"{src}:{idx}"
                if key not in input_pos:
                    input_pos[key] = len(inputs)
                    inputs.append(ref)
                spec.append(str(input_pos[key]))
        operands.append(spec)
        control.extend(c for c in node.control_inputs if c not in position and c not in control)
    n_in = len(inputs)
    operands = [",".join(str(n_in + int(s[1:])) if s.startswith("@") else s for s in spec) for spec in operands]
    root = graph[members[-1]]
    attrs = {"members": list(members), "member_ops": [graph[m].op for m in members], "operands": operands,
             "sources": [graph[m].where() for m in members]}
    for k, m in enumerate(members):
        if registry.get(graph[m].op).ufunc is None:  # a ufunc's attrs change nothing
            attrs.update((member_attr_key(k, key), v) for key, v in graph[m].attrs.items()
                         if not key.startswith("_"))
    return Node(root.name, "_FusedElementwise", inputs, control, root.device, attrs, root.source)
