"""Issue 11's defects, one test each, over real processes where the defect needs them."""

import concurrent.futures
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
            poll(lambda: cluster.status().active_steps == n, 20, f"{n} steps in flight")
            # longer than the heartbeat timeout: a starved master would declare the worker dead meanwhile
            time.sleep(3.0)
            status = cluster.status()
            assert [w.health for w in status.worker] == ["alive"], status
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


def _grows(pid, before, limit, seconds=1.5):
    """Whether pid's RSS rises more than `limit` bytes over `before` within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _rss(pid) - before > limit:
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
