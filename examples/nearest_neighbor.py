"""Nearest-neighbour classification with L1 distance, one test point per run (a TF1 program).

`run(tf)` takes the TF1 module (tensorgrid.compat.v1 or tensorflow.compat.v1).
"""

import numpy as np

from softmax_regression import make_data


def run(tf, n_train=200, n_test=40):
    """Returns the predicted training index for each test point and the accuracy."""
    data_x, data_y = make_data(n=n_train + n_test, dim=4, classes=3, seed=4)
    x_train, y_train = data_x[:n_train], data_y[:n_train]
    x_test, y_test = data_x[n_train:], data_y[n_train:]
    graph = tf.Graph()
    with graph.as_default():
        xtr = tf.placeholder("float", [None, 4])
        xte = tf.placeholder("float", [4])
        distance = tf.reduce_sum(tf.abs(tf.add(xtr, tf.negative(xte))), reduction_indices=1)
        pred = tf.arg_min(distance, 0)
        nearest, hits = [], 0
        with tf.Session(graph=graph) as sess:
            for i in range(len(x_test)):
                index = sess.run(pred, feed_dict={xtr: x_train, xte: x_test[i, :]})
                nearest.append(index)
                hits += int(np.argmax(y_train[index]) == np.argmax(y_test[i]))
        return {"nearest": np.array(nearest), "accuracy": hits / len(x_test)}


def main():
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    print(f"accuracy={run(tf)['accuracy']:.3f}")


if __name__ == "__main__":
    main()
