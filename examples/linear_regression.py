"""Linear regression fitted by gradient descent, one sample per step (a TF1 program).

Runs against tensorgrid by default; `run(tf)` takes the TF1 module, so the same
program runs with `tensorflow.compat.v1` too (tests/test_tf_differential.py does).
"""

import numpy as np

TRAIN_X = np.array([3.3, 4.4, 5.5, 6.71, 6.93, 4.168, 9.779, 6.182, 7.59, 2.167, 7.042, 10.791, 5.313, 7.997,
                    5.654, 9.27, 3.1], dtype=np.float32)
TRAIN_Y = np.array([1.7, 2.76, 2.09, 3.19, 1.694, 1.573, 3.366, 2.596, 2.53, 1.221, 2.827, 3.465, 1.65, 2.904,
                    2.42, 2.94, 1.3], dtype=np.float32)


def run(tf, epochs=50, learning_rate=0.01):
    """Trains y = W x + b; returns the final W, b and the training cost after each epoch."""
    n_samples = TRAIN_X.shape[0]
    graph = tf.Graph()
    with graph.as_default():
        X = tf.placeholder("float")
        Y = tf.placeholder("float")
        W = tf.Variable(np.float32(0.3), name="weight")
        b = tf.Variable(np.float32(-0.2), name="bias")
        pred = tf.add(tf.multiply(X, W), b)
        cost = tf.reduce_sum(tf.pow(pred - Y, 2)) / (2 * n_samples)
        optimizer = tf.train.GradientDescentOptimizer(learning_rate).minimize(cost)
        init = tf.global_variables_initializer()
        costs = []
        with tf.Session(graph=graph) as sess:
            sess.run(init)
            for _ in range(epochs):
                for x, y in zip(TRAIN_X, TRAIN_Y):
                    sess.run(optimizer, feed_dict={X: x, Y: y})
                costs.append(sess.run(cost, feed_dict={X: TRAIN_X, Y: TRAIN_Y}))
            return {"W": sess.run(W), "b": sess.run(b), "cost": np.array(costs)}


def main():
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    result = run(tf)
    print(f"W={result['W']:.6f} b={result['b']:.6f} training cost={result['cost'][-1]:.6f}")


if __name__ == "__main__":
    main()
