"""tg.train.Saver: round trips, the checkpoint state file, max_to_keep, errors, atomic writes, the format."""

import json
import os
import struct

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.train import saver as saver_lib
from tensorgrid.framework import checkpoint_format, errors

VALUES = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "f64": np.array([np.pi, -np.e]),
    "i32": np.array([1, -2, 3], np.int32),
    "i64": np.array(2**40, np.int64),
    "flag": np.array([True, False]),
    "empty": np.zeros((0, 4), np.float32),
    "scalar": np.float32(1.5),
}


def _model(values=VALUES, devices=1):
    """A graph holding one variable per entry of `values` (spread over `devices`)."""
    g = tg.Graph()
    with g.as_default():
        vs = {}
        for i, (name, value) in enumerate(values.items()):
            with tg.device(f"/cpu:{i % devices}"):
                vs[name] = tg.Variable(value, name=name)
    return g, vs


def _session(g, devices=1):
    return tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": devices}))


def _leftovers(directory):
    return [n for n in os.listdir(directory) if ".tmp-" in n]


def test_round_trip_of_every_dtype(tmp_path):
    g, vs = _model(devices=3)
    with g.as_default():
        saver = tg.train.Saver()
        with _session(g, 3) as sess:
            sess.run(tg.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "model.ckpt"))
            assert path == str(tmp_path / "model.ckpt")
            sess.run([v.assign(tg.zeros_like(v)) for v in vs.values()])
            saver.restore(sess, path)
            for name, value in VALUES.items():
                got = sess.run(vs[name])
                np.testing.assert_array_equal(got, value)
                assert np.asarray(got).dtype == np.asarray(value).dtype


def test_restore_into_a_new_graph_and_session(tmp_path):
    g, _ = _model()
    with g.as_default():
        saver = tg.train.Saver()
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "m"), global_step=7)
    assert path.endswith("m-7")
    g2, vs2 = _model({k: np.zeros_like(v) for k, v in VALUES.items()})
    with g2.as_default():
        saver2 = tg.train.Saver()
        with _session(g2) as sess:
            saver2.restore(sess, tg.train.latest_checkpoint(str(tmp_path)))
            np.testing.assert_array_equal(sess.run(vs2["f32"]), VALUES["f32"])


def test_global_step_tensor_state_file_and_max_to_keep(tmp_path):
    g = tg.Graph()
    with g.as_default():
        w = tg.Variable(0.0, name="w")
        step = tg.train.get_or_create_global_step()
        bump = [w.assign_add(1.0), step.assign_add(1)]
        saver = tg.train.Saver(max_to_keep=2)
        prefix = str(tmp_path / "model.ckpt")
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            for _ in range(3):
                sess.run(bump)
                saver.save(sess, prefix, global_step=step)
    assert saver.last_checkpoints == [prefix + "-2", prefix + "-3"]
    assert not tg.train.checkpoint_exists(prefix + "-1")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.ckpt-2.meta", "model.ckpt-2.tgckpt",
                                            "model.ckpt-3.meta", "model.ckpt-3.tgckpt"]
    with open(tmp_path / "checkpoint") as f:
        assert f.read().splitlines() == ['model_checkpoint_path: "model.ckpt-3"',
                                         'all_model_checkpoint_paths: "model.ckpt-2"',
                                         'all_model_checkpoint_paths: "model.ckpt-3"']
    state = tg.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == prefix + "-3"
    assert state.all_model_checkpoint_paths == [prefix + "-2", prefix + "-3"]
    assert tg.train.latest_checkpoint(str(tmp_path)) == prefix + "-3"
    assert tg.train.list_variables(str(tmp_path)) == [("global_step", []), ("w", [])]
    assert tg.train.load_variable(prefix + "-2", "w") == 2.0


def test_max_to_keep_none_keeps_everything(tmp_path):
    g = tg.Graph()
    with g.as_default():
        tg.Variable(1.0)
        saver = tg.train.Saver(max_to_keep=None)
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            for i in range(4):
                saver.save(sess, str(tmp_path / "c"), global_step=i)
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".tgckpt")]) == 4


def test_latest_checkpoint_of_an_empty_directory(tmp_path):
    assert tg.train.latest_checkpoint(str(tmp_path)) is None
    assert tg.train.get_checkpoint_state(str(tmp_path)) is None


