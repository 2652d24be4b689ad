"""tg.train: optimizers (against NumPy references of TF's update rules), global step, ClusterSpec,
replica_device_setter."""

import numpy as np
import pytest

import tensorgrid as tg

v1 = tg.compat.v1

# loss = sum(0.5 * A * w^2 + B * w), so the gradient is A * w + B.
A = np.array([1.0, 2.0, 0.5, 3.0])
B = np.array([0.3, -0.2, 0.1, -1.0])
W0 = np.array([1.0, -1.5, 2.0, 0.5])

OPTIMIZERS = {
    "sgd": (lambda: tg.train.GradientDescentOptimizer(0.1), {"lr": 0.1}),
    "momentum": (lambda: tg.train.MomentumOptimizer(0.1, 0.9), {"lr": 0.1, "momentum": 0.9}),
    "nesterov": (lambda: tg.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
                 {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "adagrad": (lambda: tg.train.AdagradOptimizer(0.3, initial_accumulator_value=0.2), {"lr": 0.3, "acc0": 0.2}),
    "rmsprop": (lambda: tg.train.RMSPropOptimizer(0.05), {"lr": 0.05, "decay": 0.9, "momentum": 0.0,
                                                          "epsilon": 1e-10, "centered": False}),
    "rmsprop_centered": (lambda: tg.train.RMSPropOptimizer(0.05, decay=0.8, momentum=0.5, epsilon=1e-6,
                                                           centered=True),
                         {"lr": 0.05, "decay": 0.8, "momentum": 0.5, "epsilon": 1e-6, "centered": True}),
    "adam": (lambda: tg.train.AdamOptimizer(0.1, beta1=0.8, beta2=0.99, epsilon=1e-7),
             {"lr": 0.1, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7}),
}


def _f32(x):
    """A hyperparameter as TF sees it: converted to a float32 tensor, then cast to the variable's dtype."""
    return float(np.float32(x))


def reference(kind, hp, steps):
    """The variable after `steps` updates, computed with NumPy in float64 by TF's kernels' formulas."""
    w = W0.copy()
    lr = _f32(hp["lr"])
    acc = np.zeros_like(w)
    if kind == "adagrad":
        acc = np.full_like(w, hp["acc0"])  # the slot starts at the value in the variable's own dtype
    ms, mg, mom = np.ones_like(w), np.zeros_like(w), np.zeros_like(w)
    m, v = np.zeros_like(w), np.zeros_like(w)
    if kind == "adam":
        b1, b2 = np.float32(hp["beta1"]), np.float32(hp["beta2"])
        b1p, b2p = b1, b2
    for _ in range(steps):
        g = A * w + B
        if kind == "sgd":
            w = w - g * lr
        elif kind in ("momentum", "nesterov"):
            mu = _f32(hp["momentum"])
            acc = acc * mu + g
            w = w - (g * lr + acc * mu * lr if hp.get("nesterov") else acc * lr)
        elif kind == "adagrad":
            acc = acc + g * g
            w = w - g * lr * (1.0 / np.sqrt(acc))
        elif kind.startswith("rmsprop"):
            rho, mu, eps = _f32(hp["decay"]), _f32(hp["momentum"]), _f32(hp["epsilon"])
            ms = ms + (g * g - ms) * (1 - rho)
            denom = ms + eps
            if hp["centered"]:
                mg = mg + (g - mg) * (1 - rho)
                denom = (ms - mg * mg) + eps
            mom = mom * mu + (g * lr) / np.sqrt(denom)
            w = w - mom
        else:
            alpha = lr * np.sqrt(1 - float(b2p)) / (1 - float(b1p))
            m = m + (g - m) * (1 - float(b1))
            v = v + (g * g - v) * (1 - float(b2))
            w = w - (m * alpha) / (np.sqrt(v) + _f32(hp["epsilon"]))
            b1p, b2p = np.float32(b1p * b1), np.float32(b2p * b2)
    return w


def _quadratic_loss(w):
    return tg.reduce_sum(0.5 * tg.constant(A) * w * w + tg.constant(B) * w)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_graph_updates_match_tf_formulas(kind):
    make, hp = OPTIMIZERS[kind]
    g = tg.Graph()
    with g.as_default():
        w = tg.Variable(W0, name="w")
        step = tg.train.get_or_create_global_step()
        train = make().minimize(_quadratic_loss(w), global_step=step)
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            for _ in range(6):
                sess.run(train)
            np.testing.assert_allclose(sess.run(w), reference(kind, hp, 6), rtol=1e-12)
            assert sess.run(step) == 6


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_eager_updates_match_tf_formulas(kind):
    make, hp = OPTIMIZERS[kind]
    w = tg.Variable(W0)
    opt = make()
    for _ in range(4):
        opt.minimize(lambda: _quadratic_loss(w), var_list=[w])
    np.testing.assert_allclose(w.numpy(), reference(kind, hp, 4), rtol=1e-12)


def test_minimize_inside_tg_function_matches_eager():
    make, hp = OPTIMIZERS["adam"]
    w, opt = tg.Variable(W0), make()

    @tg.function
    def step():
        opt.minimize(lambda: _quadratic_loss(w), var_list=[w])
        return _quadratic_loss(w)
    for _ in range(3):
        loss = step()
    np.testing.assert_allclose(w.numpy(), reference("adam", hp, 3), rtol=1e-12)
    np.testing.assert_allclose(loss.numpy(), _quadratic_loss(tg.constant(w.numpy())).numpy(), rtol=1e-12)


@pytest.mark.skipif(not hasattr(tg.GradientTape, "watched_variables"),
                    reason="GradientTape.watched_variables (client/tape.py) is not there yet")
def test_eager_minimize_defaults_to_the_trainable_variables_read():
    w = tg.Variable(np.array([1.0, 2.0]))
    frozen = tg.Variable(3.0, trainable=False, dtype=tg.float64)
    untouched = tg.Variable(1.0)
    tg.train.GradientDescentOptimizer(0.1).minimize(lambda: tg.reduce_sum(w * w) * frozen)
    np.testing.assert_allclose(w.numpy(), [1.0 - 0.6, 2.0 - 1.2])
    assert (frozen.numpy(), untouched.numpy()) == (3.0, 1.0)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_optimizers_converge_on_linear_regression(kind):
    rng = np.random.RandomState(0)
    x_data = rng.randn(64, 3).astype(np.float32)
    y_data = x_data @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.25
    g = tg.Graph()
    with g.as_default():
        x = v1.placeholder(tg.float32, [None, 3])
        w = tg.Variable(np.zeros((3, 1), np.float32))
        b = tg.Variable(0.0)
        loss = tg.reduce_mean(tg.square(tg.matmul(x, w) + b - y_data))
        opt = {"sgd": tg.train.GradientDescentOptimizer(0.2), "momentum": tg.train.MomentumOptimizer(0.05, 0.9),
               "nesterov": tg.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
               "adagrad": tg.train.AdagradOptimizer(0.5), "rmsprop": tg.train.RMSPropOptimizer(0.02),
               "rmsprop_centered": tg.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
               "adam": tg.train.AdamOptimizer(0.1)}[kind]
        train = opt.minimize(loss)
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            first = sess.run(loss, {x: x_data})
            for _ in range(300):
                sess.run(train, {x: x_data})
            assert sess.run(loss, {x: x_data}) < 1e-3 * first


def test_slots_are_named_like_tf_and_colocated():
    g = tg.Graph()
    with g.as_default():
        with tg.device("/cpu:1"):
            w = tg.Variable(np.ones(2, np.float32), name="w")
        with tg.device("/cpu:2"):
            b = tg.Variable(0.0, name="b")
        loss = tg.reduce_sum(w * w) + b * b
        adam = tg.train.AdamOptimizer()
        adam.minimize(loss)
        rms = tg.train.RMSPropOptimizer(0.1, centered=True)
        rms.minimize(loss)
        names = {v.name for v in tg.global_variables()}
        trainable = {v.name for v in tg.trainable_variables()}
    assert adam.get_slot(w, "m").name == "w/Adam:0" and adam.get_slot(w, "v").name == "w/Adam_1:0"
    assert adam.get_slot_names() == ["m", "v"]
    assert rms.get_slot(b, "rms").name == "b/RMSProp:0"
    assert rms.get_slot(b, "mg").name == "b/RMSProp_1:0"
    assert rms.get_slot(b, "momentum").name == "b/RMSProp_2:0"
    assert adam.get_slot(w, "missing") is None
    assert {"beta1_power:0", "beta2_power:0", "w/Adam:0", "b/Adam_1:0"} <= names
    assert trainable == {"w:0", "b:0"}
    for opt, var in [(adam, w), (adam, b), (rms, w), (rms, b)]:
        for slot in opt.get_slot_names():
            assert opt.get_slot(var, slot).device == var.device
    beta1_power = next(v for v in adam.variables() if v.name == "beta1_power:0")
    assert beta1_power.device == b.device  # colocated with the first variable by name
    with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": 3})) as sess:
        sess.run(tg.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(rms.get_slot(w, "rms")), [1.0, 1.0])


def test_multi_device_training_matches_one_device():
    def train(devices):
        g = tg.Graph()
        with g.as_default():
            ws = []
            for i in range(3):
                with tg.device(f"/cpu:{i % devices}"):
                    ws.append(tg.Variable(np.full(4, i + 1.0, np.float32)))
            with tg.device(f"/cpu:{devices - 1}"):
                loss = tg.add_n([tg.reduce_sum(tg.square(w - float(i))) for i, w in enumerate(ws)])
            train_op = tg.train.AdamOptimizer(0.05).minimize(loss)
            with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": devices})) as sess:
                sess.run(tg.global_variables_initializer())
                for _ in range(20):
                    sess.run(train_op)
                return sess.run(ws)
    for a, b in zip(train(1), train(3)):
        np.testing.assert_array_equal(a, b)


def test_global_step():
    g = tg.Graph()
    with g.as_default():
        assert tg.train.get_global_step() is None
        step = tg.train.get_or_create_global_step()
        assert tg.train.get_or_create_global_step() is step
        assert tg.train.get_global_step() is step
        assert step.name == "global_step:0" and step.dtype == tg.int64 and not step.trainable
        with pytest.raises(ValueError, match="already exists"):
            tg.train.create_global_step()
        w = tg.Variable(1.0)
        train = tg.train.GradientDescentOptimizer(0.1).minimize(w * w, global_step=step)
        assert train in g.get_collection(v1.GraphKeys.TRAIN_OP)
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            assert sess.run(train) is None
            sess.run(train)
            assert tg.train.global_step(sess, step) == 2


def test_compute_and_apply_gradients():
    g = tg.Graph()
    with g.as_default():
        w = tg.Variable(2.0)
        unused = tg.Variable(5.0)
        frozen = tg.Variable(3.0)
        loss = w * w + frozen
        opt = tg.train.GradientDescentOptimizer(0.5)
        grads_and_vars = opt.compute_gradients(loss, var_list=[w, unused, frozen])
        assert grads_and_vars[1][0] is None
        clipped = [(None if gr is None else tg.clip_by_value(gr, -1.0, 1.0), v) for gr, v in grads_and_vars[:2]]
        train = opt.apply_gradients(clipped)
        with tg.Session(graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            sess.run(train)
            assert sess.run([w, unused, frozen]) == [1.5, 5.0, 3.0]
        with pytest.raises(ValueError, match="No gradients provided"):
            opt.apply_gradients([(None, w)])
        with pytest.raises(ValueError, match="No gradients provided"):
            opt.minimize(tg.constant(1.0) * 2.0, var_list=[w])
        with pytest.raises(ValueError, match="Invalid type int32"):
            opt.minimize(tg.Variable(1) * 2)


def test_minimize_without_variables_fails():
    with tg.Graph().as_default():
        with pytest.raises(ValueError, match="No variables to optimize"):
            tg.train.GradientDescentOptimizer(0.1).minimize(tg.constant(1.0) * 2.0)


def test_learning_rate_may_be_a_tensor():
    g = tg.Graph()
    with g.as_default():
        w = tg.Variable(1.0)
        lr = v1.placeholder(tg.float32, [])
        train = tg.train.GradientDescentOptimizer(lr).minimize(w * w)
        with tg.Session(graph=g) as sess:
            sess.run(w.initializer)
            sess.run(train, {lr: 0.25})
            assert sess.run(w) == 0.5


# ---- ClusterSpec ------------------------------------------------------------------------------------

def test_cluster_spec():
    spec = tg.train.ClusterSpec({"worker": ["w0:1", "w1:1"], "ps": ["p0:2"]})
    assert spec.jobs == ["ps", "worker"]
    assert spec.num_tasks("worker") == 2
    assert spec.task_address("worker", 1) == "w1:1"
    assert spec.task_indices("ps") == [0]
    assert spec.as_dict() == {"worker": ["w0:1", "w1:1"], "ps": ["p0:2"]}
    assert tg.train.ClusterSpec(spec) == spec
    sparse = tg.train.ClusterSpec({"worker": {1: "w1:1", 3: "w3:1"}})
    assert sparse.as_dict() == {"worker": {1: "w1:1", 3: "w3:1"}}
    assert sparse.job_tasks("worker") == [None, "w1:1", None, "w3:1"]
    assert sparse != spec and bool(sparse) and not tg.train.ClusterSpec({})
    with pytest.raises(ValueError, match="No such job"):
        spec.num_tasks("chief")
    with pytest.raises(ValueError, match="No task with index 5"):
        spec.task_address("worker", 5)
    with pytest.raises(TypeError):
        tg.train.ClusterSpec(["w0:1"])


# ---- replica_device_setter -----------------------------------------------------------------------------

def placement_program(tf):
    """A model built under replica_device_setter; returns its graph and the devices of its variables and ops.

    tests/test_tf_differential.py runs it with TensorFlow too.
    """
    graph = tf.Graph()
    with graph.as_default():
        with tf.device(tf.train.replica_device_setter(ps_tasks=2, worker_device="/job:worker/task:1")):
            a = tf.Variable(1.0, name="a")
            b = tf.Variable(np.ones(3, np.float32), name="b")
            c = tf.Variable(3.0, name="c")
            y = a * b + c
            with tf.device("/job:worker/task:0"):
                z = tf.reduce_sum(y * 2.0)
            with tf.device("/job:ps/task:1"):
                tf.Variable(4.0, name="d")
            step = tf.train.get_or_create_global_step()
            train = tf.train.AdamOptimizer(0.1).minimize(z, global_step=step)
        devices = {v.op.name: v.device for v in tf.global_variables()}
        devices.update({"y": y.op.device, "z": z.op.device, "a/initializer": a.initializer.device,
                        "train": train.device})
    return graph, devices


def test_replica_device_setter_places_variables_round_robin():
    graph, devices = placement_program(v1)
    ps0, ps1 = "/job:ps/task:0", "/job:ps/task:1"
    assert devices == {"a": ps0, "b": ps1, "c": ps0, "d": ps1, "global_step": ps0,
                       "beta1_power": ps0, "beta2_power": ps0, "a/Adam": ps0, "a/Adam_1": ps0,
                       "b/Adam": ps1, "b/Adam_1": ps1, "c/Adam": ps0, "c/Adam_1": ps0,
                       "y": "/job:worker/task:1", "z": "/job:worker/task:0", "a/initializer": ps0, "train": ps0}
    handles = [op for op in graph.get_operations() if op.type == "VarHandleOp"]
    for handle in handles:
        users = [op for op in graph.get_operations() if any(t is handle.outputs[0] for t in op.inputs)]
        assert users and all(op.device == handle.device for op in users), handle.name


def test_replica_device_setter_options():
    assert tg.train.replica_device_setter(ps_tasks=0) is None
    assert tg.train.replica_device_setter(cluster={"worker": ["w:1"]}) is None
    cluster = tg.train.ClusterSpec({"ps": ["p0:1", "p1:1", "p2:1"], "worker": ["w:1"]})
    g = tg.Graph()
    with g.as_default():
        with tg.device(tg.train.replica_device_setter(cluster=cluster)):
            vs = [tg.Variable(float(i)) for i in range(4)]
            y = tg.add_n(vs)
        with tg.device(tg.train.replica_device_setter(ps_tasks=2, ps_strategy=lambda op: 1,
                                                      ps_device="/job:ps/device:CPU:0")):
            pinned = tg.Variable(0.0)
    assert [v.device for v in vs] == ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:2", "/job:ps/task:0"]
    assert y.op.device == "/job:worker"
    assert pinned.device == "/job:ps/task:1/device:CPU:0"
    with pytest.raises(TypeError, match="ps_strategy must be callable"):
        tg.train.replica_device_setter(ps_tasks=1, ps_strategy=3)


def test_replica_device_setter_graph_runs_with_soft_placement():
    g = tg.Graph()
    with g.as_default():
        with tg.device(tg.train.replica_device_setter(ps_tasks=2)):
            w = tg.Variable(np.ones(2, np.float32))
            loss = tg.reduce_sum(tg.square(w - 3.0))
            train = tg.train.GradientDescentOptimizer(0.25).minimize(loss)
        config = tg.ConfigProto(allow_soft_placement=True, device_count={"CPU": 2})
        with tg.Session(graph=g, config=config) as sess:
            sess.run(tg.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            np.testing.assert_allclose(sess.run(w), [3.0 - 2.0 * 0.5 ** 3] * 2)
