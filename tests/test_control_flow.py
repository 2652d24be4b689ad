"""tg.cond, tg.case, tg.switch_case, tg.while_loop and tg.TensorArray: numbers on every executor
(eagerly, in a graph on one and four devices, in tg.function, after a GraphDef round trip, on a
real local cluster), side effects only in the branch taken, TF's errors, and loops that a step's
deadline stops."""

import collections
import contextlib
import time

import numpy as np
import pytest

import tensorgrid as tg
from conftest import run_with
from gradcheck import check_gradients, numeric_and_symbolic
from tf_reference import tensorflow_v1
from waiting import poll, run_in_thread
from tensorgrid.framework import errors

tf = tg.compat.v1
Pair = collections.namedtuple("Pair", "a b")
X = np.array([1.0, -2.0, 3.0], np.float32)
Y = np.array([0.5, 1.5, -1.0], np.float32)


def _graph_mode():
    tf.disable_eager_execution()
    return tg.Graph()


# ---- numbers on every executor ----------------------------------------------------------------

def test_cond_takes_the_branch_the_predicate_picks(executor):
    def fn(x, y):
        pos = tg.reduce_sum(x) > 0
        return [tg.cond(pos, lambda: x * y, lambda: x - y),
                tg.cond(tg.logical_not(pos), lambda: x * y, lambda: x - y),
                tg.cond(pos, lambda: {"s": x + y, "p": (x, 2.0)}, lambda: {"s": x, "p": (y, 3.0)})]
    got = run_with(executor, fn, X, Y)
    np.testing.assert_allclose(got[0], X * Y)
    np.testing.assert_allclose(got[1], X - Y)
    np.testing.assert_allclose(got[2]["s"], X + Y)
    np.testing.assert_allclose(got[2]["p"][0], X)
    assert float(got[2]["p"][1]) == 2.0


def test_while_loop_counts_and_carries_nested_structures(executor):
    def fn(x, y):
        i, v = tg.while_loop(lambda i, v: i < 5, lambda i, v: (i + 1, v * 1.5 + y), [0, x])
        pair = tg.while_loop(lambda p: tg.reduce_sum(p.a) < 100.0,
                             lambda p: [Pair(p.a * 2.0, p.b + 1)], [Pair(tg.abs(x) + 1.0, tg.constant(0))])
        capped = tg.while_loop(lambda v: True, lambda v: v + y, [x], maximum_iterations=3)
        return [i, v, pair[0].a, pair[0].b, capped]
    i, v, a, b, capped = run_with(executor, fn, X, Y)
    want = X.copy()
    for _ in range(5):
        want = want * 1.5 + Y
    assert int(i) == 5
    np.testing.assert_allclose(v, want, rtol=1e-6)
    steps, start = 0, np.abs(X) + 1
    while start.sum() < 100:
        start, steps = start * 2, steps + 1
    np.testing.assert_allclose(a, start)
    assert int(b) == steps
    np.testing.assert_allclose(capped, X + 3 * Y, rtol=1e-6)


def test_case_and_switch_case_run_one_branch(executor):
    def fn(x, y):
        index = tg.cast(tg.reduce_sum(tg.cast(x > 0, tg.int32)), tg.int32)  # 2
        return [tg.switch_case(index, [lambda: x, lambda: y, lambda: x + y]),
                tg.switch_case(index + 5, [lambda: x, lambda: y]),  # out of range: the last branch
                tg.case([(tg.reduce_sum(x) < 0, lambda: x), (tg.reduce_sum(y) > 0, lambda: y * 2.0)],
                        default=lambda: x * 0.0)]
    got = run_with(executor, fn, X, Y)
    np.testing.assert_allclose(got[0], X + Y)
    np.testing.assert_allclose(got[1], Y)
    np.testing.assert_allclose(got[2], Y * 2)


def test_control_flow_nests_and_captures_through_each_level(executor):
    def fn(x, y):
        def body(i, v):
            v = tg.cond(tg.equal(i % 2, 0), lambda: v + y, lambda: v * 2.0)
            inner = tg.while_loop(lambda j, w: j < i, lambda j, w: (j + 1, w + x), [0, tg.zeros_like(x)])[1]
            return i + 1, v + inner
        return tg.while_loop(lambda i, v: i < 4, body, [0, x])[1]
    got = run_with(executor, fn, X, Y)
    v = X.copy()
    for i in range(4):
        v = v + Y if i % 2 == 0 else v * 2.0
        v = v + i * X
    np.testing.assert_allclose(got, v, rtol=1e-6)


