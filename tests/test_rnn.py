"""tf.nn.rnn_cell, dynamic_rnn, static_rnn and bidirectional_dynamic_rnn: TF1's variable names, TF1's
numbers (against NumPy, and against TensorFlow's own dynamic_rnn training an LSTM), gradients by
finite differences, and the same network on a cluster."""

import numpy as np
import pytest

import tensorgrid as tg
from gradcheck import check_gradients
from tf_reference import tensorflow_v1

tf = tg.compat.v1
rnn_cell = tf.nn.rnn_cell
RNG = np.random.RandomState(0)
X = RNG.randn(2, 4, 3).astype(np.float32)  # [batch, time, depth]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _graph():
    tf.disable_eager_execution()
    return tg.Graph()


def _set(sess, weights):
    """Assigns {variable name: value} to the graph's global variables; returns the values used."""
    for v in tf.global_variables():
        sess.run(v.assign(weights[v.name]))
    return weights


def _random_weights(scale=0.4):
    rng = np.random.RandomState(1)
    return {v.name: (rng.randn(*v.shape.as_list()) * scale).astype(np.float32) for v in tf.global_variables()}


def _np_lstm(x, kernel, bias, n, forget_bias=1.0):
    c = h = np.zeros((x.shape[0], n), np.float32)
    outs = []
    for t in range(x.shape[1]):
        i, j, f, o = np.split(np.concatenate([x[:, t], h], 1) @ kernel + bias, 4, axis=1)
        c = c * _sigmoid(f + forget_bias) + _sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * _sigmoid(o)
        outs.append(h)
    return np.stack(outs, 1), c, h


def test_cells_name_their_variables_as_tf1_does():
    g = _graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2, 4, 3])
        tf.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(5), x, dtype=tg.float32)
        tf.nn.dynamic_rnn(rnn_cell.GRUCell(5), x, dtype=tg.float32, scope="gru")
        tf.nn.dynamic_rnn(rnn_cell.MultiRNNCell([rnn_cell.BasicRNNCell(4), rnn_cell.LSTMCell(
            6, use_peepholes=True, num_proj=2)]), x, dtype=tg.float32, scope="deep")
        tf.nn.bidirectional_dynamic_rnn(rnn_cell.BasicLSTMCell(3), rnn_cell.BasicLSTMCell(3), x, dtype=tg.float32)
        shapes = {v.name: v.shape.as_list() for v in tf.global_variables()}
    assert shapes == {
        "rnn/basic_lstm_cell/kernel:0": [8, 20], "rnn/basic_lstm_cell/bias:0": [20],
        "gru/gru_cell/gates/kernel:0": [8, 10], "gru/gru_cell/gates/bias:0": [10],
        "gru/gru_cell/candidate/kernel:0": [8, 5], "gru/gru_cell/candidate/bias:0": [5],
        "deep/multi_rnn_cell/cell_0/basic_rnn_cell/kernel:0": [7, 4],
        "deep/multi_rnn_cell/cell_0/basic_rnn_cell/bias:0": [4],
        "deep/multi_rnn_cell/cell_1/lstm_cell/kernel:0": [6, 24],
        "deep/multi_rnn_cell/cell_1/lstm_cell/bias:0": [24],
        "deep/multi_rnn_cell/cell_1/lstm_cell/w_f_diag:0": [6],
        "deep/multi_rnn_cell/cell_1/lstm_cell/w_i_diag:0": [6],
        "deep/multi_rnn_cell/cell_1/lstm_cell/w_o_diag:0": [6],
        "deep/multi_rnn_cell/cell_1/lstm_cell/projection/kernel:0": [6, 2],
        "bidirectional_rnn/fw/basic_lstm_cell/kernel:0": [6, 12], "bidirectional_rnn/fw/basic_lstm_cell/bias:0": [12],
        "bidirectional_rnn/bw/basic_lstm_cell/kernel:0": [6, 12], "bidirectional_rnn/bw/basic_lstm_cell/bias:0": [12],
    }


