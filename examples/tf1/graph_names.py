"""A TF1 program that finds its tensors by name: fetch "name:0", get_tensor_by_name, import_graph_def.

Written for TensorFlow 1.x (`import tensorflow as tf`); run.py runs it on
tensorgrid with only that line changed.
"""

import numpy as np
import tensorflow as tf

steps = 300

rng = np.random.RandomState(0)
features = rng.rand(256, 4).astype(np.float32)
targets = features @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32) + 0.25

graph = tf.Graph()
with graph.as_default():
    x = tf.placeholder(tf.float32, [None, 4], name="x")
    t = tf.placeholder(tf.float32, [None, 1], name="t")
    hidden = tf.layers.dense(x, 8, activation=tf.nn.tanh, name="hidden")
    prediction = tf.layers.dense(hidden, 1, name="prediction")
    tf.identity(prediction, name="out")
    tf.losses.mean_squared_error(t, prediction)
    tf.add_n(tf.losses.get_losses(), name="loss")
    tf.train.GradientDescentOptimizer(0.1).minimize(graph.get_tensor_by_name("loss:0"), name="train")
    init = tf.global_variables_initializer()

with tf.Session(graph=graph) as sess:
    sess.run(init)
    for _ in range(steps):
        sess.run("train", {"x:0": features, "t:0": targets})
    loss = sess.run("loss:0", {"x:0": features, "t:0": targets})
    kernel = sess.run("prediction/kernel:0")
    frozen = tf.Graph()
    with frozen.as_default():
        # the trained weights as constants in a fresh graph, found again by name
        values = {v.op.name: sess.run(v) for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}
        w1, b1 = tf.constant(values["hidden/kernel"]), tf.constant(values["hidden/bias"])
        w2, b2 = tf.constant(values["prediction/kernel"]), tf.constant(values["prediction/bias"])
        inp = tf.placeholder(tf.float32, [None, 4], name="x")
        tf.nn.bias_add(tf.matmul(tf.nn.tanh(tf.nn.bias_add(tf.matmul(inp, w1), b1)), w2), b2, name="out")
    served = tf.Graph()
    with served.as_default():
        (out,) = tf.import_graph_def(frozen.as_graph_def(), name="served", return_elements=["out:0"])
        with tf.Session(graph=served) as serving:
            again = serving.run(out, {"served/x:0": features})
    np.testing.assert_allclose(again, sess.run("out:0", {"x:0": features}), rtol=1e-5)
    print("loss", loss, "kernel shape", kernel.shape, "served", again.shape)
