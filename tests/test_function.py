"""Eager mode by default, tg.function tracing and retracing, and compat.v1's mode switches."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf
from tensorgrid.client import context


def test_eager_is_the_default_and_ops_run_at_once():
    assert tg.executing_eagerly()
    out = tg.constant([1.0, 2.0]) * 3.0
    np.testing.assert_array_equal(out.numpy(), [3.0, 6.0])


def test_disable_eager_execution_switches_to_graph_mode():
    tf.disable_eager_execution()
    assert not tg.executing_eagerly()
    t = tf.constant(1.0)
    assert isinstance(t, tg.Tensor) and t.graph is tf.get_default_graph()
    tf.enable_eager_execution()
    assert tg.executing_eagerly()


def test_disable_v2_behavior_is_graph_mode():
    tf.disable_v2_behavior()
    assert not tg.executing_eagerly()


def test_function_traces_once_per_signature_and_retraces_on_a_new_one():
    @tg.function
    def f(x, scale):
        return x * scale + 1.0

    a = f(tg.constant([1.0, 2.0]), 2.0)
    b = f(tg.constant([3.0, 4.0]), 2.0)
    assert f.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(a.numpy(), [3.0, 5.0])
    np.testing.assert_array_equal(b.numpy(), [7.0, 9.0])
    f(tg.constant([1.0, 2.0, 3.0]), 2.0)          # new shape
    assert f.experimental_get_tracing_count() == 2
    f(tg.constant([1.0, 2.0]), 3.0)               # new Python value
    assert f.experimental_get_tracing_count() == 3
    f(tg.constant([1, 2]), 3)                     # new dtype
    assert f.experimental_get_tracing_count() == 4


def test_get_concrete_function_gives_the_traced_graph():
    @tg.function
    def f(x):
        return tg.nn.relu(x)

    cf = f.get_concrete_function(tg.constant([1.0, -1.0]))
    assert any(op.type == "Relu" for op in cf.graph.get_operations())
    np.testing.assert_array_equal(cf(tg.constant([2.0, -3.0])).numpy(), [2.0, 0.0])


def test_function_keeps_python_structure_of_outputs():
    @tg.function
    def f(x):
        return {"double": x * 2.0, "pair": (x, x + 1.0), "note": "hi"}

    out = f(tg.constant(1.0))
    assert out["note"] == "hi"
    assert float(out["double"]) == 2.0 and float(out["pair"][1]) == 2.0


def test_stateful_ops_in_a_function_run_in_program_order():
    v = tg.Variable(1.0)

    @tg.function
    def bump():
        v.assign_add(1.0)
        v.assign(v.read_value() * 10.0)
        return v.read_value()

    assert float(bump()) == 20.0
    assert float(bump()) == 210.0


def test_function_called_while_building_a_graph_inlines_its_ops():
    @tg.function
    def f(x):
        return x * 2.0

    g = tg.Graph()
    with g.as_default():
        y = f(tf.constant(3.0))
        with tf.Session() as sess:
            assert sess.run(y) == 6.0


def test_gradient_tape_matches_symbolic_gradients():
    x = tg.constant([0.5, -1.0, 2.0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.reduce_sum(tg.tanh(x) * x)
    grad = tape.gradient(y, x)
    want = np.tanh(x.numpy()) + x.numpy() * (1 - np.tanh(x.numpy()) ** 2)
    np.testing.assert_allclose(grad.numpy(), want, rtol=1e-6)


def test_eager_errors_are_tensorgrid_errors():
    with pytest.raises((tg.errors.InvalidArgumentError, ValueError)):
        tg.matmul(tg.constant(np.ones((2, 3))), tg.constant(np.ones((4, 5))))
    assert context.executing_eagerly()


def test_function_of_no_outputs_runs_as_in_tf():
    """multigpu_training's average_gradients of empty gradient lists: a tg.function with nothing to
    compute returns [] (its step has no partitions to run), as TF's does."""
    @tg.function
    def average(tower_grads):
        return [tg.reduce_mean(tg.stack(g), 0) for g in zip(*tower_grads)]
    assert average([[], []]) == []
    np.testing.assert_array_equal(average([[tg.ones([2])], [tg.zeros([2])]])[0].numpy(), [0.5, 0.5])