def test_lstm_gru_and_peephole_projection_numbers_are_tf1s():
    g = _graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, X.shape)
        out_lstm, state = tf.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(5, forget_bias=0.5), x, dtype=tg.float32)
        out_gru, gru_state = tf.nn.dynamic_rnn(rnn_cell.GRUCell(4), x, dtype=tg.float32, scope="gru")
        peep = rnn_cell.LSTMCell(3, use_peepholes=True, cell_clip=0.5, num_proj=2, proj_clip=0.3)
        out_peep, peep_state = tf.nn.dynamic_rnn(peep, x, dtype=tg.float32, time_major=True, scope="peep")
        with tg.Session() as sess:
            w = _set(sess, _random_weights())
            got = sess.run([out_lstm, state, out_gru, gru_state, out_peep, peep_state], {x: X})
    outs, c, h = _np_lstm(X, w["rnn/basic_lstm_cell/kernel:0"], w["rnn/basic_lstm_cell/bias:0"], 5, 0.5)
    np.testing.assert_allclose(got[0], outs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1].c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1].h, h, rtol=1e-5, atol=1e-6)
    h = np.zeros((2, 4), np.float32)
    gru = []
    for t in range(4):
        gates = _sigmoid(np.concatenate([X[:, t], h], 1) @ w["gru/gru_cell/gates/kernel:0"] + w["gru/gru_cell/gates/bias:0"])
        r, u = np.split(gates, 2, axis=1)
        cand = np.tanh(np.concatenate([X[:, t], r * h], 1) @ w["gru/gru_cell/candidate/kernel:0"]
                       + w["gru/gru_cell/candidate/bias:0"])
        h = u * h + (1 - u) * cand
        gru.append(h)
    np.testing.assert_allclose(got[2], np.stack(gru, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[3], h, rtol=1e-5, atol=1e-6)
    p = {k.split("/", 2)[2]: v for k, v in w.items() if k.startswith("peep/")}
    c, m = np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)  # time-major: X is [time=2, batch=4]
    peeps = []
    for t in range(2):
        i, j, f, o = np.split(np.concatenate([X[t], m], 1) @ p["kernel:0"] + p["bias:0"], 4, axis=1)
        c = _sigmoid(f + 1.0 + p["w_f_diag:0"] * c) * c + _sigmoid(i + p["w_i_diag:0"] * c) * np.tanh(j)
        c = np.clip(c, -0.5, 0.5)
        m = np.clip((_sigmoid(o + p["w_o_diag:0"] * c) * np.tanh(c)) @ p["projection/kernel:0"], -0.3, 0.3)
        peeps.append(m)
    np.testing.assert_allclose(got[4], np.stack(peeps), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[5].c, c, rtol=1e-5, atol=1e-6)


def test_sequence_length_static_rnn_and_bidirectional():
    g = _graph()
    lengths = np.array([4, 2], np.int32)
    with g.as_default():
        x = tf.placeholder(tg.float32, X.shape)
        seq = tf.placeholder(tg.int32, [2])
        dyn, dyn_state = tf.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(3), x, sequence_length=seq, dtype=tg.float32)
        static, static_state = tf.nn.static_rnn(rnn_cell.BasicLSTMCell(3), tg.unstack(x, axis=1),
                                                sequence_length=seq, dtype=tg.float32, scope="static")
        (fw, bw), _ = tf.nn.bidirectional_dynamic_rnn(rnn_cell.BasicLSTMCell(3), rnn_cell.BasicLSTMCell(3), x,
                                                      sequence_length=seq, dtype=tg.float32)
        with tg.Session() as sess:
            w = _random_weights()
            for scope in ("static/", "bidirectional_rnn/fw/", "bidirectional_rnn/bw/"):
                for part in ("kernel:0", "bias:0"):
                    w[scope + "basic_lstm_cell/" + part] = w["rnn/basic_lstm_cell/" + part]
            _set(sess, w)
            got = sess.run([dyn, dyn_state, static, static_state, fw, bw], {x: X, seq: lengths})
    kernel, bias = w["rnn/basic_lstm_cell/kernel:0"], w["rnn/basic_lstm_cell/bias:0"]
    for b, n in enumerate(lengths):
        outs, c, h = _np_lstm(X[b:b + 1, :n], kernel, bias, 3)
        np.testing.assert_allclose(got[0][b, :n], outs[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[0][b, n:], 0.0)  # past its length: zero outputs, the state kept
        np.testing.assert_allclose(got[1].h[b], h[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.stack(got[2], 1)[b], got[0][b], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[3].c[b], c[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[4][b], got[0][b], rtol=1e-5, atol=1e-6)
        back, _, _ = _np_lstm(X[b:b + 1, :n][:, ::-1], kernel, bias, 3)
        np.testing.assert_allclose(got[5][b, :n], back[0, ::-1], rtol=1e-5, atol=1e-6)


def test_dynamic_rnn_gradients_match_finite_differences():
    def fn(x, h0):
        cell = rnn_cell.GRUCell(2, kernel_initializer=tf.constant_initializer(0.3),
                                bias_initializer=tf.constant_initializer(0.1))
        out, state = tf.nn.dynamic_rnn(cell, x, initial_state=h0, sequence_length=[3, 2])
        return out * 2.0 + tg.expand_dims(state, 1)
    tf.disable_eager_execution()
    check_gradients(fn, RNG.randn(2, 3, 2), RNG.randn(2, 2), rtol=1e-4, atol=1e-6)


def test_dynamic_rnn_eagerly_and_in_tg_function():
    tf.enable_eager_execution()
    cell = rnn_cell.BasicLSTMCell(3)
    out, state = tf.nn.dynamic_rnn(cell, tg.constant(X), dtype=tg.float32)
    kernel, bias = [v.numpy() for v in cell.variables]
    np.testing.assert_allclose(out.numpy(), _np_lstm(X, kernel, bias, 3)[0], rtol=1e-5, atol=1e-6)

    @tg.function
    def run(x):
        return tf.nn.dynamic_rnn(cell, x, dtype=tg.float32)[0]
    np.testing.assert_allclose(run(tg.constant(X)).numpy(), out.numpy(), rtol=1e-5, atol=1e-6)


def test_an_lstm_trains_on_a_cluster_as_in_process():
    from conftest import _local_cluster
    results = []
    for target in ("", _local_cluster().target):
        g = _graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, X.shape)
            with tg.device("/job:worker/task:1" if target else None):
                out, _ = tf.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(3), x, dtype=tg.float32)
            loss = tg.reduce_sum(out * out)
            train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
            with tg.Session(target) as sess:
                sess.run(tf.global_variables_initializer())
                _set(sess, _random_weights())
                for _ in range(3):
                    sess.run(train, {x: X})
                results.append(sess.run(loss, {x: X}))
            if target:
                tg.Session.reset(target)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)


