"""Issue 11's defects, one test each, over real processes where the defect needs them."""

import concurrent.futures
import contextlib
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster
from tests.waiting import poll

tf = tg.compat.v1


# ---------------------------------------------------------------- 2: steps do not starve heartbeats

def test_many_long_grpc_steps_do_not_starve_heartbeats(monkeypatch):
    """100 steps blocked in a dequeue over gRPC (more than the old 64-thread pool): for longer than the
    heartbeat timeout every status shows the worker alive with a fresh heartbeat (they have threads the steps
    never take, security.CONTROL_THREADS), and one more step (the enqueue) releases them all."""
    monkeypatch.setenv("TENSORGRID_CONTROL", "grpc")
    n = 100
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
            poll(lambda: cluster.status().active_steps == n, 30, f"{n} steps in flight")
            # longer than the heartbeat timeout: a starved master would declare the worker dead meanwhile
            ages, until = [], time.monotonic() + 3.0
            while time.monotonic() < until:
                status = cluster.status()
                assert [w.health for w in status.worker] == ["alive"], status
                assert status.active_steps == n
                ages.append(status.worker[0].last_heartbeat_age_s)
                time.sleep(0.1)
            assert max(ages) < 1.0, ages   # beats every 0.2 s all along, not just within the 2 s timeout
            sess.run(enq)
            got = sorted(float(f.result(timeout=60)) for f in waiting)
        assert got == list(range(n))


# ---------------------------------------------------------------- 3: no memory for a declared length alone

TOKEN = "hardening-token"
MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(num_workers=1, token=TOKEN) as c:
        yield c


