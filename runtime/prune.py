"""Prune: the subgraph a step needs, with feeds cut in and fetches hung out.

Pure function of (graph, feeds, fetches, targets). Each fed tensor becomes a
`_Feed` node its consumers read instead (so anything can be fed, and what
only fed tensors depend on is dropped); each fetched tensor gets a `_Fetch`
node. Keys of both are the tensor names ('x:0').
"""

from tensorgrid.framework import errors
from tensorgrid.runtime.ir import GraphIR, Node, split_input


def feed_node_name(tensor):
    return "_feed/" + tensor.replace(":", "_")


def fetch_node_name(tensor):
    return "_fetch/" + tensor.replace(":", "_")


def _normal(ref):
    name, idx = split_input(ref)
    return f"{name}:{idx}"


def prune(graph, feeds=(), fetches=(), targets=(), feed_dtypes=None):
    """Returns a new GraphIR holding only what computes `fetches` and runs `targets`."""
    feeds = {_normal(f) for f in feeds}
    fetches = [_normal(f) for f in fetches]
    for ref in list(feeds) + fetches:
        name, idx = split_input(ref)
        if name not in graph:
            raise errors.NotFoundError(None, None, f"tensor '{ref}' does not exist in the graph: no node '{name}'")
    for t in targets:
        if t not in graph:
            raise errors.NotFoundError(None, None, f"target '{t}' does not exist in the graph")
    needed = set()
    stack = [split_input(f)[0] for f in fetches if f not in feeds] + list(targets)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = graph[name]
        for ref in node.inputs:
            if _normal(ref) in feeds:
                continue
            src = split_input(ref)[0]
            if src not in graph:
                raise errors.InvalidArgumentError(
                    None, None, f"node '{name}' has input '{ref}' but no node '{src}' exists")
            if src not in needed:
                stack.append(src)
        for c in node.control_inputs:
            if c not in graph:
                raise errors.InvalidArgumentError(
                    None, None, f"node '{name}' has control input '^{c}' but no node '{c}' exists")
            if c not in needed:
                stack.append(c)
    out = GraphIR()
    used_feeds = set(f for f in fetches if f in feeds)
    for node in graph:
        if node.name not in needed:
            continue
        new_inputs = []
        for ref in node.inputs:
            ref = _normal(ref)
            if ref in feeds:
                used_feeds.add(ref)
                new_inputs.append(feed_node_name(ref) + ":0")
            else:
                new_inputs.append(ref)
        out.add(node.copy(inputs=new_inputs))
    for ref in sorted(used_feeds):
        attrs = {"key": ref}
        if feed_dtypes and ref in feed_dtypes:
            attrs["dtype"] = feed_dtypes[ref]
        src = graph[split_input(ref)[0]]
        # A fed placeholder keeps its pinned device; any other fed tensor is fed where it is read.
        device = src.device if src.op in ("Placeholder", "PlaceholderWithDefault") else ""
        out.add(Node(feed_node_name(ref), "_Feed", [], [], device, attrs, src.source))
        out[feed_node_name(ref)].attrs["_feeds_for"] = src.name
    for ref in fetches:
        name = fetch_node_name(ref)
        if name in out:
            continue
        src = feed_node_name(ref) + ":0" if ref in feeds else ref
        out.add(Node(name, "_Fetch", [src], [], "", {"key": ref}, None))
    return out
