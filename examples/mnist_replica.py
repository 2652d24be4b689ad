"""Between-graph replicated training of an MLP on scikit-learn's digits: ps tasks and worker tasks.

The shape of TensorFlow's classic mnist_replica.py and of the distributed
how-to's trainer.py. Every task runs this script with the same --ps_hosts
and --worker_hosts and its own --job_name/--task_index. Each task starts a
tf.train.Server on its address; ps tasks only serve; each worker builds the
model with replica_device_setter (variables on the ps tasks, compute on
itself) and trains with MonitoredTrainingSession: worker 0, the chief,
initializes or restores the model and writes checkpoints, the others wait for
it. --sync_replicas wraps the optimizer in SyncReplicasOptimizer.

    python examples/mnist_replica.py --job_name=ps --task_index=0 &
    python examples/mnist_replica.py --job_name=worker --task_index=0 &
    python examples/mnist_replica.py --job_name=worker --task_index=1

The script runs unchanged on TensorFlow (TG_EXAMPLE_ENGINE=tensorflow picks
`tensorflow.compat.v1` instead of `tensorgrid.compat.v1`).
"""

import argparse
import math
import os

import numpy as np

if os.environ.get("TG_EXAMPLE_ENGINE") == "tensorflow":
    import tensorflow.compat.v1 as tf
else:
    import tensorgrid.compat.v1 as tf

tf.disable_eager_execution()

PIXELS = 64  # digits are 8x8


def digits():
    """(train_x, train_y), (test_x, test_y): scikit-learn's digits, scaled to [0, 1], in a fixed order."""
    from sklearn.datasets import load_digits
    data = load_digits()
    order = np.random.RandomState(0).permutation(len(data.target))
    x = (data.data[order] / 16.0).astype(np.float32)
    y = data.target[order].astype(np.int64)
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ps_hosts", default="localhost:2222", help="comma-separated host:port of the ps tasks")
    p.add_argument("--worker_hosts", default="localhost:2223,localhost:2224",
                   help="comma-separated host:port of the worker tasks")
    p.add_argument("--job_name", required=True, choices=["ps", "worker"])
    p.add_argument("--task_index", type=int, required=True)
    p.add_argument("--hidden_units", type=int, default=100)
    p.add_argument("--train_steps", type=int, default=400, help="global steps to train for")
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--learning_rate", type=float, default=0.01)
    p.add_argument("--sync_replicas", action="store_true",
                   help="aggregate the workers' gradients before each update (SyncReplicasOptimizer)")
    p.add_argument("--replicas_to_aggregate", type=int, help="gradients per update (default: the workers)")
    p.add_argument("--checkpoint_dir", help="where the chief saves checkpoints (and restores from)")
    p.add_argument("--save_checkpoint_steps", type=int, default=100)
    p.add_argument("--log_every", type=int, default=50, help="print a line every N local steps")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ps_hosts, worker_hosts = args.ps_hosts.split(","), args.worker_hosts.split(",")
    cluster = tf.train.ClusterSpec({"ps": ps_hosts, "worker": worker_hosts})
    server = tf.train.Server(cluster, job_name=args.job_name, task_index=args.task_index)
    if args.job_name == "ps":
        server.join()
        return

    task, num_workers = args.task_index, len(worker_hosts)
    is_chief = task == 0
    (train_x, train_y), (test_x, test_y) = digits()
    with tf.device(tf.train.replica_device_setter(worker_device=f"/job:worker/task:{task}",
                                                  ps_device="/job:ps/cpu:0", cluster=cluster)):
        global_step = tf.train.get_or_create_global_step()
        x = tf.placeholder(tf.float32, [None, PIXELS], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        hid_w = tf.Variable(tf.truncated_normal([PIXELS, args.hidden_units], stddev=1.0 / math.sqrt(PIXELS), seed=1),
                            name="hid_w")
        hid_b = tf.Variable(tf.zeros([args.hidden_units]), name="hid_b")
        sm_w = tf.Variable(tf.truncated_normal([args.hidden_units, 10], stddev=1.0 / math.sqrt(args.hidden_units),
                                               seed=2), name="sm_w")
        sm_b = tf.Variable(tf.zeros([10]), name="sm_b")
        hidden = tf.nn.relu(tf.nn.xw_plus_b(x, hid_w, hid_b))
        logits = tf.nn.xw_plus_b(hidden, sm_w, sm_b)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        opt = tf.train.AdamOptimizer(args.learning_rate)
        if args.sync_replicas:
            opt = tf.train.SyncReplicasOptimizer(opt, replicas_to_aggregate=args.replicas_to_aggregate or num_workers,
                                                 total_num_replicas=num_workers, name="mnist_sync_replicas")
        train_op = opt.minimize(loss, global_step=global_step)

    final = tf.train.FinalOpsHook([loss, accuracy, global_step], {x: test_x, y: test_y})
    hooks = [tf.train.StopAtStepHook(last_step=args.train_steps), final]
    if args.sync_replicas:
        hooks.append(opt.make_session_run_hook(is_chief))
    config = tf.ConfigProto(allow_soft_placement=True, device_filters=["/job:ps", f"/job:worker/task:{task}"])
    print(f"worker {task}: {'initializing' if is_chief else 'waiting for'} the model", flush=True)
    rng = np.random.RandomState(task)
    local_step = 0
    with tf.train.MonitoredTrainingSession(master=server.target, is_chief=is_chief, config=config,
                                           checkpoint_dir=args.checkpoint_dir, hooks=hooks,
                                           save_checkpoint_steps=args.save_checkpoint_steps if args.checkpoint_dir
                                           else None, save_summaries_steps=None, save_summaries_secs=None) as sess:
        print(f"worker {task}: training", flush=True)
        while not sess.should_stop():
            batch = rng.randint(0, len(train_x), args.batch_size)
            _, step, value = sess.run([train_op, global_step, loss], {x: train_x[batch], y: train_y[batch]})
            local_step += 1
            if local_step % args.log_every == 0:
                print(f"worker {task}: local step {local_step}, global step {step}, loss {value:.4f}", flush=True)
    test_loss, test_accuracy, last_step = final.final_ops_values
    print(f"worker {task}: done at global step {last_step} after {local_step} local steps; "
          f"test loss {test_loss:.4f}, test accuracy {test_accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
