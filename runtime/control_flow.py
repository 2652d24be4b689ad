"""Control flow on the master: placing the bodies of If, Case and While nodes, and splitting a
node whose body spans devices into one shard per device.

Placement (`place_bodies`, the last stage of placement.place). A functional node is placed
like any node first; then each of its Functions is placed as a graph of its own, by the
same rules, with the node's device as the default. Arguments are pinned where their
values live: a resource or variant argument (a variable's handle, a TensorArray) on the
device of the tensor the node takes for it, so the ops using it run there and the handle
never travels; a While's loop variable on its home, the device of the body node that
produces its next value, where the value stays between iterations. Other arguments (a
branch's inputs, a loop's invariant captures such as weights) are not pinned: every
device that reads one gets it once, as the shard's own input. The devices a node's
Functions then use, but for those unpinned arguments, are its devices; when that is one
device, the node runs there, whole.

Partitioning (`split`, the first stage of partition.partition). A node with several
devices becomes one shard per device, each running that device's part of every Function
(its nodes, cut from the others' by _Send/_Recv pairs as partition.partition cuts any
graph, nested functional nodes split the same way). A While's shards (_WhileShard) repeat,
in step, for iteration t:

1. every shard runs its part of cond (which sends the pred device what it needs of the
   shard's loop variables); the pred device, where cond's result is made, sends the
   predicate to every other shard;
2. on false every shard stops and outputs the final values of the loop variables it homes
   (and the per-iteration values it kept for a gradient); on true each runs its part of
   the body, which receives what it needs from the others and leaves the loop variables it
   homes at their next values.

An If's or Case's shards (_CaseShard) each take the predicate (or index) as an input, run
their part of the branch it picks and output the results homed on them (a result's home:
where the first branch that computes it computes it). Each iteration's and each branch's
tensors cross under keys of their own: the kernels run their parts through a
FrameRendezvous whose suffix names the frame (the node) and the iteration, after any
enclosing frame's, so keys never collide across iterations or nesting levels and there
is still one transfer per tensor and destination. The outputs of the node move to the
shards that make them; a loop-invariant output is the node's input itself.
"""

from tensorgrid.framework import dtypes
from tensorgrid.runtime.ir import Function, GraphIR, Node, split_input
from tensorgrid.worker.rendezvous import make_key

WHILE_OPS = ("While", "StatelessWhile")
BRANCH_OPS = ("If", "StatelessIf", "Case", "StatelessCase")
FUNCTIONAL_OPS = WHILE_OPS + BRANCH_OPS
PINNED_DTYPES = (dtypes.resource, dtypes.variant)


def short(device):
    return device.replace("/job:", "").replace("/replica:", "/r").replace("/task:", "/t").replace(
        "/device:", "/").replace(":", "")


# ---- which argument lives where ------------------------------------------------------------------

def _invariant(node, k):
    body = node.attrs["body"]
    return body.results[k] == f"{body.args[k]}:0"


def _branches(node):
    if node.op in ("If", "StatelessIf"):
        return [node.attrs["then_branch"], node.attrs["else_branch"]]
    return list(node.attrs["branches"])


def _arg_dtypes(node):
    return list(node.attrs["T"]) if node.op in WHILE_OPS else list(node.attrs["Tin"])


def _loop_homes(node):
    """{loop variable index: home device} for the loop variables that change (after placement:
    the device the body's argument is pinned to)."""
    body = node.attrs["body"]
    return {k: body.graph[body.args[k]].device for k in range(len(node.attrs["T"])) if not _invariant(node, k)}


def _producer_device(fn, ref):
    return fn.graph[split_input(ref)[0]].device


def _replicated(node):
    """Argument indices whose values every reading device gets as an input of its own."""
    types = _arg_dtypes(node)
    if node.op in WHILE_OPS:
        return {k for k in range(len(types)) if _invariant(node, k) and types[k] not in PINNED_DTYPES}
    return {k for k in range(len(types)) if types[k] not in PINNED_DTYPES}


def _functions(node):
    return [node.attrs["cond"], node.attrs["body"]] if node.op in WHILE_OPS else _branches(node)


def devices_of(node):
    """The devices the placed Functions of functional `node` use, those of functional nodes
    inside them included (its shards' devices)."""
    replicated = _replicated(node)
    used = set()
    for fn in _functions(node):
        free = {fn.args[k] for k in replicated if k < len(fn.args)}
        for n in fn.graph:
            if n.op in FUNCTIONAL_OPS:
                used.update(devices_of(n))
            elif n.name not in free:
                used.add(n.device)
    if node.op in WHILE_OPS:
        cond = node.attrs["cond"]
        used.add(_producer_device(cond, cond.results[0]))
    return used or {node.device}


