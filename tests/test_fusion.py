"""Tests of runtime/fusion.py and its kernel (tensorgrid/ops/fused_ops.py): which nodes a literal
graph's chains fuse into, the same numbers with fusion on and off, errors that name the user's node,
and the switches that turn it off."""

import numpy as np
import pytest

import tensorgrid as tg
from conftest import _local_cluster
from tensorgrid.proto import config_pb2
from tensorgrid.runtime import fusion
from tensorgrid.runtime import plan as plan_lib
from tensorgrid.runtime.ir import GraphIR, Node
from tensorgrid.worker import executor as executor_lib

DEV = "/job:localhost/replica:0/task:0/device:CPU:0"


def _graph(*nodes):
    """A GraphIR of (name, op, inputs[, attrs]) on one device."""
    return GraphIR([Node(name, op, list(inputs), device=DEV, attrs=attrs[0] if attrs else {})
                    for name, op, inputs, *attrs in nodes])


def _consts(x, y):
    return [("x", "Const", [], {"value": x, "dtype": tg.as_dtype(x.dtype)}),
            ("y", "Const", [], {"value": y, "dtype": tg.as_dtype(y.dtype)})]


def _run(graph, fetch):
    """The value of tensor `fetch` after running `graph` on one CPU device."""
    step = executor_lib.Step(1, None)
    g = GraphIR(list(graph) + [Node("out", "_Fetch", [fetch], device=DEV, attrs={"key": fetch})])
    exe = executor_lib.Executable(g, executor_lib.DeviceContext(DEV))
    exe.run(step)
    return step.fetches[fetch]


def _chain_graph(x, y):
    # s = square((x * y) + y) - x: four elementwise ops, one chain
    return _graph(*_consts(x, y), ("m", "Mul", ["x:0", "y:0"]), ("a", "Add", ["m:0", "y:0"]),
                  ("s", "Square", ["a:0"]), ("d", "Sub", ["s:0", "x:0"]))


def test_a_chain_becomes_one_node_named_after_its_last_op():
    x, y = np.arange(6.0).reshape(2, 3), np.array([1.5, -2.0, 0.5])
    g = _chain_graph(x, y)
    fused = fusion.fuse_elementwise(g)
    assert [n.name for n in fused] == ["x", "y", "d"]
    d = fused["d"]
    assert d.op == "_FusedElementwise" and d.inputs == ["x:0", "y:0"] and d.device == DEV
    assert d.attrs["members"] == ["m", "a", "s", "d"] and d.attrs["member_ops"] == ["Mul", "Add", "Square", "Sub"]
    assert d.attrs["operands"] == ["0,1", "2,1", "3", "4,0"]  # inputs 0-1, then the members' results
    assert [n.name for n in g] == ["x", "y", "m", "a", "s", "d"]  # the pass made a new graph
    want = np.square(x * y + y) - x
    np.testing.assert_array_equal(_run(fused, "d:0"), want)
    np.testing.assert_array_equal(_run(g, "d:0"), want)


def test_a_fused_kernel_writes_its_result_into_the_memory_it_is_given():
    """What the executor does for a fused node whose result is only sent (into a send buffer): after
    a first call, result_spec gives the result's shape and dtype, and out= gets the result itself, for
    chains that reuse an intermediate, chains that do not, and one-element tensors."""
    from tensorgrid.ops import registry
    for x, y in ((np.arange(6.0).reshape(2, 3), np.array([1.5, -2.0, 0.5])), (np.array([2.0]), np.array([3.0]))):
        node = fusion.fuse_elementwise(_chain_graph(x, y))["d"]
        kernel = registry.get("_FusedElementwise").kernel_for("CPU")(registry.KernelNode(
            node.name, node.op, node.attrs, DEV))
        want = np.square(x * y + y) - x
        assert kernel.result_spec((x, y)) is None  # nothing known before a first call
        np.testing.assert_array_equal(kernel(x, y), want)
        assert kernel.result_spec((x, y)) == (want.shape, want.dtype)
        for _ in range(2):  # the generated code, with and without out
            out = np.full(want.shape, np.nan)
            assert kernel(x, y, out=out) is out
            np.testing.assert_array_equal(out, want)
            np.testing.assert_array_equal(kernel(x, y), want)


