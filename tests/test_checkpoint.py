"""tg.train.Checkpoint / CheckpointManager: TF's keys, round trips in fresh processes, status assertions,
delayed restoration, max_to_keep and intervals, graph mode."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = """
class Dense(tf.Module):
    def __init__(self, n_in, n_out, name=None):
        super().__init__(name=name)
        self.w = tf.Variable(tf.ones([n_in, n_out]), name="w")
        self.b = tf.Variable(tf.zeros([n_out]), name="b", trainable=False)

class MLP(tf.Module):
    def __init__(self):
        super().__init__()
        self.layers = [Dense(2, 3), Dense(3, 1, name="out")]
        self.extra = {"z": tf.Variable(1.0), "a": (tf.Variable(2.0), 3)}

def build():
    model = MLP()
    opt = tf.compat.v1.train.AdamOptimizer(0.1)
    opt.minimize(lambda: tf.reduce_sum(model.layers[0].w) + model.extra["z"],
                 var_list=[model.layers[0].w, model.extra["z"]])
    return model, opt, tf.train.Checkpoint(model=model, opt=opt)
"""


def _namespace(tf):
    ns = {"tf": tf}
    exec(PROGRAM, ns)
    return ns


def test_keys_match_tensorflow(tmp_path):
    model, opt, ckpt = _namespace(tg)["build"]()
    path = ckpt.save(str(tmp_path / "ours" / "ckpt"))
    ours = dict(tg.train.list_variables(path))
    assert "model/layers/0/w/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE" in ours
    assert ours["model/layers/1/w/.ATTRIBUTES/VARIABLE_VALUE"] == [3, 1]
    tf = pytest.importorskip("tensorflow")
    _, _, tf_ckpt = _namespace(tf)["build"]()
    tf_path = tf_ckpt.save(str(tmp_path / "tf" / "ckpt"))
    theirs = dict(tf.train.list_variables(tf_path))
    # the object graph is a uint8 vector here, a string scalar in TF (see checkpoint.py)
    assert ours.pop("_CHECKPOINTABLE_OBJECT_GRAPH")[0] > 0 and theirs.pop("_CHECKPOINTABLE_OBJECT_GRAPH") == []
    assert ours == theirs
    for key in theirs:
        np.testing.assert_allclose(tg.train.load_variable(path, key), tf.train.load_variable(tf_path, key),
                                   rtol=1e-6)
    assert os.path.basename(path) == os.path.basename(tf_path) == "ckpt-1"
    with open(tmp_path / "ours" / "checkpoint") as f:
        assert f.read().splitlines() == ['model_checkpoint_path: "ckpt-1"', 'all_model_checkpoint_paths: "ckpt-1"']


def _python(code, cwd):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_round_trip_in_fresh_processes(tmp_path):
    program = "import tensorgrid as tf\n" + PROGRAM
    report = """
print(model.layers[0].w.numpy().ravel().tolist(), model.layers[1].w.numpy().ravel().tolist(),
      opt.get_slot(model.layers[0].w, "m").numpy().ravel().tolist(), int(ckpt.save_counter.numpy()))
"""
    saved = _python(program + """
model, opt, ckpt = build()
model.layers[1].w.assign([[1.5], [2.5], [3.5]])
ckpt.save("ckpts/ckpt")
opt.minimize(lambda: tf.reduce_sum(model.layers[0].w), var_list=[model.layers[0].w])
ckpt.save("ckpts/ckpt")
""" + report, tmp_path)
    restored = _python(program + """
