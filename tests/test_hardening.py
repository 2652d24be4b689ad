"""Issue 11's defects, one test each, over real processes where the defect needs them."""

import concurrent.futures
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster

tf = tg.compat.v1


def _wait_until(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- 2: steps do not starve heartbeats

def test_many_long_grpc_steps_do_not_starve_heartbeats(monkeypatch):
    """70 steps blocked in a dequeue over gRPC (more than the old 64-thread pool): heartbeats still arrive,
    the worker stays alive, and one more step (the enqueue) releases them all."""
    monkeypatch.setenv("TENSORGRID_CONTROL", "grpc")
    n = 70
    with LocalCluster(num_workers=1, heartbeat_timeout=2.0, heartbeat_interval=0.2,
                      env={"TENSORGRID_CONTROL": "grpc"}) as cluster:
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:0"):
            q = tf.FIFOQueue(2 * n, tg.float32, shapes=[[]], shared_name="starve")
            deq = q.dequeue()
            enq = q.enqueue_many([tg.constant(np.arange(n, dtype=np.float32))])
        with tg.Session(cluster.target, graph=g) as sess, \
                concurrent.futures.ThreadPoolExecutor(n) as pool:
            waiting = [pool.submit(sess.run, deq) for _ in range(n)]
            _wait_until(lambda: cluster.status().active_steps == n, f"{n} steps in flight", timeout=20)
            # longer than the heartbeat timeout: a starved master would declare the worker dead meanwhile
            time.sleep(3.0)
            status = cluster.status()
            assert [w.health for w in status.worker] == ["alive"], status
            sess.run(enq)
            got = sorted(float(f.result(timeout=60)) for f in waiting)
        assert got == list(range(n))
