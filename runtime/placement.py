"""Placement: gives every node exactly one device.

The rule, in order:
1. Colocation groups form first: a node with `_class: loc:@x` joins x's
   group, and a stateful op reading or writing a resource (ReadVariableOp,
   AssignVariableOp, ...) joins the group of the resource's producer; a
   dataset or iterator op joins the groups of the ops making the datasets
   and iterators it takes (tg.variant values never leave their device).
2. A group with device specs is placed on the first device (GPU before CPU,
   then by name) that matches the merged spec and has a kernel for every
   member; a spec nothing matches is an InvalidArgumentError naming the node
   and listing the devices, unless soft placement is on, in which case the
   node falls back to a device of the same task, then to any device.
3. Groups with no spec follow their data: first each takes the device most
   of its placed data inputs are on (ties: the first input's; a node with
   only control inputs, such as tg.group's NoOp, follows those); then nodes
   still unplaced (sources such as constants and variables) take the device
   most of their consumers are on; whatever is left goes to the default
   device. So a graph with no specs stays whole on the default device, and a
   tensor only crosses devices where a spec put its producer and consumer
   apart.
4. A `_Fetch` sits with the tensor it fetches.
5. The Functions of cond, case and while nodes are placed by these rules too, as graphs of
   their own with the node's device as the default (runtime/control_flow.py says how their
   arguments are pinned); a node whose Functions use one device runs there.
"""

from collections import Counter

from tensorgrid.framework import errors
from tensorgrid.framework.device_spec import DeviceSpec
from tensorgrid.ops import registry
from tensorgrid.runtime import control_flow
from tensorgrid.runtime.ir import GraphIR, split_input


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        p = self.parent.setdefault(x, x)
        while p != x:
            self.parent[x] = self.parent.setdefault(p, p)
            x, p = p, self.parent[p]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _device_rank(name):
    spec = DeviceSpec.from_string(name)
    return (0 if spec.device_type == "GPU" else 1, spec.job or "", spec.task or 0, spec.device_index or 0)


def place(graph, devices, default_device=None, allow_soft_placement=False):
    """Returns a copy of `graph` with every node's device set to one of `devices` (full names)."""
    if not devices:
        raise errors.UnavailableError(None, None, "no devices to place the graph on")
    devices = sorted(devices, key=_device_rank)
    parsed = {d: DeviceSpec.from_string(d) for d in devices}
    if default_device is None:
        cpus = [d for d in devices if parsed[d].device_type == "CPU"]
        default_device = min(cpus or devices, key=lambda d: (parsed[d].job or "", parsed[d].task or 0, parsed[d].device_index or 0))
    nodes = list(graph)
    uf = _UnionFind()
    for n in nodes:
        uf.find(n.name)
        cls = n.attrs.get("_class")
        if cls:
            for c in cls:
                c = c.decode() if isinstance(c, bytes) else c
                if c.startswith("loc:@") and c[5:] in graph:
                    uf.union(c[5:], n.name)
        opdef = registry.OPS.get(n.op)
        if opdef is not None and opdef.colocate_with_input is not None:
            which = opdef.colocate_with_input
            for ref in n.inputs if which == "all" else n.inputs[which:which + 1]:
                uf.union(split_input(ref)[0], n.name)
    members = {}
    for n in nodes:
        members.setdefault(uf.find(n.name), []).append(n)

    group_device = {}
    for root, group in members.items():
        specs = [n for n in group if n.device]
        if not specs:
            continue
        spec = DeviceSpec()
        for n in specs:
            spec = spec.merge_from(n.device)
        types = _supported_types(group)
        group_device[root] = _pick(spec, types, devices, parsed, specs[0], allow_soft_placement, group)

    order = graph.topological_order()
    consumers = {n.name: [] for n in nodes}
    for n in nodes:
        for ref in n.inputs:
            consumers[split_input(ref)[0]].append(n.name)

    def device_of(name):
        return group_device.get(uf.find(name))

    def assign(name, dev):
        root = uf.find(name)
        types = _supported_types(members[root])
        if parsed[dev].device_type not in types:
            candidates = [d for d in devices if parsed[d].device_type in types
                          and parsed[d].job == parsed[dev].job and parsed[d].task == parsed[dev].task]
            dev = candidates[0] if candidates else next(d for d in devices if parsed[d].device_type in types)
        group_device[root] = dev

    def by_inputs():
        for name in order:
            if device_of(name) is not None:
                continue
            node = graph[name]
            if node.op == "_Fetch":
                continue
            placed = [device_of(split_input(r)[0]) for r in node.inputs]
            placed = [d for d in placed if d is not None]
            if not placed and not node.inputs:
                # A node with only control inputs (a group's NoOp) sits with what it waits for.
                placed = [d for d in map(device_of, node.control_inputs) if d is not None]
            if placed:
                assign(name, _majority(placed))

    by_inputs()
    for name in reversed(order):
        if device_of(name) is not None or graph[name].op == "_Fetch":
            continue
        placed = [device_of(c) for c in consumers[name]]
        placed = [d for d in placed if d is not None]
        if placed:
            assign(name, _majority(placed))
    by_inputs()
    out = GraphIR()
    for n in nodes:
        if n.op == "_Fetch":
            dev = device_of(split_input(n.inputs[0])[0]) or default_device
        else:
            dev = device_of(n.name)
            if dev is None:
                assign(n.name, default_device)
                dev = device_of(n.name)
        out.add(n.copy(device=dev))
    # The bodies of cond, case and while nodes, by the same rules (see runtime/control_flow.py).
    return control_flow.place_bodies(
        out, lambda body, default: place(body, devices, default, allow_soft_placement))


def _majority(devs):
    counts = Counter(devs)
    best = max(counts.values())
    return next(d for d in devs if counts[d] == best)


def _supported_types(group):
    types = {"CPU", "GPU"}
    for n in group:
        opdef = registry.OPS.get(n.op)
        if opdef is None:
            raise errors.InvalidArgumentError(None, None, f"node '{n.name}' uses unknown op '{n.op}'")
        types &= set(opdef.kernels)
    return types


def _pick(spec, types, devices, parsed, node, soft, group):
    matching = [d for d in devices if spec.matches(parsed[d])]
    usable = [d for d in matching if parsed[d].device_type in types]
    if usable:
        return usable[0]
    if soft:
        same_task = [d for d in devices if parsed[d].device_type in types
                     and DeviceSpec(spec.job, spec.replica, spec.task).matches(parsed[d])]
        anywhere = [d for d in devices if parsed[d].device_type in types]
        if same_task or anywhere:
            return (same_task or anywhere)[0]
    where = f" (created at {node.where()})" if node.source else ""
    if matching:
        ops = sorted({n.op for n in group if spec.device_type is not None})
        raise errors.InvalidArgumentError(
            node, node.name,
            f"Cannot assign a device for operation '{node.name}'{where}: op(s) {ops} have no kernel "
            f"for device type {spec.device_type} requested by '{spec.to_string()}'. "
            f"Devices that match: {matching}. Set allow_soft_placement=True to fall back.")
    raise errors.InvalidArgumentError(
        node, node.name,
        f"Cannot assign a device for operation '{node.name}'{where}: could not satisfy explicit device "
        f"specification '{node.device}' because no devices matching that specification are registered "
        f"in this process; available devices: {', '.join(devices)}")
