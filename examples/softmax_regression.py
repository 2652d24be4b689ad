"""Softmax (multinomial logistic) regression on three Gaussian blobs, trained by minibatch gradient descent.

A TF1 program: `run(tf)` takes the TF1 module (tensorgrid.compat.v1 or tensorflow.compat.v1).
"""

import numpy as np


def make_data(n=300, dim=5, classes=3, seed=0):
    """Blobs around random centres; labels one-hot."""
    rng = np.random.RandomState(seed)
    centres = rng.randn(classes, dim) * 2.0
    labels = rng.randint(0, classes, n)
    x = (centres[labels] + rng.randn(n, dim)).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[labels]


def run(tf, epochs=20, batch_size=50, learning_rate=0.1):
    """Returns the trained W and b, the cost after each epoch and the final training accuracy."""
    data_x, data_y = make_data()
    dim, classes = data_x.shape[1], data_y.shape[1]
    w0 = (np.random.RandomState(1).randn(dim, classes) * 0.1).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, dim])
        y = tf.placeholder(tf.float32, [None, classes])
        W = tf.Variable(w0, name="W")
        b = tf.Variable(tf.zeros([classes]), name="b")
        pred = tf.nn.softmax(tf.matmul(x, W) + b)
        cost = tf.reduce_mean(-tf.reduce_sum(y * tf.log(pred), reduction_indices=1))
        optimizer = tf.train.GradientDescentOptimizer(learning_rate).minimize(cost)
        correct = tf.equal(tf.argmax(pred, 1), tf.argmax(y, 1))
        accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
        costs = []
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(epochs):
                total = 0.0
                for i in range(0, len(data_x), batch_size):
                    _, c = sess.run([optimizer, cost], feed_dict={x: data_x[i:i + batch_size],
                                                                   y: data_y[i:i + batch_size]})
                    total += c
                costs.append(total / (len(data_x) // batch_size))
            acc = sess.run(accuracy, feed_dict={x: data_x, y: data_y})
            return {"W": sess.run(W), "b": sess.run(b), "cost": np.array(costs), "accuracy": acc}


def main():
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    result = run(tf)
    print(f"final cost={result['cost'][-1]:.6f} accuracy={result['accuracy']:.3f}")


if __name__ == "__main__":
    main()