def test_what_others_read_fetch_or_wait_on_ends_a_chain():
    x, y = np.ones((2, 3)), np.ones(3)
    g = _chain_graph(x, y)
    # a is fetched, so it is the last op of its chain; s then has no elementwise input left to fuse with d
    g.add(Node("f", "_Fetch", ["a:0"], device=DEV, attrs={"key": "a:0"}))
    fused = fusion.fuse_elementwise(g)
    assert fused["a"].op == "_FusedElementwise" and fused["a"].attrs["members"] == ["m", "a"]
    assert fused["d"].attrs["members"] == ["s", "d"]
    # a node waits on m: m keeps its name (it ends a chain of one, so stays as it was)
    g = _chain_graph(x, y)
    g.add(Node("n", "NoOp", [], ["m"], device=DEV))
    fused = fusion.fuse_elementwise(g)
    assert fused["m"].op == "Mul" and fused["d"].attrs["members"] == ["a", "s", "d"]
    # control inputs of members move to the fused node; a non-elementwise op is never fused
    g = _chain_graph(x, y)
    g.add(Node("n", "NoOp", [], device=DEV))
    g["a"].control_inputs.append("n")
    g["s"].op = "Identity"
    fused = fusion.fuse_elementwise(g)
    assert fused["a"].control_inputs == ["n"] and fused["a"].attrs["members"] == ["m", "a"]
    assert fused["s"].op == "Identity" and fused["d"].op == "Sub"


def test_chains_stop_at_partition_boundaries_and_fetches():
    """Planned for two devices, the two halves fuse apart; the tensor sent between them and the fetched
    intermediate stay real tensors."""
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [None], name="x")
        with tg.device("/cpu:0"):
            a = (x * 2.0 + 1.0) * 3.0
        with tg.device("/cpu:1"):
            b = tg.exp(a - 1.0) + 2.0
            c = b * b
    devices = [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(2)]
    plan = plan_lib.plan_step(g.to_ir(), (x.name,), (b.name, c.name), (), devices, fuse=True)
    fused = {n.name: n.attrs["members"] for p in plan.partitions.values() for n in p if n.op == "_FusedElementwise"}
    assert fused == {a.op.name: ["mul", "add", a.op.name], b.op.name: ["sub", "Exp", b.op.name]}
    unfused = plan_lib.plan_step(g.to_ir(), (x.name,), (b.name, c.name), (), devices)
    assert not any(n.op == "_FusedElementwise" for p in unfused.partitions.values() for n in p)
    xs = np.linspace(-1, 1, 5).astype(np.float32)
    want_b = np.exp((xs * np.float32(2) + np.float32(1)) * np.float32(3) - np.float32(1)) + np.float32(2)
    for remapping in (config_pb2.RewriterConfig.DEFAULT, config_pb2.RewriterConfig.OFF):
        config = tg.ConfigProto(device_count={"CPU": 2})
        config.graph_options.rewrite_options.remapping = remapping
        with tg.Session(graph=g, config=config) as sess:
            got_b, got_c = sess.run([b, c], {x: xs})
        np.testing.assert_array_equal(got_b, want_b)
        np.testing.assert_array_equal(got_c, want_b * want_b)


