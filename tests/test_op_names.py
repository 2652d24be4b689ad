"""TF's names: an op made with `name=` is the result, fetchable as "name:0", whatever the front-end builds.

Each case builds one call of a public front-end function with name="out" in
a fresh graph. The result must be what `get_tensor_by_name` returns for its
name, and where TensorFlow is installed, the same call on
`tensorflow.compat.v1` must give results with the same names (so
`sess.run("out:0")` and `import_graph_def(return_elements=...)` written for
TF find the same tensors here).
"""

import numpy as np
import pytest

import tensorgrid.compat.v1 as tg1


def _x(m, shape=(2, 3), dtype=None, name="x"):
    return m.placeholder(dtype or m.float32, list(shape), name=name)


def _img(m):
    return _x(m, (2, 6, 6, 3), name="img")


def _labels(m):
    return m.placeholder(m.int32, [2], name="labels")


def _var(m, shape=(3, 4)):
    return m.Variable(np.ones(shape, np.float32), name="v")


# (case id, build(m) -> result); `m` is tensorflow.compat.v1 or tensorgrid.compat.v1.
CASES = [
    # single-op front-ends
    ("abs", lambda m: m.abs(_x(m), name="out")),
    ("add", lambda m: m.add(_x(m), 1.0, name="out")),
    ("subtract", lambda m: m.subtract(_x(m), _x(m, name="y"), name="out")),
    ("multiply", lambda m: m.multiply(_x(m), 2.0, name="out")),
    ("divide", lambda m: m.divide(_x(m), 2.0, name="out")),
    ("truediv", lambda m: m.truediv(_x(m), 2.0, name="out")),
    ("div", lambda m: m.div(_x(m), 2.0, name="out")),
    ("floordiv", lambda m: m.floordiv(_x(m), 2.0, name="out")),
    ("mod", lambda m: m.mod(_x(m), 2.0, name="out")),
    ("pow", lambda m: m.pow(_x(m), 2.0, name="out")),
    ("maximum", lambda m: m.maximum(_x(m), 0.0, name="out")),
    ("minimum", lambda m: m.minimum(_x(m), 0.0, name="out")),
    ("negative", lambda m: m.negative(_x(m), name="out")),
    ("sign", lambda m: m.sign(_x(m), name="out")),
    ("square", lambda m: m.square(_x(m), name="out")),
    ("exp", lambda m: m.exp(_x(m), name="out")),
    ("log", lambda m: m.log(_x(m), name="out")),
    ("log1p", lambda m: m.log1p(_x(m), name="out")),
    ("sqrt", lambda m: m.sqrt(_x(m), name="out")),
    ("rsqrt", lambda m: m.rsqrt(_x(m), name="out")),
    ("tanh", lambda m: m.tanh(_x(m), name="out")),
    ("sigmoid", lambda m: m.sigmoid(_x(m), name="out")),
    ("sin", lambda m: m.sin(_x(m), name="out")),
    ("cos", lambda m: m.cos(_x(m), name="out")),
    ("floor", lambda m: m.floor(_x(m), name="out")),
    ("ceil", lambda m: m.ceil(_x(m), name="out")),
    ("round", lambda m: m.round(_x(m), name="out")),
    ("matmul", lambda m: m.matmul(_x(m), _x(m, (3, 4), name="y"), name="out")),
    ("batch_matmul", lambda m: m.matmul(_x(m, (2, 2, 3)), _x(m, (2, 3, 4), name="y"), name="out")),
    ("tensordot", lambda m: m.tensordot(_x(m), _x(m, (3, 4), name="y"), 1, name="out")),
    ("einsum", lambda m: m.einsum("ij,jk->ik", _x(m), _x(m, (3, 4), name="y"), name="out")),
    ("equal", lambda m: m.equal(_x(m), 1.0, name="out")),
    ("not_equal", lambda m: m.not_equal(_x(m), 1.0, name="out")),
    ("less", lambda m: m.less(_x(m), 1.0, name="out")),
    ("less_equal", lambda m: m.less_equal(_x(m), 1.0, name="out")),
    ("greater", lambda m: m.greater(_x(m), 1.0, name="out")),
    ("greater_equal", lambda m: m.greater_equal(_x(m), 1.0, name="out")),
    ("logical_and", lambda m: m.logical_and(_x(m, dtype=m.bool), _x(m, dtype=m.bool, name="y"), name="out")),
    ("logical_or", lambda m: m.logical_or(_x(m, dtype=m.bool), _x(m, dtype=m.bool, name="y"), name="out")),
    ("logical_not", lambda m: m.logical_not(_x(m, dtype=m.bool), name="out")),
    ("is_nan", lambda m: m.is_nan(_x(m), name="out")),
    ("is_finite", lambda m: m.is_finite(_x(m), name="out")),
    ("where", lambda m: m.where(_x(m, dtype=m.bool, name="c"), _x(m), _x(m, name="y"), name="out")),
    ("where_v2", lambda m: m.where_v2(_x(m, dtype=m.bool, name="c"), _x(m), 0.0, name="out")),
    ("where_indices", lambda m: m.where(_x(m, dtype=m.bool, name="c"), name="out")),
    ("reduce_sum", lambda m: m.reduce_sum(_x(m), name="out")),
    ("reduce_sum_axis", lambda m: m.reduce_sum(_x(m), axis=1, keepdims=True, name="out")),
    ("reduce_mean", lambda m: m.reduce_mean(_x(m), name="out")),
    ("reduce_mean_of_nodes", lambda m: m.reduce_mean(m.square(_x(m) - 1.0), name="out")),
    ("reduce_max", lambda m: m.reduce_max(_x(m), 0, name="out")),
    ("reduce_min", lambda m: m.reduce_min(_x(m), name="out")),
    ("reduce_prod", lambda m: m.reduce_prod(_x(m), name="out")),
    ("reduce_all", lambda m: m.reduce_all(_x(m, dtype=m.bool), name="out")),
    ("reduce_any", lambda m: m.reduce_any(_x(m, dtype=m.bool), name="out")),
    ("argmax", lambda m: m.argmax(_x(m), 1, name="out")),
    ("argmin", lambda m: m.argmin(_x(m), 1, name="out")),
    ("arg_max", lambda m: m.arg_max(_x(m), 1, name="out")),
    ("add_n", lambda m: m.add_n([_x(m), _x(m, name="y"), _x(m, name="z")], name="out")),
    ("add_n_one", lambda m: m.add_n([_x(m)], name="out")),
    ("constant", lambda m: m.constant([1.0, 2.0], name="out")),
    ("placeholder", lambda m: m.placeholder(m.float32, [2], name="out")),
    ("placeholder_with_default", lambda m: m.placeholder_with_default([1.0, 2.0], [2], name="out")),
    ("identity", lambda m: m.identity(_x(m), name="out")),
    ("stop_gradient", lambda m: m.stop_gradient(_x(m), name="out")),
    ("no_op", lambda m: m.no_op(name="out")),
    ("group", lambda m: m.group(m.no_op(), m.no_op(), name="out")),
    ("fill", lambda m: m.fill([2, 3], 1.0, name="out")),
    ("zeros", lambda m: m.zeros([2, 3], name="out")),
    ("ones", lambda m: m.ones([2, 3], name="out")),
    ("zeros_dynamic", lambda m: m.zeros(m.shape(_x(m, (None, 3))), name="out")),
    ("zeros_like", lambda m: m.zeros_like(_x(m), name="out")),
    ("ones_like", lambda m: m.ones_like(_x(m), name="out")),
    ("range", lambda m: m.range(5, name="out")),
    ("linspace", lambda m: m.linspace(0.0, 1.0, 5, name="out")),
    ("one_hot", lambda m: m.one_hot(_labels(m), 4, name="out")),
    ("eye", lambda m: m.eye(3, name="out")),
    ("reshape", lambda m: m.reshape(_x(m), [3, 2], name="out")),
    ("invert_permutation", lambda m: m.invert_permutation([1, 0, 2], name="out")),
    ("transpose", lambda m: m.transpose(_x(m), name="out")),
    ("expand_dims", lambda m: m.expand_dims(_x(m), 0, name="out")),
    ("squeeze", lambda m: m.squeeze(_x(m, (2, 1, 3)), name="out")),
    ("concat", lambda m: m.concat([_x(m), _x(m, name="y")], 0, name="out")),
    ("stack", lambda m: m.stack([_x(m), _x(m, name="y")], name="out")),
    ("unstack", lambda m: m.unstack(_x(m), name="out")),
    ("split", lambda m: m.split(_x(m), 3, axis=1, name="out")),
    ("split_sizes", lambda m: m.split(_x(m), [1, 2], axis=1, name="out")),
    ("slice", lambda m: m.slice(_x(m), [0, 0], [1, 2], name="out")),
    ("strided_slice", lambda m: m.strided_slice(_x(m), [0], [1], name="out")),
    ("gather", lambda m: m.gather(_x(m), [1, 0], name="out")),
    ("gather_nd", lambda m: m.gather_nd(_x(m), [[1, 0]], name="out")),
    ("scatter_nd", lambda m: m.scatter_nd([[1], [0]], _x(m), [4, 3], name="out")),
    ("unsorted_segment_sum", lambda m: m.unsorted_segment_sum(_x(m), [1, 0], 2, name="out")),
    ("tile", lambda m: m.tile(_x(m), [2, 1], name="out")),
    ("pad", lambda m: m.pad(_x(m), [[1, 1], [0, 0]], name="out")),
    ("pad_value", lambda m: m.pad(_x(m), [[1, 1], [0, 0]], constant_values=1.0, name="out")),
    ("pad_reflect", lambda m: m.pad(_x(m), [[1, 1], [0, 0]], mode="REFLECT", name="out")),
    ("broadcast_to", lambda m: m.broadcast_to(_x(m, (1, 3)), [2, 3], name="out")),
    ("reverse", lambda m: m.reverse(_x(m), [0], name="out")),
    ("boolean_mask", lambda m: m.boolean_mask(_x(m), [True, False], name="out")),
    ("shape", lambda m: m.shape(_x(m), name="out")),
    ("size", lambda m: m.size(_x(m), name="out")),
    ("rank", lambda m: m.rank(_x(m), name="out")),
    ("cast", lambda m: m.cast(_x(m), m.int32, name="out")),
    ("to_float", lambda m: m.to_float(_x(m, dtype=m.int32), name="out")),
    ("to_int32", lambda m: m.to_int32(_x(m), name="out")),
    ("clip_by_value", lambda m: m.clip_by_value(_x(m), 0.0, 1.0, name="out")),
    ("clip_by_norm", lambda m: m.clip_by_norm(_x(m), 1.0, name="out")),
    ("global_norm", lambda m: m.global_norm([_x(m), _x(m, name="y")], name="out")),
    ("clip_by_global_norm", lambda m: m.clip_by_global_norm([_x(m), _x(m, name="y")], 1.0, name="out")),
    ("random_normal", lambda m: m.random_normal([2, 3], name="out")),
    ("random_normal_mean", lambda m: m.random_normal([2, 3], mean=1.0, stddev=2.0, name="out")),
    ("random_uniform", lambda m: m.random_uniform([2, 3], name="out")),
    ("random_uniform_int", lambda m: m.random_uniform([2, 3], maxval=5, dtype=m.int32, name="out")),
    ("truncated_normal", lambda m: m.truncated_normal([2, 3], stddev=0.1, name="out")),
    ("random_shuffle", lambda m: m.random_shuffle(_x(m), name="out")),
    ("Print", lambda m: m.Print(_x(m), [_x(m, name="y")], name="out")),
    ("assert_equal", lambda m: m.assert_equal(_x(m), _x(m, name="y"), name="out")),
    ("assert_positive", lambda m: m.assert_positive(_x(m), name="out")),
    # tf.nn
    ("nn.relu", lambda m: m.nn.relu(_x(m), name="out")),
    ("nn.relu6", lambda m: m.nn.relu6(_x(m), name="out")),
    ("nn.elu", lambda m: m.nn.elu(_x(m), name="out")),
    ("nn.leaky_relu", lambda m: m.nn.leaky_relu(_x(m), name="out")),
    ("nn.softplus", lambda m: m.nn.softplus(_x(m), name="out")),
    ("nn.sigmoid", lambda m: m.nn.sigmoid(_x(m), name="out")),
    ("nn.tanh", lambda m: m.nn.tanh(_x(m), name="out")),
    ("nn.softmax", lambda m: m.nn.softmax(_x(m), name="out")),
    ("nn.softmax_axis0", lambda m: m.nn.softmax(_x(m), axis=0, name="out")),
    ("nn.log_softmax", lambda m: m.nn.log_softmax(_x(m), name="out")),
    ("nn.bias_add", lambda m: m.nn.bias_add(_x(m), _x(m, (3,), name="b"), name="out")),
    ("nn.dropout", lambda m: m.nn.dropout(_x(m), keep_prob=0.5, name="out")),
    ("nn.dropout_fed", lambda m: m.nn.dropout(_x(m), _x(m, (), name="keep"), name="out")),
    ("nn.l2_loss", lambda m: m.nn.l2_loss(_x(m), name="out")),
    ("nn.moments", lambda m: m.nn.moments(_x(m), [0], name="out")),
    ("nn.moments_keepdims", lambda m: m.nn.moments(_x(m), [0], keep_dims=True, name="out")),
    ("nn.batch_normalization", lambda m: m.nn.batch_normalization(_x(m), _x(m, (3,), name="mu"), _x(m, (3,), name="var"),
                                                                  _x(m, (3,), name="b"), _x(m, (3,), name="g"), 1e-3,
                                                                  name="out")),
    ("nn.softmax_cross_entropy_with_logits",
     lambda m: m.nn.softmax_cross_entropy_with_logits(labels=_x(m, name="l"), logits=_x(m), name="out")),
    ("nn.softmax_cross_entropy_with_logits_v2",
     lambda m: m.nn.softmax_cross_entropy_with_logits_v2(labels=_x(m, name="l"), logits=_x(m), name="out")),
    ("nn.sparse_softmax_cross_entropy_with_logits",
     lambda m: m.nn.sparse_softmax_cross_entropy_with_logits(labels=_labels(m), logits=_x(m), name="out")),
    ("nn.sigmoid_cross_entropy_with_logits",
     lambda m: m.nn.sigmoid_cross_entropy_with_logits(labels=_x(m, name="l"), logits=_x(m), name="out")),
    ("nn.conv2d", lambda m: m.nn.conv2d(_img(m), _x(m, (3, 3, 3, 4), name="w"), [1, 1, 1, 1], "SAME",
                                        name="out")),
    ("nn.conv2d_nchw", lambda m: m.nn.conv2d(_x(m, (2, 3, 6, 6)), _x(m, (3, 3, 3, 4), name="w"), [1, 1, 1, 1],
                                             "SAME", data_format="NCHW", name="out")),
    ("nn.max_pool", lambda m: m.nn.max_pool(_img(m), [1, 2, 2, 1], [1, 2, 2, 1], "VALID", name="out")),
    ("nn.avg_pool", lambda m: m.nn.avg_pool(_img(m), [1, 2, 2, 1], [1, 2, 2, 1], "VALID", name="out")),
    # variables and training
    ("Variable", lambda m: m.Variable([1.0, 2.0], name="out")),
    ("get_variable", lambda m: m.get_variable("out", [2, 3])),
    ("assign", lambda m: m.assign(_var(m), np.zeros((3, 4), np.float32), name="out")),
    ("assign_add", lambda m: m.assign_add(_var(m), np.zeros((3, 4), np.float32), name="out")),
    ("assign_sub", lambda m: m.assign_sub(_var(m), np.zeros((3, 4), np.float32), name="out")),
    ("variables_initializer", lambda m: m.variables_initializer([_var(m)], name="out")),
    ("report_uninitialized_variables", lambda m: m.report_uninitialized_variables([_var(m)], name="out")),
    ("gradient_descent.minimize",
     lambda m: m.train.GradientDescentOptimizer(0.1).minimize(m.reduce_sum(_var(m)), name="out")),
    ("adam.minimize", lambda m: m.train.AdamOptimizer(0.1).minimize(m.reduce_sum(_var(m)), name="out")),
    ("momentum.minimize_global_step",
     lambda m: m.train.MomentumOptimizer(0.1, 0.9).minimize(
         m.reduce_sum(_var(m)), global_step=m.train.get_or_create_global_step(), name="out")),
    ("adagrad.apply_gradients",
     lambda m: m.train.AdagradOptimizer(0.1).apply_gradients([(m.ones([3, 4]), _var(m))], name="out")),
    ("rmsprop.minimize", lambda m: m.train.RMSPropOptimizer(0.1).minimize(m.reduce_sum(_var(m)), name="out")),
]


