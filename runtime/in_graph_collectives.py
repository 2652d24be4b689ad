"""In-graph collectives: an all-reduce whose every member is a node of one step becomes ordinary ops.

A TF1 in-graph replicated program puts one CollectiveReduce per replica in one graph, each on its
own device (`with tf.device("/job:worker/task:i")`), and runs them in one Session.run. All the
members of such a collective instance are then in the step's placed graph, so the plan need not
meet them through a process group (worker/collectives.py, what between-graph programs use): this
pass, a pure function of the placed graph, replaces them with a `_CollectiveMerge` on the first
member's device (by device name, the rank order), which merges every member's input in rank order
and applies the final op, and an Identity of its result on each member's device, under the
member's name. Partitioning then carries the inputs and the result between the devices like any
other tensors (the data plane between tasks, memory between the devices of one process), so every
member gets the same bits. It is a reduction to one device and a broadcast, not a ring: n-1
transfers in, n-1 out.

Instances with fewer members in the step than their group_size are left alone (the other members
are other processes' steps: MultiWorkerMirroredStrategy); more members than group_size, or members
that disagree on group_size, merge_op or final_op, are an InvalidArgumentError naming them.
CollectiveReduceV2 is rewritten when its group_size, group_key and instance_key are Const nodes.
"""

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.runtime.ir import GraphIR, Node, split_input

REDUCE_OPS = ("CollectiveReduce", "CollectiveReduceV2")
MERGE_OP = "_CollectiveMerge"


def _keys(node, graph):
    """(group_size, group_key, instance_key) of a member, or None when they are not known in the graph."""
    if node.op == "CollectiveReduce":
        return int(node.attrs["group_size"]), int(node.attrs["group_key"]), int(node.attrs["instance_key"])
    values = []
    for ref in node.inputs[1:4]:
        src = graph.nodes.get(split_input(ref)[0])
        if src is None or src.op != "Const":
            return None
        values.append(int(np.asarray(src.attrs["value"]).reshape(-1)[0]))
    return tuple(values)


def _instances(graph):
    """{(group_key, instance_key): [(group_size, member node), ...]} of the graph's all-reduces."""
    found = {}
    for n in graph:
        if n.op in REDUCE_OPS:
            keys = _keys(n, graph)
            if keys is not None:
                found.setdefault(keys[1:], []).append((keys[0], n))
    return found


def _check(key, members):
    names = ", ".join(sorted(m.name for _, m in members))
    where = f"collective instance (group_key {key[0]}, instance_key {key[1]}) of nodes {names}"
    sizes = {s for s, _ in members}
    if len(sizes) != 1:
        raise errors.InvalidArgumentError(None, None, f"the members of {where} disagree on group_size: {sorted(sizes)}")
    size = sizes.pop()
    if len(members) > size:
        raise errors.InvalidArgumentError(
            None, None, f"{where}: {len(members)} members in one step, but group_size is {size}")
    for attr, default in (("merge_op", "Add"), ("final_op", "Id")):
        if len({m.attrs.get(attr, default) for _, m in members}) != 1:
            raise errors.InvalidArgumentError(None, None, f"the members of {where} disagree on {attr}")
    return len(members) == size


def rewrite(graph):
    """`graph` (placed) with each all-reduce whose members are all in it made a merge and Identities."""
    replaced = {}   # member name -> merge node name
    merges = {}     # first member's name -> the merge node to add before it
    for key, members in _instances(graph).items():
        if not _check(key, members):
            continue
        ordered = sorted((m for _, m in members), key=lambda m: (m.device, m.name))
        first = ordered[0]
        controls = list(dict.fromkeys(c for m in ordered for c in m.control_inputs))
        merge = Node(f"{first.name}/_in_graph_all_reduce", MERGE_OP, [m.inputs[0] for m in ordered], controls,
                     first.device, {"merge_op": first.attrs.get("merge_op", "Add"),
                                    "final_op": first.attrs.get("final_op", "Id"), "group_size": len(ordered)},
                     first.source)
        merges[first.name] = merge
        for m in ordered:
            replaced[m.name] = merge.name
    if not replaced:
        return graph
    out = GraphIR()
    for n in graph:
        if n.name in merges:
            out.add(merges[n.name])
        if n.name in replaced:
            out.add(Node(n.name, "Identity", [f"{replaced[n.name]}:0"], list(n.control_inputs), n.device, {},
                         n.source))
        else:
            out.add(n)
    return out
