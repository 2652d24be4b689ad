"""Variables: creation, initialization, reads and writes, collections, get_variable, eager use, gradients."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tests.conftest import run_with

v1 = tg.compat.v1


def _session(graph, devices=1):
    return tg.Session(graph=graph, config=tg.ConfigProto(device_count={"CPU": devices}))


# ---- graph mode -----------------------------------------------------------------------------------

def test_graph_variable_is_built_like_tf1():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, 2.0], name="v")
        w = tg.Variable(lambda: tg.zeros([3]), name="v")
        with tg.name_scope("layer"):
            u = tg.Variable(1, name="u")
        assert v.value().name == "v/read:0"
    assert (v.name, w.name, u.name) == ("v:0", "v_1:0", "layer/u:0")
    assert v.op.type == "VarHandleOp" and v.op.name == "v"
    assert v.initializer.name == "v/Assign" and v.initializer.type == "AssignVariableOp"
    assert v.dtype == tg.float32 and u.dtype == tg.int32 and v.shape.as_list() == [2]
    assert v.get_shape().as_list() == [2] and v.graph is g
    assert w.initial_value.op.name.startswith("v_1/Initializer/")


@pytest.mark.parametrize("value, dtype, expect", [
    (1.5, None, tg.float32), (3, None, tg.int32), (np.zeros(2), None, tg.float64),
    (np.zeros(2, np.int64), None, tg.int64), (1, tg.float64, tg.float64), ([True, False], None, tg.bool),
])
def test_variable_dtypes(value, dtype, expect):
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(value, dtype=dtype)
        with tg.Session(graph=g) as sess:
            sess.run(v.initializer)
            got = sess.run(v)
    assert v.dtype == expect
    assert np.asarray(got).dtype == expect.as_numpy_dtype
    np.testing.assert_array_equal(got, np.asarray(value, dtype=expect.as_numpy_dtype))


def test_assign_ops_return_the_new_value():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, 2.0])
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            np.testing.assert_array_equal(sess.run(v.assign([3.0, 4.0])), [3.0, 4.0])
            np.testing.assert_array_equal(sess.run(v.assign_add([1.0, 1.0])), [4.0, 5.0])
            np.testing.assert_array_equal(sess.run(v.assign_sub([2.0, 2.0])), [2.0, 3.0])
            op = v.assign([0.0, 0.0], read_value=False)
            assert isinstance(op, tg.Operation)
            assert sess.run(op) is None
            np.testing.assert_array_equal(sess.run(v), [0.0, 0.0])
            np.testing.assert_array_equal(sess.run(v1.assign_add(v, [5.0, 5.0])), [5.0, 5.0])


def test_reading_an_uninitialized_variable_names_it():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(np.ones(3, np.float32), name="my_weights")
        y = v * 2.0
        with tg.Session(graph=g) as sess:
            with pytest.raises(errors.FailedPreconditionError, match="my_weights"):
                sess.run(y)
            assert sess.run(v1.is_variable_initialized(v)) == False  # noqa: E712 - a numpy bool
            np.testing.assert_array_equal(sess.run(tg.report_uninitialized_variables()), [b"my_weights"])
            sess.run(v.initializer)
            assert sess.run(v1.is_variable_initialized(v)) == True  # noqa: E712
            assert sess.run(tg.report_uninitialized_variables()).shape == (0,)
            np.testing.assert_array_equal(sess.run(y), [2.0, 2.0, 2.0])


def test_report_uninitialized_lists_only_the_missing_ones():
    g = tg.Graph()
    with g.as_default():
        tg.Variable(1.0, name="a")
        b, c = tg.Variable(2.0, name="b"), tg.Variable(3.0, name="c")
        with tg.Session(graph=g) as sess:
            sess.run(tg.variables_initializer([b]))
            np.testing.assert_array_equal(sess.run(tg.report_uninitialized_variables()), [b"a", b"c"])
            np.testing.assert_array_equal(sess.run(tg.report_uninitialized_variables([b, c])), [b"c"])


def test_reads_inside_control_dependencies_see_the_assign():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(1.0)
        inc = v.assign_add(10.0)
        with tg.control_dependencies([inc]):
            after = v + 0.0
            fresh = v.read_value()
        with tg.Session(graph=g) as sess:
            sess.run(v.initializer)
            assert sess.run(after) == 11.0
            assert sess.run(fresh) == 21.0
            assert sess.run(v) == 21.0


def test_assign_of_a_wrong_shape_fails():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(np.zeros(2, np.float32), name="pair")
        ph = v1.placeholder(tg.float32, None)
        with tg.Session(graph=g) as sess:
            sess.run(v.initializer)
            with pytest.raises(errors.InvalidArgumentError, match="pair"):
                sess.run(v.assign(ph), {ph: np.zeros(3, np.float32)})


def test_validate_shape_false_allows_changing_the_shape():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(np.zeros(2, np.float32), validate_shape=False)
        ph = v1.placeholder(tg.float32, None)
        assert v.shape.ndims is None
        with tg.Session(graph=g) as sess:
            sess.run(v.initializer)
            sess.run(v.assign(ph), {ph: np.ones(3, np.float32)})
            np.testing.assert_array_equal(sess.run(v), np.ones(3))


def test_load_eval_and_feeding_a_variable():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, 2.0])
        y = v * 3.0
        with tg.Session(graph=g) as sess:
            sess.run(v.initializer)
            v.load([5.0, 6.0])
            np.testing.assert_array_equal(v.eval(), [5.0, 6.0])
            np.testing.assert_array_equal(v.eval(session=sess), [5.0, 6.0])
            np.testing.assert_array_equal(sess.run(y, {v: [1.0, 1.0]}), [3.0, 3.0])
            np.testing.assert_array_equal(sess.run(y), [15.0, 18.0])


def test_initial_value_from_another_variable():
    g = tg.Graph()
    with g.as_default():
        a = tg.Variable(2.0)
        b = tg.Variable(a * 5.0)
        with tg.Session(graph=g) as sess:
            sess.run(a.initializer)
            sess.run(b.initializer)
            assert sess.run(b) == 10.0


def test_the_graph_grows_after_the_session_starts():
    g = tg.Graph()
    with g.as_default():
        a = tg.Variable(1.0, name="a")
        with tg.Session(graph=g) as sess:
            sess.run(a.initializer)
            sess.run(a.assign_add(1.0))
            b = tg.Variable(a * 10.0, name="b")
            total = a + b
            sess.run(b.initializer)
            assert sess.run(total) == 22.0
            assert sess.run(a) == 2.0


def test_variables_on_four_devices():
    g = tg.Graph()
    with g.as_default():
        vs = []
        for i in range(4):
            with tg.device(f"/cpu:{i}"):
                vs.append(tg.Variable(np.full(3, i + 1.0, np.float32), name=f"v{i}"))
        with tg.device("/cpu:3"):
            total = tg.add_n([v * 2.0 for v in vs])
        bumps = [v.assign_add(np.ones(3, np.float32)) for v in vs]
        with _session(g, 4) as sess:
            sess.run(tg.global_variables_initializer())
            np.testing.assert_array_equal(sess.run(total), np.full(3, 20.0))
            sess.run(bumps)
            options, meta = tg.RunOptions(trace_level=tg.RunOptions.FULL_TRACE), tg.RunMetadata()
            np.testing.assert_array_equal(sess.run(total, options=options, run_metadata=meta), np.full(3, 28.0))
    for i, v in enumerate(vs):
        assert v.device.endswith(f"CPU:{i}")
    devices = {}
    for part in meta.partition_graphs:
        for node in part.node:
            devices[node.name] = node.device
    for i in range(4):
        assert devices[f"v{i}"].endswith(f"CPU:{i}")
        assert devices[f"v{i}/read"] == devices[f"v{i}"]


def test_reads_and_assigns_are_colocated_with_the_handle():
    g = tg.Graph()
    with g.as_default():
        with tg.device("/cpu:1"):
            v = tg.Variable(1.0)
        with tg.device("/cpu:2"):
            y = v.assign_add(1.0)
            with tg.control_dependencies([y]):
                r = v.read_value()
        assert v.device == y.op.device == r.op.device == v.value().op.device
    assert v.device.endswith("CPU:1")


def test_executors_assign_then_read(executor):
    made = []

    def fn(x):
        if not made:  # a tg.function may create variables on its first trace only, as in TF2
            made.append(tg.Variable(lambda: tg.zeros([3])))
        v = made[0]
        with tg.control_dependencies([v.assign(x)]):
            return v.read_value() * 2.0
    x = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(run_with(executor, fn, x), x * 2)


# ---- collections ----------------------------------------------------------------------------------

def test_collections():
    g = tg.Graph()
    with g.as_default():
        a = tg.Variable(1.0, name="a")
        b = tg.Variable(2.0, name="b", trainable=False)
        with tg.name_scope("scope"):
            c = tg.Variable(3.0, name="c")
        d = tg.Variable(4.0, name="d", trainable=False, collections=[v1.GraphKeys.LOCAL_VARIABLES])
        assert tg.global_variables() == [a, b, c]
        assert tg.trainable_variables() == [a, c]
        assert tg.global_variables("scope") == [c]
        assert v1.local_variables() == [d]
        assert not b.trainable
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            sess.run(v1.local_variables_initializer())
            assert sess.run([a, b, c, d]) == [1.0, 2.0, 3.0, 4.0]


def test_initializer_of_no_variables_is_a_no_op():
    g = tg.Graph()
    with g.as_default():
        init = tg.global_variables_initializer()
        with tg.Session(graph=g) as sess:
            assert sess.run(init) is None


# ---- get_variable and variable scopes -------------------------------------------------------------

def test_get_variable_and_reuse():
    g = tg.Graph()
    with g.as_default():
        with v1.variable_scope("layer"):
            w = v1.get_variable("w", [2, 3])
        with v1.variable_scope("layer", reuse=True):
            assert v1.get_variable("w", [2, 3]) is w
        with v1.variable_scope("layer") as scope:
            scope.reuse_variables()
            assert v1.get_variable("w") is w
        with v1.variable_scope("layer", reuse=v1.AUTO_REUSE):
            assert v1.get_variable("w", [2, 3]) is w
            fresh = v1.get_variable("b", [3], initializer=v1.zeros_initializer())
        assert w.name == "layer/w:0" and fresh.name == "layer/b:0"
        with pytest.raises(ValueError, match="Variable layer/w already exists, disallowed"):
            with v1.variable_scope("layer"):
                v1.get_variable("w", [2, 3])
        with pytest.raises(ValueError, match="Variable layer/missing does not exist"):
            with v1.variable_scope("layer", reuse=True):
                v1.get_variable("missing", [1])
        with pytest.raises(ValueError, match="Trying to share variable layer/w"):
            with v1.variable_scope("layer", reuse=True):
                v1.get_variable("w", [4])


def test_variable_scope_names_nest_and_ignore_name_scopes():
    g = tg.Graph()
    with g.as_default():
        with v1.variable_scope("outer"):
            with tg.name_scope("ignored"):
                with v1.variable_scope("inner") as scope:
                    v = v1.get_variable("v", [1])
                    assert v1.get_variable_scope() is scope
                    op = tg.constant(1.0, name="c")
        with v1.variable_scope(None, default_name="dense"):
            d0 = v1.get_variable("kernel", [1])
        with v1.variable_scope(None, default_name="dense"):
            d1 = v1.get_variable("kernel", [1])
        with v1.variable_scope(scope, reuse=True):
            assert v1.get_variable("v", [1]) is v
    assert v.name == "outer/inner/v:0"
    assert op.name == "outer/ignored/inner/c:0"
    assert (d0.name, d1.name) == ("dense/kernel:0", "dense_1/kernel:0")
    assert scope.name == "outer/inner"


def test_get_variable_initializers_and_defaults():
    g = tg.Graph()
    with g.as_default():
        tg.random.set_random_seed(7)
        w = v1.get_variable("w", [40, 60])
        n = v1.get_variable("n", [2000], initializer=v1.random_normal_initializer(1.0, 2.0))
        t = v1.get_variable("t", [2000], initializer=v1.truncated_normal_initializer(0.0, 1.0))
        u = v1.get_variable("u", [2000], initializer=v1.random_uniform_initializer(-3.0, -1.0))
        c = v1.get_variable("c", [2, 2], initializer=v1.constant_initializer([1.0, 2.0, 3.0, 4.0]))
        k = v1.get_variable("k", [3], dtype=tg.int32)
        o = v1.get_variable("o", [2], initializer=v1.ones_initializer())
        x = v1.get_variable("x", initializer=np.arange(3, dtype=np.float32))
        with v1.variable_scope("s", initializer=v1.constant_initializer(7.0)):
            s = v1.get_variable("s", [2])
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            wv, nv, tv, uv, cv, kv, ov, xv, sv = sess.run([w, n, t, u, c, k, o, x, s])
    limit = np.sqrt(6.0 / (40 + 60))
    assert np.abs(wv).max() <= limit and np.abs(wv).max() > 0.9 * limit
    assert abs(nv.mean() - 1.0) < 0.2 and abs(nv.std() - 2.0) < 0.2
    assert np.abs(tv).max() <= 2.0
    assert uv.min() >= -3.0 and uv.max() < -1.0
    np.testing.assert_array_equal(cv, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(kv, [0, 0, 0])
    assert kv.dtype == np.int32
    np.testing.assert_array_equal(ov, [1.0, 1.0])
    np.testing.assert_array_equal(xv, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(sv, [7.0, 7.0])


def test_get_variable_needs_a_full_shape():
    with tg.Graph().as_default():
        with pytest.raises(ValueError, match="must be fully defined"):
            v1.get_variable("w", [None, 3])


def test_glorot_fans():
    from tensorgrid.client.variables import _compute_fans
    assert _compute_fans([]) == (1, 1)
    assert _compute_fans([5]) == (5, 5)
    assert _compute_fans([3, 4]) == (3, 4)
    assert _compute_fans([2, 2, 3, 4]) == (12, 16)


# ---- eager mode ---------------------------------------------------------------------------------------

def test_eager_variable():
    v = tg.Variable(3.0)
    assert v.numpy() == 3.0 and v.dtype == tg.float32 and v.name == "Variable:0"
    assert v.assign(4.0) is v
    v.assign_add(2.0)
    v.assign_sub(1.0)
    assert v.numpy() == 5.0
    assert (v * 2).numpy() == 10.0
    assert float(np.asarray(v)) == 5.0
    assert v.read_value().numpy() == 5.0
    assert "numpy=" in repr(v)
    w = tg.Variable(lambda: tg.ones([2, 2]), name="w")
    np.testing.assert_array_equal(w.numpy(), np.ones((2, 2)))
    with pytest.raises(ValueError, match="Shape mismatch"):    # TF's eager assign raises ValueError
        w.assign(np.ones(3, np.float32))
    with pytest.raises(errors.InvalidArgumentError):    # and its assign_add the op's error
        w.assign_add(np.ones(3, np.float32))


def test_eager_variables_do_not_share_storage():
    a, b = tg.Variable(1.0, name="same"), tg.Variable(2.0, name="same")
    a.assign(10.0)
    assert (a.numpy(), b.numpy()) == (10.0, 2.0)


def test_gradient_tape_sums_over_every_read():
    v = tg.Variable([1.0, 2.0])
    with tg.GradientTape() as tape:
        y = tg.reduce_sum(v * v) + tg.reduce_sum(v * 3.0)
    np.testing.assert_allclose(tape.gradient(y, v).numpy(), [5.0, 7.0])


def test_function_reads_and_writes_an_eager_variable():
    v = tg.Variable(1.0)

    @tg.function
    def step(x):
        v.assign_add(x)
        return v * 2.0
    assert step(tg.constant(1.0)).numpy() == 4.0
    assert step(tg.constant(1.0)).numpy() == 6.0
    assert v.numpy() == 3.0


def test_variable_made_inside_a_function_is_made_eagerly():
    made = []

    @tg.function
    def f(x):
        if not made:
            made.append(tg.Variable(10.0))
        return made[0] + x
    assert f(tg.constant(1.0)).numpy() == 11.0
    assert f(tg.constant(2.0)).numpy() == 12.0
    assert len(made) == 1 and made[0].numpy() == 10.0

    @tg.function
    def g(x):
        return tg.Variable(x * 2.0)
    with pytest.raises(ValueError, match="made eagerly"):
        g(tg.constant(1.0))


# ---- gradients ------------------------------------------------------------------------------------

def test_gradients_with_respect_to_a_variable_sum_every_read():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, -2.0, 0.5])
        with tg.control_dependencies([tg.no_op()]):
            fresh = v.read_value()
        loss = tg.reduce_sum(v * v) + tg.reduce_sum(tg.sin(fresh))
        (grad,) = tg.gradients(loss, [v])
        assert tg.gradients(tg.constant(1.0) * 2.0, v) == [None]
        with tg.Session(graph=g) as sess:
            sess.run(v.initializer)
            value = sess.run(v)
            np.testing.assert_allclose(sess.run(grad), 2 * value + np.cos(value), rtol=1e-6)
            eps = 1e-3
            numeric = []
            for i in range(3):
                step = np.zeros(3, np.float32)
                step[i] = eps
                v.load(value + step)
                up = sess.run(loss)
                v.load(value - step)
                numeric.append((up - sess.run(loss)) / (2 * eps))
            np.testing.assert_allclose(sess.run(grad, {v: value}), numeric, rtol=1e-2)


def test_variable_errors():
    with pytest.raises(ValueError, match="initial_value must be specified"):
        tg.Variable()
    with tg.Graph().as_default():
        with pytest.raises(ValueError, match="must have a shape specified"):
            tg.Variable(v1.placeholder(tg.float32, [None]))
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable(1.0)
    with pytest.raises(ValueError, match="belongs to a graph"):
        v + 1.0
    with pytest.raises(TypeError, match="not iterable"):
        iter(tg.Variable([1.0]))


def test_tf2_initializers_are_keras_s_and_compat_v1_keeps_tf1_s():
    import tensorgrid.compat.v1 as tf1
    assert tg.initializers.RandomNormal is tg.keras.initializers.RandomNormal
    assert tg.initializers.zeros is tg.keras.initializers.Zeros
    assert tg.initializers.GlorotUniform(seed=1)([3, 4]).shape == (3, 4)
    assert tf1.initializers.glorot_uniform is tf1.glorot_uniform_initializer
