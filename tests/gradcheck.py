"""Gradient checks against central finite differences, in graph mode."""

import numpy as np

import tensorgrid as tg


def numeric_and_symbolic(fn, arrays, eps=1e-6, seed=0):
    """(symbolic, numeric) gradients of sum(w * fn(*x)) w.r.t. each float64 input; variables fn makes
    (an RNN cell's weights) start from their initializers."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    g = tg.Graph()
    with g.as_default():
        phs = [tg.compat.v1.placeholder(tg.float64, a.shape, name=f"x{i}") for i, a in enumerate(arrays)]
        out = fn(*phs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        rng = np.random.RandomState(seed)
        init = tg.compat.v1.global_variables_initializer()
        with tg.Session(graph=g) as sess:
            sess.run(init)
            shapes = [np.shape(v) for v in sess.run(outs, dict(zip(phs, arrays)))]
        weights = [rng.uniform(0.5, 1.5, s) for s in shapes]
        loss = tg.add_n([tg.reduce_sum(o * tg.constant(w, tg.float64)) for o, w in zip(outs, weights)]) \
            if len(outs) > 1 else tg.reduce_sum(outs[0] * tg.constant(weights[0], tg.float64))
        # an IndexedSlices gradient (gather's) is compared as the dense tensor it stands for
        grads = [None if gr is None else tg.convert_to_tensor(gr) for gr in tg.gradients(loss, phs)]
        with tg.Session(graph=g) as sess:
            sess.run(init)
            feed = dict(zip(phs, arrays))
            symbolic = [None if gr is None else sess.run(gr, feed) for gr in grads]
            numeric = []
            for i, a in enumerate(arrays):
                num = np.zeros_like(a)
                for idx in np.ndindex(a.shape):
                    plus, minus = a.copy(), a.copy()
                    plus[idx] += eps
                    minus[idx] -= eps
                    fp = dict(feed)
                    fp[phs[i]] = plus
                    fm = dict(feed)
                    fm[phs[i]] = minus
                    num[idx] = (sess.run(loss, fp) - sess.run(loss, fm)) / (2 * eps)
                numeric.append(num)
    return symbolic, numeric


def check_gradients(fn, *arrays, rtol=1e-4, atol=1e-6):
    """Asserts that tg.gradients of fn matches finite differences for every input."""
    symbolic, numeric = numeric_and_symbolic(fn, arrays)
    for i, (s, n) in enumerate(zip(symbolic, numeric)):
        assert s is not None, f"no gradient for input {i}"
        np.testing.assert_allclose(np.asarray(s, dtype=np.float64).reshape(n.shape), n, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


def tape_gradients(m, fn, arrays, weighted=False):
    """Eager gradients of sum(fn(*x)) (or of sum(w * fn(*x)), fixed weights w, when weighted) w.r.t.
    each x, computed with module `m`'s GradientTape: tensorgrid or TensorFlow, for differential tests."""
    xs = [m.constant(a) for a in arrays]
    with m.GradientTape() as tape:
        for x in xs:
            tape.watch(x)
        y = fn(m, *xs)
        if weighted:
            weights = np.linspace(0.5, 1.5, y.shape.num_elements(), dtype=np.float32).reshape(y.shape.as_list())
            y = m.reduce_sum(y * m.constant(weights))
    return [m.convert_to_tensor(g).numpy() for g in tape.gradient(y, xs)]
