"""A TF2 program of this project's own: a tf.Module regression model trained eagerly, exported with
tf.saved_model.save (a serving signature), loaded back and served twice: eagerly through
`signatures["serving_default"]`, and inside a graph through a Session (so on a cluster when
TENSORGRID_MASTER names one).

Written for TensorFlow 2.x; `python examples/tf2/run.py examples/tf2/saved_model_serving.py` runs it on
tensorgrid (and `--tensorflow` on TensorFlow).
"""

import numpy as np
import tensorflow as tf

steps = 200
export_dir = "exported"

rng = np.random.RandomState(0)
true_w = np.array([[2.0], [-3.0], [0.5]], np.float32)
x_train = rng.normal(size=(256, 3)).astype(np.float32)
y_train = (x_train @ true_w + 1.0 + 0.01 * rng.normal(size=(256, 1))).astype(np.float32)


class Regressor(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.zeros([3, 1]), name="w")
        self.b = tf.Variable(0.0, name="b")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
    def __call__(self, features):
        return {"prediction": tf.squeeze(tf.matmul(features, self.w) + self.b, axis=1)}


model = Regressor()
for i in range(steps):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x_train)["prediction"] - y_train[:, 0]))
    grads = tape.gradient(loss, [model.w, model.b])
    model.w.assign_sub(0.1 * grads[0])
    model.b.assign_sub(0.1 * grads[1])
print(f"trained: loss {float(loss):.5f} w {np.round(model.w.numpy().ravel(), 2)} b {float(model.b.numpy()):.2f}")

tf.saved_model.save(model, export_dir)
loaded = tf.saved_model.load(export_dir)
serve = loaded.signatures["serving_default"]
x_new = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, -1.0]], np.float32)
served = serve(features=tf.constant(x_new))
print("signature outputs:", sorted(served))
print("served eagerly:", np.round(served["prediction"].numpy(), 2))
np.testing.assert_allclose(served["prediction"].numpy(), model(x_new)["prediction"].numpy(), rtol=1e-5)

with tf.Graph().as_default():
    in_graph = tf.saved_model.load(export_dir)
    features = tf.compat.v1.placeholder(tf.float32, [None, 3])
    prediction = in_graph.signatures["serving_default"](features=features)["prediction"]
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        print("served in a session:", np.round(sess.run(prediction, {features: x_new}), 2))
