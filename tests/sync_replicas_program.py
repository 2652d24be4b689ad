"""One task of a SyncReplicasOptimizer program: linear regression by gradient descent, ps + workers.

    python tests/sync_replicas_program.py CLUSTER_JSON JOB TASK [--last_step N] [--num_tokens T]
                                          [--max_local_steps M]

A ps task serves. A worker trains w (3x1) and b on batches it draws from
`batch(task, local_step)`, so a test can recompute every gradient in NumPy,
and prints one JSON line at the end: {"task", "local_steps", "w", "b",
"global_step"}. --max_local_steps makes a worker stop early (its input ran
out). TG_EXAMPLE_ENGINE=tensorflow runs it on TensorFlow instead.
"""

import argparse
import json
import os

import numpy as np

if os.environ.get("TG_EXAMPLE_ENGINE") == "tensorflow":
    import tensorflow.compat.v1 as tf
else:
    import tensorgrid.compat.v1 as tf

tf.disable_eager_execution()

LEARNING_RATE = 0.1
W0 = np.array([[0.5], [-0.25], [1.0]], np.float32)
TRUE_W = np.array([[2.0], [-1.0], [0.5]], np.float32)


def batch(task, local_step):
    """The (x, y) a worker uses at its local step (0-based): 8 rows of a noiseless linear model."""
    rng = np.random.RandomState(1000 * task + local_step)
    x = rng.randn(8, 3).astype(np.float32)
    return x, x @ TRUE_W + 0.3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cluster")
    p.add_argument("job")
    p.add_argument("task", type=int)
    p.add_argument("--last_step", type=int, default=10)
    p.add_argument("--num_tokens", type=int, default=-1)
    p.add_argument("--max_local_steps", type=int, default=None)
    args = p.parse_args()
    cluster = tf.train.ClusterSpec(json.loads(args.cluster))
    server = tf.train.Server(cluster, job_name=args.job, task_index=args.task)
    if args.job == "ps":
        server.join()
        return
    num_workers = len(cluster.as_dict()["worker"])
    with tf.device(tf.train.replica_device_setter(worker_device=f"/job:worker/task:{args.task}", cluster=cluster)):
        global_step = tf.train.get_or_create_global_step()
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        y = tf.placeholder(tf.float32, [None, 1], name="y")
        w = tf.Variable(W0, name="w")
        b = tf.Variable(0.0, name="b")
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y))
        opt = tf.train.SyncReplicasOptimizer(tf.train.GradientDescentOptimizer(LEARNING_RATE),
                                             replicas_to_aggregate=num_workers, total_num_replicas=num_workers)
        train_op = opt.minimize(loss, global_step=global_step)
    final = tf.train.FinalOpsHook([w, b, global_step])
    hooks = [opt.make_session_run_hook(args.task == 0, num_tokens=args.num_tokens),
             tf.train.StopAtStepHook(last_step=args.last_step), final]
    config = tf.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{args.task}"])
    local_steps = 0
    with tf.train.MonitoredTrainingSession(master=server.target, is_chief=args.task == 0, hooks=hooks,
                                           config=config, save_checkpoint_secs=None, save_summaries_steps=None,
                                           save_summaries_secs=None, log_step_count_steps=0) as sess:
        while not sess.should_stop() and local_steps != args.max_local_steps:
            bx, by = batch(args.task, local_steps)
            sess.run(train_op, {x: bx, y: by})
            local_steps += 1
    w_value, b_value, step = final.final_ops_values
    print(json.dumps({"task": args.task, "local_steps": local_steps, "w": np.asarray(w_value).tolist(),
                      "b": float(b_value), "global_step": int(step)}), flush=True)


if __name__ == "__main__":
    main()
