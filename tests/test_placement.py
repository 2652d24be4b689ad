"""runtime/placement.py on literal graphs: the placement rule, colocation, bad specs."""

import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime import placement
from tensorgrid.runtime.ir import GraphIR, Node

from literal_graphs import DEVS, const


def test_placement_keeps_an_unpinned_graph_on_one_device():
    g = GraphIR([const("a", 1.0), Node("b", "Neg", ["a:0"]), Node("c", "Exp", ["b:0"])])
    placed = placement.place(g, DEVS)
    assert {n.device for n in placed} == {DEVS[0]}


def test_placement_follows_inputs_and_pulls_sources_to_their_consumers():
    g = GraphIR([const("a", 1.0), const("k", 2.0), Node("b", "Neg", ["a:0"], [], DEVS[3]),
                 Node("c", "Mul", ["b:0", "k:0"])])
    placed = placement.place(g, DEVS)
    assert placed["a"].device == DEVS[3]  # a source goes where its consumer is pinned
    assert placed["c"].device == DEVS[3]  # an unpinned op follows its inputs
    assert placed["k"].device == DEVS[3]


def test_placement_colocates_variable_ops_with_their_handle():
    g = GraphIR([
        Node("v", "VarHandleOp", [], [], DEVS[2], {"shared_name": "v", "dtype": tg.float32, "shape": None}),
        Node("read", "ReadVariableOp", ["v:0"], [], "", {"dtype": tg.float32}),
    ])
    placed = placement.place(g, DEVS)
    assert placed["read"].device == DEVS[2]


def test_placement_rejects_a_spec_no_device_matches_naming_the_node():
    g = GraphIR([const("a", 1.0, "/job:ps/task:0")])
    with pytest.raises(errors.InvalidArgumentError, match=r"'a'.*available devices"):
        placement.place(g, DEVS)
    soft = placement.place(g, DEVS, allow_soft_placement=True)
    assert soft["a"].device in DEVS
