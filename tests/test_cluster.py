"""Integration tests of the cluster runtime: a real master and three real worker processes on port 0."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster

tf = tg.compat.v1
WORKERS = 3


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(num_workers=WORKERS) as c:
        yield c


def _task(i):
    return f"/job:worker/task:{i}"


# ---------------------------------------------------------------- same numbers as in-process

def _mlp(dev):
    rng = np.random.default_rng(0)
    x = tf.placeholder(tg.float32, [4, 5], name="x")
    with tg.device(dev(0)):
        w1 = tg.constant(rng.standard_normal((5, 6)).astype(np.float32))
        h = tg.nn.relu(tg.matmul(x, w1))
    with tg.device(dev(1)):
        w2 = tg.constant(rng.standard_normal((6, 3)).astype(np.float32))
        logits = tg.matmul(h, w2)
    with tg.device(dev(2)):
        out = tg.nn.softmax(logits)
        total = tg.reduce_sum(out * 2.0 + h[:, :3])
    return {x: rng.standard_normal((4, 5)).astype(np.float32)}, [out, total]


def _fan_out_in(dev):
    x = tf.placeholder(tg.float64, [8], name="x")
    parts = []
    for i in range(WORKERS):
        with tg.device(dev(i)):
            parts.append(tg.square(x + float(i)) - tg.cast(tg.range(8), tg.float64))
    with tg.device(dev(0)):
        stacked = tg.stack(parts)
        mean = tg.reduce_mean(stacked, axis=0)
    return {x: np.linspace(-1, 1, 8)}, [stacked, mean]


def _ints_and_bools(dev):
    x = tf.placeholder(tg.int32, [6], name="x")
    with tg.device(dev(2)):
        doubled = x * 2
    with tg.device(dev(1)):
        big = tg.greater(doubled, 5)
    with tg.device(dev(0)):
        picked = tg.where(big, doubled, -x)
        count = tg.reduce_sum(tg.cast(big, tg.int32))
    return {x: np.arange(6, dtype=np.int32)}, [picked, count, big]


def _variables(dev):
    with tg.device(dev(1)):
        v = tf.get_variable("v", initializer=tg.constant([[1.0, 2.0], [3.0, 4.0]]))
    with tg.device(dev(2)):
        y = tg.matmul(v, v, transpose_b=True)
    with tg.device(dev(0)):
        z = tg.reduce_max(y, axis=1, keepdims=True) + tg.reduce_min(v)
    return {}, [y, z]


GRAPHS = [_mlp, _fan_out_in, _ints_and_bools, _variables]


def _run(builder, target, dev, device_count):
    g = tg.Graph()
    with g.as_default():
        feeds, fetches = builder(dev)
        init = tf.global_variables_initializer()
        config = tg.ConfigProto(device_count={"CPU": device_count})
        with tg.Session(target, graph=g, config=config) as sess:
            sess.run(init)
            return sess.run(fetches, feeds)


@pytest.mark.parametrize("builder", GRAPHS, ids=lambda b: b.__name__.strip("_"))
def test_same_numbers_as_in_process(cluster, builder):
    tf.reset_default_graph()
    remote = _run(builder, cluster.target, _task, 1)
    local = _run(builder, "", lambda i: f"/cpu:{i}", WORKERS)
    assert len(remote) == len(local)
    for r, want in zip(remote, local):
        assert np.asarray(r).dtype == np.asarray(want).dtype
        np.testing.assert_allclose(r, want, rtol=1e-6)


_UNARY = {"tanh": (tg.tanh, np.tanh), "neg": (tg.negative, np.negative), "square": (tg.square, np.square)}
_BINARY = {"add": (tg.add, np.add), "sub": (tg.subtract, np.subtract), "mul": (tg.multiply, np.multiply),
           "max": (tg.maximum, np.maximum), "matmul": (tg.matmul, np.matmul)}


@pytest.mark.parametrize("seed", range(4))
def test_random_dags_match_numpy(cluster, seed):
    rng = np.random.default_rng(seed)
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float64, [3, 3], name="x")
        xv = rng.standard_normal((3, 3)) * 0.5
        tensors, values = [x], [xv]
        for _ in range(30):
            with tg.device(_task(int(rng.integers(WORKERS)))):
                if rng.random() < 0.3:
                    i = int(rng.integers(len(tensors)))
                    name = rng.choice(sorted(_UNARY))
                    t = _UNARY[name][0](tensors[i])
                    v = _UNARY[name][1](values[i])
                else:
                    i, j = (int(k) for k in rng.integers(len(tensors), size=2))
                    name = rng.choice(sorted(_BINARY))
                    t = _BINARY[name][0](tensors[i], tensors[j])
                    v = _BINARY[name][1](values[i], values[j])
                scale = max(1.0, float(np.abs(v).max()))  # keep values in range over a deep chain
                tensors.append(t / scale)
                values.append(v / scale)
        fetch_ids = sorted({int(k) for k in rng.integers(1, len(tensors), size=5)} | {len(tensors) - 1})
        with tg.Session(cluster.target, graph=g) as sess:
            got = sess.run([tensors[k] for k in fetch_ids], {x: xv})
    for k, r in zip(fetch_ids, got):
        np.testing.assert_allclose(r, values[k], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- partitions and tracing

def test_partition_graphs_have_send_and_recv_per_worker(cluster):
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        with tg.device(_task(0)):
            a = tg.add(x, 1.0, name="a")
        with tg.device(_task(1)):
            b = tg.multiply(a, 2.0, name="b")
            c = tg.add(a, b, name="c")  # a is read twice on task 1 but sent once
        with tf.Session(cluster.target, graph=g) as sess:
            md = tg.RunMetadata()
            out = sess.run(c, {x: [1.0, 2.0]}, options=tg.RunOptions(trace_level=tg.RunOptions.FULL_TRACE),
                           run_metadata=md)
    np.testing.assert_allclose(out, [6.0, 9.0])
    by_device = {}
    for gd in md.partition_graphs:
        devices = {n.device for n in gd.node}
        assert len(devices) == 1
        by_device[devices.pop()] = gd
    dev0, dev1 = (f"{_task(i).replace('/task', '/replica:0/task')}/device:CPU:0" for i in range(2))
    assert set(by_device) == {dev0, dev1}
    sends = [n for n in by_device[dev0].node if n.op == "_Send"]
    recvs = [n for n in by_device[dev1].node if n.op == "_Recv"]
    assert len(sends) == 1 and len(recvs) == 1
    assert sends[0].attr["key"].s == recvs[0].attr["key"].s
    assert sends[0].attr["recv_device"].s.decode() == dev1
    stats = {d.device: d for d in md.step_stats.dev_stats}
    assert set(stats) == {dev0, dev1}
    recv_stats = [n for n in stats[dev1].node_stats if n.node_name == recvs[0].name]
    assert recv_stats and recv_stats[0].output[0].tensor_description.allocation_description.requested_bytes == 8
    trace = json.loads(tg.profiler.chrome_trace(md))
    processes = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert processes == {dev0, dev1}


def test_list_devices(cluster):
    with tg.Session(cluster.target, graph=tg.Graph()) as sess:
        devices = sess.list_devices()
    assert [d.name for d in devices] == [f"/job:worker/replica:0/task:{i}/device:CPU:0" for i in range(WORKERS)]
    assert all(d.device_type == "CPU" for d in devices)


def test_graph_grows_after_the_session_starts(cluster):
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(0)):
            a = tg.constant(3.0, name="a")
        sess = tg.Session(cluster.target, graph=g)
        assert sess.run(a) == 3.0
        with tg.device(_task(2)):
            b = a * 4.0
        assert sess.run(b) == 12.0
        with tg.device(_task(1)):
            c = b + a
        assert sess.run([c, b]) == [15.0, 12.0]
        sess.close()


def test_variables_live_on_workers_across_sessions_until_reset(cluster):
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(2)):
            counter = tf.Variable(0, name="shared_counter")
            bump = counter.assign_add(1)
        with tg.Session(cluster.target, graph=g) as sess:
            sess.run(counter.initializer)
            sess.run(bump)
        with tg.Session(cluster.target, graph=g) as sess:
            assert sess.run(bump) == 2
        tg.Session.reset(cluster.target)
        with tg.Session(cluster.target, graph=g) as sess:
            with pytest.raises(errors.FailedPreconditionError, match="shared_counter"):
                sess.run(bump)


# ---------------------------------------------------------------- concurrency and size

def test_six_concurrent_sessions(cluster):
    def client(k):
        g = tg.Graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, [3], name="x")
            with tg.device(_task(k % WORKERS)):
                a = x * float(k + 1)
            with tg.device(_task((k + 1) % WORKERS)):
                b = a + tg.reduce_sum(x)
            with tg.Session(cluster.target, graph=g) as sess:
                for i in range(25):
                    v = np.array([i, k, 1.0], np.float32)
                    np.testing.assert_allclose(sess.run(b, {x: v}), v * (k + 1) + v.sum())
        return k

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(client, range(6))) == list(range(6))


def test_a_256_mib_tensor_crosses_workers(cluster):
    n = 64 << 20  # float32 elements: 256 MiB
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(0)):
            big = tg.fill([n], 0.5) + tg.cast(tg.range(n) % 3, tg.float32)
        with tg.device(_task(1)):
            total = tg.reduce_sum(tg.cast(big, tg.float64))
        with tg.Session(cluster.target, graph=g) as sess:
            got = sess.run(total)  # its speed is W2's business (python -m benchmarks), not a test's
    assert got == pytest.approx(0.5 * n + (n // 3) * (0 + 1 + 2) + (1 if n % 3 > 1 else 0), rel=1e-12)


def _sent_in_place(cluster, i):
    from tensorgrid.runtime.master_service import GrpcWorkerClient
    client = GrpcWorkerClient(cluster.worker_info(i)["address"])
    try:
        return client.get_status().result(timeout=10)["transport"]["tensors_sent_in_place"]
    finally:
        client.close()


def test_a_sent_elementwise_result_is_written_into_shared_memory(cluster):
    """An Add/Mul whose output only goes to a same-host worker writes it straight into the segment the
    send hands over; one that is also fetched, or promotes, or broadcasts, gives the same numbers."""
    n = 1 << 16
    v0 = np.linspace(-1, 1, n, dtype=np.float32)
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(0)):
            v = tg.Variable(v0, name="v")
            col = tf.placeholder(tg.float32, [256, 1], name="col")
            only_sent = v + 1.0
            also_fetched = v * 3.0
            outer = col * tg.reshape(v[:256], [1, 256])  # [256, 256] from two small inputs
            ints = tg.cast(v, tg.int32) + 7
        with tg.device(_task(1)):
            total = tg.reduce_sum(only_sent) + tg.reduce_sum(also_fetched) + tg.reduce_sum(outer)
            total_int = tg.reduce_sum(ints)
        with tg.Session(cluster.target, graph=g) as sess:
            sess.run(v.initializer)
            before = _sent_in_place(cluster, 0)
            c = np.arange(256, dtype=np.float32).reshape(256, 1)
            for _ in range(3):
                got, fetched, got_int = sess.run([total, also_fetched, total_int], {col: c})
                want = (v0 + 1).sum(dtype=np.float64) + (v0 * 3).sum(dtype=np.float64) + (c * v0[:256]).sum()
                assert got == pytest.approx(want, rel=1e-5)
                np.testing.assert_array_equal(fetched, v0 * 3)
                assert got_int == (v0.astype(np.int32) + 7).sum()
            # v + 1 and col * v[:256] each step; the int add, fused with its Cast into one kernel, from
            # its second step on (its result's shape and dtype are known once it has run); v * 3 is
            # fetched too, so it is copied
            assert _sent_in_place(cluster, 0) - before == 8


# ---------------------------------------------------------------- errors

def test_an_error_on_one_worker_reaches_the_client_with_its_node(cluster):
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [None], name="x")
        with tg.device(_task(0)):
            a = x * 2.0
        with tg.device(_task(1)):
            check = tg.debugging.assert_positive(a, message="needs positive", name="check_positive")
            with tg.control_dependencies([check]):
                b = tg.identity(a, name="b")
        with tg.device(_task(2)):
            c = b + 1.0
        with tg.Session(cluster.target, graph=g) as sess:
            assert sess.run(c, {x: [1.0]}) == [3.0]
            with pytest.raises(errors.InvalidArgumentError) as info:
                sess.run(c, {x: [-1.0]})
            assert sess.run(c, {x: [2.0]}) == [5.0]
    message = str(info.value)
    assert "check_positive" in message and "needs positive" in message
    assert "/job:worker/replica:0/task:1/device:CPU:0" in message
    assert "test_cluster.py" in message
    assert info.value.op is not None and "check_positive" in info.value.op


def test_fetching_an_unknown_tensor_is_a_client_error(cluster):
    g = tg.Graph()
    with g.as_default():
        tg.constant(1.0, name="a")
        with tg.Session(cluster.target, graph=g) as sess:
            with pytest.raises((KeyError, ValueError, TypeError)):
                sess.run("nope:0")


def test_the_grpc_control_path_gives_the_same_results(monkeypatch):
    """With the step channel switched off (TENSORGRID_CONTROL=grpc) every call goes through gRPC."""
    monkeypatch.setenv("TENSORGRID_CONTROL", "grpc")
    with LocalCluster(num_workers=2, env={"TENSORGRID_CONTROL": "grpc"}) as c:
        assert c.master.info["step_port"] == 0 and c.worker_info(0)["step_address"] == ""
        g = tg.Graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, [None], name="x")
            with tg.device(_task(0)):
                a = x + 1.0
            with tg.device(_task(1)):
                check = tg.debugging.assert_positive(a, name="grpc_check")
                with tg.control_dependencies([check]):
                    b = a * 2.0
            with tg.Session(c.target, graph=g) as sess:
                assert sess._backend._master.fast is None
                md = tg.RunMetadata()
                np.testing.assert_allclose(
                    sess.run(b, {x: [1.0, 2.0]}, options=tg.RunOptions(trace_level=tg.RunOptions.FULL_TRACE),
                             run_metadata=md), [4.0, 6.0])
                assert len(md.partition_graphs) == 2
                with pytest.raises(errors.InvalidArgumentError, match="grpc_check"):
                    sess.run(b, {x: [-5.0]})


@pytest.mark.slow
def test_a_tensor_over_2_gib_crosses_workers(cluster):
    n = (5 << 30) // 2  # uint8 elements: 2.5 GiB
    g = tg.Graph()
    with g.as_default():
        with tg.device(_task(0)):
            big = tg.fill([n], tg.constant(3, tg.uint8))
        with tg.device(_task(1)):
            total = tg.reduce_sum(tg.cast(big[::4096], tg.int64)) + tg.cast(tg.size(big, out_type=tg.int64), tg.int64)
        with tg.Session(cluster.target, graph=g) as sess:
            assert sess.run(total) == 3 * len(range(0, n, 4096)) + n


# ---------------------------------------------------------------- starting processes

def _gone(pid):
    """True once process `pid` has exited (a zombie nobody reaps counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_started_while_grpc_serves_run_and_die_with_their_parent(tmp_path):
    """A parent that serves gRPC (its poller threads running) starts children: each runs its command (gRPC's
    fork handlers, which would restart those threads in the child before exec, do not run), and a child
    still gets SIGTERM when its parent dies."""
    parent = subprocess.Popen([sys.executable, "-c", """if True:
        import concurrent.futures, subprocess, sys, grpc
        from tensorgrid.runtime.cluster import die_with_parent
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
        server.add_insecure_port("127.0.0.1:0")
        server.start()
        codes = [subprocess.call(die_with_parent([sys.executable, "-c", "pass"])) for _ in range(40)]
        child = subprocess.Popen(die_with_parent([sys.executable, "-c", "import time; print('up', flush=True); "
                                                  "time.sleep(120)"]), stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"up\\n"
        print(codes, child.pid, flush=True)
        sys.stdin.read()
        """], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(tg.__file__)))})
    try:
        line = parent.stdout.readline().decode()
        assert line, f"the parent exited with {parent.wait()}"
        codes, child = line.rsplit(" ", 1)
        assert codes == str([0] * 40), codes  # -6: SIGABRT in gRPC before exec
        assert not _gone(int(child))
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while not _gone(int(child)):
        assert time.monotonic() < deadline, "the child outlived its parent by 30 s"
        time.sleep(0.05)
