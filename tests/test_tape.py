"""GradientTape (client/tape.py): eagerly, inside tg.function, in TF1 graph mode, against TensorFlow."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1

RNG = np.random.RandomState(3)
X = RNG.randn(16, 3).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.25).astype(np.float32)
W0 = RNG.randn(3, 1).astype(np.float32)


def test_tape_inside_a_function_trains_a_variable_without_retracing():
    v = tg.Variable([1.0, 2.0])

    @tg.function
    def step(x):
        with tg.GradientTape() as t:
            y = tg.reduce_sum(v * x)
        g = t.gradient(y, v)
        v.assign_sub(0.1 * g)
        return y

    ys = [float(step(tg.constant([3.0, 4.0]))) for _ in range(3)]
    np.testing.assert_allclose(ys, [11.0, 8.5, 6.0], rtol=1e-6)
    np.testing.assert_allclose(v.numpy(), [1.0 - 0.9, 2.0 - 1.2], rtol=1e-6)
    assert step._trace_count == 1


def _train_loop(m, steps=5, lr=0.1):
    """A linear model trained with a tape and assign_sub inside m.function (tensorgrid or TensorFlow)."""
    w = m.Variable(W0)
    b = m.Variable(np.zeros([1], np.float32))

    @m.function
    def step(x, y):
        with m.GradientTape() as tape:
            loss = m.reduce_mean(m.square(m.matmul(x, w) + b - y))
        gw, gb = tape.gradient(loss, [w, b])
        w.assign_sub(lr * gw)
        b.assign_sub(lr * gb)
        return loss
    losses = [step(m.constant(X), m.constant(Y)).numpy() for _ in range(steps)]
    return losses, w.numpy(), b.numpy(), step.experimental_get_tracing_count()


def test_training_loop_in_a_function_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    got, want = _train_loop(tg), _train_loop(tf)
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert got[3] == want[3] == 1


def _momentum_in_function(m, optimizer):
    w = m.Variable(W0)

    @m.function
    def step(x, y):
        with m.GradientTape() as tape:
            loss = m.reduce_mean(m.square(m.matmul(x, w) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        return loss
    return [step(m.constant(X), m.constant(Y)).numpy() for _ in range(4)], w.numpy()


def test_tf1_optimizer_slots_made_in_a_function_persist_across_calls():
    tf = pytest.importorskip("tensorflow")
    got = _momentum_in_function(tg, tg.train.MomentumOptimizer(0.05, 0.9))
    want = _momentum_in_function(tf, tf.compat.v1.train.MomentumOptimizer(0.05, 0.9))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)


def test_only_watched_tensors_and_trainable_variables_get_gradients():
    x = tg.constant(3.0)
    frozen = tg.Variable(2.0, trainable=False)
    with tg.GradientTape() as t:
        y = x * x * frozen
    assert t.gradient(y, [x, frozen]) == [None, None]

    @tg.function
    def f(x):
        with tg.GradientTape(persistent=True) as t:
            y = x * x * frozen
        none = t.gradient(y, [x, frozen])
        with tg.GradientTape() as t:
            t.watch([x, frozen])
            y = x * x * frozen
        return none, t.gradient(y, [x, frozen])
    none, grads = f(x)
    assert none == [None, None]
    np.testing.assert_allclose([g.numpy() for g in grads], [12.0, 9.0])


def test_watch_accessed_variables_off_and_watched_variables():
    v, w = tg.Variable(2.0), tg.Variable(5.0)

    @tg.function
    def f():
        with tg.GradientTape(watch_accessed_variables=False) as t:
            t.watch(w)
            y = v * w
        return t.gradient(y, [v, w]), [x.name for x in t.watched_variables()]
    grads, watched = f()
    assert grads[0] is None and grads[1].numpy() == 2.0
    assert len(watched) == 1
    with tg.GradientTape() as t:
        _ = w * v
    assert t.watched_variables() == [w, v]


def test_stop_recording_persistent_and_unconnected_gradients():
    v = tg.Variable([1.0, 2.0])

    @tg.function
    def f(x):
        with tg.GradientTape(persistent=True) as t:
            y = tg.reduce_sum(v * x)
            with t.stop_recording():
                z = y * 2.0
            u = y * 3.0
        return t.gradient(y, v), t.gradient(u, v), t.gradient(z, v), t.gradient(z, v, unconnected_gradients="zero")
    gy, gu, gz, gz0 = f(tg.constant([3.0, 4.0]))
    np.testing.assert_allclose(gy.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(gu.numpy(), [9.0, 12.0])
    assert gz is None
    np.testing.assert_array_equal(gz0.numpy(), [0.0, 0.0])
    with tg.GradientTape() as t:
        y = tg.reduce_sum(v * v)
    t.gradient(y, v)
    with pytest.raises(RuntimeError, match="non-persistent"):
        t.gradient(y, v)


def test_nested_structures_of_sources_and_targets():
    a, b = tg.Variable([1.0, 2.0]), tg.Variable(3.0)

    @tg.function
    def f(x):
        with tg.GradientTape() as t:
            y = {"p": tg.reduce_sum(a * x), "q": [b * b]}
        return t.gradient(y, {"vars": [a, b], "pair": (b,)})
    got = f(tg.constant([5.0, 6.0]))
    assert set(got) == {"vars", "pair"} and isinstance(got["pair"], tuple)
    np.testing.assert_allclose(got["vars"][0].numpy(), [5.0, 6.0])
    assert got["vars"][1].numpy() == got["pair"][0].numpy() == 6.0


def _second_derivative(m, x0):
    x = m.constant(x0)
    with m.GradientTape() as outer:
        outer.watch(x)
        with m.GradientTape() as inner:
            inner.watch(x)
            y = m.reduce_sum(m.sin(x) * x ** 3)
        dy = inner.gradient(y, x)
    return dy, outer.gradient(dy, x)


def test_nested_tapes_give_second_derivatives_eagerly_and_in_a_function():
    tf = pytest.importorskip("tensorflow")
    x0 = np.array([0.5, -1.0, 2.0], np.float32)
    want = [t.numpy() for t in _second_derivative(tf, x0)]
    eager = [t.numpy() for t in _second_derivative(tg, x0)]
    traced = [t.numpy() for t in tg.function(lambda: _second_derivative(tg, x0))()]
    for got in (eager, traced):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5)


def _jacobians(m, x0):
    x = m.constant(x0)
    w = m.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
    with m.GradientTape(persistent=True) as t:
        t.watch(x)
        y = m.tanh(m.matmul(x, w))
    return t.jacobian(y, x), t.batch_jacobian(y, x)


def test_jacobian_and_batch_jacobian_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    x0 = (RNG.randn(4, 3) * 0.3).astype(np.float32)
    want = [t.numpy() for t in _jacobians(tf, x0)]
    for got in (_jacobians(tg, x0), tg.function(lambda: _jacobians(tg, x0))()):
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-6)


def test_variables_made_in_a_function_follow_tf2s_rules():
    class Model:
        v = None

        @tg.function
        def __call__(self, x):
            if self.v is None:
                self.v = tg.Variable(1.0)
            return self.v + x
    m = Model()
    assert m(tg.constant(1.0)).numpy() == 2.0
    assert m(tg.constant(2.0)).numpy() == 3.0
    # the first call traces twice (the second trace must find the variables made), as TF2 does
    assert Model.__call__.__get__(m)._trace_count == 2
    assert m(tg.constant([2.0])).numpy().tolist() == [3.0]

    @tg.function
    def every_call(x):
        return tg.Variable(1.0) + x
    with pytest.raises(ValueError, match="singleton"):
        every_call(tg.constant(1.0))

    made = []

    @tg.function
    def on_a_new_signature(x):
        if x.shape.rank == 1:
            made.append(tg.Variable(1.0))
        return x * 2.0
    on_a_new_signature(tg.constant(1.0))
    with pytest.raises(ValueError, match="non-first call"):
        on_a_new_signature(tg.constant([1.0]))


def test_a_method_function_traces_once_per_instance():
    class Layer:
        def __init__(self):
            self.w = tg.Variable(2.0)

        @tg.function
        def __call__(self, x):
            return self.w * x
    a, b = Layer(), Layer()
    for _ in range(3):
        a(tg.constant(1.0))
    b(tg.constant(1.0))
    assert Layer.__call__.__get__(a)._trace_count == 1
    assert Layer.__call__.__get__(b)._trace_count == 1


def test_tape_in_tf1_graph_mode():
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, 2.0])
        x = v1.placeholder(tg.float32, [2])
        with tg.GradientTape() as t:
            y = tg.reduce_sum(v * v * x)
        grads = t.gradient(y, [v, x])
        assert grads[1] is None
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            np.testing.assert_allclose(sess.run(grads[0], {x: [3.0, 4.0]}), [6.0, 16.0])


def _tape_around_a_function(m):
    w = m.Variable([[1.0], [2.0]])
    emb = m.Variable(np.arange(8, dtype=np.float32).reshape(4, 2))
    frozen = m.Variable(3.0, trainable=False)

    @m.function
    def forward(x, ids):
        return m.matmul(x, w) * frozen + m.reduce_sum(m.gather(emb, ids)), m.shape(x)
    x = m.constant([[1.0, -1.0], [0.5, 2.0]])
    with m.GradientTape() as tape:
        tape.watch(x)
        y, _ = forward(x, m.constant([1, 1, 3]))
        loss = m.reduce_sum(y * y)
    grads = tape.gradient(loss, [x, w, emb, frozen])
    return [None if g is None else m.convert_to_tensor(g).numpy() for g in grads], len(tape.watched_variables())


def test_a_tape_around_a_function_call_differentiates_through_it_as_tensorflow():
    tf = pytest.importorskip("tensorflow")
    (got, watched), (want, tf_watched) = _tape_around_a_function(tg), _tape_around_a_function(tf)
    assert watched == tf_watched == 2 and got[3] is None and want[3] is None
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, rtol=1e-6)
