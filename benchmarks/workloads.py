"""The SPEC section 9 workloads, written once against the TF1 API.

Each workload takes `tf` (tensorgrid.compat.v1 or tensorflow.compat.v1), a
session target and the two worker device names, and returns a dict of
{workload name: [seconds per repetition]}. Warm-up runs are excluded. Every
input comes from a feed or a variable, so no optimizer can fold the work.
"""

import time

import numpy as np


def _timed(fn, n, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _w1_graph(tf, devs):
    """W1's graph: (graph, x, b) with a = x + 1 on worker 0, b = a * 2 on worker 1."""
    g = tf.Graph()
    with g.as_default():
        with tf.device(devs[0]):
            x = tf.placeholder(tf.float32, [1], name="x")
            a = x + 1.0
        with tf.device(devs[1]):
            b = a * 2.0
    return g, x, b


def w1_step_latency(tf, target, devs, n=300, warmup=30):
    """W1: a = x + 1 on worker 0, b = a * 2 on worker 1, x a fed 1-element float32."""
    g, x, b = _w1_graph(tf, devs)
    with tf.Session(target, graph=g) as sess:
        feed = {x: np.ones(1, np.float32)}
        assert sess.run(b, feed)[0] == 4.0
        return {"W1 step latency": _timed(lambda: sess.run(b, feed), n, warmup)}


def w1_observed(tf, plain_target, observed_target, devs, rounds=10, n=60, warmup=30):
    """W1 on two clusters side by side, one serving metrics and the dashboard (scraped and watched
    meanwhile), the other not: blocks of n runs alternate between them, so load on the machine hits both."""
    sessions = []
    for target in (plain_target, observed_target):
        g, x, b = _w1_graph(tf, devs)
        sess = tf.Session(target, graph=g)
        feed = {x: np.ones(1, np.float32)}
        assert sess.run(b, feed)[0] == 4.0
        sessions.append((sess, b, feed))
    out = {"W1 step latency (observability off)": [], "W1 step latency (metrics+dashboard on)": []}
    try:
        for _ in range(rounds):
            for (sess, b, feed), name in zip(sessions, out):
                out[name] += _timed(lambda: sess.run(b, feed), n, warmup // rounds + 1)
    finally:
        for sess, *_ in sessions:
            sess.close()
    return out


def w2_transfer(tf, target, devs, n=20, warmup=3, mib=64):
    """W2: a 64 MiB float32 tensor made on worker 0 (v + 1), summed on worker 1, scalar fetched."""
    elems = mib * (1 << 20) // 4
    g = tf.Graph()
    with g.as_default():
        with tf.device(devs[0]):
            init = tf.placeholder(tf.float32, [elems], name="init")
            v = tf.Variable(init, name="v")
            y = v + 1.0
        with tf.device(devs[1]):
            s = tf.reduce_sum(y)
        with tf.Session(target, graph=g) as sess:
            sess.run(v.initializer, {init: np.zeros(elems, np.float32)})
            got = sess.run(s)
            assert abs(got - elems) / elems < 1e-3, got
            return {"W2 transfer 64MiB": _timed(lambda: sess.run(s), n, warmup)}


def _w3_graph(tf, devs, ops=1000, block=100):
    """W3's graph: (graph, x, y) with x fed and `ops` ops y = y * 1.0001 + 0.5 in blocks of `block`
    alternating between the workers."""
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [1], name="x")
        y = x
        with tf.device(devs[0]):
            m = tf.constant(1.0001)
            c = tf.constant(0.5)
        for b in range(ops // block):
            with tf.device(devs[b % 2]):
                for _ in range(block // 2):
                    y = y * m + c
    return g, x, y


def w3_chain(tf, target, devs, n=50, warmup=5, ops=1000, block=100):
    """W3: x fed; 1000 ops y = y * 1.0001 + 0.5 in blocks of 100 alternating between the workers."""
    g, x, y = _w3_graph(tf, devs, ops, block)
    with tf.Session(target, graph=g) as sess:
        feed = {x: np.ones(1, np.float32)}
        sess.run(y, feed)
        return {"W3 chain 1000 ops": _timed(lambda: sess.run(y, feed), n, warmup)}


def w4_big_graph(tf, target, devs, leaves=5000, n=10):
    """W4: 5,000 leaves x * c_i of a fed vector x, reduced by a binary tree of adds, half on each worker.

    The c_i come from two fed vectors, one unstacked on each worker: with
    constants, TensorFlow's grappler folds the whole graph to 91 nodes.
    """
    half = leaves // 2
    coeffs = (np.arange(leaves) % 7 + 1).astype(np.float32)
    t0 = time.perf_counter()
    g = tf.Graph()
    with g.as_default():
        with tf.device(devs[0]):
            x = tf.placeholder(tf.float32, [4], name="x")
            c0 = tf.placeholder(tf.float32, [half], name="c0")
            cs = tf.unstack(c0)
        with tf.device(devs[1]):
            c1 = tf.placeholder(tf.float32, [leaves - half], name="c1")
            cs += tf.unstack(c1)
        level = []
        for i in range(leaves):
            with tf.device(devs[0] if i < half else devs[1]):
                level.append(x * cs[i])
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level) - 1, 2):
                with tf.device(devs[0] if i < len(level) // 2 else devs[1]):
                    nxt.append(tf.add(level[i], level[i + 1]))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        total = level[0]
    build = time.perf_counter() - t0
    with tf.Session(target, graph=g) as sess:
        feed = {x: np.ones(4, np.float32), c0: coeffs[:half], c1: coeffs[half:]}
        t0 = time.perf_counter()
        first_val = sess.run(total, feed)
        first = time.perf_counter() - t0
        want = float(coeffs.sum())
        assert abs(first_val[0] - want) / want < 1e-4, (first_val, want)
        second = []
        for _ in range(n):
            t0 = time.perf_counter()
            sess.run(total, feed)
            second.append(time.perf_counter() - t0)
    return {"W4 graph building": [build], "W4 first run": [first], "W4 second run": second}




def w6_while_loop(tf, target, devs, n=10, warmup=2, iters=1000):
    """W6: a while_loop of 1,000 iterations, x = x * 1.0001 + 0.5 on worker 0 and x = x * 0.9999 on
    worker 1 in each; x and the iteration count fed."""
    g = tf.Graph()
    with g.as_default():
        with tf.device(devs[0]):
            x = tf.placeholder(tf.float32, [1], name="x")
            steps = tf.placeholder(tf.int32, [], name="steps")

            def body(i, v):
                v = v * 1.0001 + 0.5
                with tf.device(devs[1]):
                    v = v * 0.9999
                return i + 1, v
            _, y = tf.while_loop(lambda i, v: i < steps, body, [tf.constant(0), x])
        with tf.Session(target, graph=g) as sess:
            feed = {x: np.ones(1, np.float32), steps: iters}
            want = np.float32(1.0)
            for _ in range(iters):
                want = np.float32(np.float32(want * np.float32(1.0001) + np.float32(0.5)) * np.float32(0.9999))
            got = sess.run(y, feed)
            assert abs(got[0] - want) / want < 1e-4, (got, want)
            return {"W6 while_loop 1000 iterations": _timed(lambda: sess.run(y, feed), n, warmup)}


ALL = {"W1": w1_step_latency, "W2": w2_transfer, "W3": w3_chain, "W4": w4_big_graph, "W6": w6_while_loop}
