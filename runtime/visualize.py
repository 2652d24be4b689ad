"""A picture of a partitioned step: a layered drawing of the dataflow graph, one coloured box per device,
send->recv transfers as red arrows between the boxes.

The layout is the usual one for a DAG (Sugiyama's):
1. layers by longest path over all partitions together, a _Send's _Recv
   counting as its successor, so every edge points down, across boxes too;
   a node with no inputs (a constant, a variable's handle) is then moved
   down next to its first consumer instead of crowding the top row;
2. within each device box, the nodes of a layer are ordered by the
   barycentre of their neighbours in the layer above (sweeping down) and
   below (sweeping up), a few rounds, which removes most edge crossings;
3. a layer with more nodes than fit in a box's row wraps onto extra rows.
Nodes show their name's last scope component and their op; hovering shows
the full name, op, device and inputs (an SVG <title>). Plain SVG, no
Graphviz needed; `layout()` is separate from drawing so tests can check it.
"""

import dataclasses
import html

from tensorgrid.runtime.ir import split_input

_COLOURS = ["#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#ede9fe", "#e0f2fe", "#fee2e2", "#f3f4f6"]
NODE_W, NODE_H, GAP_X, GAP_Y, PAD, BOX_HEAD, TITLE_H = 150, 30, 12, 26, 14, 28, 44
MAX_PER_ROW = 8
SWEEPS = 6
_TRANSFER = ("_Send", "_Recv")


@dataclasses.dataclass
class Layout:
    """Where everything goes: nodes by (device, name), their layer and row slot, the edges, and the boxes."""

    devices: list                   # in drawing order, left to right
    layer: dict                     # (device, name) -> layer index
    order: dict                     # (device, layer) -> [names] left to right
    edges: list                     # ((device, src), (device, dst), kind): kind "data", "control" or "transfer"
    pos: dict = dataclasses.field(default_factory=dict)      # (device, name) -> (centre x, centre y)
    boxes: dict = dataclasses.field(default_factory=dict)    # device -> (x, y, width, height)
    width: float = 0.0
    height: float = 0.0


def partitions_from_metadata(run_metadata):
    """{device: GraphIR} from a RunMetadata's partition_graphs."""
    from tensorgrid.proto import convert
    parts = {}
    for gd in run_metadata.partition_graphs:
        g = convert.graph_def_to_ir(gd)
        device = next((n.device for n in g if n.device), f"partition {len(parts)}")
        parts[device] = g
    return parts


def _edges(partitions):
    edges, sends = [], {}
    for device, g in partitions.items():
        for n in g:
            if n.op == "_Send":
                sends[n.attrs.get("key")] = (device, n.name)
            for ref in n.inputs:
                src = split_input(ref)[0]
                if src in g:
                    edges.append(((device, src), (device, n.name), "data"))
            for src in n.control_inputs:
                if src in g:
                    edges.append(((device, src), (device, n.name), "control"))
    for device, g in partitions.items():
        for n in g:
            src = sends.get(n.attrs.get("key")) if n.op == "_Recv" else None
            if src is not None:
                edges.append((src, (device, n.name), "transfer"))
    return edges


def _layers(nodes, edges):
    """Longest-path layers, with each source moved down to just above its first consumer."""
    preds = {v: [] for v in nodes}
    succs = {v: [] for v in nodes}
    for a, b, _ in edges:
        preds[b].append(a)
        succs[a].append(b)
    layer, pending = {}, {v: len(p) for v, p in preds.items()}
    ready = [v for v in nodes if pending[v] == 0]
    while ready:
        v = ready.pop()
        layer[v] = 1 + max((layer[p] for p in preds[v]), default=-1)
        for s in succs[v]:
            pending[s] -= 1
            if pending[s] == 0:
                ready.append(s)
    for v in nodes:                 # a cycle (never in a valid plan): its nodes go below everything else
        layer.setdefault(v, 1 + max(layer.values(), default=-1))
    for v in nodes:
        if not preds[v] and succs[v]:
            layer[v] = max(layer[v], min(layer[s] for s in succs[v]) - 1)
    return layer, preds, succs