def test_tensor_array_in_a_loop(executor):
    def fn(x, y):
        ta = tg.TensorArray(tg.float32, size=0, dynamic_size=True)
        src = tg.TensorArray(tg.float32, size=3).unstack(tg.stack([x, y, x + y]))

        def body(i, acc):
            return i + 1, acc.write(i, src.read(i) * tg.cast(i + 1, tg.float32))
        _, ta = tg.while_loop(lambda i, acc: i < 3, body, [0, ta])
        return [ta.stack(), ta.size()]
    stacked, size = run_with(executor, fn, X, Y)
    np.testing.assert_allclose(stacked, np.stack([X, 2 * Y, 3 * (X + Y)]))
    assert int(size) == 3


# ---- semantics ----------------------------------------------------------------------------------

def test_only_the_taken_branch_runs_its_side_effects():
    g = _graph_mode()
    with g.as_default():
        v = tf.Variable(0.0, name="v")
        p = tf.placeholder(tg.bool, [], name="p")
        out = tg.cond(p, lambda: v.assign_add(1.0), lambda: v.assign_sub(10.0))
        with tg.Session() as sess:
            sess.run(v.initializer)
            assert sess.run(out, {p: True}) == 1.0
            assert sess.run(out, {p: True}) == 2.0
            assert sess.run(out, {p: False}) == -8.0
            assert sess.run(v) == -8.0


def test_an_operation_returned_by_a_branch_runs_with_it():
    g = _graph_mode()
    with g.as_default():
        v = tf.Variable(0.0, name="v")
        p = tf.placeholder(tg.bool, [], name="p")
        train = tg.cond(p, lambda: v.assign_add(1.0).op, lambda: tf.no_op())
        with tg.Session() as sess:
            sess.run(v.initializer)
            sess.run(train, {p: False})
            assert sess.run(v) == 0.0
            sess.run(train, {p: True})
            assert sess.run(v) == 1.0


def test_dangling_side_effects_run_in_tg_function_only():
    """TF prunes a TF1 graph's branch down to what its results need; in tf.function every
    stateful op runs (automatic control dependencies)."""
    g = _graph_mode()
    with g.as_default():
        v = tf.Variable(0.0, name="v")

        def branch():
            v.assign_add(1.0)
            return tg.constant(0.0)
        out = tg.cond(tf.placeholder_with_default(True, []), branch, lambda: tg.constant(1.0))
        with tg.Session() as sess:
            sess.run(v.initializer)
            sess.run(out)
            assert sess.run(v) == 0.0
    tf.enable_eager_execution()
    w = tg.Variable(0.0)

    @tg.function
    def step(flag):
        def branch():
            w.assign_add(1.0)
            return tg.constant(0.0)
        return tg.cond(flag, branch, lambda: tg.constant(1.0))
    step(tg.constant(True))
    step(tg.constant(False))
    assert float(w.numpy()) == 1.0


def test_variables_made_in_a_body_belong_to_the_outer_graph():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [3], name="x")
        with tf.variable_scope("rnn"):
            def body(i, h):
                with tf.variable_scope("cell"):
                    w = tf.get_variable("kernel", [3], initializer=tf.constant_initializer(2.0))
                return i + 1, h * w
            _, h = tg.while_loop(lambda i, h: i < 3, body, [0, x])
        assert [v.name for v in tf.global_variables()] == ["rnn/cell/kernel:0"]
        assert tf.global_variables()[0].graph is g
        with tg.Session() as sess:
            sess.run(tf.global_variables_initializer())
            np.testing.assert_allclose(sess.run(h, {x: X}), X * 8)


def test_outer_control_dependencies_inside_a_branch_order_the_op():
    g = _graph_mode()
    with g.as_default():
        v = tf.Variable(1.0, name="v")
        bump = v.assign(5.0)

        def branch():
            with tf.control_dependencies([bump]):
                return v.read_value() * 2.0
        out = tg.cond(tf.placeholder_with_default(True, []), branch, lambda: tg.constant(0.0))
        assert bump.op in out.op.inputs[0].op.control_inputs
        with tg.Session() as sess:
            sess.run(v.initializer)
            assert sess.run(out) == 10.0