@pytest.mark.parametrize("shapes", [((), ()), ((1,), ()), ((1, 1), (1,)), ((4, 3), (3,)), ((3,), (4, 1)),
                                    ((300, 400), (400,))], ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
def test_fused_and_unfused_give_the_same_bits(shapes, dtype):
    """One-element chains (NumPy scalars), broadcasting chains and large ones (out= buffers), run
    twice so the generated code runs too."""
    rng = np.random.RandomState(1)
    x = np.asarray(rng.randn(*shapes[0]) * 3).astype(dtype)
    y = np.asarray(rng.randn(*shapes[1]) * 3 + 0.5).astype(dtype)

    def program(a, b):
        out = tg.maximum(a * b - a, b) + tg.abs(-b)
        if dtype != np.int32:
            out = tg.sqrt(tg.abs(out / (b * b + 1))) + tg.tanh(a)
        return out * out, a < out
    got = []
    for remapping in (config_pb2.RewriterConfig.DEFAULT, config_pb2.RewriterConfig.OFF):
        g = tg.Graph()
        with g.as_default():
            a = tg.compat.v1.placeholder(dtype, x.shape)
            b = tg.compat.v1.placeholder(dtype, y.shape)
            outs = program(a, b)
            config = tg.ConfigProto()
            config.graph_options.rewrite_options.remapping = remapping
            with tg.Session(graph=g, config=config) as sess:
                got.append([sess.run(outs, {a: x, b: y}) for _ in range(2)])
    for fused, unfused in zip(got[0], got[1]):
        for f, u in zip(fused, unfused):
            assert type(f) is type(u) and f.dtype == u.dtype and np.shape(f) == np.shape(u)
            np.testing.assert_array_equal(f, u)
    np.testing.assert_array_equal(got[0][0][0], got[0][1][0])


def _activations(a, b, dtype):
    """A chain of the elementwise ops that are not one ufunc (registry `elementwise`), mixed with ufuncs."""
    h = tg.nn.relu(a * b - 0.5)
    s = tg.sigmoid(h - a) + tg.nn.relu6(b * 4.0)
    r = tg.math.rsqrt(tg.abs(s) + 0.25) + tg.nn.softplus(a - b)
    sel = tg.where(a > b, r, -r)  # SelectV2: condition, x and y broadcast
    total = tg.add_n([sel, r * 2.0, tg.nn.relu(-sel)])
    whole = tg.cast(tg.cast(total * 1024.0, tg.int32), dtype)  # float -> int truncates toward zero
    huge = tg.cast(tg.cast(total, tg.float64) * 1e30, tg.float16)  # overflows to inf
    return whole * 2.0 ** -10 - tg.cast(a > 0.0, dtype), huge


def _fused_and_unfused(g, fetches, feed, runs=2):
    """[fused runs, unfused runs] of `fetches`, each run's values."""
    got = []
    for remapping in (config_pb2.RewriterConfig.DEFAULT, config_pb2.RewriterConfig.OFF):
        config = tg.ConfigProto()
        config.graph_options.rewrite_options.remapping = remapping
        with tg.Session(graph=g, config=config) as sess:
            got.append([sess.run(fetches, feed) for _ in range(runs)])
    return got


def _assert_same_bits(fused, unfused):
    for f, u in zip(fused, unfused):
        assert type(f) is type(u) and f.dtype == u.dtype and np.shape(f) == np.shape(u)
        np.testing.assert_array_equal(f, u)


@pytest.mark.parametrize("shapes", [((), ()), ((1,), ()), ((4, 3), (3,)), ((3,), (4, 1)), ((300, 400), (400,))],
                         ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_elementwise_functions_fuse_and_give_the_same_bits(shapes, dtype):
    """Relu, Relu6, Sigmoid, Rsqrt, Softplus, SelectV2, AddN and Cast (with its DstT) fuse with the ufuncs
    around them into one node, and give the unfused kernels' bits, nan and inf included."""
    rng = np.random.RandomState(2)
    x = np.asarray(rng.randn(*shapes[0]) * 3).astype(dtype)
    y = np.asarray(rng.randn(*shapes[1]) * 3 + 0.5).astype(dtype)
    if x.size > 3:
        x.flat[:3] = [np.nan, np.inf, -np.inf]
    g = tg.Graph()
    with g.as_default():
        a = tg.compat.v1.placeholder(dtype, x.shape)
        b = tg.compat.v1.placeholder(dtype, y.shape)
        outs = _activations(a, b, dtype)
    plan = plan_lib.plan_step(g.to_ir(), (a.name, b.name), tuple(t.name for t in outs), (), [DEV], fuse=True)
    (part,) = plan.partitions.values()
    fused = [n for n in part if n.op == "_FusedElementwise"]
    member_ops = {op for n in fused for op in n.attrs["member_ops"]}
    assert {"Relu", "Sigmoid", "Rsqrt", "Softplus", "SelectV2", "AddN", "Cast", "Minimum"} <= member_ops
    assert len(fused) <= 3 and sum(len(n.attrs["members"]) for n in fused) > 30
    casts = [(n.attrs, k) for n in fused for k, op in enumerate(n.attrs["member_ops"]) if op == "Cast"]
    assert {tg.as_dtype(attrs[f"m{k}.DstT"]) for attrs, k in casts} == {tg.int32, tg.float64, tg.as_dtype(dtype), tg.float16}
    got = _fused_and_unfused(g, outs, {a: x, b: y})
    for fused_run, unfused_run in zip(got[0], got[1]):
        _assert_same_bits(fused_run, unfused_run)
    _assert_same_bits(got[0][0], got[0][1])


@pytest.mark.parametrize("xs", [[np.nan, -1.5, 0.0, 2.5], [-np.inf, np.inf, -0.0, 1e-30]], ids=str)
def test_relu_sigmoid_cast_of_special_values_match_tensorflow(xs):
    """Relu of nan is nan, sigmoid saturates, Cast float -> int truncates toward zero: fused, as TF."""
    tf = pytest.importorskip("tensorflow")
    x = np.array(xs, np.float32)
    g = tg.Graph()
    with g.as_default():
        a = tg.compat.v1.placeholder(tg.float32, [4])
        outs = [tg.nn.relu(a * 1.0), tg.sigmoid(a + 0.0), tg.cast(tg.clip_by_value(a, -9.0, 9.0) * 1.5, tg.int32)]
    fused, unfused = _fused_and_unfused(g, outs, {a: x}, runs=1)
    _assert_same_bits(fused[0], unfused[0])
    want = [tf.nn.relu(x * 1.0).numpy(), tf.sigmoid(x + 0.0).numpy(),
            tf.cast(tf.clip_by_value(x, -9.0, 9.0) * 1.5, tf.int32).numpy()]
    for f, w in zip(fused[0], want):
        np.testing.assert_allclose(f, w, rtol=1e-6)


def test_gradients_through_fused_relu_sigmoid_cast_chains():
    """The gradients of a Relu/Sigmoid/Cast chain (ReluGrad and the Mul/Sub chains of sigmoid's gradient
    fuse too): the unfused bits, and TF's values."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.RandomState(3)
    xv = rng.randn(50, 20).astype(np.float32)
    wv = rng.randn(20).astype(np.float32)

    def forward(lib, x, w):
        h = lib.nn.relu(x * w - 0.1)
        s = lib.sigmoid(h * 2.0 + lib.cast(lib.cast(x, lib.float64) * 0.5, lib.float32))
        return lib.reduce_sum(lib.nn.relu(s - 0.3) * w)
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, xv.shape)
        w = tg.compat.v1.placeholder(tg.float32, wv.shape)
        grads = tg.gradients(forward(tg, x, w), [x, w])
    plan = plan_lib.plan_step(g.to_ir(), (x.name, w.name), tuple(t.name for t in grads), (), [DEV], fuse=True)
    member_ops = [op for n in plan.partitions[DEV] if n.op == "_FusedElementwise" for op in n.attrs["member_ops"]]
    assert member_ops.count("ReluGrad") == 2 and "Cast" in member_ops and "Sigmoid" in member_ops
    fused, unfused = _fused_and_unfused(g, grads, {x: xv, w: wv})
    _assert_same_bits(fused[0], unfused[0])
    _assert_same_bits(fused[1], unfused[0])
    tx, tw = tf.constant(xv), tf.constant(wv)
    with tf.GradientTape() as tape:
        tape.watch([tx, tw])
        loss = forward(tf, tx, tw)
    for got, want in zip(fused[0], tape.gradient(loss, [tx, tw])):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_a_fused_chain_warns_where_its_members_would():
    """A chain with a member whose own kernel silences NumPy's warnings (RealDiv: TF's silent inf) is
    silent fused too; a chain of ufuncs that warn unfused (Mul overflowing) warns fused as well."""
    import warnings
    x = np.array([1.0, 0.0], np.float32)
    consts = [("x", "Const", [], {"value": x, "dtype": tg.float32}),
              ("z", "Const", [], {"value": np.zeros(2, np.float32), "dtype": tg.float32}),
              ("big", "Const", [], {"value": np.full(2, 3e38, np.float32), "dtype": tg.float32})]
    cases = [("RealDiv", "z", [np.inf, np.nan], False), ("Mul", "big", [np.inf, 0.0], True)]
    for op, other, want, warns in cases:
        g = _graph(*consts, ("d", op, ["x:0", f"{other}:0"]), ("a", "Add", ["d:0", "d:0"]))
        fused = fusion.fuse_elementwise(g)
        assert fused["a"].op == "_FusedElementwise"
        for graph in (g, fused):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(2):  # the first call and the generated code
                    np.testing.assert_array_equal(_run(graph, "a:0"), want)
            assert bool(caught) == warns, (op, graph is fused, [str(w.message) for w in caught])


def test_a_failing_elementwise_function_is_named():
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [None])
        y = tg.compat.v1.placeholder(tg.float32, [None])
        total = tg.add_n([tg.nn.relu(x), tg.sigmoid(y)], name="user_add_n")  # the line the error names
        out = tg.cast(total, tg.int32) * 2
        with tg.Session(graph=g) as sess:
            assert sess.run(out, {x: np.ones(2, np.float32), y: np.full(2, 50, np.float32)}).tolist() == [4, 4]
            with pytest.raises(tg.errors.InvalidArgumentError) as info:
                sess.run(out, {x: np.ones(2, np.float32), y: np.ones(3, np.float32)})
    assert "AddN 'user_add_n'" in info.value.message and "test_fusion.py" in info.value.message
    assert "must have the same size and shape" in info.value.message


def test_a_failing_member_is_named_with_its_line():
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [None])
        y = tg.compat.v1.placeholder(tg.float32, [None])
        total = tg.add(x * 2.0, y, name="user_add")  # the line the error names
        out = tg.square(total) - 1.0
        with tg.Session(graph=g) as sess:
            assert sess.run(out, {x: np.ones(2, np.float32), y: np.ones(2, np.float32)}).tolist() == [8.0, 8.0]
            with pytest.raises(tg.errors.InvalidArgumentError) as info:
                sess.run(out, {x: np.ones(2, np.float32), y: np.ones(3, np.float32)})
    assert "Add 'user_add'" in info.value.message and "test_fusion.py" in info.value.message
    assert "could not be broadcast" in info.value.message


def test_switches(monkeypatch):
    assert fusion.enabled(None) and fusion.enabled(tg.ConfigProto())
    config = tg.ConfigProto()
    config.graph_options.rewrite_options.remapping = tg.RewriterConfig.OFF
    assert not fusion.enabled(config)
    config.graph_options.rewrite_options.remapping = tg.RewriterConfig.ON
    assert fusion.enabled(config)
    for off in ("0", "off", "false", "No"):
        monkeypatch.setenv("TENSORGRID_FUSION", off)
        assert not fusion.enabled(tg.ConfigProto())
    monkeypatch.setenv("TENSORGRID_FUSION", "1")
    assert fusion.enabled(None)


def test_a_chain_across_workers_fuses_per_worker_and_shows_in_the_trace():
    """W3's shape on the real cluster: blocks alternating between workers, each one fused node."""
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [1], name="x")
        y = x
        for block in range(4):
            with tg.device(f"/job:worker/task:{block % 2}"):
                for _ in range(5):
                    y = y * 1.0001 + 0.5
        want = np.ones(1, np.float32)
        for _ in range(20):
            want = want * np.float32(1.0001) + np.float32(0.5)
        target = _local_cluster().target
        try:
            for remapping in (config_pb2.RewriterConfig.DEFAULT, config_pb2.RewriterConfig.OFF):
                config = tg.ConfigProto()
                config.graph_options.rewrite_options.remapping = remapping
                with tg.Session(target, graph=g, config=config) as sess:
                    meta = tg.RunMetadata()
                    got = sess.run(y, {x: np.ones(1, np.float32)},
                                   options=tg.RunOptions(trace_level=tg.RunOptions.FULL_TRACE), run_metadata=meta)
                    np.testing.assert_array_equal(got, want)
                    ops = [n.op for p in meta.partition_graphs for n in p.node]
                    assert ops.count("_FusedElementwise") == (4 if remapping != config_pb2.RewriterConfig.OFF else 0)
        finally:
            tg.Session.reset(target)