def _flat(result):
    if isinstance(result, (list, tuple)):
        return [t for r in result for t in _flat(r)]
    return [result]


def _name(element):
    """A result's graph name: a tensor's "op:i", an operation's "op", a variable's "v:0"."""
    return element.name


def _element(graph, element):
    """What the graph returns when asked for the element by its name."""
    name = _name(element)
    if ":" in name:
        return graph.get_tensor_by_name(name)
    return graph.get_operation_by_name(name)


def _same(found, element):
    if isinstance(element, tg1.Variable):
        return found is element.handle  # a variable's name is its handle's; fetching it reads the variable
    return found is element


def _build(m, build):
    graph = m.Graph()
    with graph.as_default():
        result = build(m)
    return graph, result


# Where TF itself names the results inside the scope `out/` (checked against TF below).
SCOPED_RESULTS = {"global_norm", "clip_by_global_norm", "nn.moments", "nn.moments_keepdims"}


@pytest.mark.parametrize("case_id, case", CASES, ids=[i for i, _ in CASES])
def test_named_result_is_fetchable_by_its_name(case_id, case):
    graph, result = _build(tg1, case)
    flat = _flat(result)
    if case_id not in SCOPED_RESULTS:
        assert _name(flat[0]).split(":")[0] == "out", f"result named {_name(flat[0])}"
    for element in flat:
        assert _same(_element(graph, element), element), _name(element)