def test_names_follow_tensorflow():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        c = tg.cond(tf.placeholder(tg.bool, [], name="p"), lambda: x, lambda: x + 1.0)
        i, v = tg.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 2.0), [0, x])
        s = tg.switch_case(tg.constant(0), [lambda: x, lambda: x * 2.0])
    assert (c.name, c.op.inputs[0].op.name, c.op.inputs[0].op.type) == ("cond/Identity:0", "cond", "StatelessIf")
    assert (i.name, v.name) == ("while/Identity_2:0", "while/Identity_3:0")
    assert v.op.inputs[0].op.type == "StatelessWhile"
    assert s.name == "switch_case/indexed_case/Identity:0"
    assert g.get_tensor_by_name("while/Identity_3:0") is v


def test_static_shapes_and_shape_invariants():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        c = tg.cond(tf.placeholder(tg.bool, []), lambda: x, lambda: tg.concat([x, x], 0))
        assert c.shape.as_list() == [None]
        grown = tg.while_loop(lambda a: tg.size(a) < 10, lambda a: tg.concat([a, a], 0), [x],
                              shape_invariants=[tg.TensorShape([None])])
        assert grown.shape.as_list() == [None]
        with tg.Session() as sess:
            assert sess.run(grown, {x: [1.0, 2.0]}).shape == (16,)


def test_eager_control_flow_is_python_control_flow():
    calls = []
    out = tg.cond(tg.constant(False), lambda: calls.append("t") or tg.constant(1.0),
                  lambda: calls.append("f") or tg.constant(2.0))
    assert calls == ["f"] and float(out) == 2.0
    assert float(tg.cond(True, lambda: [tg.constant(3.0)], lambda: [tg.constant(4.0)])) == 3.0  # unpacked
    i, v = tg.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 2.0), [0, tg.constant(1.0)])
    assert int(i) == 3 and float(v) == 8.0
    assert float(tg.while_loop(lambda v: v < 100.0, lambda v: v * 2.0, [tg.constant(1.0)],
                               maximum_iterations=4)) == 16.0
    ta = tg.TensorArray(tg.float32, size=2).write(0, [1.0]).write(1, [2.0])
    np.testing.assert_allclose(ta.stack().numpy(), [[1.0], [2.0]])


def test_tg_function_traces_control_flow_once():
    @tg.function
    def f(x, n):
        return tg.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, v + x), [0, tg.zeros_like(x)])[1]
    np.testing.assert_allclose(f(tg.constant(X), tg.constant(4)).numpy(), 4 * X)
    np.testing.assert_allclose(f(tg.constant(Y), tg.constant(2)).numpy(), 2 * Y)
    assert f.experimental_get_tracing_count() == 1


def test_tensor_array_semantics_are_tensorflow_2s():
    g = _graph_mode()
    with g.as_default():
        ta = tg.TensorArray(tg.float32, size=2, element_shape=[3])
        twice = ta.write(0, X).write(0, Y).read(0)  # a later write replaces an element
        over = ta.write(5, X).read(0)
        once = ta.write(0, X)
        read_twice = [once.read(0), once.read(0)]  # a read leaves it
        unwritten = ta.read(1)
        split = tg.TensorArray(tg.float32, size=2, infer_shape=False).split(tg.constant([1.0, 2.0, 3.0]), [1, 2])
        grown = tg.TensorArray(tg.float32, size=0, dynamic_size=True).write(3, [1.0])
        with tg.Session() as sess:
            np.testing.assert_allclose(sess.run(twice), Y)
            with pytest.raises(errors.InvalidArgumentError, match="not resizeable"):
                sess.run(over)
            for got in sess.run(read_twice):
                np.testing.assert_allclose(got, X)
            np.testing.assert_allclose(sess.run(unwritten), np.zeros(3))
            np.testing.assert_allclose(sess.run(split.read(1)), [2.0, 3.0])
            np.testing.assert_allclose(sess.run(split.concat()), [1.0, 2.0, 3.0])
            assert sess.run(grown.size()) == 4
            np.testing.assert_allclose(sess.run(grown.stack()), [[0.0], [0.0], [0.0], [1.0]])
        with pytest.raises(ValueError, match="Inconsistent shapes"):
            ta.write(1, [1.0, 2.0])