def _branch_homes(node):
    """The home device of each result of If/Case `node`: where the first branch that computes it
    (rather than passing an unpinned argument through) computes it."""
    branches = _branches(node)
    replicated = _replicated(node)
    homes = []
    for k in range(len(node.attrs["Tout"])):
        home = node.device
        for fn in branches:
            src = split_input(fn.results[k])[0]
            if not any(src == fn.args[a] for a in replicated if a < len(fn.args)):
                home = fn.graph[src].device
                break
        homes.append(home)
    return homes


def output_device(node, index, graph):
    """The device where output `index` of placed functional `node` of `graph` is made."""
    if len(devices_of(node)) == 1:
        return node.device
    if node.op in BRANCH_OPS:
        return _branch_homes(node)[index]
    nvars = len(node.attrs["T"])
    if index >= nvars:
        body = node.attrs["body"]
        return _producer_device(body, body.results[index])
    if _invariant(node, index):
        return graph[split_input(node.inputs[index])[0]].device
    return _loop_homes(node)[index]


# ---- placement ------------------------------------------------------------------------------------------

def _pinned_copy(fn, devices):
    """fn's graph with argument k on devices[k] (cleared where devices has none)."""
    g = GraphIR()
    args = {a: k for k, a in enumerate(fn.args)}
    for n in fn.graph:
        k = args.get(n.name)
        g.add(n.copy(device=devices.get(k, "")) if k is not None else n.copy())
    return g


def _placed(fn, graph):
    return Function(fn.name, graph, fn.args, fn.results, fn.result_specs, fn.control_results)


def place_bodies(graph, place):
    """Places the Functions of every functional node of placed `graph` (in place; `place(g,
    default_device)` places a body graph) and moves a node whose Functions use one device there."""
    found = False
    for n in graph:
        if n.op not in FUNCTIONAL_OPS:
            continue
        found = True
        source = [graph[split_input(ref)[0]].device for ref in n.inputs]
        if n.op in WHILE_OPS:
            _place_while(n, source, place)
        else:
            _place_branches(n, source[1:], place)
        used = devices_of(n)
        if len(used) == 1:
            n.device = next(iter(used))
    if found:
        for n in graph:
            if n.op == "_Fetch":
                src, idx = split_input(n.inputs[0])
                if graph[src].op in FUNCTIONAL_OPS:
                    n.device = output_device(graph[src], idx, graph)
    return graph


def _place_while(node, source, place):
    types = node.attrs["T"]
    body, cond = node.attrs["body"], node.attrs["cond"]
    pinned = {k: source[k] for k in range(len(types)) if _invariant(node, k) and types[k] in PINNED_DTYPES}
    placed_body = place(_pinned_copy(body, pinned), node.device)
    homes = {}
    for k in range(len(types)):
        if _invariant(node, k):
            continue
        src = split_input(body.results[k])[0]
        producer = placed_body[src]
        homes[k] = placed_body[body.args[k]].device if src in body.args else producer.device
    for k, dev in homes.items():
        arg = body.args[k]
        placed_body.nodes[arg] = placed_body[arg].copy(device=dev)
    placed_cond = place(_pinned_copy(cond, {**pinned, **homes}), node.device)
    node.attrs = dict(node.attrs, body=_placed(body, placed_body), cond=_placed(cond, placed_cond))


def _place_branches(node, source, place):
    types = node.attrs["Tin"]
    pinned = {k: source[k] for k in range(len(types)) if types[k] in PINNED_DTYPES}
    placed = [_placed(fn, place(_pinned_copy(fn, pinned), node.device)) for fn in _branches(node)]
    if node.op in ("If", "StatelessIf"):
        node.attrs = dict(node.attrs, then_branch=placed[0], else_branch=placed[1])
    else:
        node.attrs = dict(node.attrs, branches=placed)


# ---- splitting ------------------------------------------------------------------------------------------

class _Part:
    """One device's part of a Function: the Function, and for each of its arguments and results
    the index of the original argument or result it stands for."""

    __slots__ = ("function", "arg_index", "result_index")

    def __init__(self, function, arg_index, result_index):
        self.function = function
        self.arg_index = arg_index
        self.result_index = result_index


