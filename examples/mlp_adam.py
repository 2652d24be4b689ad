"""A two-hidden-layer perceptron classifying Gaussian blobs, trained with Adam and a global step.

A TF1 program: `run(tf)` takes the TF1 module (tensorgrid.compat.v1 or tensorflow.compat.v1).
"""

import numpy as np

from softmax_regression import make_data

LAYERS = [8, 16, 16, 4]


def initial_weights(seed=2):
    """Fixed starting weights (scaled normal) and zero biases, as numpy arrays."""
    rng = np.random.RandomState(seed)
    weights = [(rng.randn(a, b) * np.sqrt(2.0 / a)).astype(np.float32) for a, b in zip(LAYERS, LAYERS[1:])]
    biases = [np.zeros(b, np.float32) for b in LAYERS[1:]]
    return weights, biases


def run(tf, steps=60, batch_size=64, learning_rate=0.01):
    """Returns every trained weight and bias, the loss at each step, the accuracy and the global step."""
    data_x, data_y = make_data(n=512, dim=LAYERS[0], classes=LAYERS[-1], seed=3)
    w0, b0 = initial_weights()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, LAYERS[0]], name="x")
        y = tf.placeholder(tf.float32, [None, LAYERS[-1]], name="y")
        weights = [tf.Variable(w, name=f"h{i}") for i, w in enumerate(w0)]
        biases = [tf.Variable(b, name=f"b{i}") for i, b in enumerate(b0)]
        layer = x
        for i, (w, b) in enumerate(zip(weights, biases)):
            layer = tf.add(tf.matmul(layer, w), b)
            if i < len(weights) - 1:
                layer = tf.nn.relu(layer)
        logits = layer
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(logits=logits, labels=y))
        global_step = tf.train.get_or_create_global_step()
        train_op = tf.train.AdamOptimizer(learning_rate).minimize(loss, global_step=global_step)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), tf.argmax(y, 1)), tf.float32))
        losses = []
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for step in range(steps):
                i = (step * batch_size) % len(data_x)
                _, value = sess.run([train_op, loss], feed_dict={x: data_x[i:i + batch_size],
                                                                 y: data_y[i:i + batch_size]})
                losses.append(value)
            result = {f"h{i}": sess.run(w) for i, w in enumerate(weights)}
            result.update({f"b{i}": sess.run(b) for i, b in enumerate(biases)})
            result["loss"] = np.array(losses)
            result["accuracy"] = sess.run(accuracy, feed_dict={x: data_x, y: data_y})
            result["global_step"] = sess.run(global_step)
            return result


def main():
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    result = run(tf)
    print(f"step {result['global_step']}: loss={result['loss'][-1]:.6f} accuracy={result['accuracy']:.3f}")


if __name__ == "__main__":
    main()