# ---- errors ---------------------------------------------------------------------------------------

def test_bad_branches_and_bodies_are_tensorflows_errors():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        p = tf.placeholder(tg.bool, [], name="p")
        with pytest.raises(TypeError, match="pred must not be a Python bool"):
            tg.cond(True, lambda: x, lambda: x)
        with pytest.raises(TypeError, match="'false_fn' argument required"):
            tg.cond(p, lambda: x)
        with pytest.raises(TypeError, match="'true_fn' must be callable"):
            tg.cond(p, x, lambda: x)
        with pytest.raises(TypeError, match="same number, type, and overall structure"):
            tg.cond(p, lambda: x, lambda: tg.constant([1, 2]))
        with pytest.raises(ValueError, match="same number, type, and overall structure"):
            tg.cond(p, lambda: (x, x), lambda: x)
        with pytest.raises(ValueError, match="enters the loop with shape \\(2,\\), but has shape \\(4,\\)"):
            tg.while_loop(lambda a: tg.size(a) < 10, lambda a: tg.concat([a, a], 0), [x])
        with pytest.raises(TypeError, match="type should remain constant"):
            tg.while_loop(lambda a: tg.reduce_sum(a) < 10, lambda a: tg.cast(a, tg.int32), [x])
        with pytest.raises(ValueError, match="same nested structure"):
            tg.while_loop(lambda a, b: a < 10, lambda a, b: (a,), [1, 2])
        with pytest.raises(TypeError, match="'cond' must be callable"):
            tg.while_loop(1, lambda a: a, [x])
        with pytest.raises(TypeError, match="'parallel_iterations' must be a positive integer"):
            tg.while_loop(lambda a: True, lambda a: a, [x], parallel_iterations=0)
        with pytest.raises(TypeError, match="'branch_index' must be an integer Tensor"):
            tg.switch_case(tg.constant(1.0), [lambda: x])
        with pytest.raises(ValueError, match="contiguous range"):
            tg.switch_case(tg.constant(1), {0: lambda: x, 2: lambda: x})


def test_run_time_errors_name_the_op():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [None], name="x")
        p = tf.placeholder(tg.bool, [None], name="p")
        c = tg.cond(p, lambda: x, lambda: x + 1.0)
        bad = tg.while_loop(lambda v: tg.reduce_sum(v) < 10.0, lambda v: tg.reshape(v, [2]) + 1.0, [x])
        q = tf.placeholder(tg.bool, [], name="q")
        excl = tg.case([(q, lambda: x), (q, lambda: x * 2.0)], default=lambda: x, exclusive=True)
        with tg.Session() as sess:
            with pytest.raises(errors.InvalidArgumentError, match="cond.*must be a scalar"):
                sess.run(c, {x: [1.0], p: [True, False]})
            with pytest.raises(errors.InvalidArgumentError, match="Reshape"):
                sess.run(bad, {x: [1.0, 2.0, 3.0]})
            with pytest.raises(errors.InvalidArgumentError, match="exclusive=True: more than 1 conditions"):
                sess.run(excl, {x: [1.0], q: True})


def test_an_endless_loop_ends_at_the_step_deadline():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [1], name="x")
        forever = tg.while_loop(lambda v: True, lambda v: v + 1.0, [x])
        with tg.Session() as sess:
            start = time.monotonic()
            with pytest.raises(errors.DeadlineExceededError, match="While"):
                sess.run(forever, {x: [0.0]}, options=tg.RunOptions(timeout_in_ms=200))
            assert time.monotonic() - start < 2.0


# ---- gradients ----------------------------------------------------------------------------------

X64 = np.array([0.5, -1.0, 2.0])
Y64 = np.array([1.5, 0.3, -0.7])


def _cond_case(a, b):
    return tg.cond(tg.reduce_sum(a) > 0, lambda: a * b * b, lambda: tg.sin(a) - b) + \
        tg.switch_case(tg.constant(1), [lambda: a, lambda: tg.exp(b) * a, lambda: b])


def _while_case(a, b):
    return tg.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * b + tg.sin(v)), [0, a])[1]


