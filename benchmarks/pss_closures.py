"""ClusterCoordinator throughput: closures per second on 2 ps + 2 workers, tensorgrid and TensorFlow paired.

    python -m benchmarks.pss_closures [--rounds 2]

Per system and round: a fresh cluster (ps and worker tasks each a process serving its Server), a
coordinator process that makes a [64, 64] variable and a counter on the ps tasks, schedules 10
closures to warm up (each worker's first trace and plan), then times 300 closures and a join(). A
closure: one matmul on the worker, an update of the ps variable, a counter increment. Prints
closures/s per system and round (TensorFlow's rows only when it is installed).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np

from tensorgrid.runtime.cluster import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOSURES, WARMUP = 300, 10
SERVE = {"tg": "import json, sys, tensorgrid as tg; tg.train.Server(json.loads(sys.argv[1]), sys.argv[2], "
               "int(sys.argv[3])).join()",
         "tf": "import json, sys, tensorflow as tf; tf.distribute.Server(tf.train.ClusterSpec("
               "json.loads(sys.argv[1])), job_name=sys.argv[2], task_index=int(sys.argv[3]), protocol='grpc', "
               "start=True).join()"}


def coordinator(cluster, system):
    """Runs in the coordinator process: prints closures/s."""
    if system == "tf":
        import tensorflow as tf
    else:
        import tensorgrid as tf
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(tf.train.ClusterSpec(cluster), task_type="chief",
                                                                    task_id=0, rpc_layer="grpc")
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    coord = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        w = tf.Variable(np.ones((64, 64), np.float32))
        count = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def step(x):
        w.assign_sub(0.001 * tf.matmul(x, w))
        count.assign_add(1)
        return tf.reduce_sum(w)
    x = np.full((64, 64), 0.01, np.float32)
    for _ in range(WARMUP):
        coord.schedule(step, args=(x,))
    coord.join()
    start = time.monotonic()
    for _ in range(CLOSURES):
        coord.schedule(step, args=(x,))
    coord.join()
    seconds = time.monotonic() - start
    assert int(count.numpy()) == WARMUP + CLOSURES
    print(json.dumps({"system": system, "closures_per_s": CLOSURES / seconds}), flush=True)


def run(system):
    ports = iter(free_ports(5))
    cluster = {job: [f"localhost:{next(ports)}" for _ in range(n)]
               for job, n in (("chief", 1), ("ps", 2), ("worker", 2))}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    servers = [subprocess.Popen([sys.executable, "-c", SERVE[system], json.dumps(cluster), job, str(i)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for job in ("ps", "worker") for i in range(2)]
    try:
        out = subprocess.run([sys.executable, "-m", "benchmarks.pss_closures", "--coordinator", json.dumps(cluster),
                              system], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        if not rows:
            print(f"{system}: failed: {out.stderr[-800:]}", file=sys.stderr)
            return None
        return rows[0]["closures_per_s"]
    finally:
        for p in servers:
            p.kill()


def main(argv):
    if argv[:1] == ["--coordinator"]:
        coordinator(json.loads(argv[1]), argv[2])
        return
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 2
    try:
        import tensorflow  # noqa: F401
        systems = ("tg", "tf")
    except ImportError:
        systems = ("tg",)
    for r in range(rounds):
        for system in systems:
            rate = run(system)
            if rate is not None:
                print(f"round {r + 1}: {system}: {rate:.0f} closures/s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
