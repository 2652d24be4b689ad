"""tg.nn.embedding_lookup (client/embedding_ops.py) against TensorFlow, and the bytes a sparse step moves
across workers (benchmarks/sparse_bytes.py)."""

import os
import sys

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1

RNG = np.random.RandomState(11)
SHARDS = [RNG.randn(4, 3).astype(np.float32), RNG.randn(3, 3).astype(np.float32), RNG.randn(3, 3).astype(np.float32)]
IDS = np.array([[0, 9, 4], [7, 7, 2]], np.int32)


def _lookups(nn, params, ids):
    return {"mod": nn.embedding_lookup(params, ids, partition_strategy="mod"),
            "div": nn.embedding_lookup(params, ids, partition_strategy="div"),
            "one": nn.embedding_lookup(params[0], ids[:, :1] % 4),
            "max_norm": nn.embedding_lookup(params, ids, partition_strategy="div", max_norm=1.0)}


def test_lookups_match_tensorflow_with_shards_and_max_norm():
    tf = pytest.importorskip("tensorflow").compat.v1
    got = {k: v.numpy() for k, v in _lookups(v1.nn, [tg.constant(s) for s in SHARDS], IDS).items()}
    with tf.Graph().as_default(), tf.Session() as sess:
        want = sess.run(_lookups(tf.nn, [tf.constant(s) for s in SHARDS], IDS))
    for key in want:
        assert got[key].shape == want[key].shape == (2, 1 if key == "one" else 3, 3)
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    # TF2's tg.nn.embedding_lookup is the "div" strategy
    np.testing.assert_allclose(tg.nn.embedding_lookup([tg.constant(s) for s in SHARDS], IDS).numpy(), want["div"])


def test_sharded_variables_get_one_indexed_slices_each_and_the_result_its_name():
    g = tg.Graph()
    with g.as_default():
        shards = [tg.Variable(s, name=f"shard{i}") for i, s in enumerate(SHARDS)]
        ids = v1.placeholder(tg.int32, [None, 3])
        out = v1.nn.embedding_lookup(shards, ids, name="emb")
        single = v1.nn.embedding_lookup(shards[0], ids, name="one")
        assert single.name == "one/Identity:0"
        grads = tg.gradients(tg.reduce_sum(out * 2.0), shards)
        assert all(isinstance(gr, tg.IndexedSlices) for gr in grads)
        with tg.Session() as sess:
            sess.run(tg.global_variables_initializer())
            values = sess.run(grads, {ids: IDS})
    # "mod": id i is row i // 3 of shard i % 3
    for p, value in enumerate(values):
        want = sorted(int(i) // 3 for i in IDS.reshape(-1) if i % 3 == p)
        assert sorted(value.indices.tolist()) == want
        np.testing.assert_array_equal(value.values, np.full((len(want), 3), 2.0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="partition strategy"):
        v1.nn.embedding_lookup([tg.constant(SHARDS[0])], IDS, partition_strategy="modulo")
    with pytest.raises(ValueError, match="at least one"):
        tg.nn.embedding_lookup([], IDS)
    with pytest.raises(TypeError, match="integers"):
        tg.nn.embedding_lookup(tg.constant(SHARDS[0]), [0.5])


def test_only_the_slices_cross_workers():
    """A 1M x 64 float32 table on a ps task, 128 ids per step on a worker task: the data plane moves the
    ids, the gathered rows and their gradient rows, not the 256 MB table."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import sparse_bytes
    from tensorgrid.runtime.cluster import LocalCluster
    with LocalCluster(num_workers=1, num_ps=1) as cluster:
        got = sparse_bytes.measure(cluster, steps=3, optimizer="adagrad")
    assert got["slice_bytes"] <= got["bytes_per_step"] < 1_000_000, got