def _nested_case(a, b):
    def body(i, v):
        v = tg.cond(tg.equal(i % 2, 0), lambda: v * b, lambda: tg.tanh(v) + b)
        inner = tg.while_loop(lambda j, w: j < 2, lambda j, w: (j + 1, w * tg.cos(v)), [0, b])[1]
        return i + 1, v + inner
    return tg.while_loop(lambda i, v: i < 3, body, [0, a])[1]


def _tensor_array_case(a, b):
    src = tg.TensorArray(tg.float64, size=3).unstack(tg.stack([a, b, a * b]))

    def body(i, h, out):
        h = tg.tanh(h * src.read(i) + b)
        return i + 1, h, out.write(i, h)
    _, h, out = tg.while_loop(lambda i, h, o: i < 3, body, [0, a, tg.TensorArray(tg.float64, size=3)])
    return out.stack() * 2.0 + h


GRADIENT_CASES = {"cond_case": _cond_case, "while": _while_case, "nested": _nested_case,
                  "tensor_array": _tensor_array_case}
_numeric = {}


def _finite_differences(case):
    if case not in _numeric:
        _numeric[case] = numeric_and_symbolic(GRADIENT_CASES[case], [X64, Y64])
        tg.reset_default_graph()
    return _numeric[case]


def _with_tape_gradients(fn, weights):
    def run(a, b):
        with tg.GradientTape() as tape:
            tape.watch(a)
            tape.watch(b)
            loss = tg.reduce_sum(fn(a, b) * tg.constant(weights))
        return tape.gradient(loss, [a, b])
    return run


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_match_finite_differences_on_every_executor(executor, case):
    symbolic, numeric = _finite_differences(case)
    for s, n in zip(symbolic, numeric):
        np.testing.assert_allclose(s, n, rtol=1e-5, atol=1e-7)
    shape = np.shape(run_with("graph", GRADIENT_CASES[case], X64, Y64))
    weights = np.random.RandomState(0).uniform(0.5, 1.5, shape)  # numeric_and_symbolic's weights
    got = run_with(executor, _with_tape_gradients(GRADIENT_CASES[case], weights), X64, Y64)
    for g, n in zip(got, numeric):
        np.testing.assert_allclose(g, n, rtol=1e-5, atol=1e-7)


def test_gradients_through_maximum_iterations_captures_and_variables():
    check_gradients(lambda a, b: tg.while_loop(lambda v: tg.reduce_sum(v) < 1e6, lambda v: v * b + 1.0, [a],
                                               maximum_iterations=4), X64, Y64)
    check_gradients(lambda a, b: tg.case([(tg.reduce_sum(b) < 0, lambda: a * 2.0)], default=lambda: a * b),
                    X64, Y64)
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        v = tf.Variable([1.0, 2.0], name="v")
        _, h = tg.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, h * v + 1.0), [0, x], maximum_iterations=2)
        out = tg.cond(tg.reduce_sum(h) > 0, lambda: h * v, lambda: h)
        gv, gx = tg.gradients(tg.reduce_sum(out), [v, x])
        stopped = tg.while_loop(lambda h: True, lambda h: h * v, [x], back_prop=False, maximum_iterations=2)
        assert tg.gradients(tg.reduce_sum(stopped), [v, x]) == [None, None]
        with tg.Session() as sess:
            sess.run(v.initializer)
            got_v, got_x = sess.run([gv, gx], {x: [0.5, 0.25]})
    # out = h2 * v with h2 = (x v + 1) v + 1
    xv, vv = np.array([0.5, 0.25]), np.array([1.0, 2.0])
    h2 = (xv * vv + 1) * vv + 1
    np.testing.assert_allclose(got_v, (2 * xv * vv + 1) * vv + h2, rtol=1e-6)
    np.testing.assert_allclose(got_x, vv ** 3, rtol=1e-6)


def test_a_loop_that_ran_before_its_gradient_was_built_trains():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        v = tf.Variable([1.0, 2.0], name="v")
        h = tg.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, h * v), [0, x])[1]
        with tg.Session() as sess:
            sess.run(v.initializer)
            np.testing.assert_allclose(sess.run(h, {x: [1.0, 1.0]}), [1.0, 8.0])
            train = tf.train.GradientDescentOptimizer(0.01).minimize(tg.reduce_sum(h))  # rewrites the loop
            sess.run(train, {x: [1.0, 1.0]})
            np.testing.assert_allclose(sess.run(v), [1.0 - 0.03, 2.0 - 0.12], rtol=1e-6)


