"""tf.layers (client/layers/): TF1 names and scoping, update ops and regularizers, and a CNN trained as on TF."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf1

L2 = 0.01


def _cnn(x, y, bn_training, dropout_training):
    """A TF1 CNN written with tf.layers: conv, batch norm, pools, flatten, dense, batch norm, dropout, dense."""
    reg = lambda w: L2 * tf1.nn.l2_loss(w)  # noqa: E731
    h = tf1.layers.conv2d(x, 4, 3, padding="same", activation=tf1.nn.relu, kernel_regularizer=reg)
    h = tf1.layers.batch_normalization(h, training=bn_training, momentum=0.9)
    h = tf1.layers.max_pooling2d(h, 2, 2)
    h = tf1.layers.average_pooling2d(h, 2, 1, padding="same")
    h = tf1.layers.flatten(h)
    h = tf1.layers.dense(h, 16, activation=tf1.nn.relu)
    h = tf1.layers.batch_normalization(h, training=bn_training)
    h = tf1.layers.dropout(h, 0.3, training=dropout_training)
    logits = tf1.layers.dense(h, 5, name="logits")
    loss = tf1.losses.sparse_softmax_cross_entropy(y, logits) + tf1.losses.get_regularization_loss()
    with tf1.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
        train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
    return loss, train


def _data():
    rng = np.random.RandomState(0)
    return rng.rand(16, 8, 8, 3).astype(np.float32), rng.randint(0, 5, 16).astype(np.int64)


VARIABLES = [("conv2d/kernel", [3, 3, 3, 4]), ("conv2d/bias", [4]),
             ("batch_normalization/gamma", [4]), ("batch_normalization/beta", [4]),
             ("batch_normalization/moving_mean", [4]), ("batch_normalization/moving_variance", [4]),
             ("dense/kernel", [64, 16]), ("dense/bias", [16]),
             ("batch_normalization_1/gamma", [16]), ("batch_normalization_1/beta", [16]),
             ("batch_normalization_1/moving_mean", [16]), ("batch_normalization_1/moving_variance", [16]),
             ("logits/kernel", [16, 5]), ("logits/bias", [5])]


def _initial_values():
    rng = np.random.RandomState(1)
    return {name: (np.ones(shape) if name.endswith("moving_variance") else rng.uniform(-0.3, 0.3, shape))
            .astype(np.float32) for name, shape in VARIABLES}


def _train_tensorgrid(steps, target=""):
    images, labels = _data()
    g = tf1.Graph()
    with g.as_default():
        x = tf1.placeholder(tf1.float32, [None, 8, 8, 3])
        y = tf1.placeholder(tf1.int64, [None])
        training = tf1.placeholder_with_default(False, [])
        loss, train = _cnn(x, y, training, False)
        assert [(v.op.name, v.shape.as_list()) for v in tf1.global_variables()] == VARIABLES
        init = _initial_values()
        with tf1.Session(target, graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in tf1.global_variables():
                v.load(init[v.op.name], sess)
            losses = [sess.run([loss, train], {x: images, y: labels, training: True})[0] for _ in range(steps)]
            losses.append(sess.run(loss, {x: images, y: labels}))
            return losses, dict(zip([v.op.name for v in tf1.global_variables()], sess.run(tf1.global_variables())))


def _train_tensorflow(tf, steps):
    """The same CNN on TensorFlow, written with the ops TF1's tf.layers builds (fused batch norm for 4-D)."""
    images, labels = _data()
    init = _initial_values()
    g = tf.Graph()
    with g.as_default():
        v = {name: tf.Variable(value, name=name) for name, value in init.items()}
        x = tf.placeholder(tf.float32, [None, 8, 8, 3])
        y = tf.placeholder(tf.int64, [None])
        training = tf.placeholder_with_default(False, [])
        updates = []

        def moving(name, value, momentum):
            decay = tf.where(training, 1.0 - momentum, 0.0)
            updates.append(tf.assign_sub(v[name], (v[name] - value) * decay))

        def bn_conv(h, scope, momentum):
            train_y, mean, var = tf.nn.fused_batch_norm(h, v[scope + "/gamma"], v[scope + "/beta"], epsilon=1e-3)
            infer_y, _, _ = tf.nn.fused_batch_norm(h, v[scope + "/gamma"], v[scope + "/beta"],
                                                   mean=v[scope + "/moving_mean"],
                                                   variance=v[scope + "/moving_variance"], epsilon=1e-3,
                                                   is_training=False)
            moving(scope + "/moving_mean", mean, momentum)
            moving(scope + "/moving_variance", var, momentum)
            return tf.where(training, train_y, infer_y)

        def bn_dense(h, scope, momentum):
            mean, var = tf.nn.moments(h, [0])
            moving(scope + "/moving_mean", mean, momentum)
            moving(scope + "/moving_variance", var, momentum)
            mean = tf.where(training, mean, v[scope + "/moving_mean"])
            var = tf.where(training, var, v[scope + "/moving_variance"])
            return tf.nn.batch_normalization(h, mean, var, v[scope + "/beta"], v[scope + "/gamma"], 1e-3)

        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, v["conv2d/kernel"], [1, 1, 1, 1], "SAME"), v["conv2d/bias"]))
        h = bn_conv(h, "batch_normalization", 0.9)
        h = tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        h = tf.nn.avg_pool(h, [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
        h = tf.reshape(h, [tf.shape(h)[0], 64])
        h = tf.nn.relu(tf.matmul(h, v["dense/kernel"]) + v["dense/bias"])
        h = bn_dense(h, "batch_normalization_1", 0.99)
        logits = tf.matmul(h, v["logits/kernel"]) + v["logits/bias"]
        loss = tf.losses.sparse_softmax_cross_entropy(y, logits) + L2 * tf.nn.l2_loss(v["conv2d/kernel"])
        with tf.control_dependencies(updates):
            train = tf.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[
                v[name] for name, _ in VARIABLES if "moving" not in name])
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            losses = [sess.run([loss, train], {x: images, y: labels, training: True})[0] for _ in range(steps)]
            losses.append(sess.run(loss, {x: images, y: labels}))
            return losses, {name: sess.run(var) for name, var in v.items()}


def test_cnn_with_tf_layers_trains_as_on_tensorflow():
    tf = pytest.importorskip("tensorflow").compat.v1
    ours, our_vars = _train_tensorgrid(5)
    theirs, their_vars = _train_tensorflow(tf, 5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    for name, _ in VARIABLES:
        np.testing.assert_allclose(our_vars[name], their_vars[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_cnn_with_tf_layers_on_a_cluster():
    from conftest import _local_cluster
    target = _local_cluster().target
    try:
        on_cluster, cluster_vars = _train_tensorgrid(2, target)
    finally:
        tf1.Session.reset(target)
    in_process, local_vars = _train_tensorgrid(2)
    np.testing.assert_allclose(on_cluster, in_process, rtol=1e-6)
    np.testing.assert_allclose(cluster_vars["logits/kernel"], local_vars["logits/kernel"], rtol=1e-6)


def test_names_scopes_and_reuse():
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf1.float32, [None, 3])
        a = tf1.layers.dense(x, 4)
        tf1.layers.dense(x, 4)
        out = tf1.layers.dense(x, 4, name="fc")
        shared = tf1.layers.dense(x, 4, name="fc", reuse=True)
        with tf1.variable_scope("block"):
            tf1.layers.dense(x, 2, use_bias=False, trainable=False)
        assert [v.op.name for v in tf1.global_variables()] == [
            "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias", "fc/kernel", "fc/bias", "block/dense/kernel"]
        assert "block/dense/kernel:0" not in [v.name for v in tf1.trainable_variables()]
        assert a.name == "dense/BiasAdd:0" and out.op.name.startswith("fc/") and shared.op.name.startswith("fc_1/")
        with pytest.raises(ValueError, match="fc/kernel already exists"):
            tf1.layers.dense(x, 4, name="fc")
        with pytest.raises(ValueError, match="last dimension"):
            tf1.layers.dense(tf1.placeholder(tf1.float32, [None, None]), 2)


def test_layer_objects_share_their_variables_and_initializers():
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf1.float32, [None, 3])
        layer = tf1.layers.Dense(2, kernel_initializer=tf1.constant_initializer(0.5),
                                 bias_initializer=tf1.ones_initializer())
        first, second = layer(x), layer.apply(x * 2.0)
        assert layer.name == "dense" and [v.name for v in layer.variables] == ["dense/kernel:0", "dense/bias:0"]
        assert len(tf1.global_variables()) == 2
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            got = sess.run([first, second], {x: [[1.0, 2.0, 3.0]]})
        np.testing.assert_allclose(got, [[[4.0, 4.0]], [[7.0, 7.0]]])


def test_regularizers_and_update_ops_collections():
    with tf1.Graph().as_default():
        x = tf1.constant(np.arange(12, dtype=np.float32).reshape(4, 3))
        tf1.layers.dense(x, 2, kernel_initializer=tf1.ones_initializer(),
                         kernel_regularizer=lambda w: tf1.reduce_sum(w), bias_regularizer=lambda b: None)
        bn = tf1.layers.BatchNormalization(momentum=0.5)
        y = bn(x, training=True)
        (reg,) = tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
        assert reg.name == "dense/kernel/Regularizer/Sum:0"
        assert [v.name for v in bn.non_trainable_variables] == ["batch_normalization/moving_mean:0",
                                                                "batch_normalization/moving_variance:0"]
        assert tf1.get_collection(tf1.GraphKeys.UPDATE_OPS) == bn.updates and len(bn.updates) == 2
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            assert sess.run(tf1.losses.get_regularization_loss()) == 6.0
            normalized = sess.run(y)
            sess.run(bn.updates)
            mean, var = sess.run([bn.moving_mean, bn.moving_variance])
        data = np.arange(12, dtype=np.float32).reshape(4, 3)
        np.testing.assert_allclose(normalized, (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3), rtol=1e-5)
        np.testing.assert_allclose(mean, 0.5 * data.mean(0), rtol=1e-6)
        np.testing.assert_allclose(var, 0.5 + 0.5 * data.var(0), rtol=1e-6)  # 2-D: the biased variance
    with tf1.Graph().as_default():
        assert tf1.Session().run(tf1.losses.get_regularization_loss()) == 0.0


def test_batch_normalization_with_a_training_tensor_keeps_moving_stats_when_false():
    with tf1.Graph().as_default():
        x = tf1.constant(np.random.RandomState(0).rand(4, 2, 2, 3).astype(np.float32))
        training = tf1.placeholder(tf1.bool, [])
        y = tf1.layers.batch_normalization(x, training=training, axis=3)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
            inferred, _ = sess.run([y, update_ops], {training: False})
            moving = [v for v in tf1.global_variables() if "moving" in v.name]
            np.testing.assert_array_equal(sess.run(moving[0]), 0.0)
            np.testing.assert_array_equal(sess.run(moving[1]), 1.0)
            np.testing.assert_allclose(inferred, x.eval() / np.sqrt(1.0 + 1e-3), rtol=1e-6)
            sess.run(update_ops, {training: True})
            assert np.all(sess.run(moving[0]) > 0)


def test_dropout_training_flag():
    with tf1.Graph().as_default():
        x = tf1.ones([1000])
        training = tf1.placeholder(tf1.bool, [])
        off = tf1.layers.dropout(x, 0.5)
        fed = tf1.layers.dropout(x, 0.5, training=training)
        with tf1.Session() as sess:
            np.testing.assert_array_equal(sess.run(off), 1.0)
            np.testing.assert_array_equal(sess.run(fed, {training: False}), 1.0)
            dropped = sess.run(fed, {training: True})
        assert set(np.unique(dropped)) == {0.0, 2.0} and 350 < (dropped == 0).sum() < 650


def test_channels_first_matches_channels_last():
    images = np.random.RandomState(0).rand(2, 6, 6, 3).astype(np.float32)
    kernel = tf1.constant_initializer(np.random.RandomState(1).rand(3, 3, 3, 2).astype(np.float32))
    results = []
    for data_format in ("channels_last", "channels_first"):
        with tf1.Graph().as_default():
            x = tf1.constant(images if data_format == "channels_last" else images.transpose(0, 3, 1, 2))
            h = tf1.layers.conv2d(x, 2, 3, data_format=data_format, kernel_initializer=kernel)
            h = tf1.layers.max_pooling2d(h, 2, 2, data_format=data_format)
            flat = tf1.layers.flatten(h, data_format=data_format)
            assert flat.shape.as_list() == [2, 8]
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                results.append(sess.run(flat))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


def test_flatten_keeps_an_unknown_batch():
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf1.float32, [None, 2, 3])
        flat = tf1.layers.flatten(x)
        assert flat.shape.as_list() == [None, 6]
        assert tf1.Session().run(flat, {x: np.zeros((5, 2, 3))}).shape == (5, 6)


def test_unsupported_options_say_so():
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf1.float32, [None, 3])
        with pytest.raises(NotImplementedError, match="constraints"):
            tf1.layers.dense(x, 2, kernel_constraint=lambda w: w)
        with pytest.raises(NotImplementedError, match="renorm"):
            tf1.layers.batch_normalization(x, renorm=True)
        with pytest.raises(ValueError, match="padding"):
            tf1.layers.conv2d(tf1.placeholder(tf1.float32, [None, 4, 4, 1]), 1, 2, padding="full")