@pytest.fixture(scope="module")
def tf():
    """tensorflow.compat.v1 with TF1's reference variables (what disable_v2_behavior gives), restored after."""
    tf = pytest.importorskip("tensorflow").compat.v1
    tf.disable_resource_variables()
    yield tf
    tf.enable_resource_variables()


def _exactly_named(name):
    return name in ("out", "out:0")


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_names_match_tensorflow(tf, case):
    _, ours = _build(tg1, case)
    _, theirs = _build(tf, case)
    ours, theirs = [_name(t) for t in _flat(ours)], [_name(t) for t in _flat(theirs)]
    if len(theirs) == 1 and not _exactly_named(theirs[0]) and _exactly_named(ours[0]):
        # TF leaves its own result under `out/` here (tensordot's out/MatMul, dropout's out/SelectV2, ...);
        # ours is the exact name, which every lookup of TF's names that TF code can rely on still finds
        assert theirs[0].startswith("out")
        return
    assert ours == theirs


def test_fetching_a_variable_by_name_reads_it():
    """TF1 code fetches variables by name ("w:0"), also after import_graph_def of the graph."""
    graph = tg1.Graph()
    with graph.as_default():
        tg1.Variable([1.0, 2.0], name="w")
        init = tg1.global_variables_initializer()
    with tg1.Session(graph=graph) as sess:
        sess.run(init)
        np.testing.assert_array_equal(sess.run("w:0"), [1.0, 2.0])
        np.testing.assert_array_equal(sess.run(graph.get_tensor_by_name("w:0")), [1.0, 2.0])
    imported = tg1.Graph()
    with imported.as_default():
        tg1.import_graph_def(graph.as_graph_def(), name="")
    with tg1.Session(graph=imported) as sess:
        sess.run("init")
        np.testing.assert_array_equal(sess.run("w:0"), [1.0, 2.0])