def test_tg_function_gradient_tape_through_a_loop_reaches_the_variable():
    w = tg.Variable([1.0, 2.0])

    @tg.function
    def step(x):
        with tg.GradientTape() as tape:
            _, out = tg.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * w + 1.0), [0, x])
            loss = tg.reduce_sum(tg.cond(tg.reduce_sum(out) > 0, lambda: out * w, lambda: out))
        return tape.gradient(loss, w)
    np.testing.assert_allclose(step(tg.constant([0.5, 0.25])).numpy(), [8.0, 25.0], rtol=1e-6)


def test_gradients_of_a_loop_imported_from_a_graph_def():
    g = _graph_mode()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        out = tg.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, tg.sin(h) * 2.0), [0, x])[1]
        c = tg.cond(tf.placeholder_with_default(True, []), lambda: out * out, lambda: out)
    g2 = tg.Graph()
    with g2.as_default():
        tg.import_graph_def(g.as_graph_def().SerializeToString(), name="")
        x2, c2 = g2.get_tensor_by_name(x.name), g2.get_tensor_by_name(c.name)
        grad, = tg.gradients(tg.reduce_sum(c2), [x2])
        with tg.Session() as sess:
            got = sess.run(grad, {x2: [0.5, -0.25]})
    h, d = np.array([0.5, -0.25]), np.ones(2)
    for _ in range(3):
        d, h = d * 2.0 * np.cos(h), np.sin(h) * 2.0
    np.testing.assert_allclose(got, 2 * h * d, rtol=1e-5)


# ---- bodies and branches that span devices ---------------------------------------------------------

W0, W1 = "/job:worker/task:0", "/job:worker/task:1"


def _split_loop(tf_, devs, x, steps):
    """W6's loop: x = x * 1.0001 + 0.5 on devs[0], x = x * 0.9999 on devs[1], every iteration."""
    def body(i, v):
        v = v * 1.0001 + 0.5
        with tg.device(devs[1]):
            v = v * 0.9999
        return i + 1, v
    with tg.device(devs[0]):
        return tg.while_loop(lambda i, v: i < steps, body, [tg.constant(0), x])[1]


def _split_loop_value(x, steps):
    v = np.float32(x)
    for _ in range(steps):
        v = np.float32(np.float32(v * np.float32(1.0001) + np.float32(0.5)) * np.float32(0.9999))
    return v


def _nodes(graph_def):
    """(name, op, attrs) of a GraphDef's nodes and of every node of its library's functions."""
    out = [(n.name, n.op, n.attr) for n in graph_def.node]
    for fn in graph_def.library.function:
        out.extend((n.name, n.op, n.attr) for n in fn.node_def)
    return out


@contextlib.contextmanager
def _two_devices(executor):
    """A session on the real local cluster, or in-process with 4 devices, and the two devices to use."""
    from conftest import _local_cluster
    if executor == "cluster":
        sess, devs = tg.Session(_local_cluster().target), (W0, W1)
    else:
        sess, devs = tg.Session(config=tg.ConfigProto(device_count={"CPU": 4})), ("/cpu:0", "/cpu:2")
    try:
        yield sess, devs
    finally:
        sess.close()
        if executor == "cluster":
            tg.Session.reset(sess.sess_str)  # variables live on the workers across sessions


