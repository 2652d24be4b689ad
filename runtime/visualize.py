"""A picture of a partitioned step: one coloured box per device, nodes layered by
dependency depth, send->recv transfers drawn as dashed red arrows between boxes.

Plain SVG, no Graphviz needed; open it in any browser.
"""

import html

from tensorgrid.runtime.ir import split_input

_COLOURS = ["#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#ede9fe", "#e0f2fe", "#fee2e2", "#f3f4f6"]
_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _PAD = 150, 26, 14, 18, 16


def partitions_from_metadata(run_metadata):
    """{device: GraphIR} from a RunMetadata's partition_graphs."""
    from tensorgrid.proto import convert
    parts = {}
    for gd in run_metadata.partition_graphs:
        g = convert.graph_def_to_ir(gd)
        device = next((n.device for n in g if n.device), f"partition {len(parts)}")
        parts[device] = g
    return parts


def partition_svg(partitions, title="partitioned step", max_nodes_per_row=6):
    """SVG text drawing `partitions` ({device: GraphIR})."""
    boxes = []
    pos = {}  # (device, node name) -> (x, y) centre
    x0 = _PAD
    for di, (device, g) in enumerate(sorted(partitions.items())):
        depth = {}
        for name in g.topological_order():
            n = g[name]
            deps = [split_input(r)[0] for r in n.inputs] + list(n.control_inputs)
            depth[name] = 1 + max((depth[d] for d in deps if d in depth), default=-1)
        rows = {}
        for name, d in depth.items():
            rows.setdefault(d, []).append(name)
        layout_rows = []
        for d in sorted(rows):
            names = rows[d]
            for i in range(0, len(names), max_nodes_per_row):
                layout_rows.append(names[i:i + max_nodes_per_row])
        cols = max((len(r) for r in layout_rows), default=1)
        width = cols * (_NODE_W + _GAP_X) + _GAP_X
        height = len(layout_rows) * (_NODE_H + _GAP_Y) + _GAP_Y + 24
        for ri, names in enumerate(layout_rows):
            for ci, name in enumerate(names):
                cx = x0 + _GAP_X + ci * (_NODE_W + _GAP_X) + _NODE_W / 2
                cy = _PAD + 34 + ri * (_NODE_H + _GAP_Y) + _NODE_H / 2 + 24
                pos[(device, name)] = (cx, cy)
        boxes.append((device, g, x0, width, height, _COLOURS[di % len(_COLOURS)]))
        x0 += width + _PAD * 2
    total_w = x0
    total_h = max((b[4] for b in boxes), default=100) + _PAD * 2 + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
           f'font-family="sans-serif" font-size="11">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>'
           '<marker id="r" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#dc2626"/></marker></defs>',
           f'<text x="{_PAD}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for device, g, bx, bw, bh, colour in boxes:
        out.append(f'<rect x="{bx}" y="{_PAD + 24}" width="{bw}" height="{bh}" rx="8" fill="{colour}" stroke="#888"/>')
        out.append(f'<text x="{bx + 8}" y="{_PAD + 40}" font-weight="bold">{html.escape(device)}</text>')
    edges, sends = [], {}
    for device, g, *_ in boxes:
        for n in g:
            if n.op == "_Send":
                sends[n.attrs.get("key")] = (device, n.name)
            for ref in list(n.inputs) + list(n.control_inputs):
                src = split_input(ref)[0]
                if (device, src) in pos:
                    edges.append((pos[(device, src)], pos[(device, n.name)], ref in n.control_inputs))
    for (x1, y1), (x2, y2), ctrl in edges:
        dash = ' stroke-dasharray="3,3"' if ctrl else ""
        out.append(f'<line x1="{x1:.0f}" y1="{y1 + _NODE_H / 2:.0f}" x2="{x2:.0f}" y2="{y2 - _NODE_H / 2:.0f}" '
                   f'stroke="#555"{dash} marker-end="url(#a)"/>')
    for device, g, *_ in boxes:
        for n in g:
            if n.op == "_Recv" and n.attrs.get("key") in sends:
                (x1, y1) = pos[sends[n.attrs["key"]]]
                (x2, y2) = pos[(device, n.name)]
                out.append(f'<path d="M{x1:.0f},{y1:.0f} C{(x1 + x2) / 2:.0f},{y1:.0f} {(x1 + x2) / 2:.0f},{y2:.0f} '
                           f'{x2:.0f},{y2:.0f}" fill="none" stroke="#dc2626" stroke-width="2" '
                           f'stroke-dasharray="6,4" marker-end="url(#r)"/>')
    for (device, name), (cx, cy) in pos.items():
        n = partitions[device][name]
        special = n.op in ("_Send", "_Recv")
        fill = "#fecaca" if special else "#ffffff"
        label = name if len(name) <= 22 else "…" + name[-21:]
        out.append(f'<g><title>{html.escape(f"{name} = {n.op} on {device}")}</title>'
                   f'<rect x="{cx - _NODE_W / 2:.0f}" y="{cy - _NODE_H / 2:.0f}" width="{_NODE_W}" height="{_NODE_H}" '
                   f'rx="4" fill="{fill}" stroke="#444"/>'
                   f'<text x="{cx:.0f}" y="{cy - 1:.0f}" text-anchor="middle">{html.escape(label)}</text>'
                   f'<text x="{cx:.0f}" y="{cy + 10:.0f}" text-anchor="middle" fill="#666" font-size="9">'
                   f'{html.escape(n.op)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)
