"""Checkpoints across tasks (Saver(sharded=True), the default when variables span tasks): three ps tasks as
real processes each write their own shard and read it back, a fresh cluster restores it exactly, a ps task
killed mid-save leaves no checkpoint under the prefix; in-process, the index and shard files, partitioned
variables saved under their full names with TF's slice specs and restored into another partitioning."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import checkpoint_format, errors
from tests.taskprocs import cluster_of, tasks  # noqa: F401 - the fixture

tf = tg.compat.v1


@pytest.fixture
def client():
    """The client's task (/job:worker/task:0) of a cluster: a tg.train.Server in the test process."""
    started = []

    def start(cluster):
        started.append(tf.train.Server(cluster, "worker", 0))
        return started[-1].target
    yield start
    for server in started:
        server.stop()


def _model(cluster, big=0):
    """Variables round-robin over the ps tasks (w0 -> ps0, w1 -> ps1, ...); `big` floats more on ps 1."""
    g = tg.Graph()
    setter = tf.train.replica_device_setter(cluster=cluster, worker_device="/job:worker/task:0")
    with g.as_default(), tf.device(setter):
        vs = [tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) * (i + 1), name=f"w{i}") for i in range(3)]
        vs.append(tf.Variable(np.int64(7), name="step"))          # ps 0
        if big:
            vs.append(tf.Variable(tf.zeros([big]), name="big"))          # ps 1
        saver = tf.train.Saver(max_to_keep=None)
    return g, vs, saver


def _start(tasks, client, cluster):
    ps = [tasks.serve(cluster, "ps", i) for i in range(len(cluster["ps"]))]
    for task, address in zip(ps, cluster["ps"]):
        task.wait_serving(address)
    return client(cluster)


def _values(sess, vs):
    return [np.asarray(v) for v in sess.run(vs)]


def test_a_sharded_checkpoint_from_three_ps_tasks_restores_exactly_into_a_fresh_cluster(tasks, client, tmp_path):
    tf.disable_eager_execution()
    ckpt = tmp_path / "ckpt"             # the tasks' logs are in tmp_path
    ckpt.mkdir()
    cluster = cluster_of(ps=3, worker=1)
    target = _start(tasks, client, cluster)
    g, vs, saver = _model(cluster)
    devices = {op.device for op in g.get_operations() if op.type in ("SaveV2", "RestoreV2")}
    assert devices == {f"/job:ps/replica:0/task:{i}/device:CPU:0" for i in range(3)}
    with g.as_default(), tf.Session(target) as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(vs[1].assign_add(tf.ones([2, 3])))
        saved = _values(sess, vs)
        prefix = saver.save(sess, str(ckpt / "model.ckpt"), global_step=5)
        sess.run([v.initializer for v in vs[:3]])
        saver.restore(sess, prefix)
        for got, want in zip(_values(sess, vs), saved):
            np.testing.assert_array_equal(got, want)
    names = sorted(os.listdir(ckpt))
    assert names == ["checkpoint", "model.ckpt-5.meta", "model.ckpt-5.tgckpt"] + [
        f"model.ckpt-5.tgckpt-0000{i}-of-00003" for i in range(3)], names
    reader = tf.train.NewCheckpointReader(prefix)
    assert reader.get_variable_to_shape_map() == {"w0": [2, 3], "w1": [2, 3], "w2": [2, 3], "step": []}
    np.testing.assert_array_equal(reader.get_tensor("w1"), saved[1])
    tasks.stop_all()

    fresh = cluster_of(ps=3, worker=1)
    target = _start(tasks, client, fresh)
    g, vs, saver = _model(fresh)
    with g.as_default(), tf.Session(target) as sess:
        saver.restore(sess, tf.train.latest_checkpoint(str(ckpt)))
        for got, want in zip(_values(sess, vs), saved):
            np.testing.assert_array_equal(got, want)