@pytest.mark.parametrize("executor", ["graph4", "cluster"])
def test_a_loop_body_on_two_devices_runs_one_shard_on_each(executor):
    g = _graph_mode()
    with g.as_default(), _two_devices(executor) as (sess, devs):
        with tg.device(devs[0]):
            x = tf.placeholder(tg.float32, [1], name="x")
            steps = tf.placeholder(tg.int32, [], name="steps")
        y = _split_loop(tf, devs, x, steps)
        meta = tg.RunMetadata()
        got = sess.run(y, {x: [1.0], steps: 50}, options=tg.RunOptions(trace_level=3), run_metadata=meta)
        np.testing.assert_allclose(got, [_split_loop_value(1.0, 50)], rtol=1e-6)
        np.testing.assert_allclose(sess.run(y, {x: [2.0], steps: 0}), [2.0])
        parts = {}
        for part in meta.partition_graphs:
            nodes = _nodes(part)
            shard = [attr for _, op, attr in nodes if op == "_WhileShard"]
            assert len(shard) == 1
            parts["pred" if shard[0]["pred_keys"].list.s else "peer"] = nodes
        assert set(parts) == {"pred", "peer"}
        for role, other in (("pred", "peer"), ("peer", "pred")):
            sends = [a["recv_device"].s for _, op, a in parts[role] if op == "_Send"]
            recvs = [a["send_device"].s for _, op, a in parts[role] if op == "_Recv"]
            assert sends and recvs, role  # each iteration's value crosses both ways
        assert any(op == "Mul" for _, op, _ in parts["peer"])  # x * 0.9999 runs on the other device


@pytest.mark.parametrize("executor", ["graph4", "cluster"])
def test_branches_and_nested_loops_across_devices(executor):
    g = _graph_mode()
    with g.as_default(), _two_devices(executor) as (sess, devs):
        with tg.device(devs[0]):
            x = tf.placeholder(tg.float32, [3], name="x")
            p = tf.placeholder(tg.bool, [], name="p")
        with tg.device(devs[1]):
            far = tg.exp(x)
            v = tf.Variable(tg.zeros([3]), name="counter")

        def then():
            with tg.device(devs[1]):
                return far * x + v.assign_add(tg.ones([3]))

        def body(i, h):
            inner = tg.while_loop(lambda j, w: j < 2, lambda j, w: (j + 1, w * 0.5), [0, h])[1]
            with tg.device(devs[1]):
                h = tg.cond(tg.reduce_sum(inner) > 0, lambda: inner + far, lambda: inner - far)
            return i + 1, h
        with tg.device(devs[0]):
            c = tg.cond(p, then, lambda: x * 2.0)
            loop = tg.while_loop(lambda i, h: i < 3, body, [0, x])[1]
            grad, = tg.gradients(tg.reduce_sum(loop * loop), [x])
        sess.run(v.initializer)
        xv = np.array([0.5, -1.0, 2.0], np.float32)
        got_c, got_loop, got_grad = sess.run([c, loop, grad], {x: xv, p: True})
        np.testing.assert_allclose(got_c, np.exp(xv) * xv + 1.0, rtol=1e-6)
        np.testing.assert_allclose(sess.run(c, {x: xv, p: False}), xv * 2.0)
        np.testing.assert_allclose(sess.run(v), np.ones(3))  # the else branch did not add

        def loop_np(x0):
            h = x0
            for _ in range(3):
                inner = h * 0.25
                h = inner + np.exp(x0) if inner.sum() > 0 else inner - np.exp(x0)
            return h
        x64 = xv.astype(np.float64)
        np.testing.assert_allclose(got_loop, loop_np(x64), rtol=1e-5)
        eye = np.eye(3) * 1e-4
        numeric = [((loop_np(x64 + e) ** 2).sum() - (loop_np(x64 - e) ** 2).sum()) / 2e-4 for e in eye]
        np.testing.assert_allclose(got_grad, numeric, rtol=1e-3)
        meta = tg.RunMetadata()
        sess.run(c, {x: xv, p: True}, options=tg.RunOptions(trace_level=3), run_metadata=meta)
        ops = [op for part in meta.partition_graphs for _, op, _ in _nodes(part)]
        assert ops.count("_CaseShard") == 2 and "AssignAddVariableOp" in ops


def _endless_split_loop(devs):
    with tg.device(devs[0]):
        x = tf.placeholder(tg.float32, [1], name="x")
    y = _split_loop(tf, devs, x, tg.constant(-1))
    forever = tg.while_loop(lambda v: True, lambda v: _split_loop(tf, devs, v, tg.constant(3)), [y])
    return x, forever


