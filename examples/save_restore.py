"""Trains a model, checkpoints it with tf.train.Saver, then restores it into a fresh graph and trains on.

A TF1 program: `run(tf, checkpoint_dir)` takes the TF1 module (tensorgrid.compat.v1 or
tensorflow.compat.v1) and a directory for the checkpoints.
"""

import os
import sys
import tempfile

import numpy as np

from softmax_regression import make_data


def build(tf, dim, classes):
    """The model: softmax regression with momentum and a global step; returns its tensors and ops."""
    x = tf.placeholder(tf.float32, [None, dim])
    y = tf.placeholder(tf.float32, [None, classes])
    W = tf.Variable(np.full((dim, classes), 0.05, np.float32), name="W")
    b = tf.Variable(np.zeros(classes, np.float32), name="b")
    logits = tf.matmul(x, W) + b
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(logits=logits, labels=y))
    global_step = tf.train.get_or_create_global_step()
    train_op = tf.train.MomentumOptimizer(0.05, 0.9).minimize(loss, global_step=global_step)
    return x, y, W, b, loss, global_step, train_op


def run(tf, checkpoint_dir, steps=10):
    """Trains `steps` steps twice over with a save in between and after, then restores and trains on."""
    data_x, data_y = make_data(n=120, dim=5, classes=3, seed=5)
    result = {}
    graph = tf.Graph()
    with graph.as_default():
        x, y, W, b, loss, global_step, train_op = build(tf, 5, 3)
        saver = tf.train.Saver(max_to_keep=1)
        prefix = os.path.join(checkpoint_dir, "model.ckpt")
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(2):
                for _ in range(steps):
                    sess.run(train_op, feed_dict={x: data_x, y: data_y})
                saved = saver.save(sess, prefix, global_step=global_step)
            result["saved"] = os.path.basename(saved)
            result["W_saved"], result["b_saved"] = sess.run([W, b])
            result["kept"] = [os.path.basename(p) for p in saver.last_checkpoints]

    graph = tf.Graph()
    with graph.as_default():
        x, y, W, b, loss, global_step, train_op = build(tf, 5, 3)
        saver = tf.train.Saver()
        with tf.Session(graph=graph) as sess:
            latest = tf.train.latest_checkpoint(checkpoint_dir)
            result["latest"] = os.path.basename(latest)
            saver.restore(sess, latest)
            result["W_restored"], result["b_restored"], result["step_restored"] = sess.run([W, b, global_step])
            for _ in range(steps):
                sess.run(train_op, feed_dict={x: data_x, y: data_y})
            result["W_final"], result["loss_final"], result["step_final"] = sess.run(
                [W, loss, global_step], feed_dict={x: data_x, y: data_y})
    return result


def main():
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tensorgrid-ckpt-")
    result = run(tf, directory)
    print(f"saved {result['saved']} in {directory}; restored {result['latest']} at step {result['step_restored']}; "
          f"step {result['step_final']}: loss={result['loss_final']:.6f}")


if __name__ == "__main__":
    main()