# ---- against TensorFlow --------------------------------------------------------------------------------

class _TensorFlowLSTM:
    """TF1's BasicLSTMCell written with TensorFlow's ops, for TensorFlow's own dynamic_rnn: TF 2.21
    without tf_keras has no tf.nn.rnn_cell."""

    def __init__(self, tf_, n):
        self.tf, self.n = tf_, n
        self.state_size, self.output_size = (n, n), n

    def zero_state(self, batch, dtype):
        zeros = self.tf.zeros([batch, self.n], dtype)
        return zeros, zeros

    def __call__(self, x, state, scope=None):
        t = self.tf
        with t.variable_scope("basic_lstm_cell", reuse=t.AUTO_REUSE):
            kernel = t.get_variable("kernel", [int(x.shape[-1]) + self.n, 4 * self.n])
            bias = t.get_variable("bias", [4 * self.n], initializer=t.zeros_initializer())
        c, h = state
        i, j, f, o = t.split(t.matmul(t.concat([x, h], 1), kernel) + bias, 4, axis=1)
        new_c = c * t.sigmoid(f + 1.0) + t.sigmoid(i) * t.tanh(j)
        new_h = t.tanh(new_c) * t.sigmoid(o)
        return new_h, (new_c, new_h)


def _train_lstm(m, cell, weights, lengths):
    g = m.Graph()
    with g.as_default():
        x = m.placeholder(m.float32, X.shape)
        out, state = m.nn.dynamic_rnn(cell(m), x, sequence_length=lengths, dtype=m.float32)
        loss = m.reduce_sum(out * out) + m.reduce_sum(state[0])
        train = m.train.GradientDescentOptimizer(0.1).minimize(loss)
        variables = sorted(m.global_variables(), key=lambda v: v.name)
        with m.Session() as sess:
            sess.run(m.global_variables_initializer())
            for v in variables:
                sess.run(v.assign(weights[v.name]))
            history = [sess.run([out, loss], {x: X})]
            for _ in range(3):
                sess.run(train, {x: X})
            history.append(sess.run([loss] + variables, {x: X}))
    return [v.name for v in variables], history


@pytest.mark.parametrize("lengths", [None, [4, 2]], ids=["full", "sequence_length"])
def test_dynamic_rnn_with_an_lstm_trains_as_tensorflow_does(lengths):
    tf.disable_eager_execution()
    rng = np.random.RandomState(3)
    weights = {"rnn/basic_lstm_cell/kernel:0": (rng.randn(7, 16) * 0.3).astype(np.float32),
               "rnn/basic_lstm_cell/bias:0": (rng.randn(16) * 0.1).astype(np.float32)}
    names, ours = _train_lstm(tf, lambda m: rnn_cell.BasicLSTMCell(4), weights, lengths)
    with tensorflow_v1() as tfm:
        tf_names, theirs = _train_lstm(tfm, lambda m: _TensorFlowLSTM(m, 4), weights, lengths)
    assert names == tf_names == sorted(weights)
    np.testing.assert_allclose(ours[0][0], theirs[0][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
