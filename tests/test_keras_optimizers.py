"""tg.keras.optimizers (and tg.optimizers) against Keras 3 from identical weights and gradients."""

import warnings

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.keras import optimizers
from tensorgrid.client.keras.optimizers import schedules

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

rng = np.random.default_rng(3)
W0 = rng.normal(size=(3, 4)).astype("float32")
B0 = rng.normal(size=(4,)).astype("float32")
GRADS = [(rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")) for _ in range(4)]

CASES = [
    ("SGD", {}), ("SGD", {"momentum": 0.9}), ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adam", {}), ("Adam", {"amsgrad": True, "beta_1": 0.8, "epsilon": 1e-3}), ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.1}), ("RMSprop", {}), ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {}), ("Adagrad", {"initial_accumulator_value": 0.5}),
    ("Adam", {"clipnorm": 0.5}), ("SGD", {"global_clipnorm": 0.5}), ("RMSprop", {"clipvalue": 0.1}),
    ("Adam", {"use_ema": True, "ema_overwrite_frequency": 2}), ("SGD", {"weight_decay": 0.1}),
    ("Adam", {"loss_scale_factor": 4.0}),
]


def _pair(name, kwargs, learning_rate=0.1):
    return (getattr(optimizers, name)(learning_rate=learning_rate, **kwargs),
            getattr(keras.optimizers, name)(learning_rate=learning_rate, **kwargs))


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(k) or 'default'}" for n, k in CASES])
def test_steps_match_keras_eagerly_and_in_tg_function(name, kwargs):
    ours, theirs = _pair(name, kwargs)
    tg_vars = [tg.Variable(W0), tg.Variable(B0)]
    tf_vars = [tf.Variable(W0), tf.Variable(B0)]

    @tg.function
    def step(gw, gb):
        ours.apply_gradients(zip([gw, gb], tg_vars))

    for i, (gw, gb) in enumerate(GRADS):
        theirs.apply_gradients(zip([tf.constant(gw), tf.constant(gb)], tf_vars))
        if i < 2:   # the first steps (which build the optimizer) eagerly, then traced
            ours.apply_gradients(zip([tg.constant(gw), tg.constant(gb)], tg_vars))
        else:
            step(gw, gb)
        for a, b in zip(tg_vars, tf_vars):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert len(ours.variables) == len(theirs.variables)
    for a, b in zip(ours.variables, theirs.variables):
        assert a.name.split(":")[0].split("/")[-1] == b.name
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert int(ours.iterations.numpy()) == 4


def test_built_inside_tg_function_on_its_first_trace():
    ours, theirs = _pair("Adam", {})
    tg_w, tf_w = tg.Variable(W0), tf.Variable(W0)
    x = rng.normal(size=(5, 3)).astype("float32")

    @tg.function
    def train_step(x):
        with tg.GradientTape() as tape:
            loss = tg.reduce_mean(tg.square(tg.matmul(x, tg_w)))
        ours.apply_gradients([(tape.gradient(loss, tg_w), tg_w)])
        return loss

    for _ in range(3):
        loss = train_step(x)
        with tf.GradientTape() as tape:
            tf_loss = tf.reduce_mean(tf.square(tf.matmul(x, tf_w)))
        theirs.apply_gradients([(tape.gradient(tf_loss, tf_w), tf_w)])
        np.testing.assert_allclose(loss.numpy(), tf_loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(tg_w.numpy(), tf_w.numpy(), rtol=1e-5, atol=1e-6)
    # the slots were made once, on the first trace; later calls reuse the traced graph
    assert len(ours.variables) == 4
    calls = train_step.experimental_get_tracing_count()
    train_step(x)
    assert train_step.experimental_get_tracing_count() == calls


@pytest.mark.parametrize("name,kwargs", [("SGD", {}), ("Adagrad", {}), ("SGD", {"momentum": 0.9}), ("Adam", {}),
                                         ("RMSprop", {})])
def test_indexed_slices_gradients_match_keras(name, kwargs):
    ours, theirs = _pair(name, kwargs)
    table = rng.normal(size=(6, 2)).astype("float32")
    tg_table, tf_table = tg.Variable(table), tf.Variable(table)
    ids = np.array([4, 1, 4], dtype="int64")    # a repeated row
    for _ in range(3):
        values = rng.normal(size=(3, 2)).astype("float32")
        ours.apply_gradients([(tg.IndexedSlices(tg.constant(values), tg.constant(ids), tg.constant([6, 2])),
                               tg_table)])
        theirs.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(ids), tf.constant([6, 2])),
                                 tf_table)])
    np.testing.assert_allclose(tg_table.numpy(), tf_table.numpy(), rtol=1e-5, atol=1e-6)
    if name in ("SGD", "Adagrad") and not kwargs:     # sparse updates: untouched rows stay as they were
        untouched = [0, 2, 3, 5]
        np.testing.assert_array_equal(tg_table.numpy()[untouched], table[untouched])