# ---- tf.losses ------------------------------------------------------------------------------------

REDUCTIONS = ["none", "weighted_sum", "weighted_sum_over_batch_size", "weighted_mean",
              "weighted_sum_by_nonzero_weights"]
LOSSES = {
    "softmax_cross_entropy": lambda m, labels, logits, w, r: m.losses.softmax_cross_entropy(
        labels, logits, weights=w, label_smoothing=0.1, reduction=r),
    "sparse_softmax_cross_entropy": lambda m, labels, logits, w, r: m.losses.sparse_softmax_cross_entropy(
        m.argmax(labels, 1), logits, weights=w, reduction=r),
    "sigmoid_cross_entropy": lambda m, labels, logits, w, r: m.losses.sigmoid_cross_entropy(
        labels, logits, weights=m.expand_dims(w, 1), label_smoothing=0.2, reduction=r),
    "mean_squared_error": lambda m, labels, logits, w, r: m.losses.mean_squared_error(
        labels, logits, weights=m.expand_dims(w, 1), reduction=r),
    "absolute_difference": lambda m, labels, logits, w, r: m.losses.absolute_difference(
        labels, logits, weights=m.expand_dims(w, 1), reduction=r),
    "huber_loss": lambda m, labels, logits, w, r: m.losses.huber_loss(
        labels, logits * 3.0, weights=m.expand_dims(w, 1), delta=0.5, reduction=r),
    "log_loss": lambda m, labels, logits, w, r: m.losses.log_loss(
        labels, m.sigmoid(logits), weights=m.expand_dims(w, 1), reduction=r),
    "hinge_loss": lambda m, labels, logits, w, r: m.losses.hinge_loss(
        labels, logits, weights=m.expand_dims(w, 1), reduction=r),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_losses_are_tensorflows(loss, reduction):
    tf = pytest.importorskip("tensorflow").compat.v1
    rng = np.random.RandomState(0)
    labels = np.eye(4, dtype=np.float32)[rng.randint(0, 4, 6)]
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    weights = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 1.0], np.float32)
    results = []
    for m in (tf, tf1):
        g = m.Graph()
        with g.as_default():
            value = LOSSES[loss](m, m.constant(labels), m.constant(logits), m.constant(weights), reduction)
            assert m.get_collection(m.GraphKeys.LOSSES) == [value]
            results.append(m.Session(graph=g).run(value))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-7)


def test_total_loss_and_errors():
    with tf1.Graph().as_default():
        with pytest.raises(ValueError, match="No losses"):
            tf1.losses.get_total_loss()
        tf1.losses.mean_squared_error([1.0, 2.0], [1.0, 4.0])
        tf1.add_to_collection(tf1.GraphKeys.REGULARIZATION_LOSSES, tf1.constant(0.5))
        total = tf1.losses.get_total_loss()
        assert total.name == "total_loss:0" and tf1.Session().run(total) == 2.5
        with pytest.raises(ValueError, match="Invalid Reduction"):
            tf1.losses.compute_weighted_loss([1.0], reduction="average")
        with pytest.raises(ValueError, match="must not be None"):
            tf1.losses.softmax_cross_entropy(None, [[1.0]])
    assert tg.executing_eagerly()
