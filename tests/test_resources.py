"""The container rule (worker/resources.py): which sessions share a variable or a queue, on its own
and on a real cluster, with two different TF1 programs run back to back on one cluster."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import dtypes
from tensorgrid.worker.resources import ResourceStore
from tests.conftest import _local_cluster

tf = tg.compat.v1


class _Released:
    def __init__(self):
        self.released = False

    def release(self):
        self.released = True


def test_variables_are_keyed_by_container_name_dtype_and_shape():
    store = ResourceStore()
    v = store.handle("Variable", dtypes.float32, (5, 5, 1, 32))
    assert store.handle("Variable", dtypes.float32, [5, 5, 1, 32]) is v
    assert store.handle("Variable", dtypes.float32, (784, 10)) is not v
    assert store.handle("Variable", dtypes.float64, (5, 5, 1, 32)) is not v
    assert store.handle("Variable", dtypes.float32, (5, 5, 1, 32), container="exp") is not v


def test_private_resources_belong_to_one_session_and_go_with_it():
    store = ResourceStore()
    a, b = store.view("session-a"), store.view("session-b")
    qa = a.resource_for("", "", "fifo_queue", _Released)
    assert a.resource_for("", "", "fifo_queue", _Released) is qa
    assert b.resource_for("", "", "fifo_queue", _Released) is not qa
    shared = a.resource_for("", "q", "fifo_queue", _Released)
    assert b.resource_for("", "q", "other_node", _Released) is shared
    store.drop_owner("session-a")
    assert qa.released and not shared.released
    assert a.resource_for("", "", "fifo_queue", _Released) is not qa


def test_clearing_one_container_keeps_the_others():
    store = ResourceStore()
    v = store.handle("w", dtypes.float32, ())
    kept = store.resource("q", _Released, container="keep")
    gone = store.resource("q", _Released, container="exp")
    store.clear(["exp"])
    assert gone.released and not kept.released
    assert store.handle("w", dtypes.float32, ()) is v
    store.clear()
    assert kept.released and len(store) == 0


# ---- on a cluster ------------------------------------------------------------------------------

@pytest.fixture
def target():
    """The test session's shared cluster, reset afterwards."""
    t = _local_cluster().target
    yield t
    tg.Session.reset(t)


def _counter_graph(device="/job:worker/task:1"):
    g = tg.Graph()
    with g.as_default(), tg.device(device):
        v = tf.Variable(1.0, name="counter")
        inc = v.assign_add(1.0)
        report = tf.report_uninitialized_variables()
    return g, v, inc, report


def test_sessions_of_one_graph_and_between_graph_replicas_share_variables(target):
    g, v, inc, _ = _counter_graph()
    with tf.Session(target, graph=g) as s1, tf.Session(target, graph=g) as s2:
        s1.run(v.initializer)
        s1.run(inc)
        assert s2.run(v) == 2.0
    # A replica that builds its own copy of the graph (or a client that restarted) finds the same
    # variable, initialized: it must not initialize it again.
    g2, v2, inc2, report2 = _counter_graph()
    with tf.Session(target, graph=g2) as s3:
        assert list(s3.run(report2)) == []
        s3.run(inc2)
        assert s3.run(v2) == 3.0


def test_a_container_keeps_a_variable_apart_and_resets_alone(target):
    g, v, inc, _ = _counter_graph()
    g_exp = tg.Graph()
    with g_exp.as_default(), tg.device("/job:worker/task:1"), tf.container("experiment"):
        v_exp = tf.Variable(10.0, name="counter")
        report_exp = tf.report_uninitialized_variables()
    assert v_exp.op.get_attr("container") == "experiment"
    with tf.Session(target, graph=g) as s:
        s.run(v.initializer)
    with tf.Session(target, graph=g_exp) as s:
        assert list(s.run(report_exp)) == [b"counter"]
        s.run(v_exp.initializer)
        assert s.run(v_exp) == 10.0
    tg.Session.reset(target, containers=["experiment"])
    with tf.Session(target, graph=g_exp) as s:
        assert list(s.run(report_exp)) == [b"counter"]
    with tf.Session(target, graph=g) as s:
        assert s.run(v) == 1.0


_PROGRAMS = {
    # The MNIST softmax tutorial's shape of things: variables under TF's default name "Variable".
    "softmax": """
        x = tf.placeholder(tf.float32, [None, 784])
        y_ = tf.placeholder(tf.float32, [None, 10])
        W = tf.Variable(tf.zeros([784, 10]))
        b = tf.Variable(tf.zeros([10]))
        y = tf.matmul(x, W) + b
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=y))
        train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
        rng = np.random.RandomState(0)
        feed = {x: rng.rand(32, 784).astype(np.float32), y_: np.eye(10, dtype=np.float32)[rng.randint(0, 10, 32)]}
    """,
    # The "deep MNIST" tutorial's first layer: a [5, 5, 1, 32] "Variable" of its own.
    "conv": """
        x = tf.placeholder(tf.float32, [None, 28, 28, 1])
        y_ = tf.placeholder(tf.float32, [None, 10])
        W = tf.Variable(tf.constant(np.random.RandomState(1).randn(5, 5, 1, 32).astype(np.float32) * 0.1))
        b = tf.Variable(tf.constant(0.1, shape=[32]))
        h = tf.nn.max_pool(tf.nn.relu(tf.nn.conv2d(x, W, [1, 1, 1, 1], "SAME") + b), [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
        W2 = tf.Variable(tf.constant(np.random.RandomState(2).randn(14 * 14 * 32, 10).astype(np.float32) * 0.01))
        y = tf.matmul(tf.reshape(h, [-1, 14 * 14 * 32]), W2)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=y))
        train = tf.train.AdamOptimizer(1e-3).minimize(loss)
        rng = np.random.RandomState(0)
        feed = {x: rng.rand(8, 28, 28, 1).astype(np.float32), y_: np.eye(10, dtype=np.float32)[rng.randint(0, 10, 8)]}
    """,
}


def _program_source(body):
    return "import numpy as np\nimport tensorgrid.compat.v1 as tf\ntf.disable_eager_execution()\n" + \
        textwrap.dedent(body) + textwrap.dedent("""
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(3):
                sess.run(train, feed)
            print(repr(float(sess.run(loss, feed))))
        """)


def _run_in_process(name, capsys):
    env = os.environ.pop("TENSORGRID_MASTER", None)
    try:
        exec(compile(_program_source(_PROGRAMS[name]), name, "exec"), {})
    finally:
        if env is not None:
            os.environ["TENSORGRID_MASTER"] = env
    return float(capsys.readouterr().out.strip().splitlines()[-1])


def _run_program(tmp_path, name, master):
    """The program in a fresh process, its Session's target taken from TENSORGRID_MASTER."""
    path = tmp_path / f"{name}.py"
    path.write_text(_program_source(_PROGRAMS[name]))
    env = dict(os.environ, TENSORGRID_MASTER=master)
    out = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return float(out.stdout.strip().splitlines()[-1])


def test_two_different_tf1_programs_back_to_back_on_one_cluster(tmp_path, target, capsys):
    """Both name their first variable "Variable", with other shapes; no reset in between."""
    local = {name: _run_in_process(name, capsys) for name in ("conv", "softmax")}
    for name in ("conv", "softmax", "conv"):
        assert _run_program(tmp_path, name, target) == pytest.approx(local[name], rel=1e-5), name