def test_a_ps_task_killed_mid_save_leaves_no_checkpoint_under_the_prefix(tasks, client, tmp_path):
    tf.disable_eager_execution()
    ckpt = tmp_path / "ckpt"             # the tasks' logs are in tmp_path
    ckpt.mkdir()
    cluster = cluster_of(ps=3, worker=1)
    target = _start(tasks, client, cluster)
    big = 24 << 20                                  # 96 MiB on ps 1: its write takes a while
    g, vs, saver = _model(cluster, big)
    with g.as_default(), tf.Session(target) as sess:
        sess.run(tf.global_variables_initializer())
        saved = _values(sess, vs[:4])
        first = saver.save(sess, str(ckpt / "model.ckpt"), global_step=1)
        sess.run(vs[0].assign(tf.zeros([2, 3])))
        ps1 = tasks.started[1]
        failure = []

        def save():
            try:
                saver.save(sess, str(ckpt / "model.ckpt"), global_step=2)
            except errors.OpError as e:
                failure.append(e)
        t = threading.Thread(target=save)
        t.start()
        deadline = time.monotonic() + 60
        while not any(".part-00001-of-00003" in name for _, _, files in os.walk(ckpt) for name in files):
            assert time.monotonic() < deadline and t.is_alive(), "ps 1 never started writing its part"
            time.sleep(0.001)
        ps1.popen.send_signal(signal.SIGKILL)
        ps1.popen.wait()
        t.join(60)
        assert not t.is_alive() and failure, "the save did not fail"
    left = sorted(os.listdir(ckpt))
    assert not [n for n in left if n.startswith("model.ckpt-2.tgckpt")], left     # no index, no final shard
    assert [n for n in left if n.startswith("model.ckpt-2_temp_")], left            # just the temporary parts
    assert tf.train.latest_checkpoint(str(ckpt)) == first
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        saver.restore(None, first[:-1] + "2")

    tasks.serve(cluster, "ps", 1).wait_serving(cluster["ps"][1])      # ps 1 again, with no variables
    g, vs, saver = _model(cluster, big)
    with g.as_default(), tf.Session(target) as sess:
        deadline = time.monotonic() + 60
        while True:                                 # until the master finds the new ps 1
            try:
                saver.restore(sess, first)
                break
            except errors.UnavailableError:
                assert time.monotonic() < deadline, "the restarted ps 1 was never found"
                time.sleep(0.1)
        for got, want in zip(_values(sess, vs[:4]), saved):
            np.testing.assert_array_equal(got, want)


# ---- in-process --------------------------------------------------------------------------------------

def _partitioned(parts, value=None):
    g = tg.Graph()
    with g.as_default():
        init = tf.constant_initializer(0.0) if value is None else None
        emb = tf.get_variable("emb", shape=[11, 4] if value is None else None, initializer=init if value is None
                              else value, partitioner=tf.fixed_size_partitioner(parts) if parts else None)
        saver = tf.train.Saver()
    return g, emb, saver


def test_partitioned_variables_save_under_their_full_name_and_restore_into_another_partitioning(tmp_path):
    tf.disable_eager_execution()
    value = np.arange(44, dtype=np.float32).reshape(11, 4)
    g, emb, saver = _partitioned(3, value)
    assert [v.name for v in emb] == ["emb/part_0:0", "emb/part_1:0", "emb/part_2:0"]
    with g.as_default(), tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(emb.as_tensor()), value)
        prefix = saver.save(sess, str(tmp_path / "m"))
    assert tf.train.list_variables(prefix) == [("emb", [11, 4])]
    np.testing.assert_array_equal(tf.train.load_variable(prefix, "emb"), value)
    for parts in (2, 0):                          # two parts, and one unpartitioned variable
        g, emb, saver = _partitioned(parts)
        with g.as_default(), tf.Session() as sess:
            saver.restore(sess, prefix)
            whole = emb.as_tensor() if parts else emb
            np.testing.assert_array_equal(sess.run(whole), value)


