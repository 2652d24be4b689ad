"""Tests of the data plane (worker/transport.py): every path, dtype and odd shape, bit for bit, across processes."""

import multiprocessing
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest

from tensorgrid.framework import errors
from tensorgrid.worker import shm, transport, wire
from tensorgrid.worker.transport import DataPlane, serve_tensor_stream, tensor_chunks

MODES = ["auto", "shm", "tcp", "grpc"]
needs_shm = pytest.mark.skipif(shm.shm_dir() is None, reason="no writable /dev/shm")


class Inbox:
    """A deliver callback that keeps what arrives and lets a test wait for it."""

    def __init__(self):
        self.items = {}
        self.cond = threading.Condition()

    def __call__(self, step_id, key, array):
        with self.cond:
            self.items[(step_id, key)] = array
            self.cond.notify_all()

    def wait(self, count, timeout=20):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, timeout), \
                f"{len(self.items)} of {count} tensors arrived"
        return self.items

    def pop(self, step_id, key, timeout=20):
        with self.cond:
            assert self.cond.wait_for(lambda: (step_id, key) in self.items, timeout), f"{key!r} never arrived"
            return self.items.pop((step_id, key))


@pytest.fixture(autouse=True)
def _no_mode_override(monkeypatch):
    monkeypatch.delenv(transport.TRANSPORT_ENV, raising=False)


@pytest.fixture
def planes(request):
    """Opens DataPlanes and closes every one at the end of the test."""
    opened = []

    def make(**kwargs):
        plane = DataPlane(**kwargs)
        opened.append(plane)
        return plane, plane.start()
    yield make
    for plane in opened:
        plane.close()


def _pair(planes, mode, **kwargs):
    inbox = Inbox()
    receiver, address = planes(mode=mode, deliver=inbox, **kwargs)
    sender, _ = planes(mode=mode, **kwargs)
    return sender, receiver, address, inbox


def _special_floats(dtype, bits):
    return np.array(bits, dtype=bits.dtype).view(dtype)


def _tensors():
    """Every dtype, odd shapes and layouts, and sizes on both sides of the inline/shm and stripe thresholds."""
    rng = np.random.default_rng(0)
    out = {
        "f32 nan payloads": _special_floats(np.float32, np.array([0x7FC00001, 0xFFC12345, 0x80000000, 0x7F800000,
                                                                  0x3F800000], dtype=np.uint32)),
        "f16": _special_floats(np.float16, np.array([0x7E01, 0x8000, 0x3C00, 0xFC00, 1], dtype=np.uint16)),
        "f64": rng.standard_normal((3, 4)),
        "i8": np.array([-128, 127, 0], dtype=np.int8),
        "i16": np.arange(-5, 5, dtype=np.int16).reshape(2, 5),
        "i32": np.array(7, dtype=np.int32),
        "i64": np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max]),
        "u8": np.arange(256, dtype=np.uint8),
        "bool": np.array([[True, False, True]]),
        "empty": np.zeros((0,), dtype=np.float32),
        "empty 3-d": np.zeros((3, 0, 2), dtype=np.int64),
        "0-d bool": np.array(False),
        "transposed": np.arange(24, dtype=np.float32).reshape(4, 6).T,
        "big-endian": np.arange(10, dtype=">i4"),
        "strided": np.arange(40, dtype=np.int16)[::3],
        "strings": np.array([[b"a", b""], [b"\x00\xff", "h\u00e9".encode()]], dtype=object),
        "0-d string": np.array(b"scalar", dtype=object),
        "just over shm threshold": rng.integers(0, 255, transport.SHM_MIN_BYTES + 1, dtype=np.uint8),
        "striped, odd size": rng.standard_normal((transport.STRIPE_MIN_BYTES * 3 + 40) // 8),
        "5-d": rng.standard_normal((2, 1, 3, 1, 2)).astype(np.float32),
    }
    return out


def _assert_same(got, want):
    want = np.asarray(want)
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object and got.tolist() == want.tolist()
        return
    assert got.dtype == want.dtype.newbyteorder("=")
    assert got.dtype.isnative
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want.astype(got.dtype)).tobytes()


# ---------------------------------------------------------------- in one process

