"""The TF1 optimizers (client/train/optimizers.py) on sparse gradients: an embedding model trained on
tensorgrid and on TensorFlow from the same initial values, graph mode and a tape in tg.function."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1

RNG = np.random.RandomState(0)
ROWS, DIM, BATCH, STEPS = 20, 4, 8, 3
TABLE = (RNG.randn(ROWS, DIM) * 0.1).astype(np.float32)
DENSE = RNG.randn(DIM, 1).astype(np.float32)
IDS = [RNG.randint(1, ROWS, BATCH).astype(np.int32) for _ in range(STEPS)]   # row 0 is never looked up
IDS[0][:3] = 5                                                                # repeated ids in one batch
LABELS = [RNG.randn(BATCH, 1).astype(np.float32) for _ in range(STEPS)]

OPTIMIZERS = {
    "sgd": lambda m: m.train.GradientDescentOptimizer(0.1),
    "momentum": lambda m: m.train.MomentumOptimizer(0.1, 0.9),
    "nesterov": lambda m: m.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    "adagrad": lambda m: m.train.AdagradOptimizer(0.1),
    "rmsprop": lambda m: m.train.RMSPropOptimizer(0.01, momentum=0.5),
    "centered_rmsprop": lambda m: m.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
    "adam": lambda m: m.train.AdamOptimizer(0.01),
}


def _train(m, kind):
    """Trains the embedding model with m's TF1 API; returns (table, dense, {slot: table's slot}, losses)."""
    g = m.Graph()
    with g.as_default():
        table, dense = m.Variable(TABLE, name="table"), m.Variable(DENSE, name="dense")
        ids = m.placeholder(m.int32, [BATCH])
        labels = m.placeholder(m.float32, [BATCH, 1])
        loss = m.reduce_mean(m.square(m.matmul(m.nn.embedding_lookup(table, ids), dense) - labels))
        opt = OPTIMIZERS[kind](m)
        train = opt.minimize(loss)
        with m.Session() as sess:
            sess.run(m.global_variables_initializer())
            losses = [sess.run([loss, train], {ids: i, labels: y})[0] for i, y in zip(IDS, LABELS)]
            slots = {name: sess.run(opt.get_slot(table, name)) for name in opt.get_slot_names()}
            return sess.run(table), sess.run(dense), slots, losses


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_embedding_model_trains_as_on_tensorflow(kind):
    tf = pytest.importorskip("tensorflow").compat.v1
    got, want = _train(v1, kind), _train(tf, kind)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-5)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    assert sorted(got[2]) == sorted(want[2])
    for name in want[2]:
        np.testing.assert_allclose(got[2][name], want[2][name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert np.array_equal(got[0][0], TABLE[0])   # a row no batch looks up never moves


def _tape_in_function(m, optimizer):
    table, dense = m.Variable(TABLE), m.Variable(DENSE)

    @m.function
    def step(ids, labels):
        with m.GradientTape() as tape:
            loss = m.reduce_mean(m.square(m.matmul(m.nn.embedding_lookup(table, ids), dense) - labels))
        grads = tape.gradient(loss, [table, dense])
        optimizer.apply_gradients(zip(grads, [table, dense]))
        return loss, isinstance(grads[0], m.IndexedSlices)
    out = [step(m.constant(i), m.constant(y)) for i, y in zip(IDS, LABELS)]
    return [float(loss) for loss, _ in out], table.numpy(), all(sparse for _, sparse in out)


def test_sparse_updates_from_a_tape_in_a_function_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    got = _tape_in_function(tg, tg.train.AdagradOptimizer(0.1))
    want = _tape_in_function(tf, tf.compat.v1.train.AdagradOptimizer(0.1))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    assert got[2] and want[2]