def test_partitioned_names_shapes_and_keys_agree_with_tensorflow(tmp_path):
    from tests.tf_reference import tensorflow_v1

    def program(tf, path):
        g = tf.Graph()
        with g.as_default():
            emb = tf.get_variable("emb", shape=[11, 4], initializer=tf.ones_initializer(),
                                  partitioner=tf.fixed_size_partitioner(3))
            with tf.variable_scope("s", partitioner=tf.min_max_variable_partitioner(4, min_slice_size=64)):
                tf.get_variable("f", shape=[10, 8])
            tf.get_variable("h", shape=[7, 3], partitioner=tf.variable_axis_size_partitioner(30))
            loss = tf.reduce_sum(tf.nn.embedding_lookup(emb, [0, 5, 10, 5]))
            train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
            names = [(v.name, v.shape.as_list(), v._save_slice_info.spec) for v in tf.global_variables()]
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(train)
                tf.train.Saver().save(sess, path)
                return names, sess.run(emb.as_tensor())

    (tmp_path / "tf").mkdir()
    (tmp_path / "tg").mkdir()
    with tensorflow_v1() as tf1:
        tf_names, tf_emb = program(tf1, str(tmp_path / "tf" / "m"))
        tf_keys = sorted(tf1.train.list_variables(str(tmp_path / "tf" / "m")))
    tf.disable_eager_execution()
    names, emb = program(tf, str(tmp_path / "tg" / "m"))
    assert names == tf_names
    np.testing.assert_allclose(emb, tf_emb)
    assert sorted(tf.train.list_variables(str(tmp_path / "tg" / "m"))) == tf_keys


def test_sharded_format_index_and_mismatched_shard(tmp_path):
    """Saver(sharded=True) on one task: one data file and the index; a data file from another save is
    a DataLossError, not silently mixed in."""
    tf.disable_eager_execution()
    g = tg.Graph()
    with g.as_default():
        w = tf.Variable([1.0, 2.0], name="w")
        saver = tf.train.Saver(sharded=True)
        assert saver.saver_def.sharded
        with tf.Session() as sess:
            sess.run(w.initializer)
            prefix = saver.save(sess, str(tmp_path / "m"))
            sess.run(w.assign([5.0, 6.0]))
            other = saver.save(sess, str(tmp_path / "o"))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "m.meta", "m.tgckpt", "m.tgckpt-00000-of-00001",
                                            "o.meta", "o.tgckpt", "o.tgckpt-00000-of-00001"]
    index = checkpoint_format.Reader(prefix)
    assert index.num_shards == 1 and index.raw_entries[0]["shard"] == 0
    os.replace(other + ".tgckpt-00000-of-00001", prefix + ".tgckpt-00000-of-00001")
    with pytest.raises(errors.DataLossError, match="does not hold the w its index names"):
        tf.train.load_variable(prefix, "w")


def test_greedy_load_balancing_spreads_a_partitioned_embedding_over_the_tasks_and_trains_it():
    """By bytes, the parts of a large embedding go to different tasks (worker processes of the test
    cluster standing in for ps tasks), and a training step there moves just the rows it looked up."""
    from tests.conftest import _local_cluster
    tf.disable_eager_execution()
    strategy = tf.train.GreedyLoadBalancingStrategy(2, tf.train.byte_size_load_fn)
    setter = tf.train.replica_device_setter(ps_tasks=2, ps_device="/job:worker", worker_device="/job:worker/task:0",
                                            ps_strategy=strategy)
    with tg.Graph().as_default() as g:
        with tf.device(setter):
            emb = tf.get_variable("emb", [1000, 16], initializer=tf.ones_initializer(),
                                  partitioner=tf.fixed_size_partitioner(3))
            bias = tf.get_variable("bias", [16], initializer=tf.zeros_initializer())
            ids = tf.constant([3, 998, 500], tf.int64)
            loss = tf.reduce_sum(tf.nn.embedding_lookup(emb, ids, partition_strategy="div") + bias)
            train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
        # 334, 333 and 333 rows: the third part goes to task 1, which holds fewer bytes, the bias to task 0
        assert [v.device for v in emb] == ["/job:worker/task:0", "/job:worker/task:1", "/job:worker/task:1"]
        assert bias.device == "/job:worker/task:0"
        target = _local_cluster().target
        try:
            with tf.Session(target, graph=g) as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(train)
                table = sess.run(emb.as_tensor())
        finally:
            tg.Session.reset(target)
    moved = np.flatnonzero((table != 1.0).any(axis=1))
    assert moved.tolist() == [3, 500, 998]
    np.testing.assert_array_equal(table[moved], np.full((3, 16), 0.5, np.float32))