@pytest.mark.parametrize("mode", MODES)
def test_every_dtype_and_shape_bit_exact(planes, mode):
    sender, _, address, inbox = _pair(planes, mode)
    tensors = _tensors()
    for key, value in tensors.items():
        sender.send(address, 3, key, value)
    got = inbox.wait(len(tensors))
    for key, value in tensors.items():
        _assert_same(got[(3, key)], value)


@pytest.mark.parametrize("mode", MODES)
def test_paths_are_the_ones_asked_for(planes, mode):
    sender, receiver, address, inbox = _pair(planes, mode)
    small, large = np.ones(3, np.float32), np.ones(transport.SHM_MIN_BYTES, np.uint8)
    sender.send(address, 1, "small", small)
    sender.send(address, 1, "large", large)
    inbox.wait(2)
    stats = sender.stats()
    # a same-host peer's small tensors take its Unix socket, which its TCP handshake named
    expected = {"auto": {"unix": 12, "shm": large.nbytes}, "shm": {"shm": 12 + large.nbytes},
                "tcp": {"tcp": 12 + large.nbytes}, "grpc": {"grpc": 12 + large.nbytes}}[mode]
    if shm.shm_dir() is None and mode == "auto":
        expected = {"tcp": 12 + large.nbytes}
    for path in ("shm", "tcp", "unix", "grpc"):
        assert stats[f"bytes_sent_{path}"] == expected.get(path, 0), (path, stats)
        assert receiver.stats()[f"bytes_received_{path}"] == expected.get(path, 0)


def test_mode_from_environment(monkeypatch):
    monkeypatch.setenv(transport.TRANSPORT_ENV, "tcp")
    assert DataPlane(mode="auto").mode == "tcp"
    monkeypatch.setenv(transport.TRANSPORT_ENV, "carrier-pigeon")
    with pytest.raises(ValueError, match="carrier-pigeon"):
        DataPlane()


