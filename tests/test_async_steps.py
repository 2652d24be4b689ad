"""A master's RunStep over gRPC holds no thread while its workers run the step (issue 11, item 2).

Real processes: a master and two workers with TENSORGRID_CONTROL=grpc (and
with TLS), and far more steps blocked in a dequeue than the master has
threads. Its thread count stays bounded, heartbeats stay fresh for longer
than the heartbeat timeout, and every step ends with its value once the
queues are filled.
"""

import concurrent.futures
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import security
from tensorgrid.framework import errors
from tensorgrid.proto import convert, master_pb2
from tensorgrid.runtime.cluster import LocalCluster
from tests.test_security import _tls_args, _use_tls, _write_certs
from tests.waiting import poll

tf = tg.compat.v1
TOKEN = "async-steps-token"
# Threads a master may have with every step below in flight: its servers' and monitors', not one per step.
THREAD_BOUND = 200
# Workers beat every 0.5 s with a 1 s deadline; while 2000 steps arrive at once on 2 busy cores, a beat or
# two may miss it, never a whole timeout's worth.
HEARTBEAT_TIMEOUT_S = 5.0


def _threads(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _blocked(status, n):
    return status.active_steps == n and [w.active_steps for w in status.worker] == [n // 2, n // 2]


def _all_waiting(pending):
    """True while no step has ended; the error of the first one that has."""
    for f in pending:
        if f.done():
            raise AssertionError(f"a step ended before its queue was filled: {f.exception() or f.result()}")
    return True


def _queues(n):
    """A queue on each worker, the dequeue of each, and an enqueue of n/2 distinct values into each."""
    g = tg.Graph()
    deqs, enqs = [], []
    with g.as_default():
        for task in (0, 1):
            with tg.device(f"/job:worker/task:{task}"):
                q = tf.FIFOQueue(n, tg.float32, shapes=[[]], shared_name=f"async-{task}")
                deqs.append(q.dequeue())
                values = np.arange(task, n, 2, dtype=np.float32)
                enqs.append(q.enqueue_many([tg.constant(values)]))
    return g, deqs, enqs


def _many_blocked_steps(cluster, n, tls=None):
    """n RunSteps over gRPC, half blocked in each worker's dequeue, checked while they wait and after."""
    g, deqs, enqs = _queues(n)
    channel = security.open_channel(cluster.master_address, tls)
    stub = security.ServiceClient(channel, master_pb2, "MasterService")
    metadata = security.call_metadata(TOKEN)
    try:
        handle = stub("CreateSession", master_pb2.CreateSessionRequest(graph_def=g.as_graph_def()),
                      metadata=metadata, timeout=30).session_handle
        pending = [stub.future("RunStep", master_pb2.RunStepRequest(session_handle=handle,
                                                                   fetch=[deqs[i % 2].name]),
                               metadata=metadata, timeout=120) for i in range(n)]
        # every step in flight on the master, and blocked in its dequeue on the workers (each a thread there)
        poll(lambda: _all_waiting(pending) and _blocked(cluster.status(), n), 60, f"{n} steps in flight")
        # longer than the heartbeat timeout: a master whose threads the steps held would miss heartbeats
        ages, threads, until = [], [], time.monotonic() + HEARTBEAT_TIMEOUT_S + 0.5
        while time.monotonic() < until:
            status = cluster.status()
            assert [w.health for w in status.worker] == ["alive", "alive"], status
            assert status.active_steps == n
            ages.extend(w.last_heartbeat_age_s for w in status.worker)
            threads.append(_threads(cluster.master.popen.pid))
            time.sleep(0.1)
        assert max(threads) < THREAD_BOUND, threads
        assert max(ages) < HEARTBEAT_TIMEOUT_S / 2, ages
        for enq in enqs:
            stub("RunStep", master_pb2.RunStepRequest(session_handle=handle, target=[enq.name]),
                 metadata=metadata, timeout=60)
        got = sorted(float(convert.tensor_proto_to_ndarray(f.result().tensor[0].tensor)) for f in pending)
        assert got == list(range(n))
        poll(lambda: cluster.status().active_steps == 0, 10, "the step table to empty")
    finally:
        channel.close()


def test_steps_over_grpc_hold_no_master_thread(monkeypatch):
    monkeypatch.setenv("TENSORGRID_CONTROL", "grpc")
    with LocalCluster(num_workers=2, token=TOKEN, heartbeat_timeout=HEARTBEAT_TIMEOUT_S, heartbeat_interval=0.5,
                      env={"TENSORGRID_CONTROL": "grpc"}) as cluster:
        _many_blocked_steps(cluster, 2000)


def test_steps_over_tls_hold_no_master_thread(tmp_path, monkeypatch):
    certs = _write_certs(tmp_path)
    with LocalCluster(num_workers=2, token=TOKEN, heartbeat_timeout=HEARTBEAT_TIMEOUT_S, heartbeat_interval=0.5,
                      extra_master_args=_tls_args(certs), extra_worker_args=_tls_args(certs)) as cluster:
        _use_tls(monkeypatch, certs)
        _many_blocked_steps(cluster, 1200, security.TlsFiles.from_env())



def test_a_step_over_grpc_ends_at_its_deadline_on_close_and_when_its_worker_dies(monkeypatch):
    """Without a thread waiting, a blocked step still fails with its own class: DEADLINE_EXCEEDED at its
    timeout_in_ms, CANCELLED when its session closes, UNAVAILABLE naming the worker killed under it."""
    monkeypatch.setenv("TENSORGRID_CONTROL", "grpc")
    monkeypatch.setenv(security.TOKEN_ENV, TOKEN)
    with LocalCluster(num_workers=2, token=TOKEN, env={"TENSORGRID_CONTROL": "grpc"}) as cluster, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        g, deqs, _ = _queues(2)
        with tg.Session(cluster.target, graph=g) as sess:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceededError):
                sess.run(deqs[0], options=tf.RunOptions(timeout_in_ms=300))
            assert time.monotonic() - started < 3
            waiting = pool.submit(sess.run, deqs[0])
            poll(lambda: cluster.status().active_steps == 1, 30, "the step in flight")
            sess.close()
            with pytest.raises(errors.CancelledError, match="closed"):
                waiting.result(timeout=30)
        with tg.Session(cluster.target, graph=g) as sess:
            waiting = pool.submit(sess.run, deqs[1])
            poll(lambda: cluster.status().active_steps == 1, 30, "the step in flight")
            started = time.monotonic()
            cluster.kill_worker(1)
            with pytest.raises(errors.UnavailableError, match="task:1"):
                waiting.result(timeout=30)
            assert time.monotonic() - started < 3
