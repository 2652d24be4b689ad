"""Partition: splits a placed graph per device, cutting every cross-device edge
into a _Send on the producer's device and a _Recv on the consumer's.

Pure function of a placed GraphIR. One send/recv pair exists per (tensor,
destination device), however many nodes there read it; a control edge that
crosses devices becomes a send/recv pair carrying no data, and the
consumer gets a control input on that _Recv.

A small constant is not sent at all: every other device that reads it gets a
copy of the Const node in its own partition (`copied_const`), as a value
known when the step is planned never needs to travel while it runs.
"""

import numpy as np

from tensorgrid.runtime import control_flow
from tensorgrid.runtime.ir import GraphIR, Node, functions_of, split_input
from tensorgrid.worker.rendezvous import make_key


def partition(graph):
    """Returns {device: GraphIR} for a graph whose nodes all have a device.

    A cond, case or while node whose Functions span devices is first split into one shard
    per device (runtime/control_flow.py), its Functions partitioned the same way."""
    graph = control_flow.split(graph, partition)
    parts = {}
    for n in graph:
        parts.setdefault(n.device, GraphIR())
    recv_for = {}  # (tensor ref or '^node', dst device) -> recv node name
    copy_for = {}  # (Const name, dst device) -> name of its copy there

    def cut(ref, src_dev, dst_dev, src_node, control):
        key = (("^" + ref) if control else ref, dst_dev)
        name = recv_for.get(key)
        if name is not None:
            return name
        base = ref.replace(":", "_")
        suffix = control_flow.short(dst_dev)
        tensor = ("^" + ref) if control else ref
        rkey = make_key(src_dev, dst_dev, tensor)
        attrs = {"key": rkey, "send_device": src_dev, "recv_device": dst_dev, "tensor_name": tensor}
        send = Node(f"_send/{base}/{suffix}", "_Send", [] if control else [ref],
                    [ref] if control else [], src_dev, dict(attrs), src_node.source)
        parts[src_dev].add(send)
        name = f"_recv/{base}/{control_flow.short(src_dev)}"
        if name in parts[dst_dev]:
            name = f"{name}/{len(recv_for)}"
        parts[dst_dev].add(Node(name, "_Recv", [], [], dst_dev, dict(attrs), src_node.source))
        recv_for[key] = name
        return name

    for n in graph:
        dst = n.device
        new_inputs = []
        for ref in n.inputs:
            src_name, idx = split_input(ref)
            src = graph[src_name]
            if src.device == dst:
                new_inputs.append(f"{src_name}:{idx}")
            elif copied_const(src):
                new_inputs.append(_const_copy(src, dst, parts[dst], copy_for) + ":0")
            else:
                new_inputs.append(cut(f"{src_name}:{idx}", src.device, dst, src, False) + ":0")
        new_ctrl = []
        for c in n.control_inputs:
            src = graph[c]
            new_ctrl.append(c if src.device == dst else cut(c, src.device, dst, src, True))
        parts[dst].add(n.copy(inputs=new_inputs, control_inputs=new_ctrl))
    return parts


# A Const at most this large is copied to each device that reads it instead of being sent every step.
COPIED_CONST_BYTES = 64 << 10


def copied_const(node):
    """Whether a Const read on other devices is copied there: numeric, at most COPIED_CONST_BYTES, and
    with no control inputs (which would have to cross devices themselves)."""
    if node.op != "Const" or node.control_inputs:
        return False
    value = np.asarray(node.attrs.get("value"))
    return value.dtype.kind in "biufc" and value.nbytes <= COPIED_CONST_BYTES


def _const_copy(const, dst, part, copy_for):
    """The name of `const`'s copy in the partition `part` of device `dst`, added there the first time."""
    key = (const.name, dst)
    name = copy_for.get(key)
    if name is None:
        name = f"{const.name}/_copy/{control_flow.short(dst)}"
        while name in part:
            name += "_"
        part.add(const.copy(name=name, device=dst))
        copy_for[key] = name
    return name


def sends(graph):
    """(rendezvous key, destination device) of every tensor a partition sends: its _Send nodes, those
    of the Functions its nodes call, and a loop shard's predicate."""
    for node in graph:
        if node.op == "_Send":
            yield node.attrs["key"], node.attrs["recv_device"]
        elif node.op == "_WhileShard":
            yield from zip(node.attrs["pred_keys"], node.attrs["peer_devices"])
        for fn in functions_of(node) if node.attrs else ():
            yield from sends(fn.graph)


HOP_COST = 25  # a tensor's trip to another device, in nodes' worth of time (a hop is ~25 kernels here)


def prioritize_sends(parts):
    """`parts` with each top-level _Send given attr `_priority`: the longest path from it to the end of
    the step over every partition, counting a node as 1 and a trip to another device as HOP_COST.

    A worker's executor runs, of the nodes that are ready, those leading to the highest-priority
    send first (worker/executor.py), so a tensor that the rest of the step waits on leaves before one
    that only a last update needs (in the demo, the hidden layer's gradient before the second layer's
    weight gradients). The partitions' nodes are not changed otherwise."""
    if len(parts) < 2:
        return parts
    recv_of = {n.attrs["key"]: (dev, n.name) for dev, part in parts.items() for n in part if n.op == "_Recv"}
    succ = {}
    for dev, part in parts.items():
        for n in part:
            succ.setdefault((dev, n.name), [])
            for ref in n.inputs:
                succ.setdefault((dev, split_input(ref)[0]), []).append(((dev, n.name), 1))
            for c in n.control_inputs:
                succ.setdefault((dev, c), []).append(((dev, n.name), 1))
            if n.op == "_Send" and n.attrs["key"] in recv_of:
                succ[(dev, n.name)].append((recv_of[n.attrs["key"]], HOP_COST))
    # longest path to a node with no successor, by a post-order walk (no recursion: graphs are deep)
    length = {}
    for start in succ:
        if start in length:
            continue
        stack = [(start, iter(succ[start]))]
        on_path = {start}
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(node)
                length[node] = max((length.get(s, 0) + w for s, w in succ[node]), default=0)
            elif nxt[0] not in length and nxt[0] not in on_path and nxt[0] in succ:
                on_path.add(nxt[0])
                stack.append((nxt[0], iter(succ[nxt[0]])))
    out = {}
    for dev, part in parts.items():
        if not any(n.op == "_Send" for n in part):
            out[dev] = part
            continue
        out[dev] = GraphIR(n.copy(attrs={**n.attrs, "_priority": length[(dev, n.name)]}) if n.op == "_Send" else n
                           for n in part)
    return out