def _needed(fn, results):
    """Names of the nodes of fn that computing `results` (refs) and its control results needs."""
    seen, stack = set(), [split_input(r)[0] for r in results] + list(fn.control_results)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = fn.graph[name]
        stack.extend(split_input(r)[0] for r in node.inputs)
        stack.extend(node.control_inputs)
    return seen


def split_function(fn, partition, result_homes, replicated):
    """{device: _Part} of Function `fn` (placed), its result k made on result_homes[k] (results
    missing there are dropped), argument k with k in `replicated` given to every device that
    reads it; `partition` is partition.partition."""
    wanted = {k: fn.results[k] for k in result_homes}
    keep = _needed(fn, list(wanted.values()))
    args = {a: k for k, a in enumerate(fn.args)}
    g = GraphIR()
    replicas = {}  # (argument index, device) -> placeholder name

    def replica(k, device):
        name = replicas.get((k, device))
        if name is None:
            name = replicas[(k, device)] = f"{fn.args[k]}/{short(device)}"
            g.add(fn.graph[fn.args[k]].copy(name=name, device=device))
        return name

    def local(ref, device):
        src, idx = split_input(ref)
        k = args.get(src)
        return f"{replica(k, device)}:{idx}" if k is not None and k in replicated else ref

    for n in fn.graph:
        if n.name not in keep or (n.name in args and args[n.name] in replicated):
            continue
        g.add(n.copy(inputs=[local(r, n.device) for r in n.inputs]))
    for k, ref in wanted.items():
        g.add(Node(f"_result/{k}", "Identity", [local(ref, result_homes[k])], [], result_homes[k]))
    parts = {}
    for device, part in partition(g).items():
        results, result_index = [], []
        for k in sorted(wanted):
            sink = f"_result/{k}"
            if sink in part:
                results.append(part[sink].inputs[0])
                result_index.append(k)
                del part.nodes[sink]
        consumed = {split_input(r)[0] for n in part for r in n.inputs}
        consumed.update(c for n in part for c in n.control_inputs)
        produced = {split_input(r)[0] for r in results}
        placeholders = {n.name for n in part if n.op == "Placeholder"}
        control = [n.name for n in part if n.name not in consumed and n.name not in produced
                   and n.name not in placeholders]
        arg_names, arg_index = [], []
        for k, a in enumerate(fn.args):
            name = replicas.get((k, device)) if k in replicated else (a if a in part else None)
            if name is not None:
                arg_names.append(name)
                arg_index.append(k)
        parts[device] = _Part(Function(f"{fn.name}/{short(device)}", part, arg_names, results,
                                       [fn.result_specs[k] for k in result_index], control),
                              arg_index, result_index)
    return parts


def _empty(name, device):
    return _Part(Function(f"{name}/{short(device)}", GraphIR(), [], [], []), [], [])


def split(graph, partition):
    """`graph` (placed) with every functional node whose Functions use several devices replaced
    by its shards, and what read the node's outputs reading the shards'."""
    if not any(n.op in FUNCTIONAL_OPS and len(devices_of(n)) > 1 for n in graph):
        return graph
    outputs, controls, shards = {}, {}, {}
    for n in graph:
        if n.op in FUNCTIONAL_OPS and len(devices_of(n)) > 1:
            made = _split_while(n, graph, partition) if n.op in WHILE_OPS else _split_branches(n, partition)
            shards[n.name], node_outputs = made
            outputs.update(node_outputs)
            controls[n.name] = [s.name for s in shards[n.name]]

    def data(ref):
        src, idx = split_input(ref)
        ref = f"{src}:{idx}"
        while ref in outputs:
            ref, _ = outputs[ref]
        return ref

    def rewired(node):
        extra = []
        for ref in node.inputs:
            src, idx = split_input(ref)
            hit = outputs.get(f"{src}:{idx}")
            if hit is not None:
                extra.extend(hit[1])
        ctrl = []
        for c in node.control_inputs + extra:
            for name in controls.get(c, [c]):
                if name not in ctrl:
                    ctrl.append(name)
        return node.copy(inputs=[data(r) for r in node.inputs], control_inputs=ctrl)

    out = GraphIR()
    for n in graph:
        for s in shards.get(n.name, [n]):
            out.add(rewired(s))
    return out