def _order(devices, layer, preds, succs):
    """{(device, layer): [node names]} ordered by barycentre sweeps within each device."""
    rows = {}
    for (device, name), lay in sorted(layer.items(), key=lambda kv: kv[0][1]):
        rows.setdefault((device, lay), []).append(name)
    depth = 1 + max(layer.values(), default=-1)
    index = {}

    def number(device, lay):
        for i, name in enumerate(rows.get((device, lay), ())):
            index[(device, name)] = i

    for device in devices:
        for lay in range(depth):
            number(device, lay)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for device in devices:
            for lay in (range(1, depth) if down else range(depth - 2, -1, -1)):
                names = rows.get((device, lay))
                if not names:
                    continue
                neighbours = preds if down else succs

                def centre(name, names=names, neighbours=neighbours):
                    near = [index[u] for u in neighbours[(device, name)]
                            if u[0] == device and layer[u] == (lay - 1 if down else lay + 1)]
                    return sum(near) / len(near) if near else index[(device, name)]
                names.sort(key=centre)
                number(device, lay)
    return rows


def crossings(lay):
    """Edge crossings between adjacent layers inside the boxes (what the ordering reduces)."""
    index = {(d, n): i for (d, _), names in lay.order.items() for i, n in enumerate(names)}
    spans = {}
    for a, b, kind in lay.edges:
        if kind != "transfer" and lay.layer[b] == lay.layer[a] + 1:
            spans.setdefault((a[0], lay.layer[a]), []).append((index[a], index[b]))
    total = 0
    for pairs in spans.values():
        for i, (a1, b1) in enumerate(pairs):
            total += sum(1 for a2, b2 in pairs[i + 1:] if (a1 - a2) * (b1 - b2) < 0)
    return total


