"""Partition: splits a placed graph per device, cutting every cross-device edge
into a _Send on the producer's device and a _Recv on the consumer's.

Pure function of a placed GraphIR. One send/recv pair exists per (tensor,
destination device), however many nodes there read it; a control edge that
crosses devices becomes a send/recv pair carrying no data, and the
consumer gets a control input on that _Recv.
"""

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
            else:
                new_inputs.append(cut(f"{src_name}:{idx}", src.device, dst, src, False) + ":0")
        new_ctrl = []
        for c in n.control_inputs:
            src = graph[c]
            new_ctrl.append(c if src.device == dst else cut(c, src.device, dst, src, True))
        parts[dst].add(n.copy(inputs=new_inputs, control_inputs=new_ctrl))
    return parts


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
