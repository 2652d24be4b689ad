"""The executor on literal partitions, with no Session: scheduling across receives, errors, freeing."""

import threading
import time

import numpy as np
import pytest

import tensorgrid as tg  # noqa: F401 - registers the ops
from tensorgrid.framework import errors
from tensorgrid.runtime import partition
from tensorgrid.runtime.ir import GraphIR, Node
from tensorgrid.worker.executor import DeviceContext, Executable, Step
from tensorgrid.worker.rendezvous import LocalRendezvous

A = "/job:localhost/replica:0/task:0/device:CPU:0"
B = "/job:localhost/replica:0/task:0/device:CPU:1"


def _const(name, value, device):
    return Node(name, "Const", [], [], device, {"value": np.asarray(value, np.float32), "dtype": tg.float32})


def _run_parts(parts, feeds=None):
    """Runs every partition in its own thread under one step; returns fetches and errors."""
    step = Step(1, LocalRendezvous(1), feeds or {}, {})
    exes = {d: Executable(g, DeviceContext(d)) for d, g in parts.items()}
    errs = []

    def run(exe):
        try:
            exe.run(step)
        except Exception as e:  # collected for the assertion below
            errs.append(e)
            step.rendezvous.abort(e)
    threads = [threading.Thread(target=run, args=(e,)) for e in exes.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a partition hung"
    return step.fetches, errs


def test_ping_pong_between_devices_never_deadlocks():
    """A needs B's result of its first value, B needs A's second; receives arrive out of node order."""
    g = GraphIR([
        _const("a1", 1.0, A),
        Node("b1", "Neg", ["a1:0"], [], B),
        Node("a2", "Mul", ["b1:0", "a1:0"], [], A),   # waits on B
        _const("b0", 5.0, B),
        Node("a3", "Add", ["b0:0", "a1:0"], [], A),   # waits on B's independent value
        Node("b2", "Add", ["a2:0", "a3:0"], [], B),   # waits on both of A's
        Node("out", "_Fetch", ["b2:0"], [], B, {"key": "b2:0"}),
    ])
    fetches, errs = _run_parts(partition.partition(g))
    assert not errs
    assert fetches["b2:0"] == (-1.0 * 1.0) + (5.0 + 1.0)


def test_error_names_the_node_and_cancels_the_other_partition():
    g = GraphIR([
        _const("x", [[1.0, 2.0]], A),
        Node("bad", "MatMul", ["x:0", "x:0"], [], A, {"transpose_a": False, "transpose_b": False}),
        Node("after", "Neg", ["bad:0"], [], B),
        Node("out", "_Fetch", ["after:0"], [], B, {"key": "after:0"}),
    ])
    fetches, errs = _run_parts(partition.partition(g))
    root = next(e for e in errs if not isinstance(e, errors.CancelledError))
    assert isinstance(root, errors.InvalidArgumentError)
    assert "bad" in str(root) and A in str(root)
    assert root.node_def.name == "bad"


def test_values_are_freed_after_their_last_consumer():
    import weakref
    g = GraphIR([
        Node("x", "_Feed", [], [], A, {"key": "x:0"}),
        Node("y", "Neg", ["x:0"], [], A),
        Node("z", "Neg", ["y:0"], [], A),
        Node("out", "_Fetch", ["z:0"], [], A, {"key": "z:0"}),
    ])
    exe = Executable(g, DeviceContext(A))
    prog = exe.groups[0].prog
    pos = {exe.nodes[inst[6]].name: k for k, inst in enumerate(prog)}
    refs = []

    def wrap(name, before):
        code, kern, a, b, out, frees, i = prog[pos[name]]

        def spy(*args):
            before()
            result = kern(*args)
            if name == "y":
                refs.append(weakref.ref(result))
            return result
        prog[pos[name]] = (code, spy, a, b, out, frees, i)
    wrap("y", lambda: None)
    wrap("out", lambda: refs.append(refs[0]() is None))  # y's value is gone once z has run
    step = Step(1, LocalRendezvous(1), {"x:0": np.ones(3)}, {})
    exe.run(step)
    np.testing.assert_array_equal(step.fetches["z:0"], np.ones(3))
    assert refs[-1] is True


def test_deadline_while_waiting_for_a_receive():
    g = GraphIR([
        Node("r", "_Recv", [], [], A, {"key": "never;sent;t:0"}),
        Node("out", "_Fetch", ["r:0"], [], A, {"key": "r:0"}),
    ])
    exe = Executable(g, DeviceContext(A))
    import time
    step = Step(1, LocalRendezvous(1), {}, {}, deadline=time.monotonic() + 0.05)
    with pytest.raises(errors.DeadlineExceededError):
        exe.run(step)


def test_a_delivering_thread_computes_the_groups_its_arrival_completes(monkeypatch):
    """A receive delivered by a data-plane reader (executor.delivering()) runs its groups on that thread, so
    the step's own thread wakes once, at the end; a group that may wait (a queue) hands the reading off first."""
    from tensorgrid.worker import executor
    delivering = threading.local()
    handed = []
    monkeypatch.setattr(executor, "delivering", lambda: getattr(delivering, "on", False))
    monkeypatch.setattr(executor, "hand_off_reading", lambda: handed.append(1) or True)
    ran_on = []

    class Rendezvous(LocalRendezvous):
        def send(self, key, value):
            ran_on.append((key, threading.current_thread().name))
            super().send(key, value)
    g = GraphIR([
        Node("r1", "_Recv", [], [], B, {"key": "k1", "dtype": tg.float32}),
        Node("r2", "_Recv", [], [], B, {"key": "k2", "dtype": tg.float32}),
        Node("n", "Neg", ["r1:0"], [], B),
        Node("s", "_Send", ["n:0"], [], B, {"key": "out1"}),
        Node("m", "Add", ["r2:0", "n:0"], [], B),
        Node("f", "_Fetch", ["m:0"], [], B, {"key": "m:0"}),
    ])
    exe = Executable(g, DeviceContext(B))
    assert exe.quick_recvs == [True, True]
    step = Step(1, Rendezvous(1), {}, {})
    runner = threading.Thread(target=exe.run, args=(step,), name="step")
    runner.start()
    deadline = time.monotonic() + 10
    while step.rendezvous.pending() < 2 and time.monotonic() < deadline:  # both receives wait
        time.sleep(0.001)

    def reader(key, value):
        delivering.on = True
        step.rendezvous.send(key, np.float32(value))
    for key, value in (("k1", 2.0), ("k2", 5.0)):
        t = threading.Thread(target=reader, args=(key, value), name=f"reader-{key}")
        t.start()
        t.join(10)
    runner.join(10)
    assert not runner.is_alive()
    assert step.fetches["m:0"] == 3.0
    assert ("out1", "reader-k1") in ran_on and not handed