def layout(partitions, max_per_row=MAX_PER_ROW):
    """The Layout of `partitions` ({device: GraphIR})."""
    devices = sorted(partitions)
    nodes = [(d, n.name) for d in devices for n in partitions[d]]
    edges = _edges(partitions)
    layer, preds, succs = _layers(nodes, edges)
    order = _order(devices, layer, preds, succs)
    lay = Layout(devices, layer, order, edges)
    depth = 1 + max(layer.values(), default=-1)
    # rows per layer: the most any box needs, so a layer sits at one height in every box
    lines = [max((-(-len(order.get((d, i), ())) // max_per_row) for d in devices), default=1) or 1
             for i in range(depth)]
    tops, y = [], TITLE_H + BOX_HEAD + PAD
    for n in lines:
        tops.append(y)
        y += n * (NODE_H + GAP_Y)
    box_h = y - TITLE_H - PAD + GAP_Y / 2
    x0 = PAD
    for d in devices:
        cols = max((min(len(order.get((d, i), ())), max_per_row) for i in range(depth)), default=1) or 1
        width = max(cols * (NODE_W + GAP_X) + GAP_X, 8 * len(d) + 24)
        for i in range(depth):
            names = order.get((d, i), ())
            for k, name in enumerate(names):
                row, col = divmod(k, max_per_row)
                in_row = min(max_per_row, len(names) - row * max_per_row)
                left = x0 + (width - in_row * (NODE_W + GAP_X) + GAP_X) / 2
                lay.pos[(d, name)] = (left + col * (NODE_W + GAP_X) + NODE_W / 2,
                                      tops[i] + row * (NODE_H + GAP_Y) + NODE_H / 2)
        lay.boxes[d] = (x0, TITLE_H, width, box_h)
        x0 += width + 2 * PAD
    lay.width = x0 - PAD
    lay.height = TITLE_H + box_h + PAD
    return lay


def _fit(text, width=22):
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _labels(node):
    """A node's two lines: its name's last scope component and its op; for a transfer, the tensor it moves
    and the device at the other end."""
    if node.op in _TRANSFER:
        other = node.attrs.get("recv_device" if node.op == "_Send" else "send_device", "")
        short = other.replace("/replica:0", "").replace("/device:", " ")
        verb = "send" if node.op == "_Send" else "recv"
        arrow = "to" if node.op == "_Send" else "from"
        return f"{verb} {_fit(node.attrs.get('tensor_name', ''), 17)}", f"{arrow} {short}"
    return _fit(node.name.rsplit("/", 1)[-1]), node.op


def _curve(x1, y1, x2, y2):
    bend = max(18.0, abs(y2 - y1) / 2)
    return f"M{x1:.0f},{y1:.0f} C{x1:.0f},{y1 + bend:.0f} {x2:.0f},{y2 - bend:.0f} {x2:.0f},{y2:.0f}"


def partition_svg(partitions, title="partitioned step", max_per_row=MAX_PER_ROW):
    """SVG text drawing `partitions` ({device: GraphIR}) as a layered DAG in device boxes."""
    lay = layout(partitions, max_per_row)
    nodes = sum(len(g) for g in partitions.values())
    transfers = sum(1 for *_, kind in lay.edges if kind == "transfer")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}" '
           f'viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" font-family="sans-serif" font-size="11">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>'
           '<marker id="r" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#dc2626"/></marker></defs>',
           f'<text x="{PAD}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
           f'<text x="{PAD}" y="36" fill="#555">{nodes} nodes on {len(lay.devices)} devices, '
           f'{transfers} send/recv transfers (red); inputs at the top; hover a node for its full name</text>']
    for i, d in enumerate(lay.devices):
        x, y, w, h = lay.boxes[d]
        out.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="8" '
                   f'fill="{_COLOURS[i % len(_COLOURS)]}" stroke="#888"/>')
        out.append(f'<text x="{x + 8:.0f}" y="{y + 18:.0f}" font-weight="bold">{html.escape(d)}</text>')
    for a, b, kind in sorted(lay.edges, key=lambda e: e[2] == "transfer"):
        (x1, y1), (x2, y2) = lay.pos[a], lay.pos[b]
        path = _curve(x1, y1 + NODE_H / 2, x2, y2 - NODE_H / 2)
        if kind == "transfer":
            out.append(f'<path d="{path}" fill="none" stroke="#dc2626" stroke-width="2" stroke-dasharray="6,4" '
                       f'marker-end="url(#r)"><title>{html.escape(f"{a[1]} -> {b[1]}")}</title></path>')
        else:
            dash = ' stroke-dasharray="3,3"' if kind == "control" else ""
            # long edges (a variable's handle to its update at the bottom) fade, so the layers' flow shows
            opacity = 0.7 if lay.layer[b] - lay.layer[a] <= 3 else 0.25
            out.append(f'<path d="{path}" fill="none" stroke="#6b7280" stroke-opacity="{opacity}"{dash} '
                       f'marker-end="url(#a)"/>')
    for (d, name), (cx, cy) in lay.pos.items():
        n = partitions[d][name]
        fill = "#fecaca" if n.op in _TRANSFER else "#ffffff"
        inputs = ", ".join(list(n.inputs) + ["^" + c for c in n.control_inputs]) or "no inputs"
        where = f"\ncreated at {n.where()}" if n.source else ""
        tip = f"{name} = {n.op}({inputs})\non {d}{where}"
        label, second = _labels(n)
        out.append(f'<g><title>{html.escape(tip)}</title>'
                   f'<rect x="{cx - NODE_W / 2:.0f}" y="{cy - NODE_H / 2:.0f}" width="{NODE_W}" height="{NODE_H}" '
                   f'rx="4" fill="{fill}" stroke="#444"/>'
                   f'<text x="{cx:.0f}" y="{cy - 2:.0f}" text-anchor="middle">{html.escape(label)}</text>'
                   f'<text x="{cx:.0f}" y="{cy + 11:.0f}" text-anchor="middle" fill="#666" font-size="9">'
                   f'{html.escape(second)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)
