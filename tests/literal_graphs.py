"""Small literal GraphIRs for the pass tests (no client Graph, no process)."""

import numpy as np

import tensorgrid as tg
from tensorgrid.runtime.ir import GraphIR, Node

DEVS = [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(4)]


def const(name, value, device=""):
    """A float32 Const node."""
    return Node(name, "Const", [], [], device, {"value": np.asarray(value, np.float32), "dtype": tg.float32})


def diamond():
    """a(dev0) -> b(dev1), c(dev1) both read a; d(dev2) reads b and c."""
    return GraphIR([
        const("a", [1.0, 2.0], DEVS[0]),
        Node("b", "Neg", ["a:0"], [], DEVS[1]),
        Node("c", "Exp", ["a:0"], [], DEVS[1]),
        Node("d", "Add", ["b:0", "c:0"], [], DEVS[2]),
    ])


def computed_diamond():
    """diamond() with `a` computed on dev0 (from a Const k), so that it is sent, not copied as a Const is."""
    nodes = [n for n in diamond() if n.name != "a"]
    return GraphIR([const("k", [1.0, 2.0], DEVS[0]), Node("a", "Identity", ["k:0"], [], DEVS[0]), *nodes])