def test_an_endless_loop_across_devices_ends_at_the_deadline_and_on_close():
    g = _graph_mode()
    with g.as_default():
        x, forever = _endless_split_loop(("/cpu:0", "/cpu:1"))
        config = tg.ConfigProto(device_count={"CPU": 2})
        with tg.Session(config=config) as sess:
            start = time.monotonic()
            with pytest.raises(errors.DeadlineExceededError):
                sess.run(forever, {x: [0.0]}, options=tg.RunOptions(timeout_in_ms=300))
            assert time.monotonic() - start < 3.0
        sess = tg.Session(config=config)
        t, box = run_in_thread(lambda: sess.run(forever, {x: [0.0]}))
        time.sleep(0.3)  # let the loop spin a while: nothing else tells it has started
        sess.close()
        t.join(5)
        assert not t.is_alive() and isinstance(box.get("error"), errors.CancelledError), box


@pytest.fixture(scope="module")
def failing_cluster():
    from tensorgrid.runtime.cluster import LocalCluster
    with LocalCluster(num_workers=2, heartbeat_timeout=2.0, heartbeat_interval=0.2) as c:
        yield c


def _at_rest(cluster):
    return all(w.active_steps == 0 and w.rendezvous_entries == 0 for w in cluster.status().worker
               if w.health == "alive")


def _running_everywhere(cluster):
    return all(w.active_steps > 0 for w in cluster.status().worker)


def test_an_endless_loop_on_a_cluster_ends_at_the_deadline_on_close_and_when_a_worker_dies(failing_cluster):
    cluster = failing_cluster
    g = _graph_mode()
    with g.as_default():
        x, forever = _endless_split_loop((W0, W1))
        with tg.Session(cluster.target) as sess:
            start = time.monotonic()
            with pytest.raises(errors.DeadlineExceededError):
                sess.run(forever, {x: [0.0]}, options=tg.RunOptions(timeout_in_ms=500))
            assert time.monotonic() - start < 3.0
        poll(lambda: _at_rest(cluster), 10, "every shard to stop after the deadline")

        sess = tg.Session(cluster.target)
        t, box = run_in_thread(lambda: sess.run(forever, {x: [0.0]}))
        poll(lambda: _running_everywhere(cluster), 10, "the loop to run on both workers")
        sess.close()
        t.join(5)
        assert not t.is_alive() and isinstance(box.get("error"), errors.OpError), box
        poll(lambda: _at_rest(cluster), 10, "every shard to stop after the session closed")

        sess = tg.Session(cluster.target)
        t, box = run_in_thread(lambda: sess.run(forever, {x: [0.0]}))
        poll(lambda: _running_everywhere(cluster), 10, "the loop to run on both workers")
        killed = time.monotonic()
        cluster.kill_worker(1)
        t.join(10)
        assert isinstance(box.get("error"), errors.UnavailableError), box
        assert W1 in str(box["error"]) and time.monotonic() - killed < 5.0
        poll(lambda: _at_rest(cluster), 10, "worker 0's shard to stop")
        sess.close()


# ---- against TensorFlow ------------------------------------------------------------------------------

def _newton_program(m, value):
    """Newton's square roots in a while_loop with a cond inside and a TensorArray of the iterates,
    differentiated: the same program for tensorgrid and TensorFlow (`m` is either's compat.v1)."""
    g = m.Graph()
    with g.as_default():
        x = m.placeholder(m.float64, [3], name="x")

        def cond(i, y, seen):
            return m.reduce_max(m.abs(y * y - x)) > 1e-12

        def body(i, y, seen):
            y = 0.5 * (y + x / y)
            y = m.cond(m.reduce_sum(y) > 50.0, lambda: y * 0.75, lambda: y)
            return i + 1, y, seen.write(i, y)
        start = m.TensorArray(m.float64, size=0, dynamic_size=True, element_shape=[3])
        n, y, seen = m.while_loop(cond, body, [0, m.ones_like(x), start], maximum_iterations=12)
        iterates = seen.stack()
        loss = m.reduce_sum(y) + m.reduce_sum(iterates * iterates)
        grad, = m.gradients(loss, [x])
        with m.Session() as sess:
            return sess.run([n, y, iterates, loss, grad], {x: value})


def test_a_while_loop_program_agrees_with_tensorflow():
    tf.disable_eager_execution()
    with tensorflow_v1() as tfm:
        for value in (np.array([2.0, 9.0, 0.25]), np.array([400.0, 30.0, 5.0])):
            ours, theirs = _newton_program(tf, value), _newton_program(tfm, value)
            assert int(ours[0]) == int(theirs[0])
            for a, b in zip(ours[1:], theirs[1:]):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
