"""`for x in dataset:` inside a tg.function (client/data/loops.py): the loop becomes one Dataset.reduce,
each call walks the whole dataset, side effects run per element, a training loop with a GradientTape
gives TF's numbers, and loops that cannot be converted say why."""

import numpy as np
import pytest

import tensorgrid as tg

X = np.linspace(0, 1, 20).astype(np.float32)
Y = 3 * X + 1


def test_a_loop_over_a_dataset_carries_tensors_and_python_numbers():
    ds = tg.data.Dataset.range(5).map(lambda v: (v, v + 1))
    w = tg.Variable(0.0)

    @tg.function
    def f(ds):
        total = tg.constant(0, tg.int64)
        n = 0
        for x, y in ds:
            total += x * y
            n += 1
        w.assign_add(tg.cast(total, tg.float32))
        return total, n

    for calls in (1, 2):
        total, n = f(ds)
        assert (int(total), int(n), float(w.numpy())) == (40, 5, 40.0 * calls)
    assert f.experimental_get_tracing_count() == 1


def test_a_dataset_made_inside_the_function_and_nested_loops():
    @tg.function
    def f(n):
        total = tg.constant(0, tg.int64)
        for x in tg.data.Dataset.range(n).map(lambda v: v * 2):
            for y in tg.data.Dataset.range(3):
                total += x * y
        return total

    assert int(f(tg.constant(4, tg.int64))) == sum(2 * x * y for x in range(4) for y in range(3))
    assert int(f(tg.constant(2, tg.int64))) == sum(2 * x * y for x in range(2) for y in range(3))


def test_side_effects_in_the_body_run_once_per_element_and_python_loops_stay_python():
    v = tg.Variable(0.0)

    @tg.function
    def f(ds):
        for x in ds:
            v.assign_add(tg.cast(x, tg.float32))
            for _ in range(2):      # a Python loop in the body stays a Python loop (unrolled)
                v.assign_add(1.0)
        return v.read_value()

    assert float(f(tg.data.Dataset.range(4))) == 0 + 1 + 2 + 3 + 4 * 2
    assert float(f(tg.data.Dataset.range(4).filter(lambda x: x > 1))) == 14 + 2 + 3 + 2 * 2


def test_a_training_loop_in_a_function_matches_tf():
    tf = pytest.importorskip("tensorflow")

    def run(m):
        w, b = m.Variable(0.0), m.Variable(0.0)
        ds = m.data.Dataset.from_tensor_slices((X, Y)).batch(5)

        @m.function
        def epoch(ds):
            total = 0.0
            for xb, yb in ds:
                with m.GradientTape() as tape:
                    loss = m.reduce_mean((w * xb + b - yb) ** 2)
                gw, gb = tape.gradient(loss, [w, b])
                w.assign_sub(0.5 * gw)
                b.assign_sub(0.5 * gb)
                total += loss
            return total
        return [(float(epoch(ds)), float(w.numpy()), float(b.numpy())) for _ in range(3)]

    np.testing.assert_allclose(run(tg), run(tf), rtol=1e-5)


def test_an_optimizer_making_its_slots_inside_the_loop_matches_tf():
    tf = pytest.importorskip("tensorflow")

    def run(m):
        w, b = m.Variable(0.0), m.Variable(0.0)
        opt = m.optimizers.Adam(0.1)

        @m.function
        def epoch(ds):
            total = 0.0
            for xb, yb in ds:
                with m.GradientTape() as tape:
                    loss = m.reduce_mean((w * xb + b - yb) ** 2)
                opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
                total += loss
            return total
        ds = m.data.Dataset.from_tensor_slices((X, Y)).batch(5)
        return [(float(epoch(ds)), float(w.numpy()), float(b.numpy())) for _ in range(3)]

    np.testing.assert_allclose(run(tg), run(tf), rtol=1e-5)


def test_a_method_and_a_closure_are_converted():
    scale = tg.constant(10, tg.int64)

    class Model:
        def __init__(self):
            self.seen = tg.Variable(0, dtype=tg.int64)

        @tg.function
        def count(self, ds):
            for x in ds:
                self.seen.assign_add(x * scale)
            return self.seen.read_value()

    m = Model()
    assert int(m.count(tg.data.Dataset.range(3))) == 30
    assert int(m.count(tg.data.Dataset.range(3))) == 60


def _helper(ds):
    total = tg.constant(0, tg.int64)
    for x in ds:
        total += x
    return total


@pytest.mark.parametrize("case", ["helper", "break", "python_value"])
def test_loops_that_cannot_be_converted_say_why(case):
    if case == "helper":
        f = tg.function(lambda ds: _helper(ds))
        message = "not in a function it calls"
    elif case == "break":
        def body(ds):
            for x in ds:
                if True:
                    break
            return tg.constant(0)
        f, message = tg.function(body), "break, continue or return"
    else:
        def body(ds):
            seen = []
            for x in ds:
                seen = [x]
            return seen[0]
        f, message = tg.function(body), "'seen' holds a Python value"
    with pytest.raises((RuntimeError, ValueError), match=message):
        f(tg.data.Dataset.range(3))


def test_eager_and_tf1_iteration_are_unchanged():
    ds = tg.data.Dataset.range(3)
    assert [int(x) for x in ds] == [0, 1, 2]
