"""A TF2 program of this project's own: a tf.Module MLP on MNIST trained with a GradientTape in a
tf.function, checkpointed with tf.train.CheckpointManager, resumed when run again.

Written for TensorFlow 2.x; `python examples/tf2/run.py examples/tf2/module_checkpoint.py` runs it on
tensorgrid (and `--tensorflow` on TensorFlow).
"""

import numpy as np
import tensorflow as tf
from tensorflow.keras.datasets import mnist

steps = 150
batch_size = 64
learning_rate = 0.5
ckpt_dir = "ckpts"

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = x_train.reshape(-1, 784).astype(np.float32) / 255.0
x_test = x_test.reshape(-1, 784).astype(np.float32) / 255.0
y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
train_data = tf.data.Dataset.from_tensor_slices((x_train, y_train)).repeat().shuffle(500, seed=1).batch(batch_size)


class Dense(tf.Module):
    def __init__(self, n_in, n_out, activation=None, name=None):
        super().__init__(name=name)
        with self.name_scope:
            self.w = tf.Variable(tf.random.normal([n_in, n_out], stddev=0.1, seed=1), name="w")
            self.b = tf.Variable(tf.zeros([n_out]), name="b")
        self.activation = activation

    @tf.Module.with_name_scope
    def __call__(self, x):
        y = tf.matmul(x, self.w) + self.b
        return self.activation(y) if self.activation else y


class MLP(tf.Module):
    def __init__(self):
        super().__init__()
        with self.name_scope:
            self.layers = [Dense(784, 64, tf.nn.relu, name="hidden"), Dense(64, 10, name="logits")]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


model = MLP()
step = tf.Variable(0, dtype=tf.int64, name="step")
manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, model=model), ckpt_dir, max_to_keep=2)
restored = manager.restore_or_initialize()
print("variables:", [v.name for v in model.trainable_variables])
print("restored from", restored, "at step", int(step.numpy()))


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x)))
    for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables)):
        v.assign_sub(learning_rate * g)
    step.assign_add(1)
    return loss


for x, y in train_data.take(max(steps - int(step.numpy()), 0)):
    loss = train_step(x, y)
    if int(step.numpy()) % 50 == 0:
        print(f"step {int(step.numpy())} loss {float(loss):.4f} saved {manager.save()}")

accuracy = np.mean(np.argmax(model(x_test).numpy(), axis=1) == y_test)
print(f"step {int(step.numpy())} test accuracy {accuracy:.3f}")
print("kept checkpoints:", [c.rsplit("/", 1)[-1] for c in manager.checkpoints])