model, opt, ckpt = build()   # a step of its own first: every value must come from the checkpoint
model.layers[1].w.assign(tf.zeros([3, 1]))
ckpt.restore(tf.train.latest_checkpoint("ckpts")).assert_consumed()
""" + report, tmp_path)
    assert saved == restored and "[1.5, 2.5, 3.5]" in saved and saved.strip().endswith(" 2")


def test_status_assertions_and_delayed_restoration(tmp_path):
    root = tg.Module(name="root")
    root.a = tg.Variable([1.0, 2.0])
    root.child = tg.Module(name="child")
    root.child.b = tg.Variable(3.0)
    path = tg.train.Checkpoint(root=root).write(str(tmp_path / "c"))

    new = tg.Module(name="root")
    new.a = tg.Variable([0.0, 0.0])
    status = tg.train.Checkpoint(root=new).read(path)
    assert new.a.numpy().tolist() == [1.0, 2.0]
    status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match=r"Unresolved object in checkpoint \(root\)\.child"):
        status.assert_consumed()
    new.child = tg.Module(name="child")       # made after the restore: takes its value when it appears
    new.child.b = tg.Variable(0.0)
    assert float(new.child.b.numpy()) == 3.0
    status.assert_consumed()

    extra = tg.Module(name="root")
    extra.a, extra.more = tg.Variable([0.0, 0.0]), tg.Variable(5.0)
    status = tg.train.Checkpoint(root=extra).read(path)
    with pytest.raises(AssertionError, match="not bound to checkpointed values"):
        status.assert_existing_objects_matched()
    assert status.expect_partial() is status
    status.assert_nontrivial_match()

    with pytest.raises(AssertionError):
        tg.train.Checkpoint(root=root).restore(None).assert_consumed()


def test_bad_restores_name_what_is_wrong(tmp_path):
    m = tg.Module(name="m")
    m.v = tg.Variable([1.0, 2.0])
    path = tg.train.Checkpoint(m=m).write(str(tmp_path / "c"))
    bad = tg.Module(name="m")
    bad.v = tg.Variable([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"incompatible tensor with shape \(2,\).*m/v/.ATTRIBUTES"):
        tg.train.Checkpoint(m=bad).read(path)
    typed = tg.Module(name="m")
    typed.v = tg.Variable([1, 2])
    with pytest.raises(errors.InvalidArgumentError, match="holds float32, the variable is int32"):
        tg.train.Checkpoint(m=typed).read(path)
    with pytest.raises(errors.NotFoundError, match="Failed to find any matching files"):
        tg.train.Checkpoint(m=m).read(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="expecting x to be a trackable object"):
        tg.train.Checkpoint(x=1)
    g = tg.Graph()
    with g.as_default():
        w = tg.Variable(1.0, name="w")
        saver = tg.compat.v1.train.Saver()
        with tg.Session() as sess:
            sess.run(w.initializer)
            name_based = saver.save(sess, str(tmp_path / "v1"), write_meta_graph=False)
    with pytest.raises(ValueError, match="written by tg.train.Saver"):
        tg.train.Checkpoint(m=m).read(name_based)


def test_manager_keeps_max_to_keep_and_recovers_its_state(tmp_path):
    v = tg.Variable(0.0)
    ckpt = tg.train.Checkpoint(v=v)
    manager = tg.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=2)
    assert manager.restore_or_initialize() is None and manager.latest_checkpoint is None
    paths = []
    for i in range(4):
        v.assign(float(i))
        paths.append(manager.save())
    assert [os.path.basename(p) for p in paths] == ["ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"]
    assert manager.checkpoints == paths[2:] and tg.train.latest_checkpoint(str(tmp_path)) == paths[3]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-3.tgckpt", "ckpt-4.tgckpt"]
    assert manager.save(checkpoint_number=100).endswith("ckpt-100") and int(ckpt.save_counter.numpy()) == 5

    v2 = tg.Variable(-1.0)
    again = tg.train.CheckpointManager(tg.train.Checkpoint(v=v2), str(tmp_path), max_to_keep=2)
    assert again.checkpoints == [paths[3], str(tmp_path / "ckpt-100")]
    assert again.restore_or_initialize() == str(tmp_path / "ckpt-100") and float(v2.numpy()) == 3.0
    with pytest.raises(ValueError, match="positive integer"):
        tg.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=0)


def test_manager_interval_and_hours(tmp_path):
    step = tg.Variable(0, dtype=tg.int64)
    ckpt = tg.train.Checkpoint(step=step)
    manager = tg.train.CheckpointManager(ckpt, str(tmp_path / "a"), max_to_keep=None, step_counter=step,
                                         checkpoint_interval=3)
    saved = []
    for s in range(8):
        step.assign(s)
        saved.append(manager.save() is not None)
    assert saved == [True, False, False, True, False, False, True, False]
    assert manager.save(check_interval=False) is not None   # step 7, one past the last save
    assert manager.save(check_interval=False) is None       # the same step again
    with pytest.raises(ValueError, match="step_counter"):
        tg.train.CheckpointManager(ckpt, str(tmp_path), 1, checkpoint_interval=2)

    kept = tg.train.CheckpointManager(ckpt, str(tmp_path / "b"), max_to_keep=1, keep_checkpoint_every_n_hours=1e-9)
    first = kept.save()
    kept.save()
    assert os.path.exists(first + ".tgckpt") and kept.checkpoints == [str(tmp_path / "b" / "ckpt-6")]


def test_graph_mode_through_the_default_session(tmp_path):
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, 2.0], name="v")
        ckpt = tg.train.Checkpoint(v=v)
        with tg.Session() as sess:
            sess.run(v.initializer)
            first = ckpt.save(str(tmp_path / "c"))
            sess.run(v.assign([5.0, 6.0]))
            ckpt.save(str(tmp_path / "c"))
            nodes = len(g.as_graph_def().node)
            ckpt.save(str(tmp_path / "c"))
            assert len(g.as_graph_def().node) == nodes      # saving again adds no ops
            ckpt.restore(first).assert_consumed()
            assert sess.run(v).tolist() == [1.0, 2.0] and sess.run(ckpt.save_counter.read_value()) == 1
    with pytest.raises(ValueError, match="default session"):
        with g.as_default():
            ckpt.save(str(tmp_path / "c"))


def test_slots_made_after_a_restore_take_their_saved_values(tmp_path):
    def model():
        w = tg.Variable([1.0, -2.0], name="w")
        return w, tg.compat.v1.train.AdamOptimizer(0.1)

    def step(w, opt):
        opt.minimize(lambda: tg.reduce_sum(tg.square(w)), var_list=[w])
    w, opt = model()
    step(w, opt)
    path = tg.train.Checkpoint(w=w, opt=opt).write(str(tmp_path / "c"))
    step(w, opt)
    expected = w.numpy()

    w2, opt2 = model()
    status = tg.train.Checkpoint(w=w2, opt=opt2).read(path)   # before the optimizer made its slots
    with pytest.raises(AssertionError, match="Unresolved object"):
        status.assert_consumed()
    step(w2, opt2)      # makes m, v and the beta powers: they take their saved values, then the step runs
    status.assert_consumed()
    np.testing.assert_allclose(w2.numpy(), expected, rtol=1e-6)