def test_embedding_gradient_through_a_tape_updates_only_its_rows():
    table = tg.Variable(np.ones((5, 3), "float32"))
    opt = optimizers.Adagrad(learning_rate=0.5)

    @tg.function
    def step(ids):
        with tg.GradientTape() as tape:
            loss = tg.reduce_sum(tg.gather(table, ids))
        grad = tape.gradient(loss, table)
        opt.apply_gradients([(grad, table)])
        return grad

    step(np.array([0, 3], "int32"))
    value = table.numpy()
    np.testing.assert_array_equal(value[[1, 2, 4]], 1.0)
    np.testing.assert_allclose(value[[0, 3]], 1 - 0.5 / np.sqrt(1.1 + 1e-7), rtol=1e-6)


SCHEDULES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5, staircase=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.3, staircase=True)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=5, end_learning_rate=0.01, power=2.0)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=3, cycle=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=6, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=6, warmup_target=0.1, warmup_steps=3)),
    ("PiecewiseConstantDecay", dict(boundaries=[2, 5], values=[0.1, 0.05, 0.01])),
]


@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_keras(name, kwargs):
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    for step in range(12):
        np.testing.assert_allclose(ours(tg.constant(step, tg.int64)).numpy(), theirs(step).numpy(), rtol=1e-6,
                                   err_msg=f"step {step}")
    assert ours.get_config() == theirs.get_config()
    again = optimizers.Adam(learning_rate=ours).get_config()["learning_rate"]
    assert again == keras.optimizers.Adam(learning_rate=theirs).get_config()["learning_rate"] | {"module":
                                                                                                   again["module"]}


def test_optimizer_with_a_schedule_reads_its_step():
    kwargs = dict(initial_learning_rate=0.5, decay_steps=1, decay_rate=0.5)
    ours = optimizers.SGD(learning_rate=schedules.ExponentialDecay(**kwargs))
    w = tg.Variable(np.zeros(2, "float32"))

    @tg.function
    def step():
        ours.apply_gradients([(tg.ones([2]), w)])

    for _ in range(3):
        step()
    np.testing.assert_allclose(w.numpy(), -(0.5 + 0.25 + 0.125) * np.ones(2), rtol=1e-6)
    assert len(ours.variables) == 1     # only `iteration`: a schedule is not a variable
    with pytest.raises(TypeError, match="not settable"):
        ours.learning_rate = 0.1


def test_learning_rate_is_settable_and_read_inside_the_traced_step():
    opt = optimizers.SGD(learning_rate=0.1)
    w = tg.Variable(np.zeros(1, "float32"))

    @tg.function
    def step():
        opt.apply_gradients([(tg.ones([1]), w)])

    step()
    opt.learning_rate = 0.5     # what ReduceLROnPlateau does between epochs
    step()
    np.testing.assert_allclose(w.numpy(), [-0.6], rtol=1e-6)
    assert float(opt.learning_rate.numpy()) == 0.5


