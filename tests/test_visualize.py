"""runtime/visualize.py: the layered layout of a partitioned step, and the SVG drawn from it."""

import re
import xml.etree.ElementTree as ET

import numpy as np

from tensorgrid.ops import registry
from tensorgrid.runtime import plan, visualize
from tensorgrid.runtime.ir import GraphIR, Node
from tests.literal_graphs import DEVS, computed_diamond, const


def _parts(graph, fetches):
    return plan.plan_step(graph, [], fetches, [], DEVS[:3], known_ops=registry.OPS).partitions


def test_every_edge_points_down_across_boxes_too():
    parts = _parts(computed_diamond(), ["d:0"])
    lay = visualize.layout(parts)
    assert {kind for *_, kind in lay.edges} == {"data", "transfer"}
    for a, b, _ in lay.edges:
        assert lay.layer[b] > lay.layer[a], (a, b)
        assert lay.pos[b][1] > lay.pos[a][1]
    transfers = [(a, b) for a, b, kind in lay.edges if kind == "transfer"]
    assert {(a[0], b[0]) for a, b in transfers} == {(DEVS[0], DEVS[1]), (DEVS[1], DEVS[2])}
    for (dev, name), (x, y) in lay.pos.items():      # every node inside its device's box
        bx, by, bw, bh = lay.boxes[dev]
        assert bx < x < bx + bw and by < y < by + bh, name


def test_sources_sit_next_to_their_first_consumer():
    """A constant read only at the bottom is drawn just above it, not in the top row."""
    g = GraphIR([const("x", [1.0]), Node("a", "Neg", ["x:0"], [], ""), Node("b", "Exp", ["a:0"], [], ""),
                 const("late", [2.0]), Node("c", "Add", ["b:0", "late:0"], [], "")])
    lay = visualize.layout(_parts(g, ["c:0"]))
    layer = {name: lay.layer[(d, name)] for d, name in lay.layer}
    assert layer["x"] == 0 and layer["late"] == layer["c"] - 1


def test_barycentre_ordering_removes_crossings():
    """Two chains whose inputs are listed crosswise: the sweeps untangle them."""
    nodes = []
    for i in range(4):
        nodes.append(const(f"top{i}", [float(i)]))
    for i in range(4):      # mid_i reads top_(3-i): in listing order every pair of edges crosses
        nodes.append(Node(f"mid{i}", "Neg", [f"top{3 - i}:0"], [], ""))
    for i in range(4):
        nodes.append(Node(f"low{i}", "Exp", [f"mid{(i + 2) % 4}:0"], [], ""))
    g = GraphIR(nodes + [Node("sum", "AddN", [f"low{i}:0" for i in range(4)], [], "", {"N": 4})])
    parts = _parts(g, ["sum:0"])
    untangled = visualize.layout(parts)
    assert visualize.crossings(untangled) == 0
    listed = visualize.Layout(untangled.devices, untangled.layer,
                              {k: sorted(v, key=lambda n: (n[:-1], int(n[-1]) if n[-1].isdigit() else 0))
                               for k, v in untangled.order.items()}, untangled.edges)
    assert visualize.crossings(listed) > 0


def test_svg_names_every_node_in_full_and_joins_send_recv_pairs():
    long = "a_rather_long_scope/with/several_levels/and_a_node_name_that_is_long"
    g = GraphIR([const("k", [1.0, 2.0], DEVS[0]), Node("a", "Neg", ["k:0"], [], DEVS[0]),
                 Node(long, "Neg", ["a:0"], [], DEVS[1])])
    parts = _parts(g, [f"{long}:0"])
    svg = visualize.partition_svg(parts, title="t")
    root = ET.fromstring(svg)                              # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    assert any(t.startswith(f"{long} = Neg(") for t in titles)
    assert any(re.match(r"_send/a_0/.* -> _recv/a_0/", t) for t in titles)  # the red arrow's own title
    labels = [t.text for t in root.iter(ns + "text")]
    assert any(t.startswith("…") and t.endswith("name_that_is_long") and len(t) <= 22 for t in labels)
    assert "send a:0" in labels and "recv a:0" in labels
    assert len([p for p in root.iter(ns + "path") if p.get("stroke") == "#dc2626"]) == 1


def test_an_empty_plan_draws_nothing_but_the_title():
    svg = visualize.partition_svg({}, title="nothing")
    assert "nothing" in svg and ET.fromstring(svg) is not None
    assert np.isfinite(visualize.layout({}).height)
