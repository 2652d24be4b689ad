"""Tests of tg.random: TF's seeding rules (graph-level and op-level seeds, fresh sessions,
placement), the distributions' statistics, dtypes and errors."""

import numpy as np
import pytest

import tensorgrid as tg
from conftest import run_with
from tensorgrid.client import context



@pytest.fixture(autouse=True)
def _no_global_seed():
    """Every test starts, and leaves eager mode, without a global seed."""
    tg.random.set_seed(None)
    yield
    context.set_eager(True)
    tg.random.set_seed(None)


DRAWS = {
    "normal": lambda **kw: tg.random.normal([2000], **kw),
    "uniform": lambda **kw: tg.random.uniform([2000], **kw),
    "truncated_normal": lambda **kw: tg.random.truncated_normal([2000], **kw),
    "uniform_int": lambda **kw: tg.random.uniform([2000], maxval=1000, dtype=tg.int64, **kw),
    "shuffle": lambda **kw: tg.random.shuffle(tg.range(2000), **kw),
}


def build(make, graph_seed=None, device=None):
    """A graph holding make() (on `device`), with graph-level seed `graph_seed`."""
    g = tg.Graph()
    with g.as_default():
        if graph_seed is not None:
            tg.random.set_random_seed(graph_seed)
        with tg.device(device):
            out = make()
    return g, out


def run_fresh(g, out, runs=1, devices=1):
    """Values of `out` over `runs` runs of one new session."""
    with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": devices})) as sess:
        return [sess.run(out) for _ in range(runs)]