def _rss(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _grows(pid, before, limit, seconds=1.5, read=_rss):
    """Whether pid's RSS (or what `read` reads of it) rises more than `limit` over `before` within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if read(pid) - before > limit:
            return True
        time.sleep(0.05)
    return False


def test_a_step_channel_header_alone_commits_no_memory(cluster):
    from tensorgrid import step_channel
    from tensorgrid.proto import master_pb2
    pid = cluster.master.popen.pid
    client = step_channel.StepChannelClient(f"127.0.0.1:{cluster.master.info['step_port']}", master_pb2,
                                            "MasterService", TOKEN)
    methods = [m.name for m in master_pb2.DESCRIPTOR.services_by_name["MasterService"].methods]
    conns = [client._dial() for _ in range(2)]
    try:
        before = _rss(pid)
        for conn in conns:  # RunStep may be 1 GiB: declared, never sent
            conn.sock.sendall(step_channel.REQUEST.pack(methods.index("RunStep"), 512 * MiB) + b"x" * 10)
        assert not _grows(pid, before, 64 * MiB)
        # a heartbeat needs no 1 GiB: a long one is refused unread, the connection closed
        beat = client._dial()
        beat.sock.sendall(step_channel.REQUEST.pack(methods.index("Heartbeat"), 64 * MiB))
        beat.sock.settimeout(10)
        assert beat.sock.recv(1) == b""
        beat.close()
        assert client.call("ListDevices", master_pb2.ListDevicesRequest())
    finally:
        for conn in conns:
            conn.close()
        client.close()


def _threads(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _six(sess_target):
    """6.0, computed on the worker of the cluster at `sess_target` (from a feed, so nothing folds it away)."""
    g = tg.Graph()
    with g.as_default(), tg.device("/job:worker/task:0"):
        x = tf.placeholder(tg.float32, [])
        y = x * 2.0
    with tg.Session(sess_target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
        return float(sess.run(y, {x: 3.0}))


@contextlib.contextmanager
def _flooded(address, n, pid=None):
    """`n` connections to the raw server at host:port that never send their HELLO, open while the block runs,
    with the server's threads (process `pid`, when given) at most MAX_HANDSHAKES + 32 above where they were
    (evicted ones take a moment to end, and the server starts a few of its own)."""
    import socket
    from tensorgrid.worker import wire
    host, port = address.rsplit(":", 1)
    before = _threads(pid) if pid else 0
    flood = [socket.create_connection((host, int(port)), timeout=10) for _ in range(n)]
    try:
        if pid:
            assert not _grows(pid, before, wire.MAX_HANDSHAKES + 32, 2.0, read=_threads)
        poll(lambda: sum(1 for s in flood if _closed_by_peer(s)) >= n - wire.MAX_HANDSHAKES, 20,
             "the connections past the handshake bound closed")
        yield
    finally:
        for s in flood:
            s.close()


def test_step_channel_connections_without_a_credential_take_a_bounded_number_of_threads(cluster):
    """300 connections that never send their HELLO make the master start at most MAX_HANDSHAKES threads
    (before: one each, without end); meanwhile a client's steps run and a new step-channel connection gets in
    at once; once they are gone the step channel takes connections as before."""
    port = cluster.master.info["step_port"]
    with _flooded(f"127.0.0.1:{port}", 300, cluster.master.popen.pid):
        assert _six(cluster.target) == 6.0
        _answers_again(port, 0)   # a client that answers its CHALLENGE gets in at once, evicting the oldest
    _answers_again(port)


def test_a_flooded_step_channel_still_takes_a_peer_that_answers_at_once():
    """Connections without a credential that fill a worker's step channel (MAX_HANDSHAKES and more) do not
    keep the master out: the newest connection evicts the oldest unproven one, the master's RunGraph goes
    through, and the worker stays alive."""
    with LocalCluster(num_workers=1, token=TOKEN) as c:
        with _flooded(c.worker_info(0)["step_address"], 200):
            assert _six(c.target) == 6.0
        assert [w.health for w in c.status().worker] == ["alive"]


def test_data_plane_connections_without_a_credential_take_a_bounded_number_of_threads():
    """300 connections that never send their HELLO to a worker's data plane make it start at most
    MAX_HANDSHAKES threads (before: one each, for up to 10 s), and a peer that opens its first connection to
    it meanwhile gets in: a tensor crosses from the other worker."""
    with LocalCluster(num_workers=2, token=TOKEN) as c:
        g = tg.Graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, [3])
            with tg.device("/job:worker/task:0"):
                y = x * 2.0
            with tg.device("/job:worker/task:1"):
                z = y + 1.0
        info = c.worker_info(1)
        with _flooded(info["data_address"], 300, info["pid"]), \
                tg.Session(c.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            np.testing.assert_array_equal(sess.run(z, {x: [1.0, 2.0, 3.0]}), [3.0, 5.0, 7.0])


def test_a_run_graph_that_opens_no_step_channel_connection_goes_by_grpc():
    """A master whose connection to a worker's step channel does not open (nothing listens there) sends the
    RunGraph by gRPC, so the worker's own answer comes back (here: no such graph), not an UnavailableError
    in transit, which would have the worker declared dead."""
    import socket
    from tensorgrid.runtime import master_service
    with LocalCluster(num_workers=1, token=TOKEN, env={"TENSORGRID_WORKER_KEY": "the-key"}) as c:
        with socket.socket() as nobody:
            nobody.bind(("127.0.0.1", 0))
            nowhere = f"127.0.0.1:{nobody.getsockname()[1]}"
        client = master_service.GrpcWorkerClient(c.worker_info(0)["address"], nowhere, TOKEN, key="the-key")
        try:
            with pytest.raises(errors.OpError) as e:
                client.run_graph("no-such-graph", 1, [], False, 10_000).result(timeout=30)
        finally:
            client.close()
        assert not getattr(e.value, "in_transit", False), e.value
        assert "no-such-graph" in e.value.message


def test_the_step_channel_accepts_again_after_running_out_of_descriptors():
    """A master out of file descriptors for a moment (here its limit lowered to what it has open, plus 16,
    and 40 connections) keeps its step channel's port: once descriptors are free, calls work again
    (before: the accept loop ended at the first EMFILE, and the port never answered again)."""
    import os
    import resource
    import socket
    with LocalCluster(num_workers=1, token=TOKEN) as c:
        pid, port = c.master.popen.pid, c.master.info["step_port"]
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        cap = len(os.listdir(f"/proc/{pid}/fd")) + 16
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (cap, limits[1]))
        try:
            conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
            # - 1: the step channel's Unix socket accept() blocks holding a descriptor number /proc does not list
            poll(lambda: len(os.listdir(f"/proc/{pid}/fd")) >= cap - 1, 20, "the master out of descriptors")
            for sock in conns:
                sock.close()
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        _answers_again(port)


def _closed_by_peer(sock):
    """Whether the server closed `sock`: it reads EOF after what the server sent (a CHALLENGE, or nothing)."""
    sock.setblocking(False)
    try:
        while sock.recv(4096):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _answers_again(port, wait_s=20):
    """Waits up to wait_s for the master's step channel on `port` to take a connection (0: it must at once),
    and calls ListDevices on it."""
    from tensorgrid import step_channel
    from tensorgrid.proto import master_pb2
    client = step_channel.StepChannelClient(f"127.0.0.1:{port}", master_pb2, "MasterService", TOKEN)

    def probes():
        try:
            client.probe()
            return True
        except errors.UnavailableError:
            if not wait_s:
                raise
            return False
    try:
        poll(probes, wait_s, "the step channel taking connections again")
        assert client.call("ListDevices", master_pb2.ListDevicesRequest())
    finally:
        client.close()


def test_a_data_plane_string_header_alone_commits_no_memory(cluster):
    import socket
    import struct
    from tensorgrid.worker import wire
    info = cluster.worker_info(0)
    host, port = info["data_address"].rsplit(":", 1)
    before = _rss(info["pid"])
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        _, _, _, nonce = wire.CHALLENGE.unpack(wire.recv_exact(sock, wire.CHALLENGE.size))
        mac = wire.token_mac(TOKEN.encode(), nonce)
        sock.sendall(wire.HELLO.pack(wire.MAGIC, wire.VERSION, 0, 0, 7, mac, 0, bytes(16)))
        assert wire.WELCOME.unpack(wire.recv_exact(sock, wire.WELCOME.size))[0] == wire.OK
        size = 512 * MiB
        sock.sendall(wire.HEADER.pack(wire.DATA, wire.STRING, 1, 1, 1, 1, size, 0, size, 0, 0)
                     + struct.pack("<q", 1) + b"k" + b"\0" * 16)
        assert not _grows(info["pid"], before, 64 * MiB)


def test_grpc_refuses_an_unauthenticated_request_before_reading_it(cluster):
    import grpc
    pid = cluster.master.popen.pid
    before = _rss(pid)
    with grpc.insecure_channel(cluster.master_address, options=[("grpc.max_send_message_length", 1 << 30)]) as ch:
        call = ch.unary_unary("/tensorgrid.v1.MasterService/RunStep")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\n" + b"\x80\x80\x80\x01" + b"a" * (256 * MiB), timeout=60)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _rss(pid) - before < 64 * MiB


def _padded(request, size):
    """`request` serialized, followed by an unknown length-delimited field (number 100) of `size` bytes."""
    length = bytearray()
    n = size
    while True:
        length.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    return request.SerializeToString() + b"\xa2\x06" + bytes(length) + b"\0" * size


def test_grpc_takes_large_requests_only_on_the_methods_that_carry_tensors(cluster, monkeypatch):
    """An authenticated caller's 256 MiB Heartbeat (master) or GetStatus (worker) is RESOURCE_EXHAUSTED before
    it is read, a 2 MiB one is refused too, neither server's RSS grows by more than 32 MiB; a step whose feed
    and graph are far over one gRPC message (chunked RunStep, CreateSession, RegisterGraph, RunGraph) still
    runs, and so does the cluster."""
    import grpc
    from tensorgrid import security
    from tensorgrid.proto import master_pb2, worker_pb2
    from tensorgrid.worker import transport
    assert transport.GRPC_CHUNK_BYTES <= security.STREAM_CHUNK_BYTES   # SendTensor's chunks fit a message
    metadata = security.call_metadata(TOKEN)
    info = cluster.worker_info(0)
    beat = master_pb2.HeartbeatRequest(job="probe", task=9, incarnation=1)   # a task the master does not know
    calls = ((cluster.master_address, cluster.master.popen.pid, "/tensorgrid.v1.MasterService/Heartbeat", beat),
             (info["address"], info["pid"], "/tensorgrid.v1.WorkerService/GetStatus", worker_pb2.GetStatusRequest()))
    for address, pid, method, request in calls:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 1 << 30)]) as ch:
            call = ch.unary_unary(method)
            call(request.SerializeToString(), timeout=30, metadata=metadata)
            before = _rss(pid)
            for size in (256 * MiB, 2 * MiB):
                with pytest.raises(grpc.RpcError) as e:
                    call(_padded(request, size), timeout=60, metadata=metadata)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (method, size, e.value.details())
            assert _rss(pid) - before < 32 * MiB, method
            call(request.SerializeToString(), timeout=30, metadata=metadata)
    monkeypatch.setenv("TENSORGRID_CONTROL", "grpc")
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [None])
        with tg.device("/job:worker/task:0"):
            y = x * 2.0 + tf.reduce_sum(tg.constant(np.ones(2 * MiB, np.float32)))
    feed = np.arange(4 * MiB, dtype=np.float32)
    with tg.Session(cluster.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: feed}), feed * 2 + 2 * MiB)
        assert float(sess.run(y, {x: [1.0]})[0]) == 2.0 + 2 * MiB
    assert [w.health for w in cluster.status().worker] == ["alive"]


# ---------------------------------------------------------------- 4: runtime-internal ops; CloseSession cancels

def _grpc(cluster, method, request, token=TOKEN):
    """Calls MasterService.<method> over gRPC; the RpcError's (code, details) or the response bytes."""
    import grpc
    from tensorgrid import security
    with grpc.insecure_channel(cluster.master_address) as ch:
        call = ch.unary_unary(f"/tensorgrid.v1.MasterService/{method}")
        try:
            return call(request.SerializeToString(), timeout=30, metadata=security.call_metadata(token))
        except grpc.RpcError as e:
            return e.code(), e.details()


def _graph_def(*nodes):
    from tensorgrid.proto import types_pb2
    return types_pb2.GraphDef(node=[types_pb2.NodeDef(name=n, op=op, device="/job:worker/task:0", input=list(i))
                                    for n, op, i in nodes])


def test_clients_cannot_use_runtime_internal_ops(cluster):
    import grpc
    from tensorgrid.proto import master_pb2, types_pb2
    recv = types_pb2.NodeDef(name="r", op="_Recv", device="/job:worker/task:0")
    recv.attr["tensor_type"].type = types_pb2.DT_FLOAT
    recv.attr["tensor_name"].s = b"never-sent"
    code, details = _grpc(cluster, "CreateSession", master_pb2.CreateSessionRequest(
        graph_def=types_pb2.GraphDef(node=[recv])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "_Recv" in details and "internal" in details
    # nor through ExtendSession
    response = master_pb2.CreateSessionResponse.FromString(_grpc(cluster, "CreateSession", master_pb2.CreateSessionRequest(
        graph_def=_graph_def(("n", "NoOp", ())))))
    code, details = _grpc(cluster, "ExtendSession", master_pb2.ExtendSessionRequest(
        session_handle=response.session_handle, graph_def=types_pb2.GraphDef(node=[recv]),
        current_graph_version=response.graph_version))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "_Recv" in details
    _grpc(cluster, "CloseSession", master_pb2.CloseSessionRequest(session_handle=response.session_handle))


def test_close_session_cancels_its_running_steps(cluster):
    from tests.waiting import run_in_thread
    config = tg.ConfigProto(token=TOKEN)
    g = tg.Graph()
    with g.as_default(), tg.device("/job:worker/task:0"):
        q = tf.FIFOQueue(1, tg.float32, shapes=[[]])
        deq = q.dequeue()
    sess = tg.Session(cluster.target, graph=g, config=config)
    thread, box = run_in_thread(lambda: sess.run(deq))
    poll(lambda: cluster.status().active_steps == 1, 20, "the dequeue to run")
    sess.close()
    thread.join(30)
    assert isinstance(box.get("error"), errors.CancelledError), box
    poll(lambda: cluster.status().active_steps == 0 and cluster.status().worker[0].active_steps == 0, 20,
         "the step tables to empty")


# ---------------------------------------------------------------- 7: node names follow TF's rule

@pytest.mark.parametrize("name", ["", "a:0", "^a", "a\0b", "_a", "a b", "x" * 70_000, "-a"])
def test_node_names_follow_tensorflows_rule(cluster, name):
    import grpc
    from tensorgrid.proto import master_pb2
    code, details = _grpc(cluster, "CreateSession", master_pb2.CreateSessionRequest(
        graph_def=_graph_def((name, "NoOp", ()))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "node name" in details, details[:200]


def test_valid_tensorflow_node_names_are_accepted(cluster):
    from tensorgrid.proto import master_pb2
    for name in ["a", "A/b_c.d-e", "0abc", ".hidden", "scope/x>y", "x" * 1000]:
        response = master_pb2.CreateSessionResponse.FromString(_grpc(
            cluster, "CreateSession", master_pb2.CreateSessionRequest(graph_def=_graph_def((name, "NoOp", ())))))
        _grpc(cluster, "CloseSession", master_pb2.CloseSessionRequest(session_handle=response.session_handle))


# ---------------------------------------------------------------- 6: a client token reaches only client RPCs

CLIENT_TOKEN = "client-only-token"


def test_a_client_token_reaches_only_the_masters_client_methods():
    import grpc
    from tensorgrid import security, step_channel
    from tensorgrid.proto import master_pb2, worker_pb2
    with LocalCluster(num_workers=1, token=TOKEN, client_token=CLIENT_TOKEN) as c:
        g = tg.Graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, [2], name="x")
            with tg.device("/job:worker/task:0"):
                y = x * 3.0
        for token in (CLIENT_TOKEN, TOKEN):  # clients use the client token; the cluster token still works
            with tg.Session(c.target, graph=g, config=tg.ConfigProto(token=token)) as sess:
                np.testing.assert_allclose(sess.run(y, {x: [1.0, 2.0]}), [3.0, 6.0])
        info = c.worker_info(0)
        beat = master_pb2.HeartbeatRequest(job="worker", task=0, incarnation=info["incarnation"], shutting_down=True)
        register = master_pb2.RegisterWorkerRequest(address="127.0.0.1:1", job="worker", task=5)
        register.device.add(device_type="CPU")
        with grpc.insecure_channel(c.master_address) as ch:
            for method, request in (("Heartbeat", beat), ("RegisterWorker", register)):
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary(f"/tensorgrid.v1.MasterService/{method}")(
                        request.SerializeToString(), timeout=10, metadata=security.call_metadata(CLIENT_TOKEN))
                assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
        fast = step_channel.StepChannelClient(f"127.0.0.1:{c.master.info['step_port']}", master_pb2,
                                              "MasterService", CLIENT_TOKEN)
        with pytest.raises(errors.PermissionDeniedError, match="cluster token"):
            fast.call("Heartbeat", beat)
        assert fast.call("ListDevices", master_pb2.ListDevicesRequest())
        fast.close()
        # the workers do not know the client token at all: no Reset of their variables, no RunGraph
        with grpc.insecure_channel(info["address"]) as ch:
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary("/tensorgrid.v1.WorkerService/ResetResources")(
                    worker_pb2.ResetResourcesRequest().SerializeToString(), timeout=10,
                    metadata=security.call_metadata(CLIENT_TOKEN))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        worker_fast = step_channel.StepChannelClient(info["step_address"], worker_pb2, "WorkerService", CLIENT_TOKEN)
        with pytest.raises(errors.UnauthenticatedError):
            worker_fast.call("GetStatus", worker_pb2.GetStatusRequest())
        worker_fast.close()
        # the forged heartbeats changed nothing
        assert [w.health for w in c.status().worker] == ["alive"]
        assert [w.task for w in c.status().worker] == [0]


def test_a_client_token_needs_a_cluster_token(tmp_path):
    import subprocess
    import sys
    (tmp_path / "client").write_text("c")
    proc = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "master", "--port", "0",
                           "--client-token-file", str(tmp_path / "client")],
                          capture_output=True, text=True, timeout=60, env={**__import__("os").environ,
                                                                           "TENSORGRID_TOKEN": ""})
    assert proc.returncode != 0 and "needs a cluster token" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- 5: a session survives a master restart

def test_a_session_survives_a_master_restart():
    with LocalCluster(num_workers=1, heartbeat_interval=0.2) as c:
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:0"):
            v = tg.Variable(1.0, name="survivor")
            bump = v.assign_add(1.0)
        with tg.Session(c.target, graph=g) as sess:
            sess.run(v.initializer)
            assert sess.run(bump) == 2.0
            c.restart_master()
            # the next run works: the session is created again, the variable kept its value on the worker
            assert sess.run(bump) == 3.0
            with g.as_default(), tg.device("/job:worker/task:0"):
                doubled = v * 2.0  # the graph grows after the restart: ExtendSession on the new session
            assert sess.run(doubled) == 6.0
            c.restart_master()
            assert sess.run(doubled) == 6.0


# ---------------------------------------------------------------- 7: early tensors of steps that never run are capped

def test_tensors_for_steps_that_never_run_are_capped_in_bytes_and_count(monkeypatch):
    from tensorgrid.worker import worker as worker_lib
    w = worker_lib.Worker()
    w.set_identity("worker", 0)
    monkeypatch.setattr(worker_lib, "MAX_EARLY_BYTES", 8 * MiB, raising=False)
    for step in range(1, 21):  # 20 x 1 MiB for step ids no RunGraph ever comes for
        w.deliver(step, f"k{step}", np.zeros(MiB, np.uint8))
    assert w.status()["rendezvous_entries"] <= 8
    with pytest.raises(errors.CancelledError, match="arrived before its RunGraph and were dropped"):
        w._begin(1)
    assert w._begin(20).rendezvous.pending() == 1  # the newest are kept
    monkeypatch.setattr(worker_lib, "MAX_STEPS_HELD", 100, raising=False)
    for step in range(1000, 1300):
        w.deliver(step, "k", np.zeros(1, np.float32))
    assert w.status()["active_steps"] <= 100


# ---------------------------------------------------------------- 7: checkpoints: killed savers, corrupt headers

_KILLED_SAVER = """
import sys, time
from tensorgrid.client.train import saver
def chunks():
    yield b"x" * 4096
    print("writing", flush=True)
    time.sleep(600)
saver.atomic_write(sys.argv[1], chunks())
"""


def test_a_save_removes_the_temporary_a_killed_saver_left(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    prefix = str(tmp_path / "model.ckpt")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SAVER, prefix + ".tgckpt"], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    g = tg.Graph()
    with g.as_default():
        v = tg.Variable([1.0, 2.0], name="v")
        saver = tf.train.Saver()
    with tg.Session(graph=g) as sess:
        sess.run(v.initializer)
        saver.save(sess, prefix)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n], os.listdir(tmp_path)
    np.testing.assert_allclose(tf.train.load_variable(prefix, "v"), [1.0, 2.0])


def _header_file(path, header, length=None, data=b""):
    import json
    import struct
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(b"TGCKPT\x00\x01" + struct.pack("<Q", len(raw) if length is None else length) + raw + data)


_ENTRY = {"name": "v", "dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8, "crc32": 0}
CORRUPT_HEADERS = {
    "huge length": ({"format": 1, "tensors": []}, 1 << 62),
    "not an object": ([1, 2, 3], None),
    "no tensors": ({"format": 1}, None),
    "tensors not a list": ({"tensors": 7}, None),
    "entry not an object": ({"tensors": ["v"]}, None),
    "no name": ({"tensors": [{"dtype": "float32"}]}, None),
    "bad dtype": ({"tensors": [dict(_ENTRY, dtype="complex999")]}, None),
    "shape of strings": ({"tensors": [dict(_ENTRY, shape=["a"])]}, None),
    "negative offset": ({"tensors": [dict(_ENTRY, offset=-8)]}, None),
    "past the end": ({"tensors": [dict(_ENTRY, offset=1 << 40)]}, None),
    "size mismatch": ({"tensors": [dict(_ENTRY, nbytes=4)]}, None),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, None),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_HEADERS))