def test_var_list_dict_renames(tmp_path):
    g = tg.Graph()
    with g.as_default():
        a = tg.Variable([1.0, 2.0], name="a")
        b = tg.Variable([0.0, 0.0], name="b")
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            path = tg.train.Saver({"shared": a}).save(sess, str(tmp_path / "x"))
            tg.train.Saver({"shared": b}).restore(sess, path)
            np.testing.assert_array_equal(sess.run(b), [1.0, 2.0])
            with pytest.raises(errors.NotFoundError, match="Key b not found"):
                tg.train.Saver([b]).restore(sess, path)


def test_restore_errors(tmp_path):
    g = tg.Graph()
    with g.as_default():
        a = tg.Variable([1.0, 2.0], name="a")
        wide = tg.Variable([1.0, 2.0, 3.0], name="wide")
        ints = tg.Variable([1, 2], name="ints")
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            path = tg.train.Saver([a]).save(sess, str(tmp_path / "x"))
            with pytest.raises(errors.InvalidArgumentError, match="shape"):
                tg.train.Saver({"a": wide}).restore(sess, path)
            with pytest.raises(errors.InvalidArgumentError, match="dtype"):
                tg.train.Saver({"a": ints}).restore(sess, path)
            with pytest.raises(ValueError, match="not a valid checkpoint"):
                tg.train.Saver([a]).restore(sess, str(tmp_path / "missing"))
            with pytest.raises(ValueError, match="None"):
                tg.train.Saver([a]).restore(sess, None)
            with pytest.raises(ValueError, match="doesn't exist"):
                tg.train.Saver([a]).save(sess, str(tmp_path / "no" / "such" / "dir"))


def test_saving_an_uninitialized_variable_fails(tmp_path):
    g = tg.Graph()
    with g.as_default():
        tg.Variable(1.0, name="never_set")
        saver = tg.train.Saver()
        with _session(g) as sess:
            with pytest.raises(errors.FailedPreconditionError, match="never_set"):
                saver.save(sess, str(tmp_path / "x"))
    assert os.listdir(tmp_path) == []


def test_saver_needs_variables_and_a_graph():
    with tg.Graph().as_default():
        with pytest.raises(ValueError, match="No variables to save"):
            tg.train.Saver()
        tg.train.Saver(allow_empty=True)
    with pytest.raises(RuntimeError, match="graph mode"):
        tg.train.Saver([tg.Variable(1.0)])


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    g = tg.Graph()
    with g.as_default():
        w = tg.Variable(np.arange(1000, dtype=np.float32), name="w")
        saver = tg.train.Saver()
        prefix = str(tmp_path / "model")
        with _session(g) as sess:
            sess.run(w.initializer)
            saver.save(sess, prefix)
            state_before = (tmp_path / "checkpoint").read_bytes()

            def crash_midway(f, chunks):
                f.write(b"".join(chunks)[:100])
                raise OSError("disk full")
            monkeypatch.setattr(checkpoint_format, "_write_chunks", crash_midway)
            sess.run(w.assign(tg.zeros([1000])))
            with pytest.raises(OSError, match="disk full"):
                saver.save(sess, prefix)
            monkeypatch.undo()
            assert _leftovers(tmp_path) == []
            assert (tmp_path / "checkpoint").read_bytes() == state_before
            saver.restore(sess, prefix)
            np.testing.assert_array_equal(sess.run(w), np.arange(1000))


def test_checkpoint_file_is_replaced_only_by_rename(tmp_path, monkeypatch):
    target = tmp_path / "file.tgckpt"
    target.write_bytes(b"old")
    renames = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((os.path.dirname(src), os.path.basename(dst)))
        assert target.read_bytes() == b"old"  # the final name holds the old file until the rename
        real_replace(src, dst)
    monkeypatch.setattr(saver_lib.os, "replace", recording_replace)
    saver_lib.atomic_write(str(target), [b"new ", b"contents"])
    assert target.read_bytes() == b"new contents"
    assert renames == [(str(tmp_path), "file.tgckpt")]
    assert _leftovers(tmp_path) == []


