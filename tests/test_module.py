"""tg.Module: names and name scopes, variables/submodules found through attributes and nests, as TF 2.21."""

import numpy as np
import pytest

import tensorgrid as tg


def _modules(tf):
    """Two small Module classes written against `tf` (tensorgrid or TensorFlow)."""
    class Dense(tf.Module):
        def __init__(self, n_in, n_out, name=None):
            super().__init__(name=name)
            self.w = tf.Variable(tf.ones([n_in, n_out]), name="w")
            self.b = tf.Variable(tf.zeros([n_out]), name="b", trainable=False)

        @tf.Module.with_name_scope
        def __call__(self, x):
            self.seen_scope = tf.Variable(0.0, name="in_call").name
            return tf.matmul(x, self.w) + self.b

    class MLP(tf.Module):
        def __init__(self):
            super().__init__()
            with self.name_scope:
                self.layers = [Dense(2, 3), Dense(3, 1, name="out")]
                self.extra = {"z": tf.Variable(1.0), "a": (tf.Variable(2.0, name="a0"), 3)}
    return Dense, MLP


def _describe(tf):
    _, MLP = _modules(tf)
    m = MLP()
    out = m.layers[0](np.ones((1, 2), np.float32))
    return {
        "name": m.name, "scope": m.name_scope.name,
        "variables": [v.name for v in m.variables],
        "trainable": [v.name for v in m.trainable_variables],
        "non_trainable": [v.name for v in m.non_trainable_variables],
        "submodules": [s.name for s in m.submodules],
        "inner_scope": m.layers[0].name_scope.name,
        "call_scope": m.layers[0].seen_scope,
        "out": np.asarray(out).tolist(),
        "default_name": tf.Module().name,
    }


def test_names_scopes_and_tracking_match_tensorflow():
    ours = _describe(tg)
    assert ours["variables"] == ["mlp/a0:0", "mlp/Variable:0", "mlp/b:0", "mlp/w:0", "mlp/b:0", "mlp/w:0"]
    assert ours["submodules"] == ["dense", "out"] and ours["inner_scope"] == "mlp/dense/"
    assert ours["call_scope"] == "mlp/dense/in_call:0"
    tf = pytest.importorskip("tensorflow")
    assert ours == _describe(tf)


def test_default_names_come_from_the_class_and_bad_names_are_refused():
    class MyDenseLayer(tg.Module):
        pass

    class MLP(tg.Module):
        pass
    assert MyDenseLayer().name == "my_dense_layer" and MLP().name == "mlp"
    with pytest.raises(ValueError, match="'a b' is not a valid module name"):
        tg.Module(name="a b")


def test_each_object_once_and_cycles_end():
    shared = tg.Variable(1.0, name="shared")
    parent, child = tg.Module(name="parent"), tg.Module(name="child")
    parent.child, parent.again, parent.v = child, [child, shared], shared
    child.parent, child.v = parent, shared
    assert [v.name for v in parent.variables] == ["shared:0"]
    assert parent.submodules == (child,) and child.submodules == (parent,)
    paths = [path for path, _ in parent._flatten(predicate=lambda x: isinstance(x, tg.Variable), with_path=True)]
    assert ("v",) in paths and ("again", 1) in paths and ("child", "v") in paths


def test_name_scope_in_graph_mode_is_made_unique():
    g = tg.Graph()
    with g.as_default():
        a, b = tg.Module(name="m"), tg.Module(name="m")
        with b.name_scope:
            c = tg.constant(1.0, name="c")
    assert (a.name_scope.name, b.name_scope.name, c.op.name) == ("m/", "m_1/", "m_1/c")


def test_trainable_variables_train_a_module():
    Dense, _ = _modules(tg)
    layer = Dense(2, 1)
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), np.array([[1.0], [2.0]], np.float32)
    losses = []
    for _ in range(30):
        with tg.GradientTape() as tape:
            loss = tg.reduce_mean(tg.square(layer(x) - y))
        for v, g in zip(layer.trainable_variables, tape.gradient(loss, layer.trainable_variables)):
            v.assign_sub(0.02 * g)
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0] and len(layer.trainable_variables) == 1
