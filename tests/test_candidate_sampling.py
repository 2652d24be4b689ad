"""Candidate samplers and the sampled losses (client/candidate_sampling.py): the samplers' distributions and
expected counts, and nce_loss / sampled_softmax_loss (values and gradients) against TensorFlow fed the same
sampled classes."""

import numpy as np
import pytest

import tensorgrid as tg

NUM_CLASSES, DIM, BATCH = 20, 4, 3


def _problem(num_true):
    rng = np.random.RandomState(7)
    weights = rng.randn(NUM_CLASSES, DIM).astype(np.float32)
    biases = rng.randn(NUM_CLASSES).astype(np.float32)
    inputs = rng.randn(BATCH, DIM).astype(np.float32)
    labels = np.array([[2, 5], [0, 11], [7, 2]], np.int64)[:, :num_true]
    return weights, biases, inputs, labels


def test_log_uniform_sampler_distribution_and_expected_counts():
    true = tg.constant([[0], [3]], tg.int64)
    sampled, true_count, sampled_count = tg.random.log_uniform_candidate_sampler(true, 1, 5, True, 10, seed=3)
    s = sampled.numpy()
    assert s.dtype == np.int64 and len(set(s.tolist())) == 5 and s.min() >= 0 and s.max() < 10
    # with no repeats drawn p * num_sampled; with repeats 1 - (1 - p)^tries: always in (0, 1] per class here
    assert true_count.shape.as_list() == [2, 1] and sampled_count.shape.as_list() == [5]
    p = (np.log(s + 2.0) - np.log(s + 1.0)) / np.log(11.0)
    counts = sampled_count.numpy()
    assert np.all(counts >= np.minimum(p * 5, 1) - 1e-6) or np.all(counts <= 1.0)
    draws = tg.random.log_uniform_candidate_sampler(tg.constant([[0]], tg.int64), 1, 20000, False, 10,
                                                    seed=1)[0].numpy()
    freq = np.bincount(draws, minlength=10) / 20000.0
    np.testing.assert_allclose(freq, (np.log(np.arange(10) + 2.0) - np.log(np.arange(10) + 1.0)) / np.log(11.0),
                               atol=0.01)
    u = tg.random.uniform_candidate_sampler(tg.constant([[1]], tg.int64), 1, 4, False, 8, seed=2)
    np.testing.assert_allclose(u[1].numpy(), [[0.5]])
    np.testing.assert_allclose(u[2].numpy(), [0.5] * 4)
    with pytest.raises(ValueError, match="range is too small"):
        tg.random.uniform_candidate_sampler(tg.constant([[1]], tg.int64), 1, 9, True, 8)


def test_seeded_sampler_repeats_in_a_fresh_session():
    def draw():
        g = tg.Graph()
        with g.as_default():
            tg.compat.v1.set_random_seed(5)
            s = tg.random.log_uniform_candidate_sampler(tg.constant([[1]], tg.int64), 1, 6, True, 50)[0]
            with tg.Session(graph=g) as sess:
                return sess.run(s)
    np.testing.assert_array_equal(draw(), draw())


def test_compute_accidental_hits_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    true = np.array([[1, 4], [3, 0], [4, 4]], np.int64)
    sampled = np.array([4, 2, 0, 9], np.int64)
    got = [t.numpy() for t in tg.nn.compute_accidental_hits(true, sampled, 2)]
    want = [t.numpy() for t in tf.nn.compute_accidental_hits(true, sampled, 2)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        assert g.dtype == w.dtype


def _loss_and_grads(m, loss_name, num_true, sampled_values, remove_accidental_hits):
    weights, biases, inputs, labels = _problem(num_true)
    w, b, x = m.Variable(weights), m.Variable(biases), m.Variable(inputs)
    with m.GradientTape() as tape:
        loss = getattr(m.nn, loss_name)(w, b, labels, x, num_sampled=4, num_classes=NUM_CLASSES,
                                        num_true=num_true, sampled_values=sampled_values,
                                        remove_accidental_hits=remove_accidental_hits)
        total = m.reduce_sum(loss * m.constant([1.0, 2.0, 3.0]))
    grads = tape.gradient(total, [w, b, x])
    dense = [m.convert_to_tensor(g).numpy() for g in grads]
    return loss.numpy(), dense


@pytest.mark.parametrize("loss_name", ["nce_loss", "sampled_softmax_loss"])
@pytest.mark.parametrize("num_true", [1, 2])
@pytest.mark.parametrize("remove_accidental_hits", [False, True])
def test_sampled_losses_match_tensorflow_on_the_same_samples(loss_name, num_true, remove_accidental_hits):
    tf = pytest.importorskip("tensorflow")
    _, _, _, labels = _problem(num_true)
    # TF's sampler picks the classes; both losses are fed them (label 2 is sampled: an accidental hit)
    sampled = np.array([2, 9, 13, 1], np.int64)
    p = (np.log(sampled + 2.0) - np.log(sampled + 1.0)) / np.log(NUM_CLASSES + 1.0)
    true_p = (np.log(labels + 2.0) - np.log(labels + 1.0)) / np.log(NUM_CLASSES + 1.0)
    values = (sampled, (true_p * 4).astype(np.float32), (p * 4).astype(np.float32))
    tf_sampled = tf.random.log_uniform_candidate_sampler(labels, num_true, 4, True, NUM_CLASSES, seed=1)
    tf_values = tuple(t.numpy() for t in tf_sampled)
    for vals in (values, tf_values):
        got_loss, got_grads = _loss_and_grads(tg, loss_name, num_true, vals, remove_accidental_hits)
        want_loss, want_grads = _loss_and_grads(tf, loss_name, num_true, vals, remove_accidental_hits)
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
        for g, w in zip(got_grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_nce_loss_trains_in_a_graph_on_a_cluster():
    """A TF1 word2vec-style step: nce_loss over a sharded embedding on the ps-like worker, own sampler."""
    from tests.conftest import _local_cluster
    v1 = tg.compat.v1
    g = tg.Graph()
    with g.as_default():
        v1.set_random_seed(1)
        with tg.device("/job:worker/task:1"):
            weights = [tg.Variable(np.random.RandomState(i).randn(10, DIM).astype(np.float32) * 0.1)
                       for i in range(2)]
            biases = tg.Variable(np.zeros(NUM_CLASSES, np.float32))
        with tg.device("/job:worker/task:0"):
            x = v1.placeholder(tg.float32, [None, DIM])
            y = v1.placeholder(tg.int64, [None, 1])
            loss = tg.reduce_mean(v1.nn.nce_loss(weights, biases, y, x, 5, NUM_CLASSES, partition_strategy="div"))
            step = v1.train.GradientDescentOptimizer(0.5).minimize(loss)
        target = _local_cluster().target
        try:
            with tg.Session(target, graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                rng = np.random.RandomState(0)
                xs = rng.randn(16, DIM).astype(np.float32)
                ys = (np.abs(xs[:, :1]) * 4).astype(np.int64) % NUM_CLASSES
                first = sess.run(loss, {x: xs, y: ys})
                for _ in range(30):
                    sess.run(step, {x: xs, y: ys})
                last = sess.run(loss, {x: xs, y: ys})
        finally:
            tg.Session.reset(target)
    assert np.isfinite(first) and last < first
