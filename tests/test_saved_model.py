"""tg.saved_model: a Module with tg.functions saved in one process, loaded in another, called eagerly,
through its signatures, under a GradientTape, in a graph and on a cluster; the layout and the errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tensorgrid as tg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAVER = """
import sys
import numpy as np
import tensorgrid as tg

class Dense(tg.Module):
    def __init__(self):
        super().__init__()
        self.w = tg.Variable([[1.0], [2.0]], name="w")
        self.b = tg.Variable([0.5], name="b")
        self.calls = tg.Variable(0, name="calls", trainable=False)
        self.extra = [tg.Module(name="inner")]
        self.extra[0].v = tg.Variable(7.0, name="v")

    @tg.function(input_signature=[tg.TensorSpec([None, 2], tg.float32)])
    def __call__(self, x):
        self.calls.assign_add(1)
        return tg.matmul(x, self.w) + self.b

    @tg.function
    def parts(self, x, factor):
        return {"y": x * factor, "w_sum": tg.reduce_sum(self.w) + self.extra[0].v}

m = Dense()
m.parts(np.ones(2, np.float32), tg.constant(3.0))
m.parts(np.ones((2, 2), np.float64), tg.constant(3.0, tg.float64))
m(np.ones((1, 2), np.float32))
tg.saved_model.save(m, sys.argv[1])
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model"
    done = subprocess.run([sys.executable, "-c", SAVER, str(path)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    return str(path)


def test_layout_and_variable_keys(export_dir):
    assert sorted(os.listdir(export_dir)) == ["saved_model.pb", "variables"]
    assert os.listdir(os.path.join(export_dir, "variables")) == ["variables.tgckpt"]
    keys = dict(tg.train.list_variables(os.path.join(export_dir, "variables", "variables")))
    assert {"w/.ATTRIBUTES/VARIABLE_VALUE", "calls/.ATTRIBUTES/VARIABLE_VALUE",
            "extra/0/v/.ATTRIBUTES/VARIABLE_VALUE"} <= set(keys)
    assert tg.saved_model.contains_saved_model(export_dir)
    from tensorgrid.proto import saved_model_pb2
    model = saved_model_pb2.SavedModel.FromString(open(os.path.join(export_dir, "saved_model.pb"), "rb").read())
    meta = model.meta_graphs[0]
    assert model.saved_model_schema_version == 1 and list(meta.meta_info_def.tags) == ["serve"]
    sig = meta.signature_def["serving_default"]
    assert list(sig.inputs) == ["x"] and list(sig.outputs) == ["output_0"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert len(meta.graph_def.library.function) == 3


def test_loaded_in_a_fresh_process_runs_eagerly(export_dir):
    m = tg.saved_model.load(export_dir)
    assert int(m.calls.numpy()) == 1 and float(m.extra[0].v.numpy()) == 7.0
    np.testing.assert_allclose(m(np.ones((3, 2), np.float32)).numpy(), [[3.5]] * 3)
    assert int(m.calls.numpy()) == 2     # its side effects run too
    out = m.parts(np.ones(2, np.float32), tg.constant(2.0))
    np.testing.assert_allclose(out["y"].numpy(), [2.0, 2.0])
    assert float(out["w_sum"].numpy()) == 10.0
    assert m.parts(np.ones((2, 2)), tg.constant(1.0, tg.float64))["y"].dtype == tg.float64
    with pytest.raises(ValueError, match="Could not find matching concrete function"):
        m.parts(np.ones(3, np.int32), tg.constant(1))
    result = m.signatures["serving_default"](x=tg.constant([[1.0, 1.0], [0.0, 1.0]]))
    assert list(result) == ["output_0"]
    np.testing.assert_allclose(result["output_0"].numpy(), [[3.5], [2.5]])
    with pytest.raises(TypeError, match="missing inputs"):
        m.signatures["serving_default"]()
    assert sorted(v.name for v in m.trainable_variables) == ["b:0", "v:0", "w:0"]
    m.w.assign([[0.0], [1.0]])
    np.testing.assert_allclose(m([[1.0, 1.0]]).numpy(), [[1.5]])    # calls read the variables' values now


def test_a_tape_differentiates_through_a_loaded_function(export_dir):
    m = tg.saved_model.load(export_dir)
    with tg.GradientTape() as tape:
        y = tg.reduce_sum(m(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)))
    gw, gb = tape.gradient(y, [m.w, m.b])
    np.testing.assert_allclose(gw.numpy(), [[4.0], [6.0]])
    np.testing.assert_allclose(gb.numpy(), [2.0])


def _graph_program(export_dir):
    g = tg.Graph()
    with g.as_default():
        m = tg.saved_model.load(export_dir)
        x = tg.compat.v1.placeholder(tg.float32, [None, 2])
        y = m(x)
        served = m.signatures["serving_default"](x=x)["output_0"]
        init = tg.compat.v1.global_variables_initializer()
    return g, m, x, y, served, init


def test_loaded_into_a_graph_runs_in_a_session_and_on_a_cluster(export_dir):
    from conftest import _local_cluster
    for target in ["", _local_cluster().target]:
        g, m, x, y, served, init = _graph_program(export_dir)
        with tg.Session(target, graph=g) as sess:
            sess.run(init)
            got = sess.run([y, served], {x: [[1.0, 1.0], [2.0, 0.0]]})
            np.testing.assert_allclose(got[0], [[3.5], [2.5]])
            np.testing.assert_allclose(got[1], got[0])
            assert sess.run(m.calls.read_value()) == 3
        if target:
            tg.Session.reset(target)


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(OSError, match="SavedModel file does not exist"):
        tg.saved_model.load(str(tmp_path))
    outside = tg.Variable(1.0, name="outside")

    class Reads(tg.Module):
        @tg.function(input_signature=[tg.TensorSpec([], tg.float32)])
        def f(self, x):
            return x * outside
    with pytest.raises(ValueError, match="uses variable 'outside'.*does not hold"):
        tg.saved_model.save(Reads(), str(tmp_path / "bad"))

    class Plain(tg.Module):
        @tg.function
        def g(self, x):
            return x
    with pytest.raises(ValueError, match="needs an input_signature"):
        tg.saved_model.save(Plain(), str(tmp_path / "bad2"), signatures=Plain().g)
    with pytest.raises(ValueError, match="Expected an object"):
        tg.saved_model.save(3, str(tmp_path / "bad3"))


def test_a_tensorflow_saved_model_is_refused_clearly(tmp_path):
    tf = pytest.importorskip("tensorflow")
    module = tf.Module()
    module.v = tf.Variable(1.0)
    module.f = tf.function(lambda x: x * module.v, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path))
    with pytest.raises(ValueError, match="tensorgrid did not write"):
        tg.saved_model.load(str(tmp_path))


def test_signature_outputs_keep_a_dicts_names(tmp_path):
    class Scorer(tg.Module):
        def __init__(self):
            super().__init__()
            self.scale = tg.Variable(2.0)

        @tg.function(input_signature=[tg.TensorSpec([None], tg.float32, name="values")])
        def score(self, values):
            return {"scores": values * self.scale, "total": tg.reduce_sum(values)}
    s = Scorer()
    tg.saved_model.save(s, str(tmp_path), signatures={"scoring": s.score})
    loaded = tg.saved_model.load(str(tmp_path))
    out = loaded.signatures["scoring"](values=[1.0, 2.0])
    assert sorted(out) == ["scores", "total"] and out["scores"].numpy().tolist() == [2.0, 4.0]
    assert float(loaded.score(tg.constant([3.0]))["total"].numpy()) == 3.0