def test_corrupt_checkpoint_headers_are_data_loss(tmp_path, case):
    header, length = CORRUPT_HEADERS[case]
    prefix = str(tmp_path / "bad")
    _header_file(prefix + ".tgckpt", header, length, data=b"\0" * 8)
    with pytest.raises(errors.DataLossError, match="bad.tgckpt"):
        reader = tf.train.load_checkpoint(prefix)
        reader.get_tensor("v")


# ---------------------------------------------------------------- 7: idle sessions expire

_KILLED_CLIENT = """
import sys, tensorgrid as tg
g = tg.Graph()
with g.as_default(), tg.device("/job:worker/task:0"):
    x = tg.constant(1.0) + 1.0
sess = tg.Session(sys.argv[1], graph=g)
sess.run(x)
print("ran", flush=True)
sys.stdin.read()
"""


def test_the_session_of_a_killed_client_expires_and_a_live_one_comes_back():
    import signal
    import subprocess
    import sys
    with LocalCluster(num_workers=1, extra_master_args=["--session-gc-seconds", "1"]) as c:
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, c.target], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "ran\n"
            assert len(c.status().session) == 1
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            poll(lambda: len(c.status().session) == 0, 20, "the killed client's session to expire")
        finally:
            proc.kill()
            proc.wait()
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:0"):
            y = tg.constant(2.0) * 3.0
        with tg.Session(c.target, graph=g) as sess:
            assert sess.run(y) == 6.0
            handle = sess._backend._handle
            poll(lambda: len(c.status().session) == 0, 20, "the idle session to expire")
            assert sess.run(y) == 6.0  # created again
            assert sess._backend._handle != handle