@pytest.mark.parametrize("mode", ["auto", "tcp"])
def test_concurrent_sends_share_connections(planes, mode):
    sender, _, address, inbox = _pair(planes, mode)
    rng = np.random.default_rng(1)
    sizes = [4, 1000, transport.SHM_MIN_BYTES * 2, transport.STRIPE_MIN_BYTES * 2 + 4]
    values = {(t, i): rng.integers(0, 1 << 30, sizes[(t + i) % len(sizes)] // 4, dtype=np.int32)
              for t in range(6) for i in range(8)}

    def worker(t):
        for i in range(8):
            sender.send(address, t, f"k{i}", values[(t, i)])
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    got = inbox.wait(len(values))
    for (t, i), value in values.items():
        _assert_same(got[(t, f"k{i}")], value)
    assert sender.stats()["connections_out"] <= transport.LANES


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("mode", MODES)
def test_token_refused(planes, mode):
    inbox = Inbox()
    _, address = planes(mode=mode, token="s3cret", deliver=inbox)
    for token in (None, "wrong"):
        intruder, _ = planes(mode=mode, token=token)
        with pytest.raises(errors.UnauthenticatedError, match=address if mode != "grpc" else "token"):
            intruder.send(address, 1, "x", np.ones(2))
    friend, _ = planes(mode=mode, token="s3cret")
    friend.send(address, 1, "x", np.ones(2))
    assert inbox.pop(1, "x").tolist() == [1.0, 1.0]
    assert len(inbox.items) == 0


@pytest.mark.parametrize("mode", MODES)
def test_unreachable_peer_fails_fast(planes, mode):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    sender, _ = planes(mode=mode)
    t0 = time.monotonic()
    with pytest.raises(errors.UnavailableError, match=address):
        sender.send(address, 1, "x", np.ones(2))
    assert time.monotonic() - t0 < 5


def test_restarted_peer_gets_the_next_tensor(planes):
    inbox = Inbox()
    first, address = planes(mode="tcp", deliver=inbox)
    sender, _ = planes(mode="tcp")
    sender.send(address, 1, "x", np.ones(2))
    inbox.pop(1, "x")
    first.close()
    again = DataPlane(mode="tcp", deliver=inbox, port=int(address.rpartition(":")[2]))
    try:
        again.start()
        sender.send(address, 2, "x", np.arange(3))
        assert inbox.pop(2, "x").tolist() == [0, 1, 2]
    finally:
        again.close()


def test_peer_gone_raises_unavailable(planes):
    receiver, address = planes(mode="tcp", deliver=Inbox())
    sender, _ = planes(mode="tcp")
    sender.send(address, 1, "x", np.ones(2))
    receiver.close()
    with pytest.raises(errors.UnavailableError, match=address):
        sender.send(address, 2, "x", np.ones(2))


@needs_shm
def test_shm_mode_refuses_a_peer_without_shared_memory(planes):
    _, address = planes(mode="tcp", deliver=Inbox())
    sender, _ = planes(mode="shm")
    with pytest.raises(errors.FailedPreconditionError, match="shared memory"):
        sender.send(address, 1, "x", np.ones(2))


def test_unsendable_dtype(planes):
    sender, _, address, _ = _pair(planes, "tcp")
    with pytest.raises(errors.InvalidArgumentError, match="'h'"):
        sender.send(address, 1, "h", np.array([object()], dtype=object))


def test_garbage_on_the_data_port_does_not_stop_the_server(planes):
    sender, _, address, inbox = _pair(planes, "tcp")
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        s.recv(wire.CHALLENGE.size)
        s.sendall(b"GET / HTTP/1.1\r\n" * 8)
        try:
            assert s.recv(16) == b""
        except ConnectionResetError:
            pass  # closed with our garbage unread
    sender.send(address, 1, "x", np.ones(2))
    assert inbox.pop(1, "x").tolist() == [1.0, 1.0]


def test_half_sent_stripes_are_dropped_with_their_step(planes):
    inbox = Inbox()
    receiver, address = planes(mode="tcp", deliver=inbox)
    host, port = address.rsplit(":", 1)
    nbytes = 2 * transport.STRIPE_MIN_BYTES
    half = nbytes // 2

    def stripe(step_id, lo):
        return transport._header(wire.DATA, 1, (nbytes // 4,), b"k", step_id, step_id, nbytes, lo, half) + bytes(half)
    with socket.create_connection((host, int(port))) as s:
        s.recv(wire.CHALLENGE.size)
        s.sendall(wire.HELLO.pack(wire.MAGIC, wire.VERSION, 0, 0, 7, bytes(32), 0, bytes(16)))
        assert wire.WELCOME.unpack(s.recv(wire.WELCOME.size))[0] == wire.OK
        s.sendall(stripe(5, 0))
        deadline = time.monotonic() + 10
        while receiver.stats()["partial_transfers"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        receiver.release_step(5)
        assert receiver.stats()["partial_transfers"] == 0
        # the late second half is read and dropped; the connection goes on serving
        s.sendall(stripe(5, half) + stripe(6, 0) + stripe(6, half))
        assert inbox.pop(6, "k").shape == (nbytes // 4,)
    assert (5, "k") not in inbox.items
    assert receiver.stats()["lent_buffers"] == 0


# ---------------------------------------------------------------- buffers and segments

@needs_shm
@pytest.mark.parametrize("mode", ["shm", "tcp"])
def test_buffers_are_reused(planes, mode):
    sender, receiver, address, inbox = _pair(planes, mode)
    size = 2 * transport.STRIPE_MIN_BYTES
    for step in range(100):
        sender.send(address, step, "x", np.full(size // 4, step, dtype=np.int32))
        got = inbox.pop(step, "x")
        assert got[0] == step and got[-1] == step
        del got
        receiver.release_step(step)
    mine, theirs = sender.stats(), receiver.stats()
    if mode == "shm":
        assert mine["tensors_sent_shm"] == 100 and mine["shm_segments_busy"] == 0
        assert 1 <= mine["shm_segments"] <= 2 and theirs["shm_mappings"] == mine["shm_segments"]
    else:
        assert 1 <= theirs["pooled_buffers"] <= 2
    assert theirs["lent_buffers"] == 0


@needs_shm
@pytest.mark.parametrize("mode", ["shm", "tcp"])
def test_a_kept_array_is_never_overwritten(planes, mode):
    sender, receiver, address, inbox = _pair(planes, mode)
    size = 2 * transport.STRIPE_MIN_BYTES // 4
    sender.send(address, 0, "kept", np.zeros(size, dtype=np.int32))
    kept = inbox.pop(0, "kept")[10:]
    for step in range(1, 6):
        sender.send(address, step, "x", np.full(size, step, dtype=np.int32))
        inbox.pop(step, "x")
    assert not kept.any()
    assert receiver.stats()["lent_buffers"] == 1
    del kept
    assert receiver.stats()["lent_buffers"] == 0


def _segment_files(pid=None):
    prefix = f"{shm.PREFIX}{pid or os.getpid()}-"
    return [n for n in os.listdir(shm.shm_dir()) if n.startswith(prefix)]


@needs_shm
def test_segments_unlinked_once_mapped_and_destroyed_on_close(planes):
    sender, receiver, address, inbox = _pair(planes, "shm")
    for step in range(5):
        sender.send(address, step, "x", np.ones(1 << 16))
    inbox.wait(5)
    assert _segment_files() == []
    assert sender.stats()["shm_segments"] == 5
    sender.close()
    assert sender.stats()["shm_segments"] == 0
    assert inbox.items[(0, "x")].sum() == 1 << 16
    receiver.close()
    assert _segment_files() == []


@needs_shm
def test_a_segment_is_destroyed_once_and_a_closed_pool_makes_no_more(monkeypatch):
    start = set(_segment_files())
    pool = shm.SegmentPool(shm.shm_dir())
    seg = pool.acquire(10)
    assert len(set(_segment_files()) - start) == 1
    seg.destroy()
    other = os.open(os.devnull, os.O_RDONLY)     # most likely the number the segment's descriptor had
    try:
        pool.close()                             # destroys its busy segment again: that must close nothing
        os.fstat(other)
    finally:
        os.close(other)
    assert set(_segment_files()) == start
    with pytest.raises(ConnectionResetError):
        pool.acquire(10)
    # a close() between acquire's check and its new segment becoming busy: that segment goes too
    pool = shm.SegmentPool(shm.shm_dir())
    reserve = shm.Segment.reserve
    monkeypatch.setattr(shm.Segment, "reserve", lambda seg, n: (pool.close(), reserve(seg, n)))
    with pytest.raises(ConnectionResetError):
        pool.acquire(10)
    assert pool.counts() == (0, 0, 0) and set(_segment_files()) == start


@needs_shm
def test_idle_segments_beyond_the_limit_are_dropped(planes, monkeypatch):
    monkeypatch.setattr(shm, "IDLE_LIMIT_BYTES", 0)
    sender, receiver, address, inbox = _pair(planes, "shm")
    for step in range(4):
        sender.send(address, step, "x", np.full(1 << 14, step))
        assert inbox.pop(step, "x")[0] == step
    # each send finds the previous segment released; the limit of 0 destroys it and tells the receiver
    assert sender.stats()["shm_segments"] == 0
    assert receiver.stats()["shm_mappings"] == 1


@needs_shm
def test_full_shared_memory_falls_back_to_the_socket(planes, monkeypatch, caplog):
    def full(fd, offset, length):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(shm.os, "posix_fallocate", full)
    sender, _, address, inbox = _pair(planes, "auto")
    value = np.arange(transport.SHM_MIN_BYTES, dtype=np.int32)
    sender.send(address, 1, "x", value)
    _assert_same(inbox.pop(1, "x"), value)
    stats = sender.stats()
    # the same-host peer's Unix socket (lane 0), not shared memory
    assert stats["tensors_sent_unix"] == 1 and stats["tensors_sent_shm"] == 0
    assert "shm-size" in caplog.text


@needs_shm
def test_stale_segments_of_dead_processes_are_swept(planes):
    proc = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    path = os.path.join(shm.shm_dir(), f"{shm.PREFIX}{proc.pid}-deadbeef-1")
    fresh = os.path.join(shm.shm_dir(), f"{shm.PREFIX}{proc.pid}-deadbeef-2")
    for p in (path, fresh):
        with open(p, "wb") as f:
            f.write(b"x")
    old = time.time() - 3600
    os.utime(path, (old, old))
    try:
        planes(mode="auto")
        assert not os.path.exists(path)
        assert os.path.exists(fresh)
    finally:
        for p in (path, fresh):
            if os.path.exists(p):
                os.unlink(p)


# ---------------------------------------------------------------- the gRPC stream helpers

def test_tensor_chunks_round_trip():
    value = np.arange(1001, dtype=np.float64).reshape(7, 11, 13)
    chunks = list(tensor_chunks(4, "a;b;t", value, chunk_bytes=1000))
    assert len(chunks) == -(-value.nbytes // 1000)
    assert chunks[0].total_bytes == value.nbytes and list(chunks[0].shape) == [7, 11, 13]
    got = []
    serve_tensor_stream(iter(chunks + list(tensor_chunks(5, "e", np.zeros((0, 2)), 8))),
                        lambda *a: got.append(a))
    assert [(s, k) for s, k, _ in got] == [(4, "a;b;t"), (5, "e")]
    _assert_same(got[0][2], value)
    assert got[1][2].shape == (0, 2)


@pytest.mark.parametrize("damage, message", [
    (lambda c: c[:2], "ended after"),
    (lambda c: [c[0], c[2]], "expected"),
    (lambda c: c[:1] + [type(c[0])(offset=c[0].total_bytes - 4, data=bytes(100))], "expected"),
    (lambda c: [type(c[0])(step_id=1, key="k", dtype=1, shape=[2], total_bytes=9)], "cannot be 9 bytes"),
    (lambda c: [type(c[0])(step_id=1, key="k", dtype=1, shape=[-2], total_bytes=8)], "negative"),
    (lambda c: [type(c[0])(step_id=1, key="k", dtype=20, shape=[1], total_bytes=8)], "DataType 20"),
    (lambda c: [type(c[0])(step_id=1, key="k", dtype=1, shape=[1], total_bytes=4, data=bytes(8))], "header says"),
])
def test_malformed_streams_are_invalid_argument(damage, message):
    chunks = list(tensor_chunks(1, "k", np.ones(100, np.float32), chunk_bytes=100))
    with pytest.raises(errors.InvalidArgumentError, match=message):
        serve_tensor_stream(iter(damage(chunks)), lambda *a: None)


# ---------------------------------------------------------------- across processes

def _echo_server(conn, token):
    """Child process: one DataPlane per mode, each sending every arrival back to the address it is told."""
    planes = {}
    reply = {}

    def echo(mode):
        return lambda step_id, key, array: planes[mode].send(reply[mode], step_id, key, array)
    for mode in MODES:
        planes[mode] = DataPlane(mode=mode, token=token, deliver=echo(mode))
    conn.send({mode: p.start() for mode, p in planes.items()})
    reply.update(conn.recv())
    conn.recv()
    conn.send({mode: p.stats() for mode, p in planes.items()})
    for p in planes.values():
        p.close()


@pytest.fixture(scope="module")
def echo_process():
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo_server, args=(child, "tok"), daemon=True)
    proc.start()
    try:
        assert parent.poll(60), "the echo process did not start"
        yield parent, parent.recv(), proc
    finally:
        proc.kill()
        proc.join()


def test_two_processes_every_path(echo_process):
    conn, addresses, proc = echo_process
    local, inboxes = {}, {}
    try:
        for mode in MODES:
            inboxes[mode] = Inbox()
            local[mode] = DataPlane(mode=mode, token="tok", deliver=inboxes[mode])
        conn.send({mode: p.start() for mode, p in local.items()})
        tensors = _tensors()
        for mode in MODES:
            for step in range(3):
                for key, value in tensors.items():
                    local[mode].send(addresses[mode], step, key, value)
        for mode in MODES:
            got = inboxes[mode].wait(3 * len(tensors))
            for (step, key), array in got.items():
                _assert_same(array, tensors[key])
        conn.send("stats")
        assert conn.poll(30)
        theirs = conn.recv()
        size = sum(v.nbytes for v in tensors.values() if v.dtype != object)
        if shm.shm_dir() is not None:
            assert theirs["auto"]["bytes_received_shm"] > 0 and theirs["auto"]["bytes_received_unix"] > 0
            assert theirs["shm"]["bytes_received_shm"] == 3 * size
            assert local["shm"].stats()["bytes_received_shm"] == 3 * size
        assert theirs["tcp"]["bytes_received_shm"] == 0 and theirs["tcp"]["bytes_received_tcp"] >= 3 * size
        assert theirs["grpc"]["bytes_received_grpc"] >= 3 * size
    finally:
        for p in local.values():
            p.close()
    proc.join(30)
    assert proc.exitcode == 0
    assert _segment_files(proc.pid) == []


# ---------------------------------------------------------------- huge tensors

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["shm", "tcp", "grpc"])
def test_tensor_over_2_gib(planes, mode):
    sender, _, address, inbox = _pair(planes, mode)
    value = np.arange((2 << 30) // 8 + 3, dtype=np.int64)
    sender.send(address, 1, "huge", value)
    got = inbox.pop(1, "huge", timeout=600)
    assert got.shape == value.shape and got.dtype == value.dtype
    assert got[0] == 0 and got[-1] == value[-1] and np.array_equal(got[::4097], value[::4097])
    assert struct.pack("<q", int(got.sum())) == struct.pack("<q", int(value.sum()))


@needs_shm
def test_a_tensor_written_into_its_send_buffer_is_sent_without_a_copy(planes):
    sender, receiver, address, inbox = _pair(planes, "auto")
    n = 1 << 18
    assert sender.send_buffer(address, 1, transport.SHM_MIN_BYTES - 1) is None  # travels inline anyway
    for step in range(1, 4):
        buf = sender.send_buffer(address, step, n * 4)
        assert buf is not None and buf.dtype == np.uint8 and buf.nbytes == n * 4
        arr = buf.view(np.float32)
        np.add(np.arange(n, dtype=np.float32), float(step), out=arr)
        sender.send(address, step, "x", arr)
        got = inbox.pop(step, "x")
        np.testing.assert_array_equal(got, np.arange(n, dtype=np.float32) + step)
        del got
    stats = sender.stats()
    assert stats["tensors_sent_in_place"] == 3 and stats["tensors_sent_shm"] == 3
    assert stats["shm_segments"] <= 2 and stats["shm_segments_busy"] == 0
    # an array elsewhere is copied into a segment as before
    sender.send(address, 9, "y", np.ones(n, np.float32))
    np.testing.assert_array_equal(inbox.pop(9, "y"), 1.0)
    assert sender.stats()["tensors_sent_in_place"] == 3


@needs_shm
def test_send_buffers_never_sent_go_back(planes):
    sender, receiver, address, inbox = _pair(planes, "auto")
    kept = sender.send_buffer(address, 1, 1 << 20)
    sender.unstage(address, kept)  # its kernel failed
    sender.send_buffer(address, 2, 1 << 20)
    sender.send_buffer(address, 2, 1 << 20)
    assert sender.stats()["shm_segments_busy"] == 2
    sender.release_step(2)  # the step ended before its sends ran
    stats = sender.stats()
    assert stats["shm_segments_busy"] == 0 and stats["shm_segments"] == 2


@pytest.mark.parametrize("mode", ["tcp", "grpc"])
def test_no_send_buffer_without_shared_memory(planes, mode):
    sender, receiver, address, inbox = _pair(planes, mode)
    assert sender.send_buffer(address, 1, 1 << 20) is None


@pytest.mark.parametrize("mode", ["auto", "tcp"])
def test_a_delivery_that_hands_off_reading_may_wait_while_the_connection_is_read(planes, mode):
    """deliver() runs on the connection's reading thread; after hand_off_reading() it may wait for as long as
    it likes, and the next tensor on the same connection still arrives (on another thread)."""
    release, seen = threading.Event(), []

    def deliver(step_id, key, array):
        seen.append((key, transport.delivering(), threading.current_thread()))
        if key == "first":
            assert transport.hand_off_reading()
            assert not transport.delivering()
            assert release.wait(20)
        else:
            release.set()
    receiver, address = planes(mode=mode, deliver=deliver)
    sender, _ = planes(mode=mode)
    sender.send(address, 1, "first", np.ones(3, np.float32))
    sender.send(address, 1, "second", np.ones(3, np.float32))
    assert release.wait(20), "the second tensor never arrived while the first's delivery waited"
    assert [(k, d) for k, d, _ in seen] == [("first", True), ("second", True)]
    assert seen[0][2] is not seen[1][2]
    assert not transport.delivering() and not transport.hand_off_reading()   # not a reading thread
    sender.send(address, 1, "third", np.ones(3, np.float32))                  # the first thread reads again
    deadline = time.monotonic() + 20
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [k for k, _, _ in seen] == ["first", "second", "third"]