@pytest.mark.parametrize("kind", sorted(DRAWS))
def test_op_seed_repeats_across_fresh_sessions_and_placements(kind):
    g, out = build(lambda: DRAWS[kind](seed=7))
    first = run_fresh(g, out, runs=2)
    again = run_fresh(g, out, runs=2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # the stream goes on within a session
    g3, out3 = build(lambda: DRAWS[kind](seed=7), device="/cpu:3")
    on_cpu3 = run_fresh(g3, out3, devices=4)[0]
    assert out3.op.device.endswith("CPU:3")
    np.testing.assert_array_equal(on_cpu3, first[0])


def test_graph_seed_alone_is_deterministic_and_ops_differ():
    def make():
        return [tg.random.normal([5]), tg.random.normal([5])]
    g1, (a1, b1) = build(make, graph_seed=42)
    g2, (a2, b2) = build(make, graph_seed=42)
    v1, v2 = run_fresh(g1, [a1, b1])[0], run_fresh(g2, [a2, b2])[0]
    np.testing.assert_array_equal(v1[0], v2[0])
    np.testing.assert_array_equal(v1[1], v2[1])
    assert not np.array_equal(v1[0], v1[1])
    g3, (a3, _) = build(make, graph_seed=43)
    assert not np.array_equal(run_fresh(g3, a3)[0], v1[0])


def test_graph_seed_mixes_with_op_seed():
    values = {}
    for graph_seed in (None, 1, 2):
        g, out = build(lambda: tg.random.uniform([4], seed=3), graph_seed=graph_seed)
        values[graph_seed] = run_fresh(g, out)[0]
        assert out.op.inputs[0].op.inputs[0].op.get_attr("seed2") == 3
    assert len({v.tobytes() for v in values.values()}) == 3


def test_unseeded_ops_differ_between_sessions():
    g, out = build(lambda: tg.random.normal([8]))
    assert not np.array_equal(run_fresh(g, out)[0], run_fresh(g, out)[0])


def test_seeded_draws_agree_across_executors(executor):
    got = run_with(executor, lambda x: x + tg.random.uniform([3], seed=11, dtype=tg.float64), np.zeros(3))
    g, out = build(lambda: tg.random.uniform([3], seed=11, dtype=tg.float64))
    np.testing.assert_array_equal(got, run_fresh(g, out)[0])


def test_eager_global_seed_restarts_sequence():
    tg.random.set_seed(5)
    first = [tg.random.normal([3]).numpy(), tg.random.normal([3]).numpy(), tg.random.uniform([2], seed=1).numpy(),
             tg.random.uniform([2], seed=1).numpy()]
    tg.random.set_seed(5)
    again = [tg.random.normal([3]).numpy(), tg.random.normal([3]).numpy(), tg.random.uniform([2], seed=1).numpy(),
             tg.random.uniform([2], seed=1).numpy()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[2], first[3])  # the same op seed continues its stream


def test_function_takes_the_global_seed():
    @tg.function
    def draw():
        return tg.random.normal([4])
    tg.random.set_seed(9)
    first = [draw().numpy(), draw().numpy()]
    assert not np.array_equal(first[0], first[1])

    @tg.function
    def draw_again():
        return tg.random.normal([4])
    np.testing.assert_array_equal(draw_again().numpy(), first[0])


def test_tf1_names_and_graph_mode_set_seed():
    context.set_eager(False)
    tf = tg.random
    tf.set_random_seed(3)
    assert tg.get_default_graph().seed == 3
    ops = [tf.random_normal([2]), tf.random_uniform([2]), tf.truncated_normal([2]), tf.random_shuffle([1, 2, 3])]
    with tg.Session() as sess:
        assert len(sess.run(ops)) == 4


# ---- distributions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [tg.float16, tg.float32, tg.float64], ids=lambda d: d.name)
def test_normal_statistics_and_dtype(dtype):
    x = tg.random.normal([20000], mean=3.0, stddev=2.0, dtype=dtype, seed=1)
    assert x.dtype == dtype
    v = x.numpy().astype(np.float64)
    assert abs(v.mean() - 3) < 0.05 and abs(v.std() - 2) < 0.05


def test_truncated_normal_stays_within_two_stddevs():
    v = tg.random.truncated_normal([20000], mean=1.0, stddev=0.5, seed=2).numpy()
    assert v.dtype == np.float32
    assert np.all(np.abs(v - 1) <= 1.0 + 1e-6)
    assert abs(v.mean() - 1) < 0.02
    assert abs(v.std() - 0.5 * 0.8796) < 0.02  # the std of N(0, 1) cut at +-2


@pytest.mark.parametrize("dtype", [tg.float16, tg.float32, tg.float64], ids=lambda d: d.name)
def test_uniform_range_and_statistics(dtype):
    v = tg.random.uniform([20000], minval=-2, maxval=6, dtype=dtype, seed=3).numpy()
    assert v.dtype == dtype.as_numpy_dtype
    assert v.min() >= -2 and v.max() < 6
    assert abs(v.astype(np.float64).mean() - 2) < 0.1


@pytest.mark.parametrize("dtype", [tg.int32, tg.int64], ids=lambda d: d.name)
def test_uniform_integers(dtype):
    v = tg.random.uniform([5000], minval=-3, maxval=4, dtype=dtype, seed=4).numpy()
    assert v.dtype == dtype.as_numpy_dtype
    assert set(np.unique(v)) == set(range(-3, 4))


def test_uniform_integer_errors():
    with pytest.raises(ValueError, match="maxval"):
        tg.random.uniform([2], dtype=tg.int32)
    with pytest.raises(tg.errors.InvalidArgumentError, match="minval < maxval"):
        tg.random.uniform([2], minval=5, maxval=5, dtype=tg.int32)


def test_shuffle_permutes_rows(executor):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    got = run_with(executor, lambda t: tg.random.shuffle(t, seed=6), x)
    assert not np.array_equal(got, x)
    np.testing.assert_array_equal(got[np.argsort(got[:, 0])], x)


def test_shape_fed_at_run_time():
    g = tg.Graph()
    with g.as_default():
        shape = tg.compat.v1.placeholder(tg.int32, [2])
        x = tg.random.normal(shape, seed=1)
        assert x.shape.as_list() == [None, None]
        with tg.Session(graph=g) as sess:
            assert sess.run(x, {shape: [3, 4]}).shape == (3, 4)


def test_static_shape_and_errors():
    assert tg.random.normal(tg.TensorShape([2, 3])).shape == (2, 3)
    with pytest.raises(ValueError, match="floating"):
        tg.random.random_normal([2], dtype=tg.int32)
    with pytest.raises(ValueError, match="vector"):
        tg.random.normal(tg.constant([[2]]))


def test_random_ops_have_no_gradient():
    g = tg.Graph()
    with g.as_default():
        m = tg.constant(1.0)
        x = tg.random.normal([3], mean=m, seed=1)
        assert tg.gradients(tg.reduce_sum(x), [m])[0] is not None  # through the mean, not the draw
