"""runtime/prune.py on literal graphs."""

from tensorgrid.runtime import prune
from tensorgrid.runtime.ir import Node

from literal_graphs import diamond


def test_prune_keeps_only_what_fetches_need_and_cuts_feeds():
    g = diamond()
    g.add(Node("unused", "Neg", ["a:0"], [], ""))
    p = prune.prune(g, feeds=["b:0"], fetches=["d:0"])
    names = {n.name for n in p}
    assert "unused" not in names
    assert "b" not in names  # fed: its producer is not needed
    assert p["d"].inputs[0] == prune.feed_node_name("b:0") + ":0"
    assert p[prune.fetch_node_name("d:0")].op == "_Fetch"
