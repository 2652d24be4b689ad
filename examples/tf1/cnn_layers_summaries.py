"""A TF1 program: a tf.layers CNN on MNIST-shaped digits, with summaries, a FileWriter and a Saver.

Written for TensorFlow 1.x (`import tensorflow as tf`); run.py runs it on
tensorgrid with only that line changed. tests/test_tf1_programs.py runs it
in-process and on a local cluster.
"""

import os
import tempfile

import tensorflow as tf
from tensorflow.examples.tutorials.mnist import input_data

steps = 200
batch_size = 64
log_dir = os.path.join(tempfile.gettempdir(), "tf1_cnn_layers_summaries")

mnist = input_data.read_data_sets("/tmp/data/", one_hot=False)

x = tf.placeholder(tf.float32, [None, 784], name="images")
y = tf.placeholder(tf.int64, [None], name="labels")
training = tf.placeholder_with_default(False, [], name="training")

images = tf.reshape(x, [-1, 28, 28, 1])
tf.summary.image("input", images, max_outputs=2)
net = tf.layers.conv2d(images, 8, 5, padding="same", activation=tf.nn.relu)
net = tf.layers.max_pooling2d(net, 2, 2)
net = tf.layers.batch_normalization(net, training=training)
net = tf.layers.conv2d(net, 16, 3, activation=tf.nn.relu,
                       kernel_regularizer=lambda w: 1e-4 * tf.nn.l2_loss(w))
net = tf.layers.average_pooling2d(net, 2, 2)
net = tf.layers.flatten(net)
net = tf.layers.dense(net, 64, activation=tf.nn.relu)
net = tf.layers.dropout(net, 0.25, training=training)
logits = tf.layers.dense(net, 10, name="logits")

loss = tf.losses.sparse_softmax_cross_entropy(y, logits) + tf.losses.get_regularization_loss()
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32), name="accuracy")
tf.summary.scalar("loss", loss)
tf.summary.scalar("accuracy", accuracy)
tf.summary.histogram("logits", logits)
global_step = tf.train.get_or_create_global_step()
with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
    train_op = tf.train.AdamOptimizer(1e-3).minimize(loss, global_step=global_step, name="train")
merged = tf.summary.merge_all()
saver = tf.train.Saver()

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    writer = tf.summary.FileWriter(log_dir, sess.graph)
    for step in range(steps):
        batch_x, batch_y = mnist.train.next_batch(batch_size)
        summary, _ = sess.run([merged, "train"], {x: batch_x, y: batch_y, training: True})
        writer.add_summary(summary, sess.run(global_step))
    writer.close()
    test_accuracy = sess.run("accuracy:0", {"images:0": mnist.test.images, "labels:0": mnist.test.labels})
    path = saver.save(sess, os.path.join(log_dir, "model.ckpt"), global_step=global_step)
    print("step", sess.run(global_step), "test accuracy", test_accuracy, "saved", path)
