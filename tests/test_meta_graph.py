"""Meta graphs (client/meta_graph.py): .meta files, export/import, collections, the TF1 round trip in fresh processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1
from tensorgrid.proto import meta_graph_pb2

X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
Y = np.array([[1.0], [2.0], [3.0]], np.float32)


def train_and_save(tf, directory):
    """A TF1 program: builds a model, trains three steps, saves, trains three more. Returns the losses."""
    x = tf.placeholder(tf.float32, [None, 2], name="x")
    y = tf.placeholder(tf.float32, [None, 1], name="y")
    w = tf.Variable([[0.5], [-0.5]], name="w")
    b = tf.Variable([0.0], name="b")
    out = tf.add(tf.matmul(x, w), b, name="out")
    loss = tf.reduce_mean(tf.square(out - y), name="loss")
    step = tf.train.get_or_create_global_step()
    train = tf.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
    tf.add_to_collection("my_outputs", out)
    tf.add_to_collection("learning_rate", 0.1)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(train, {x: X, y: Y})
        saver.save(sess, os.path.join(directory, "model.ckpt"), global_step=step)
        return [float(sess.run([loss, train], {x: X, y: Y})[0]) for _ in range(3)]


def restore_and_train(tf, directory):
    """A second TF1 program: import_meta_graph, restore, fetch by name, train on (see train_and_save)."""
    latest = tf.train.latest_checkpoint(directory)
    saver = tf.train.import_meta_graph(latest + ".meta")
    g = tf.get_default_graph()
    train = tf.get_collection("train_op")[0]
    with tf.Session() as sess:
        saver.restore(sess, latest)
        losses = [float(sess.run(["loss:0", train], {"x:0": X, "y:0": Y})[0]) for _ in range(3)]
        out = sess.run(g.get_tensor_by_name("out:0"), {"x:0": X})
        same = sess.run(tf.get_collection("my_outputs")[0], {"x:0": X})
        return {"losses": losses, "out": out.ravel().tolist(), "same": bool(np.array_equal(out, same)),
                "step": int(sess.run(tf.train.get_global_step())),
                "trainable": [v.name for v in tf.trainable_variables()],
                "learning_rate": tf.get_collection("learning_rate")}


def _fresh_process(fn_name, directory, env=None):
    """Runs this module's fn_name(tensorgrid.compat.v1, directory) in a new Python process; its JSON result."""
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_meta_graph as t; "
            f"import tensorgrid.compat.v1 as tf; tf.disable_eager_execution(); "
            f"print(json.dumps(t.{fn_name}(tf, {str(directory)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tf1_round_trip_in_fresh_processes_matches_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow").compat.v1
    first = _fresh_process("train_and_save", tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.ckpt-3.meta", "model.ckpt-3.tgckpt"]
    second = _fresh_process("restore_and_train", tmp_path)
    tf_dir = tmp_path / "tf"
    tf_dir.mkdir()
    with tf.Graph().as_default():
        want_first = train_and_save(tf, str(tf_dir))
    with tf.Graph().as_default():
        want_second = restore_and_train(tf, str(tf_dir))
    np.testing.assert_allclose(first, want_first, rtol=1e-5)
    # the restored program continues exactly where the saved one was when it saved
    np.testing.assert_allclose(second["losses"], want_second["losses"], rtol=1e-5)
    np.testing.assert_allclose(second["losses"], first, rtol=1e-6)
    np.testing.assert_allclose(second["out"], want_second["out"], rtol=1e-5)
    assert second["same"] and second["step"] == want_second["step"] == 6
    assert second["trainable"] == want_second["trainable"] == ["w:0", "b:0"]
    np.testing.assert_allclose(second["learning_rate"], [0.1])


def test_restored_meta_graph_runs_on_a_cluster(tmp_path):
    from conftest import _local_cluster
    target = _local_cluster().target
    first = _fresh_process("train_and_save", tmp_path)
    try:
        second = _fresh_process("restore_and_train", tmp_path, env={"TENSORGRID_MASTER": target})
    finally:
        tg.Session.reset(target)
    np.testing.assert_allclose(second["losses"], first, rtol=1e-6)
    assert second["step"] == 6


def _small_graph():
    g = tg.Graph()
    with g.as_default():
        with tg.device("/cpu:0"):
            v = tg.Variable([1.0, 2.0], name="v")
        frozen = tg.Variable(3, name="frozen", trainable=False)
        out = tg.identity(v * 2.0, name="out")
        tg.add_to_collection("outs", out)
        tg.add_to_collection("ops", out.op)
        tg.add_to_collection("ints", 7)
        tg.add_to_collection("floats", 0.25)
        tg.add_to_collection("strings", "hello")
        tg.add_to_collection("mine", v)
        tg.add_to_collection("objects", object())
    return g, v, frozen, out


def test_export_writes_tfs_collection_kinds():
    g, v, frozen, out = _small_graph()
    with g.as_default(), pytest.warns(UserWarning, match="objects"):
        meta = v1.train.export_meta_graph()
    cds = meta.collection_def
    assert "objects" not in cds and not meta.HasField("saver_def")
    assert list(cds["outs"].node_list.value) == ["out:0"] and list(cds["ops"].node_list.value) == ["out"]
    assert list(cds["mine"].node_list.value) == ["v:0"]
    assert list(cds["ints"].int64_list.value) == [7] and list(cds["floats"].float_list.value) == [0.25]
    assert list(cds["strings"].bytes_list.value) == [b"hello"]
    defs = [meta_graph_pb2.VariableDef.FromString(b) for b in cds["variables"].bytes_list.value]
    assert [(d.variable_name, d.initializer_name, d.snapshot_name, d.is_resource, d.trainable) for d in defs] == [
        ("v:0", "v/Assign", "v/read:0", True, True), ("frozen:0", "frozen/Assign", "frozen/read:0", True, False)]
    assert len(cds["trainable_variables"].bytes_list.value) == 1


def test_import_with_a_scope_and_cleared_devices(tmp_path):
    g, *_ = _small_graph()
    path = str(tmp_path / "g.meta")
    with g.as_default(), pytest.warns(UserWarning):
        v1.train.export_meta_graph(path, as_text=True)
    assert open(path).read().startswith("meta_info_def")
    g2 = tg.Graph()
    with g2.as_default():
        assert v1.train.import_meta_graph(path, import_scope="imp", clear_devices=True) is not None
        assert [v.name for v in tg.trainable_variables()] == ["imp/v:0"]
        assert [v.name for v in tg.global_variables()] == ["imp/v:0", "imp/frozen:0"]
        assert tg.global_variables()[0] is tg.trainable_variables()[0]
        assert g2.get_operation_by_name("imp/v").device == ""
        assert tg.get_collection("outs") == [g2.get_tensor_by_name("imp/out:0")]
        assert tg.get_collection("strings") == ["imp/hello"] and tg.get_collection("ints") == [7]
        with tg.Session() as sess:
            sess.run(tg.global_variables_initializer())
            np.testing.assert_array_equal(sess.run("imp/out:0"), [2.0, 4.0])


def test_export_scope_keeps_and_renames_the_scope():
    g = tg.Graph()
    with g.as_default():
        with tg.name_scope("tower"):
            v = tg.Variable([1.0], name="v")
            tg.identity(v + 1.0, name="out")
        tg.Variable(0.0, name="elsewhere")
    with g.as_default():
        meta = v1.train.export_meta_graph(export_scope="tower")
    names = {n.name for n in meta.graph_def.node}
    assert "out" in names and "v" in names and not any(n.startswith(("tower", "elsewhere")) for n in names)
    g2 = tg.Graph()
    with g2.as_default():
        v1.train.import_meta_graph(meta, import_scope="copy")
        assert [x.name for x in tg.global_variables()] == ["copy/v:0"]
        with tg.Session() as sess:
            sess.run(tg.global_variables_initializer())
            assert sess.run("copy/out:0") == [2.0]


def test_save_writes_meta_unless_told_and_max_to_keep_removes_it(tmp_path):
    g, v, *_ = _small_graph()
    with g.as_default(), pytest.warns(UserWarning):
        saver = tg.train.Saver(max_to_keep=1)
        with tg.Session() as sess:
            sess.run(tg.global_variables_initializer())
            saver.save(sess, str(tmp_path / "a"), write_meta_graph=False)
            assert not (tmp_path / "a.meta").exists()
            saver.save(sess, str(tmp_path / "m"), global_step=1)
            saver.save(sess, str(tmp_path / "m"), global_step=2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "m-2.meta", "m-2.tgckpt"]
    meta = meta_graph_pb2.MetaGraphDef.FromString((tmp_path / "m-2.meta").read_bytes())
    assert meta.saver_def.restore_op_name == "save/restore_all" and meta.saver_def.max_to_keep == 1


def test_import_without_variables_gives_no_saver_and_eager_is_refused():
    with tg.Graph().as_default():
        assert v1.train.import_meta_graph(v1.train.export_meta_graph()) is None
    with pytest.raises(RuntimeError, match="eager execution"):
        v1.train.export_meta_graph()


def test_import_of_a_missing_or_corrupt_file(tmp_path):
    g = tg.Graph()
    with g.as_default():
        with pytest.raises(OSError, match="does not exist"):
            v1.train.import_meta_graph(str(tmp_path / "none.meta"))
        (tmp_path / "bad.meta").write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(tg.errors.DataLossError, match="bad.meta"):
            v1.train.import_meta_graph(str(tmp_path / "bad.meta"))


def test_the_savers_collection_travels_as_saver_defs(tmp_path):
    g = tg.Graph()
    with g.as_default():
        tg.Variable([1.0, 2.0], name="v")
        saver = tg.train.Saver()
        tg.add_to_collection(tg.GraphKeys.SAVERS, saver)
        meta = v1.train.export_meta_graph()
    raw = meta.collection_def["savers"].bytes_list.value
    assert [meta_graph_pb2.SaverDef.FromString(r).restore_op_name for r in raw] == ["save/restore_all"]
    g2 = tg.Graph()
    with g2.as_default():
        v1.train.import_meta_graph(meta, import_scope="imp")
        (restored,) = tg.get_collection(tg.GraphKeys.SAVERS)
        assert restored.as_saver_def().restore_op_name == "imp/save/restore_all"
        with tg.Session() as sess:
            sess.run(tg.global_variables_initializer())
            path = restored.save(sess, str(tmp_path / "m"), write_meta_graph=False)
            assert tg.train.load_checkpoint(path).get_variable_to_shape_map() == {"v": [2]}