def _split_while(node, graph, partition):
    """The _WhileShard nodes of While `node`, and {'node:k': (ref of the shard output, control
    inputs its readers need)} for its outputs."""
    types = list(node.attrs["T"])
    nvars, nacc = len(types), node.attrs.get("accumulate", 0)
    body, cond = node.attrs["body"], node.attrs["cond"]
    homes = _loop_homes(node)
    invariants = {k for k in range(nvars) if k not in homes}
    replicated = _replicated(node)
    pred_device = _producer_device(cond, cond.results[0])
    result_homes = dict(homes)
    for a in range(nacc):
        result_homes[nvars + a] = _producer_device(body, body.results[nvars + a])
    body_parts = split_function(body, partition, result_homes, replicated)
    cond_parts = split_function(cond, partition, {0: pred_device}, replicated)
    devices = sorted(set(body_parts) | set(cond_parts) | {pred_device})
    peers = [d for d in devices if d != pred_device]
    shards, outputs = [], {}
    for d in devices:
        cpart = cond_parts.get(d) or _empty(cond.name, d)
        bpart = body_parts.get(d) or _empty(body.name, d)
        local_vars = [k for k in sorted(homes) if homes[k] == d]
        local_invariants = sorted({k for k in cpart.arg_index + bpart.arg_index if k in invariants})
        state = local_vars + local_invariants
        kept = [r for r in bpart.result_index if r >= nvars]
        if bpart.result_index != local_vars + kept:
            raise AssertionError(f"{node.name}: body part on {d} gives {bpart.result_index}, "
                                 f"not its loop variables {local_vars} then kept values {kept}")
        name = f"{node.name}/shard/{short(d)}"
        attrs = {"cond": cpart.function, "body": bpart.function, "frame": node.name,
                 "cond_args": [state.index(k) for k in cpart.arg_index],
                 "body_args": [state.index(k) for k in bpart.arg_index],
                 "T": [types[k] for k in state], "num_vars": len(local_vars), "accumulate": len(kept),
                 "pred_device": pred_device,
                 "peer_devices": peers if d == pred_device else [],
                 "pred_key": _pred_key(node, pred_device, d) if d != pred_device else "",
                 "pred_keys": [_pred_key(node, pred_device, p) for p in peers] if d == pred_device else []}
        shards.append(Node(name, "_WhileShard", [node.inputs[k] for k in state], list(node.control_inputs), d,
                           attrs, node.source))
        for j, k in enumerate(local_vars):
            outputs[f"{node.name}:{k}"] = (f"{name}:{j}", [])
        for j, r in enumerate(kept):
            outputs[f"{node.name}:{r}"] = (f"{name}:{len(local_vars) + j}", [])
    for k in invariants:
        outputs[f"{node.name}:{k}"] = (node.inputs[k], [s.name for s in shards])
    return shards, outputs


def _pred_key(node, src, dst):
    return make_key(src, dst, f"!pred/{node.name}")


def _split_branches(node, partition):
    """The _CaseShard nodes of If/Case `node`, and its outputs' refs (as _split_while)."""
    branches = _branches(node)
    homes = _branch_homes(node)
    replicated = _replicated(node)
    result_homes = dict(enumerate(homes))
    parts = [split_function(fn, partition, result_homes, replicated) for fn in branches]
    devices = sorted(set().union(*parts) | set(homes))
    shards, outputs = [], {}
    for d in devices:
        mine = [p.get(d) or _empty(fn.name, d) for p, fn in zip(parts, branches)]
        results = [k for k, h in enumerate(homes) if h == d]
        args = sorted({k for p in mine for k in p.arg_index})
        for p in mine:
            if p.result_index and p.result_index != results:
                raise AssertionError(f"{node.name}: a branch part on {d} gives {p.result_index}, not {results}")
        name = f"{node.name}/shard/{short(d)}"
        attrs = {"branches": [p.function for p in mine], "frame": node.name,
                 "is_if": node.op in ("If", "StatelessIf"),
                 "branch_args": [args.index(k) for p in mine for k in p.arg_index],
                 "branch_arg_counts": [len(p.arg_index) for p in mine],
                 "Tout": [node.attrs["Tout"][k] for k in results]}
        shards.append(Node(name, "_CaseShard", [node.inputs[0]] + [node.inputs[1 + k] for k in args],
                           list(node.control_inputs), d, attrs, node.source))
        for j, k in enumerate(results):
            outputs[f"{node.name}:{k}"] = (f"{name}:{j}", [])
    return shards, outputs