def test_a_malformed_device_filter_is_invalid_argument(cluster):
    """Found by the slow fuzz run (case 100415): it was INTERNAL."""
    import grpc
    from tensorgrid.proto import master_pb2
    request = master_pb2.CreateSessionRequest(graph_def=_graph_def(("n", "NoOp", ())))
    request.config.device_filters.append("mm:7")
    code, details = _grpc(cluster, "CreateSession", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "device_filters" in details, details


@pytest.mark.parametrize("total, dtype", [(2**63 - 1, "DT_STRING"), (-5, "DT_STRING"), (-1, "DT_FLOAT")])
def test_send_tensor_headers_out_of_range_are_the_senders_fault(cluster, total, dtype):
    """Found by the slow fuzz run (cases 104128, 109901): MemoryError and ValueError came back as INTERNAL."""
    import grpc
    from tensorgrid import security
    from tensorgrid.proto import types_pb2, worker_pb2
    chunk = worker_pb2.TensorChunk(step_id=1, key="k", total_bytes=total, dtype=getattr(types_pb2, dtype))
    with grpc.insecure_channel(cluster.worker_info(0)["address"]) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.stream_unary("/tensorgrid.v1.WorkerService/SendTensor")(
                iter([chunk.SerializeToString()]), timeout=20, metadata=security.call_metadata(TOKEN))
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), e.value.details()