def test_corruption_is_a_data_loss_error(tmp_path):
    g, vs = _model({"w": np.ones(64, np.float32)})
    with g.as_default():
        saver = tg.train.Saver()
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "m"))
            data = bytearray((tmp_path / "m.tgckpt").read_bytes())
            data[-5] ^= 0xFF
            (tmp_path / "m.tgckpt").write_bytes(bytes(data))
            with pytest.raises(errors.DataLossError, match="w"):
                saver.restore(sess, path)
            (tmp_path / "m.tgckpt").write_bytes(b"garbage!" * 4)
            with pytest.raises(errors.DataLossError, match="magic"):
                saver.restore(sess, path)


def test_file_layout_is_as_documented(tmp_path):
    g, _ = _model({"b": np.array([1.0, 2.0], np.float64), "a": np.array([[7]], np.int32)})
    with g.as_default():
        saver = tg.train.Saver()
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            saver.save(sess, str(tmp_path / "m"))
    raw = (tmp_path / "m.tgckpt").read_bytes()
    assert raw[:8] == b"TGCKPT\x00\x01"
    (length,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16:16 + length])
    data = raw[16 + length:]
    assert header["format"] == 1
    entries = {e["name"]: e for e in header["tensors"]}
    assert [e["name"] for e in header["tensors"]] == ["a", "b"]
    a, b = entries["a"], entries["b"]
    assert (a["dtype"], a["shape"], b["dtype"], b["shape"]) == ("int32", [1, 1], "float64", [2])
    np.testing.assert_array_equal(np.frombuffer(data[b["offset"]:b["offset"] + b["nbytes"]], "<f8"), [1.0, 2.0])
    assert np.frombuffer(data[a["offset"]:a["offset"] + a["nbytes"]], "<i4")[0] == 7


def test_cluster_session_round_trip(tmp_path):
    from tensorgrid.runtime.cluster import LocalCluster

    def build():
        g = tg.Graph()
        with g.as_default():
            setter = tg.train.replica_device_setter(ps_tasks=2, ps_device="/job:worker",
                                                    worker_device="/job:worker/task:1")
            with tg.device(setter):
                w = tg.Variable(np.arange(4, dtype=np.float32), name="w")
                step = tg.train.get_or_create_global_step()
                train = tg.train.MomentumOptimizer(0.1, 0.9).minimize(tg.reduce_sum(w * w), global_step=step)
            return g, w, step, train, tg.train.Saver(), tg.report_uninitialized_variables()
    # the variables span both tasks: each saves its own file there, so the workers may write under tmp_path
    with LocalCluster(num_workers=2, extra_worker_args=["--allow-file-access", str(tmp_path)]) as cluster:
        g, w, step, train, saver, uninitialized = build()
        with tg.Session(cluster.target, graph=g) as sess:
            sess.run(tg.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            path = saver.save(sess, str(tmp_path / "model"), global_step=step)
            saved = sess.run(w)
        g, w, step, train, saver, uninitialized = build()
        with tg.Session(cluster.target, graph=g) as sess:
            assert sess.run(uninitialized).shape == (0,)  # variables outlive the session on the cluster
            sess.run(tg.global_variables_initializer())
            assert sess.run(step) == 0
            saver.restore(sess, path)
            assert sess.run(step) == 3
            np.testing.assert_array_equal(sess.run(w), saved)


def test_checkpoint_reader_matches_tensorflows_api(tmp_path):
    g, vs = _model()
    with g.as_default():
        saver = tg.train.Saver()
        with _session(g) as sess:
            sess.run(tg.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=7)
    for reader in (tg.train.load_checkpoint(str(tmp_path)), tg.train.load_checkpoint(path),
                   tg.compat.v1.train.NewCheckpointReader(path)):
        assert reader.get_variable_to_shape_map() == {k: list(np.shape(v)) for k, v in VALUES.items()}
        assert reader.get_variable_to_dtype_map()["i64"] == tg.int64
        assert reader.has_tensor("f32") and not reader.has_tensor("nope")
        np.testing.assert_array_equal(reader.get_tensor("f64"), VALUES["f64"])
        with pytest.raises(errors.NotFoundError, match="Key nope not found"):
            reader.get_tensor("nope")
    assert tg.train.list_variables(str(tmp_path)) == sorted((k, list(np.shape(v))) for k, v in VALUES.items())
    for bad in (lambda: tg.train.NewCheckpointReader(str(tmp_path / "missing")),
                lambda: tg.train.load_checkpoint(str(tmp_path / "missing"))):
        with pytest.raises(errors.NotFoundError, match="Failed to find any matching files"):
            bad()