def test_config_round_trip_get_and_weights():
    opt = optimizers.Adam(learning_rate=0.01, beta_1=0.8, amsgrad=True, name="my_adam")
    config = opt.get_config()
    theirs = keras.optimizers.Adam(learning_rate=0.01, beta_1=0.8, amsgrad=True, name="my_adam").get_config()
    assert config.keys() == theirs.keys()
    assert {k: v for k, v in config.items() if k != "learning_rate"} == \
        {k: v for k, v in theirs.items() if k != "learning_rate"}
    assert config["learning_rate"] == pytest.approx(theirs["learning_rate"])
    again = optimizers.deserialize(optimizers.serialize(opt))
    assert type(again) is optimizers.Adam and again.beta_1 == 0.8 and again.amsgrad and again.name == "my_adam"
    for identifier, cls in (("adam", optimizers.Adam), ("sgd", optimizers.SGD), ("rmsprop", optimizers.RMSprop),
                            ("adagrad", optimizers.Adagrad), ("adamw", optimizers.AdamW), ("Adam", optimizers.Adam)):
        assert type(optimizers.get(identifier)) is cls
    assert optimizers.get(opt) is opt
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier: nadamx"):
        optimizers.get("nadamx")
    # save_own_variables / load_own_variables / set_weights carry the state to a fresh optimizer
    w = tg.Variable(W0)
    opt.apply_gradients([(GRADS[0][0], w)])
    store = {}
    opt.save_own_variables(store)
    fresh = optimizers.Adam(learning_rate=0.01, beta_1=0.8, amsgrad=True)
    fresh.build([w])
    fresh.load_own_variables(store)
    for a, b in zip(opt.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    fresh.set_weights([np.zeros_like(x) for x in opt.get_weights()])
    assert all(not np.any(v.numpy()) for v in fresh.variables)


def test_minimize_with_a_callable_and_with_a_tape():
    w = tg.Variable(np.array([3.0], "float32"))
    opt = optimizers.SGD(learning_rate=0.25)
    opt.minimize(lambda: tg.reduce_sum(w * w), [w])
    np.testing.assert_allclose(w.numpy(), [1.5])
    with tg.GradientTape() as tape:
        loss = tg.reduce_sum(w * w)
    opt.minimize(loss, [w], tape=tape)
    np.testing.assert_allclose(w.numpy(), [0.75])
    with pytest.raises(ValueError, match="`tape` is required"):
        opt.minimize(loss, [w])


def test_bad_arguments_are_keras_errors():
    with pytest.raises(ValueError, match="Argument `learning_rate` should be float"):
        optimizers.SGD(learning_rate=1)
    with pytest.raises(ValueError, match="`momentum` must be a float between"):
        optimizers.SGD(momentum=2.0)
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match=r"Argument\(s\) not recognized"):
        optimizers.Adam(beta1=0.9)
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    opt = optimizers.Adam()
    a, b = tg.Variable(W0), tg.Variable(B0)
    opt.apply_gradients([(GRADS[0][0], a)])
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply_gradients([(GRADS[0][1], b)])
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.apply_gradients([(None, a)])
    # multigpu_training's first step: an unbuilt model's empty trainable_variables (a ValueError in Keras 3 too)
    with pytest.raises(ValueError, match="got no"):
        opt.apply_gradients(zip([], []))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two = optimizers.SGD()
        two.apply_gradients([(GRADS[0][0], a), (None, b)])
    assert any("Gradients do not exist for variables" in str(w.message) for w in caught)


def test_tg_optimizers_is_the_keras_alias():
    assert tg.optimizers.Adam is optimizers.Adam
    assert tg.optimizers.schedules.CosineDecay is schedules.CosineDecay
    assert tg.keras.optimizers.schedules.ExponentialDecay is schedules.ExponentialDecay
    assert tg.losses.SparseCategoricalCrossentropy is tg.keras.losses.SparseCategoricalCrossentropy