# ---------------------------------------------------------------- 6: roles between the master and its workers

def test_a_cluster_token_alone_cannot_drive_a_worker_or_speak_for_a_task():
    """A holder of the cluster token (another worker, say) presents no task's key: it cannot forge a
    heartbeat or registration for a task, nor reach a worker's control methods (Reset, RegisterGraph with
    an address to dial, RunGraph, CleanupStep) over gRPC or the step channel; the cluster keeps serving."""
    import grpc
    from tensorgrid import security, step_channel
    from tensorgrid.proto import master_pb2, worker_pb2
    with LocalCluster(num_workers=2, token=TOKEN) as c:
        g = tg.Graph()
        with g.as_default():
            with tg.device("/job:worker/task:0"):
                v = tf.get_variable("v", initializer=np.float32(7.0))
            with tg.device("/job:worker/task:1"):
                y = v * 2.0
        with tg.Session(c.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            sess.run(v.initializer)
        info = c.worker_info(0)
        beat = master_pb2.HeartbeatRequest(job="worker", task=0, incarnation=info["incarnation"], shutting_down=True)
        register = master_pb2.RegisterWorkerRequest(address="127.0.0.1:1", job="worker", task=0,
                                                    incarnation=info["incarnation"])
        register.device.add(device_type="CPU")
        metadata = security.call_metadata(TOKEN, "a-guessed-key")
        with grpc.insecure_channel(c.master_address) as ch:
            for method, request in (("Heartbeat", beat), ("RegisterWorker", register)):
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary(f"/tensorgrid.v1.MasterService/{method}")(
                        request.SerializeToString(), timeout=10, metadata=metadata)
                assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, (method, e.value.details())
                assert "key" in e.value.details()
        fast = step_channel.StepChannelClient(f"127.0.0.1:{c.master.info['step_port']}", master_pb2,
                                              "MasterService", TOKEN)
        with pytest.raises(errors.PermissionDeniedError, match="key"):
            fast.call("Heartbeat", beat)
        fast.close()
        graph = worker_pb2.RegisterGraphRequest(session_handle="s", device_address={"/job:x": "10.9.9.9:1"})
        control = (("ResetResources", worker_pb2.ResetResourcesRequest()), ("RegisterGraph", graph),
                   ("RunGraph", worker_pb2.RunGraphRequest(graph_handle="g", step_id=1)),
                   ("CleanupStep", worker_pb2.CleanupStepRequest(step_id=1)))
        with grpc.insecure_channel(info["address"]) as ch:
            for method, request in control:
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary(f"/tensorgrid.v1.WorkerService/{method}")(
                        request.SerializeToString(), timeout=10, metadata=metadata)
                assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
                assert "only this worker's master" in e.value.details()
            # the cluster token still reaches the status
            ch.unary_unary("/tensorgrid.v1.WorkerService/GetStatus")(
                worker_pb2.GetStatusRequest().SerializeToString(), timeout=10, metadata=metadata)
        worker_fast = step_channel.StepChannelClient(info["step_address"], worker_pb2, "WorkerService", TOKEN,
                                                     "a-guessed-key")
        with pytest.raises(errors.UnauthenticatedError):   # a wrong key is no credential on the step channel
            worker_fast.call("GetStatus", worker_pb2.GetStatusRequest())
        worker_fast.close()
        worker_fast = step_channel.StepChannelClient(info["step_address"], worker_pb2, "WorkerService", TOKEN)
        for method, request in control:
            with pytest.raises(errors.PermissionDeniedError, match="only this worker's master"):
                worker_fast.call(method, request)
        assert worker_fast.call("GetStatus", worker_pb2.GetStatusRequest())
        worker_fast.close()
        # nothing changed: both tasks alive where they were, the variable kept, steps run
        status = c.status()
        assert [(w.task, w.health, w.address) for w in status.worker] == [
            (0, "alive", info["address"]), (1, "alive", c.worker_info(1)["address"])]
        with tg.Session(c.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            assert float(sess.run(y)) == 14.0
