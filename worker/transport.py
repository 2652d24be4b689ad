"""The worker-to-worker data plane: tensors go straight into the receiver's memory.

gRPC carries control (SPEC section 5); tensors between workers take one of
three paths, chosen per peer:

- shm: the peer shares this host's /dev/shm, proved at connect time by a
  probe file the peer must read back (not by comparing addresses). A tensor
  is copied once into a pooled shared-memory segment (see shm.py) and a
  small descriptor goes over the TCP connection; the receiver delivers a
  zero-copy view and hands the segment back once nothing references that
  view any more. Tensors under SHM_MIN_BYTES ride the TCP connection
  instead: one syscall costs less than a copy, a descriptor and a release.
  Both go over the peer's Unix socket (Linux's abstract namespace), whose
  name the peer gives in the TCP handshake's WELCOME once the probe proved
  the shared host (HELLO flag WANTS_LOCAL): the TCP connection is then
  closed and lane 0 is the Unix one, counted as path "unix". A peer that
  predates this gives no name, and lane 0 stays on TCP.
- tcp: a fixed header, then the raw bytes, which the receiver reads
  straight into the destination array (wire.py has the format). Tensors of
  STRIPE_MIN_BYTES or more are cut in stripes written in parallel over up
  to LANES connections, since one loopback connection tops out near 2 GB/s
  with a kernel copy on each side. Large destination buffers come from a
  pool, as fresh ones pay a page fault per page.
- grpc: WorkerService.SendTensor, a stream of TensorChunk messages;
  `tensor_chunks` and `serve_tensor_stream` are its two ends (a worker's
  own WorkerService may serve the stream with the latter as well).

mode "auto" takes shm for same-host peers and tcp for the others, "shm"
insists on shared memory (every non-empty numeric tensor goes through it),
"tcp" and "grpc" use that path for everyone; the environment variable
TENSORGRID_TRANSPORT overrides the mode given.

Under TLS (`tls`, the worker's security.TlsFiles) no tensor byte crosses a
network in the clear. The data address is then a gRPC server with TLS
server credentials, and tensors for peers on other hosts take the grpc path
over a TLS channel (with this worker's certificate, for clusters that ask
for one). Shared memory stays for same-host peers, since it never leaves the
host: the sender asks the peer over that TLS channel for the name of its
Unix socket (in Linux's abstract namespace, so only its host, and there only
its network namespace, can reach it), connects there and proves the shared
/dev/shm with the probe as above. That connection carries what the TCP one
would (descriptors, small tensors, stripes), counted as path "unix"; a peer
it cannot reach or that fails the probe gets grpc. Raw TCP is never used:
mode "tcp" is refused. The token is checked on both the gRPC calls and the
Unix socket's handshake.

deliver(step_id, key, array) runs on a transport thread. The array may view
lent memory (a segment or a pooled buffer); that memory is reused only
after every array viewing it is gone, so keeping the array (in a variable,
say) is always safe, and freeing it promptly (the executor drops each
tensor after its last consumer) is what lets the next step reuse it.
"""

import collections
import concurrent.futures
import hmac
import ipaddress
import itertools
import logging
import os
import secrets
import socket
import struct
import sys
import threading

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.worker import shm, wire

__all__ = ["DataPlane", "serve_tensor_stream", "tensor_chunks", "TRANSPORT_ENV", "MODES"]

log = logging.getLogger("tensorgrid.transport")

TRANSPORT_ENV = "TENSORGRID_TRANSPORT"
MODES = ("auto", "shm", "tcp", "grpc")
CONNECT_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 10.0
SHM_MIN_BYTES = 64 << 10
STRIPE_MIN_BYTES = 1 << 20
LANES = 4
# Socket buffers of a connection over loopback: small enough to keep each
# stripe's in-flight bytes in cache, which beats the kernel's autotuned
# megabytes there (13-17 ms instead of 20-21 for 64 MiB over 4 lanes).
# Connections to other hosts keep autotuning, which fits the path's latency.
LOOPBACK_BUFFER_BYTES = 256 << 10
POOL_MIN_BYTES = 1 << 20
POOL_IDLE_BYTES = 1 << 30
STAGING_BYTES = 64 << 10
GRPC_CHUNK_BYTES = 4 << 20
_SERVICE = "tensorgrid.v1.WorkerService"
# Answers the name of the plane's same-host Unix socket (raw bytes both ways; empty: it has none).
_LOCAL_SOCKET_METHOD = "/tensorgrid.v1.DataPlane/LocalSocket"
_MAX_LOCAL_NAME = 100

_PATHS = ("shm", "tcp", "unix", "grpc")
_NOW = int(socket.MSG_DONTWAIT)
# the counters' names per path, made once: a send or an arrival formats none
_SENT_KEYS = {path: (f"bytes_sent_{path}", f"tensors_sent_{path}") for path in _PATHS}
_RECEIVED_KEYS = {path: (f"bytes_received_{path}", f"tensors_received_{path}") for path in _PATHS}


# ---------------------------------------------------------------- helpers

def _split_address(address):
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise errors.InvalidArgumentError(None, None, f"data plane address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _join_address(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _as_numpy(array):
    if isinstance(array, np.ndarray):
        return array
    if type(array).__module__.startswith("cupy"):
        from tensorgrid.ops.core_ops import to_host
        return to_host(array)  # one copy, into pinned memory when large
    return np.asarray(array)


def _is_loopback(sockaddr):
    return ipaddress.ip_address(sockaddr[0]).is_loopback


def _dial(host, port):
    """A TCP connection to host:port, without Nagle's delay, its buffer sized before connecting."""
    last = None
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _is_loopback(addr):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LOOPBACK_BUFFER_BYTES)
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(addr)
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise last if last is not None else OSError(f"no address for {host}")


def _send_parts(sock, parts):
    """Writes every buffer of `parts` (bytes or flat uint8 arrays), in order, in as few syscalls as the kernel
    allows: one, unless the socket's buffer is full. A thread reading a connection (delivering()) waits for
    room only after handing its reading off."""
    try:
        sent = sock.sendmsg(parts, (), _NOW if getattr(_reading, "conn", None) is not None else 0)
    except BlockingIOError:
        sent = 0
    if sent == sum(map(len, parts)):
        return
    hand_off_reading()
    views = [memoryview(p) for p in parts if len(p)]
    first = 0
    while True:
        while first < len(views) and sent >= len(views[first]):
            sent -= len(views[first])
            first += 1
        if first == len(views):
            return
        if sent:
            views[first] = views[first][sent:]
        sent = sock.sendmsg(views[first:])


def _header(kind, enum, shape, key, step_id, ident, nbytes, offset, length, seg_size=0, name=b""):
    return (wire.HEADER.pack(kind, enum, len(shape), len(key), step_id, ident, nbytes, offset, length,
                             seg_size, len(name))
            + struct.pack(f"<{len(shape)}q", *shape) + key + name)


def _payload(array):
    """(DataType number, flat uint8 wire bytes) of a tensor."""
    enum = wire.dtype_enum(array.dtype)
    if enum == wire.STRING:
        return enum, np.frombuffer(wire.encode_strings(array), dtype=np.uint8)
    return enum, wire.to_wire_bytes(array)


class _Reader:
    """Reads a socket through a staging buffer: records from the buffer, payloads straight to their destination."""

    __slots__ = ("_sock", "_buf", "_view", "_start", "_end")

    def __init__(self, sock, size=STAGING_BYTES):
        self._sock = sock
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = self._end = 0

    def _fill(self, need):
        if self._end - self._start >= need:
            return
        if self._start:
            rest = self._end - self._start
            self._view[:rest] = self._view[self._start:self._end]
            self._start, self._end = 0, rest
        while self._end < need:
            got = self._sock.recv_into(self._view[self._end:])
            if not got:
                raise EOFError("connection closed")
            self._end += got

    def record(self, layout):
        self._fill(layout.size)
        values = layout.unpack_from(self._buf, self._start)
        self._start += layout.size
        return values

    def take(self, n):
        if n > len(self._buf):
            staged = bytes(self._view[self._start:self._end])
            self._start = self._end = 0
            return wire.read_exact(self._sock.recv_into, n, staged)
        self._fill(n)
        out = bytes(self._view[self._start:self._start + n])
        self._start += n
        return out

    def skip(self, n):
        """Reads n bytes and drops them."""
        scratch = memoryview(bytearray(min(n, 1 << 20)))
        while n:
            k = min(n, len(scratch))
            self.read_into(scratch[:k])
            n -= k

    def read_into(self, view):
        n = len(view)
        have = min(n, self._end - self._start)
        if have:
            view[:have] = self._view[self._start:self._start + have]
            self._start += have
        while have < n:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise EOFError("connection closed")
            have += got


class _BufferPool:
    """Receive buffers for large tensors, lent to deliver() and taken back once nothing references them."""

    def __init__(self, idle_limit=POOL_IDLE_BYTES):
        self._idle = {}
        self._idle_bytes = 0
        self._idle_limit = idle_limit
        self._lent = 0
        # reentrant: a buffer can come back (a finalizer) while this thread is inside take()
        self._lock = threading.RLock()
        self._closed = False

    def take(self, nbytes):
        """A writable uint8 array of nbytes whose memory returns to the pool when its last view dies."""
        size = shm.size_class(nbytes)
        with self._lock:
            idle = self._idle.get(size)
            backing = idle.pop() if idle else None
            if backing is not None:
                self._idle_bytes -= size
            self._lent += 1
        if backing is None:
            backing = np.empty(size, dtype=np.uint8)
        return np.frombuffer(shm.lend(backing, self._give_back, backing), dtype=np.uint8, count=nbytes)

    def _give_back(self, backing):
        with self._lock:
            self._lent -= 1
            if self._closed or self._idle_bytes + backing.nbytes > self._idle_limit:
                return
            self._idle.setdefault(backing.nbytes, []).append(backing)
            self._idle_bytes += backing.nbytes

    def close(self):
        with self._lock:
            self._closed = True
            self._idle.clear()
            self._idle_bytes = 0

    def counts(self):
        """(buffers lent out, idle buffers)."""
        with self._lock:
            return self._lent, sum(len(v) for v in self._idle.values())


class _Partial:
    """A striped tensor being assembled from its stripes (buf None: its step ended, the rest is dropped)."""

    __slots__ = ("step_id", "buf", "missing")

    def __init__(self, step_id, buf, missing):
        self.step_id = step_id
        self.buf = buf
        self.missing = missing


# ---------------------------------------------------------------- sender side

class _Lane:
    """One connection to a peer, with the lock that keeps each message's bytes together."""

    __slots__ = ("sock", "lock")

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()


def _write(lane, parts):
    if not lane.lock.acquire(blocking=False):
        hand_off_reading()  # another thread's message is going out, maybe slowly: no waiting while reading
        lane.lock.acquire()
    try:
        _send_parts(lane.sock, parts)
    finally:
        lane.lock.release()


class _Outbound:
    """This side's connections to one peer: lane 0, lanes for stripes, and segments when it shares our host.

    Under TLS they run over the peer's Unix socket, and only to a same-host
    peer; any other peer is marked `via_grpc` and has no connections here.
    """

    def __init__(self, plane, address):
        self.plane = plane
        self.address = address
        self.host, self.port = _split_address(address)
        self.local_name = None
        self.via_grpc = False
        self.group = secrets.randbits(64)
        self.lanes = []
        self.pool = None
        self.lock = threading.Lock()
        self._transfer_ids = itertools.count(1)
        self._release_tail = b""
        self._warned_full = False
        # segments handed to kernels as output buffers (DataPlane.send_buffer), by the address of their
        # first byte: (segment, step id); sending an array there sends the segment without a copy
        self.staged = {}

    @property
    def path(self):
        """The stats path of what lane 0 carries besides shared memory: "tcp", or "unix" (the peer's Unix
        socket: a same-host peer, under TLS or not)."""
        return "tcp" if self.local_name is None else "unix"

    def open(self):
        """Connects lane 0 once: UnavailableError if the peer is unreachable, UnauthenticatedError if it refuses."""
        with self.lock:
            if self.lanes or self.via_grpc:
                return
            hand_off_reading()  # connecting waits for the peer
            plane = self.plane
            want_shm = plane.mode in ("auto", "shm") and plane._shm_dir is not None
            if plane._tls is None:
                sock, same_host = self._connect(0, want_shm)
                if same_host and self.local_name is not None:
                    sock = self._move_local(sock)
            else:
                sock, same_host = self._connect_local() if want_shm else (None, False)
            if want_shm and same_host:
                self.lanes.append(_Lane(sock))
                self.pool = shm.SegmentPool(plane._shm_dir)
                return
            if sock is not None and (plane.mode == "shm" or plane._tls is not None):
                sock.close()
            if plane.mode == "shm":
                other = "gRPC over TLS" if plane._tls is not None else "TCP"
                raise errors.FailedPreconditionError(
                    None, None, f"data plane peer {self.address} does not share this host's shared memory "
                    f"({'no /dev/shm here' if plane._shm_dir is None else 'its probe failed'}); "
                    f"mode 'shm' needs a same-host peer, 'auto' would use {other}")
            if plane._tls is not None:
                self.via_grpc = True
            else:
                self.lanes.append(_Lane(sock))

    def _connect_local(self):
        """(connection, same host) over the peer's Unix socket; (None, False) when it has none reachable here."""
        name = self.plane._peer_local_name(self.address)
        if not name:
            return None, False
        try:
            sock = wire.dial_local(name, CONNECT_TIMEOUT_S)
        except OSError:
            return None, False  # not in this host's network namespace: the peer is elsewhere
        self.local_name = name
        return self._handshake(sock, 0, True)

    def _move_local(self, tcp):
        """Lane 0 over the peer's Unix socket, whose name its TCP handshake gave; `tcp` when that fails."""
        name, self.local_name = self.local_name, None
        self.group = secrets.randbits(64)   # the TCP connection's end must not touch this one's transfers
        try:
            sock, same_host = self._handshake(wire.dial_local(name, CONNECT_TIMEOUT_S), 0, True)
        except (OSError, errors.OpError):
            return tcp
        if not same_host:
            sock.close()
            return tcp
        tcp.close()
        self.local_name = name
        return sock

    def _connect(self, lane, probe):
        try:
            sock = (_dial(self.host, self.port) if self.local_name is None
                    else wire.dial_local(self.local_name, CONNECT_TIMEOUT_S))
        except OSError as e:
            raise errors.UnavailableError(
                None, None, f"data plane peer {self.address} is unreachable: {e.strerror or e}") from None
        return self._handshake(sock, lane, probe)

    def _handshake(self, sock, lane, probe):
        probe_name, probe_content = shm.make_probe(self.plane._shm_dir) if probe else ("", bytes(16))
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            magic, version, _, nonce = wire.CHALLENGE.unpack(wire.recv_exact(sock, wire.CHALLENGE.size))
            if magic != wire.MAGIC:
                raise wire.ProtocolError("it did not answer as a tensorgrid data plane")
            mac = wire.token_mac(self.plane._token, nonce)
            name = probe_name.encode("ascii")
            # over TCP, a same-host peer may tell the Unix socket to move lane 0 to (_move_local)
            ask = probe and lane == 0 and sock.family != socket.AF_UNIX and self.plane._tls is None
            flags = (wire.WITH_PROBE if probe else 0) | (wire.WANTS_LOCAL if ask else 0)
            sock.sendall(wire.HELLO.pack(wire.MAGIC, wire.VERSION, lane, flags, self.group, mac, len(name),
                                         probe_content) + name)
            status, same_host = wire.WELCOME.unpack(wire.recv_exact(sock, wire.WELCOME.size))
            if ask and same_host & wire.LOCAL_FOLLOWS:
                (size,) = wire.recv_exact(sock, 1)
                self.local_name = wire.recv_exact(sock, size).decode("ascii", "replace")
            sock.settimeout(None)
        except (OSError, EOFError, wire.ProtocolError) as e:
            sock.close()
            # a TLS worker's data port waits for a TLS hello, so a plaintext handshake only times out
            hint = " (a worker with TLS on takes TLS connections only)" if isinstance(e, TimeoutError) else ""
            raise errors.UnavailableError(
                None, None, f"data plane peer {self.address} failed the handshake: {e}{hint}") from None
        finally:
            if probe:
                shm.remove_probe(self.plane._shm_dir, probe_name)
        if status == wire.BAD_TOKEN:
            sock.close()
            why = "this worker has no token" if self.plane._token is None else "it refused this worker's token"
            raise errors.UnauthenticatedError(
                None, None, f"data plane peer {self.address} requires the cluster token and {why}")
        if status != wire.OK or version != wire.VERSION:
            sock.close()
            raise errors.UnavailableError(
                None, None, f"data plane peer {self.address} speaks wire version {version}, this worker "
                f"{wire.VERSION}")
        return sock, bool(same_host & wire.SAME_HOST)

    def closed_by_peer(self):
        if self.via_grpc:
            return False  # its gRPC channel reconnects by itself
        lanes = self.lanes
        return not lanes or wire.peer_closed(lanes[0].sock)

    def send(self, step_id, key, array):
        """Sends one tensor; returns (path, payload bytes). OSError when the connection breaks (or was closed)."""
        try:
            enum, data = _payload(array)
        except TypeError as e:
            raise errors.InvalidArgumentError(None, None, f"cannot send {key!r} for step {step_id}: {e}") from None
        key = key.encode("utf-8")
        shape = array.shape
        n = data.nbytes
        lanes, pool = self.lanes, self.pool
        if not lanes:
            raise ConnectionResetError("the connection was closed")
        if pool is not None and self.staged and enum != wire.STRING and n:
            with self.lock:
                entry = self.staged.pop(data.ctypes.data, None)
            if entry is not None:
                self._send_segment(lanes[0], pool, entry[0], step_id, key, enum, shape, n)
                self.plane._count("tensors_sent_in_place", 1)
                return "shm", n
        if (pool is not None and enum != wire.STRING and n and n >= self.plane._shm_min
                and self._send_shm(lanes[0], pool, step_id, key, enum, shape, data)):
            return "shm", n
        if n >= STRIPE_MIN_BYTES and enum != wire.STRING and self.plane._lanes > 1:
            self._send_striped(step_id, key, enum, shape, data)
        else:
            _write(lanes[0], [_header(wire.DATA, enum, shape, key, step_id, 0, n, 0, n), data])
        return self.path, n

    def _send_shm(self, lane, pool, step_id, key, enum, shape, data):
        """Sends through a segment; False (nothing sent) when /dev/shm has no room for it."""
        n = data.nbytes
        with self.lock:
            self._drain_releases(lane.sock, pool)
        try:
            seg = pool.acquire(n)
        except ConnectionResetError:
            raise           # closed meanwhile: the send fails as on a broken connection
        except OSError as e:
            if not self._warned_full:
                self._warned_full = True
                log.warning("data plane: no room in %s for %d bytes (%s); tensors to %s go over %s until there is "
                            "(a container may need a larger --shm-size)", self.plane._shm_dir, n, e, self.address,
                            "TCP" if self.local_name is None else "its Unix socket")
            return False
        try:
            np.copyto(seg.array[:n], data)
        except BaseException:
            pool.abandon(seg.ident)
            raise
        self._send_segment(lane, pool, seg, step_id, key, enum, shape, n)
        return True

    def _send_segment(self, lane, pool, seg, step_id, key, enum, shape, n):
        """Sends the descriptor of busy segment `seg`, whose first n bytes hold the tensor."""
        try:
            with self.lock:
                drops, pool.dropped = pool.dropped, []
            parts = [_header(wire.DROP, 0, (), b"", 0, ident, 0, 0, 0) for ident in drops]
            parts.append(_header(wire.SHM, enum, shape, key, step_id, seg.ident, n, 0, n, seg.size,
                                 seg.name.encode("ascii")))
            _write(lane, parts)
        except BaseException:
            pool.abandon(seg.ident)
            raise

    def stage(self, step_id, nbytes):
        """A busy segment's first nbytes, as uint8, for a kernel to write a tensor for this peer into;
        None when tensors to this peer do not go through shared memory or /dev/shm has no room."""
        pool = self.pool
        if pool is None:
            return None
        with self.lock:
            try:
                self._drain_releases(self.lanes[0].sock, pool)
            except (OSError, IndexError):
                return None  # the next send finds out and reconnects
        try:
            seg = pool.acquire(nbytes)
        except OSError:
            return None  # the send copies, or takes the socket, as it would without staging
        with self.lock:
            self.staged[seg.array.ctypes.data] = (seg, step_id)
        return seg.array[:nbytes]

    def unstage(self, step_id=None, buffer=None):
        """Gives back the staged segment that `buffer` starts, or (buffer None) every one of step_id's."""
        with self.lock:
            if buffer is not None:
                entries = [self.staged.pop(buffer.ctypes.data, None)]
            else:
                entries = [self.staged.pop(a) for a, (_, sid) in list(self.staged.items()) if sid == step_id]
        pool = self.pool
        for entry in entries:
            if entry is not None and pool is not None:
                pool.release(entry[0].ident)

    def _drain_releases(self, sock, pool):
        """Reads the release notices the peer has sent so far (without blocking); frees those segments."""
        while True:
            try:
                chunk = sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                raise ConnectionResetError("the peer closed the connection")
            data = self._release_tail + chunk
            whole = len(data) - len(data) % wire.RELEASE.size
            for (ident,) in wire.RELEASE.iter_unpack(data[:whole]):
                pool.release(ident)
            self._release_tail = data[whole:]

    def _send_striped(self, step_id, key, enum, shape, data):
        hand_off_reading()  # it waits for every stripe's lane
        n = data.nbytes
        count = min(self.plane._lanes, n // STRIPE_MIN_BYTES)
        with self.lock:
            if not self.lanes:
                raise ConnectionResetError("the connection was closed")
            while len(self.lanes) < count:
                self.lanes.append(_Lane(self._connect(len(self.lanes), False)[0]))
            lanes = self.lanes[:count]
        tid = next(self._transfer_ids)
        # page-aligned stripe bounds, so no two lanes write into one page of the destination
        bounds = [0] + [(n * i // count) & ~4095 for i in range(1, count)] + [n]
        stripes = [[_header(wire.DATA, enum, shape, key, step_id, tid, n, lo, hi - lo), data[lo:hi]]
                   for lo, hi in zip(bounds, bounds[1:])]
        executor = self.plane._stripe_executor()
        jobs = [executor.submit(_write, lane, parts) for lane, parts in zip(lanes[1:], stripes[1:])]
        try:
            _write(lanes[0], stripes[0])
        finally:
            concurrent.futures.wait(jobs)
        for job in jobs:
            job.result()

    def close(self):
        with self.lock:
            lanes, self.lanes = self.lanes, []
            pool, self.pool = self.pool, None
        for lane in lanes:
            try:
                lane.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            lane.sock.close()
        if pool is not None:
            pool.close()

    def counts(self):
        """(lanes, live segments, busy segments, segment bytes), after reading the release notices that came in."""
        with self.lock:
            lanes, pool = self.lanes, self.pool
            if pool is None:
                return len(lanes), 0, 0, 0
            try:
                self._drain_releases(lanes[0].sock, pool)
            except OSError:
                pass  # the next send finds out and reconnects
        return (len(lanes),) + pool.counts()


# ---------------------------------------------------------------- receiver side

# What ends a connection with a warning: a peer that breaks the protocol or asks for too much.
_BAD_PEER = (wire.ProtocolError, ValueError, UnicodeDecodeError, MemoryError)

# The connection the calling thread reads, while deliver() runs on it.
_reading = threading.local()


def delivering():
    """Whether the calling thread reads a data-plane connection and is inside a delivery from it (deliver()
    runs on it): it may then compute on what it delivers, if nothing it runs waits; the data plane's own
    sends hand the reading off before they could wait (a full socket, a busy connection)."""
    return getattr(_reading, "conn", None) is not None


def hand_off_reading():
    """Frees the calling thread to compute or wait inside a delivery: when it reads a data-plane connection
    (delivering()), another thread reads that connection from now on, and this one waits as a spare once
    its delivery returns. True then, or when it already handed off; False on any other thread, which must
    not compute on a delivery there (it may be another partition's, or a gRPC server's)."""
    conn = getattr(_reading, "conn", None)
    if conn is None:
        return getattr(_reading, "handed_off", False)
    if not conn.pass_baton():
        return False
    _reading.conn = None
    _reading.handed_off = True
    return True


class _Inbound:
    """One accepted connection: the threads that read it, the sender's segments it mapped, and release notices
    back.

    One thread reads at a time: the one holding the baton. A delivery may run the step's kernels on the
    reading thread (hand_off_reading), which then passes the baton to a spare thread before it runs them,
    and becomes a spare itself once the delivery returns: the connection is always read, whatever a kernel
    waits for, and a tensor's arrival wakes no other thread to compute on it.
    """

    def __init__(self, plane, sock):
        self.plane = plane
        self.sock = sock
        self.group = None
        self.path = "unix" if sock.family == socket.AF_UNIX else "tcp"
        self.mappings = shm.Mappings(plane._shm_dir) if plane._shm_dir is not None else None
        self.thread = None
        self._releases = collections.deque()
        self._release_lock = threading.Lock()
        self._reader = None
        self._baton = threading.Lock()      # held by the thread whose turn it is to read
        self._spares = 1                    # threads that will take the baton next: at first the serving one
        self._spares_lock = threading.Lock()
        self._ended = False

    def serve(self):
        try:
            try:
                accepted = self._handshake()
            finally:
                self.plane._handshakes.end(self.sock)
        except (EOFError, OSError):
            accepted = False
        except _BAD_PEER as e:
            self._dropping(e)
            accepted = False
        if not accepted:
            self._end()
            return
        self._reader = _Reader(self.sock)
        self._take_turns()

    def _dropping(self, e):
        log.warning("data plane: dropping the connection from %s: %s: %s", self._peer_name(), type(e).__name__, e)

    def _take_turns(self):
        """Reads messages whenever this thread holds the baton, until the connection ends."""
        while True:
            self._baton.acquire()
            with self._spares_lock:
                self._spares -= 1
            if self._ended:
                self._baton.release()   # to the next spare, which ends too
                return
            if not self._read_until_handed_off():
                return
            with self._spares_lock:
                self._spares += 1

    def _read_until_handed_off(self):
        """Reads messages until a delivery hands the reading off (True) or the connection ends (False)."""
        reader = self._reader
        _reading.conn = self
        _reading.handed_off = False
        try:
            while _reading.conn is self:
                self._on_message(reader, reader.record(wire.HEADER))
            return True
        except (EOFError, OSError):
            pass
        except _BAD_PEER as e:
            self._dropping(e)
        finally:
            _reading.conn = None
        self._end()
        self._baton.release()
        return False

    def pass_baton(self):
        """Lets another thread read this connection from now on (a new one when no spare is waiting)."""
        with self._spares_lock:
            start = self._spares == 0
            self._spares += start
        if start and not wire.start(threading.Thread(target=self._take_turns, name="tg-dataplane-in", daemon=True)):
            with self._spares_lock:
                self._spares -= 1
            return False    # no thread to give: this one reads on, after its delivery
        self._baton.release()
        return True

    def _end(self):
        self._ended = True
        self.plane._connection_ended(self)
        if self.mappings is not None:
            self.mappings.clear()
        self.sock.close()

    def _peer_name(self):
        if self.path == "unix":
            return "a same-host peer (Unix socket)"
        try:
            return _join_address(*self.sock.getpeername()[:2])
        except OSError:
            return "a closed connection"

    def _handshake(self):
        plane, sock = self.plane, self.sock
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        nonce = secrets.token_bytes(16)
        sock.sendall(wire.CHALLENGE.pack(wire.MAGIC, wire.VERSION, wire.NEED_TOKEN if plane._token else 0, nonce))
        magic, version, _, flags, group, mac, name_len, content = wire.HELLO.unpack(
            wire.recv_exact(sock, wire.HELLO.size))
        if magic != wire.MAGIC:
            raise wire.ProtocolError("it is not a tensorgrid data plane client")
        if name_len > wire.MAX_NAME_BYTES:
            raise wire.ProtocolError(f"probe name of {name_len} bytes")
        name = wire.recv_exact(sock, name_len).decode("ascii", "replace")
        if version != wire.VERSION:
            sock.sendall(wire.WELCOME.pack(wire.BAD_VERSION, 0))
            raise wire.ProtocolError(f"it speaks wire version {version}, this worker {wire.VERSION}")
        if plane._token is not None and not hmac.compare_digest(mac, wire.token_mac(plane._token, nonce)):
            log.warning("data plane: refused a connection from %s: missing or wrong token", self._peer_name())
            sock.sendall(wire.WELCOME.pack(wire.BAD_TOKEN, 0))
            return False
        same_host = (plane.mode in ("auto", "shm") and bool(flags & wire.WITH_PROBE)
                     and shm.check_probe(plane._shm_dir, name, content))
        local = plane._local_name.encode("ascii") if (same_host and flags & wire.WANTS_LOCAL and self.path == "tcp"
                                                       and plane._local_name) else b""
        if local:
            sock.sendall(wire.WELCOME.pack(wire.OK, wire.SAME_HOST | wire.LOCAL_FOLLOWS) + bytes([len(local)]) + local)
        else:
            sock.sendall(wire.WELCOME.pack(wire.OK, wire.SAME_HOST if same_host else 0))
        sock.settimeout(None)
        self.group = group
        return True

    def _on_message(self, reader, head):
        kind, enum, ndim, key_len, step_id, ident, nbytes, offset, length, seg_size, name_len = head
        if ndim > wire.MAX_NDIM or key_len > wire.MAX_KEY_BYTES or name_len > wire.MAX_NAME_BYTES:
            raise wire.ProtocolError(f"header out of bounds: ndim {ndim}, key {key_len} bytes, name {name_len} bytes")
        rest = reader.take(8 * ndim + key_len + name_len)
        shape = struct.unpack_from(f"<{ndim}q", rest)
        key = rest[8 * ndim:8 * ndim + key_len].decode("utf-8")
        name = rest[8 * ndim + key_len:].decode("ascii")
        if kind == wire.DROP:
            if self.mappings is not None:
                self.mappings.drop(ident)
            return
        _check_tensor(enum, shape, nbytes, offset, length, key)
        if kind == wire.SHM:
            if self.mappings is None or nbytes > seg_size:
                raise wire.ProtocolError(f"shared-memory tensor {key!r} this side cannot map")
            self.plane._arrived(step_id, key, self._lend(ident, name, seg_size, enum, shape), "shm", nbytes)
        elif kind == wire.DATA:
            array = self.plane._receive_data(reader, self.group, step_id, key, enum, shape, ident, nbytes, offset,
                                             length)
            if array is not None:
                self.plane._arrived(step_id, key, array, self.path, nbytes)
        else:
            raise wire.ProtocolError(f"unknown message kind {kind}")

    def _lend(self, ident, name, seg_size, enum, shape):
        try:
            mm = self.mappings.get(ident, name, seg_size)
        except OSError as e:
            raise wire.ProtocolError(f"cannot map shared-memory segment {name}: {e}") from None
        self.plane._count("lent_shm", 1)
        return wire.from_wire_bytes(shm.lend(mm, self._release, ident), enum, shape)

    def _release(self, ident):
        """Tells the sender segment `ident` is free again (called when the last view of it dies, on any thread)."""
        self.plane._count("lent_shm", -1)
        self._releases.append(ident)
        while self._releases:
            # a finalizer may run inside a flush on this very thread; the flushing frame sends its notice
            if not self._release_lock.acquire(blocking=False):
                return
            try:
                idents = []
                while self._releases:
                    idents.append(self._releases.popleft())
                self.sock.sendall(b"".join([wire.RELEASE.pack(i) for i in idents]))
            except OSError:
                pass  # the sender is gone, and its segments with it
            finally:
                self._release_lock.release()

    def shutdown(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _check_tensor(enum, shape, nbytes, offset, length, key):
    if any(d < 0 for d in shape):
        raise wire.ProtocolError(f"tensor {key!r} has a negative dimension: {list(shape)}")
    if offset + length > nbytes:
        raise wire.ProtocolError(f"tensor {key!r}: bytes [{offset}, {offset + length}) of {nbytes}")
    if enum == wire.STRING:
        if offset or length != nbytes:
            raise wire.ProtocolError(f"string tensor {key!r} arrived in stripes")
        return
    wire_dtype = wire.WIRE_DTYPE.get(enum)
    if wire_dtype is None:
        raise wire.ProtocolError(f"tensor {key!r} has DataType {enum}, which has no raw bytes")
    if wire.element_count(shape) * wire_dtype.itemsize != nbytes:
        raise wire.ProtocolError(f"tensor {key!r} of shape {list(shape)} cannot be {nbytes} bytes")


# ---------------------------------------------------------------- the data plane

class DataPlane:
    """One worker's end of the data plane: a listener that delivers arriving tensors, and connections to peers.

    tls: the worker's security.TlsFiles; with TLS on, tensors that leave the
    host go over gRPC with TLS (see the module's docstring), and mode "tcp"
    is a ValueError.
    """

    def __init__(self, host="127.0.0.1", token=None, deliver=None, mode="auto", port=0, tls=None):
        mode = os.environ.get(TRANSPORT_ENV) or mode
        if mode not in MODES:
            raise ValueError(f"data plane mode {mode!r} is not one of {', '.join(MODES)} "
                             f"(from {TRANSPORT_ENV} or the mode argument)")
        self._tls = tls if tls is not None and tls.enabled else None
        if self._tls is not None and mode == "tcp":
            raise ValueError(f"data plane mode 'tcp' (from {TRANSPORT_ENV} or the mode argument) would send tensors "
                             "unencrypted, and this worker runs with TLS: use auto, shm or grpc")
        self.mode = mode
        self.host = host
        self.address = None
        self._port = port
        self._token = wire.token_bytes(token)
        self._deliver = deliver
        # under TLS a same-host peer is reached through an abstract Unix socket, which only Linux has
        use_shm = mode in ("auto", "shm") and (self._tls is None or sys.platform.startswith("linux"))
        self._shm_dir = shm.shm_dir() if use_shm else None
        self._local_name = None
        self._shm_min = 1 if mode == "shm" else SHM_MIN_BYTES
        self._lanes = LANES
        self._lock = threading.Lock()
        self._closed = False
        self._out = {}
        self._inbound = set()
        self._handshakes = wire.Handshakes()   # inbound connections not yet past their HELLO
        self._partials = {}
        self._partials_lock = threading.Lock()
        self._pool = _BufferPool()
        self._counts = collections.Counter({f"{what}_{path}": 0 for what in
                                            ("bytes_sent", "bytes_received", "tensors_sent", "tensors_received")
                                            for path in _PATHS}, tensors_sent_in_place=0)
        self._peer_counts = collections.Counter()   # (peer data address, path) -> bytes sent; and tensors
        self._peer_tensors = collections.Counter()
        # reentrant: a lent buffer's finalizer counts it back, and may run while this thread counts
        self._counts_lock = threading.RLock()
        self._listeners = []            # (socket, accept thread)
        self._executor = None
        self._grpc_server = None
        self._grpc_executor = None
        self._grpc_stubs = {}

    # -- lifecycle

    def start(self):
        """Starts listening; returns this worker's data address "host:port"."""
        if self._shm_dir is not None:
            shm.sweep_stale(self._shm_dir)
        if self.mode == "grpc" or self._tls is not None:
            port = self._start_grpc()
            if self._shm_dir is not None:
                self._local_name = f"{shm.PREFIX}{os.getpid()}-{secrets.token_hex(16)}"
                self._listen(socket.AF_UNIX, "\0" + self._local_name)
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            port = self._listen(family, (self.host, self._port)).getsockname()[1]
            if self._shm_dir is not None and sys.platform.startswith("linux"):
                # same-host peers move here after the TCP handshake: no TCP stack for descriptors and small tensors
                self._local_name = f"{shm.PREFIX}{os.getpid()}-{secrets.token_hex(16)}"
                try:
                    self._listen(socket.AF_UNIX, "\0" + self._local_name)
                except OSError as e:
                    log.info("data plane: no Unix socket for same-host peers (%s)", e)
                    self._local_name = None
        self.address = _join_address(self.host, port)
        return self.address

    def _listen(self, family, address):
        """Listens on `address` and starts the thread that accepts its connections; returns the socket."""
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        thread = threading.Thread(target=self._accept_loop, args=(listener,), name="tg-dataplane-accept", daemon=True)
        self._listeners.append((listener, thread))
        thread.start()
        return listener

    def close(self):
        """Stops listening, closes every connection and destroys this side's shared-memory segments."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            outs = list(self._out.values())
            self._out.clear()
            inbound = list(self._inbound)
        for listener, thread in self._listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
            thread.join()
        for out in outs:
            out.close()
        for conn in inbound:
            conn.shutdown()
        for conn in inbound:
            if conn.thread is not None:
                conn.thread.join(timeout=5)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None)
            self._grpc_executor.shutdown(wait=False)
        for channel, _ in self._grpc_stubs.values():
            channel.close()
        self._pool.close()
        with self._partials_lock:
            self._partials.clear()

    def __enter__(self):
        if self.address is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending

    def send(self, peer_address, step_id, key, array):
        """Delivers `array` to the data plane at peer_address, which calls its deliver(step_id, key, array).

        Returns once the bytes have left `array` (the caller may then change
        it). Raises UnavailableError naming the peer when it cannot be
        reached or goes away, UnauthenticatedError when it refuses our token.
        """
        array = _as_numpy(array)
        out = None if self.mode == "grpc" else self._outbound(peer_address)
        if out is None or out.via_grpc:
            path, nbytes = self._send_grpc(peer_address, step_id, key, array)
        else:
            try:
                path, nbytes = out.send(step_id, key, array)
            except OSError as e:
                self._discard(out)
                raise errors.UnavailableError(
                    None, None, f"data plane peer {peer_address} went away while {key!r} of step {step_id} was "
                    f"being sent: {e.strerror or e}") from None
        sent_bytes, sent_tensors = _SENT_KEYS[path]
        peer = (peer_address, path)
        with self._counts_lock:
            self._counts[sent_bytes] += nbytes
            self._counts[sent_tensors] += 1
            self._peer_counts[peer] += nbytes
            self._peer_tensors[peer] += 1

    def send_buffer(self, peer_address, step_id, nbytes):
        """Memory (uint8, nbytes long) that a kernel may write a tensor for peer_address into, so that
        `send` of an array over exactly those bytes hands the peer the memory itself, with no copy; None
        where no such memory is (no shared memory with that peer, a tensor under the shared-memory
        size, no room in /dev/shm). Memory not sent goes back with `unstage` or at release_step."""
        if self.mode == "grpc" or nbytes < self._shm_min:
            return None
        try:
            out = self._outbound(peer_address)
        except errors.OpError:
            return None  # the send that follows reports it
        return None if out.via_grpc else out.stage(step_id, nbytes)

    def unstage(self, peer_address, buffer):
        """Gives back memory from send_buffer that will not be sent."""
        with self._lock:
            out = self._out.get(peer_address)
        if out is not None:
            out.unstage(buffer=buffer)

    def connect(self, peer_address):
        """Opens the connection to a peer, or checks the open one still stands (a cheap liveness probe:
        a peer that died closed it, and reconnecting is refused). Raises as `send` does."""
        if self.mode != "grpc":
            self._outbound(peer_address)

    def _outbound(self, address):
        out = self._out.get(address)
        if out is not None and out.lanes and not out.closed_by_peer():
            return out  # the common case: a connection that stands, no locks taken
        for _ in range(2):
            with self._lock:
                if self._closed:
                    raise errors.CancelledError(None, None, f"data plane of {self.address} is closed")
                out = self._out.get(address)
                if out is None:
                    out = self._out[address] = _Outbound(self, address)
            try:
                out.open()
            except errors.OpError:
                self._discard(out)
                raise
            if not out.closed_by_peer():
                return out
            # the peer restarted or went away since the last send: reconnect rather than write into the void
            self._discard(out)
        raise errors.UnavailableError(None, None, f"data plane peer {address} closes every connection")

    def _discard(self, out):
        with self._lock:
            if self._out.get(out.address) is out:
                del self._out[out.address]
        out.close()

    def _stripe_executor(self):
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2 * self._lanes, thread_name_prefix="tg-dataplane-stripe")
            return self._executor

    # -- receiving

    def _accept_loop(self, listener):
        while True:
            sock = wire.accept(listener, lambda: self._closed)
            if sock is None:
                return
            try:
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if _is_loopback(sock.getpeername()):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LOOPBACK_BUFFER_BYTES)
            except OSError:     # gone already
                sock.close()
                continue
            conn = _Inbound(self, sock)
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._inbound.add(conn)
            self._handshakes.begin(sock)
            conn.thread = threading.Thread(target=conn.serve, name="tg-dataplane-in", daemon=True)
            if not wire.start(conn.thread):
                conn.thread = None
                self._handshakes.end(sock)
                self._connection_ended(conn)
                sock.close()

    def _connection_ended(self, conn):
        with self._lock:
            self._inbound.discard(conn)
        with self._partials_lock:
            for k in [k for k in self._partials if k[0] == conn.group]:
                del self._partials[k]

    def _buffer(self, nbytes):
        return self._pool.take(nbytes) if nbytes >= POOL_MIN_BYTES else np.empty(nbytes, dtype=np.uint8)

    def _receive_data(self, reader, group, step_id, key, enum, shape, ident, nbytes, offset, length):
        """Reads a DATA message's payload; returns the tensor once whole, else None."""
        if enum == wire.STRING:
            payload = reader.take(length)
            return wire.decode_strings(payload, shape)
        if offset == 0 and length == nbytes:
            buf = self._buffer(nbytes)
            reader.read_into(memoryview(buf))
            return wire.from_wire_bytes(buf, enum, shape)
        with self._partials_lock:
            partial = self._partials.get((group, ident))
            if partial is None:
                partial = self._partials[(group, ident)] = _Partial(step_id, self._buffer(nbytes), nbytes)
            buf = partial.buf
        if buf is None:
            reader.skip(length)
        else:
            reader.read_into(memoryview(buf)[offset:offset + length])
        with self._partials_lock:
            partial.missing -= length
            if partial.missing:
                return None
            del self._partials[(group, ident)]
        return None if buf is None else wire.from_wire_bytes(buf, enum, shape)

    def _arrived(self, step_id, key, array, path, nbytes):
        received_bytes, received_tensors = _RECEIVED_KEYS[path]
        with self._counts_lock:
            self._counts[received_bytes] += nbytes
            self._counts[received_tensors] += 1
        if self._deliver is None:
            log.warning("data plane: %r of step %d arrived, but nothing takes deliveries", key, step_id)
            return
        try:
            self._deliver(step_id, key, array)
        except Exception:  # noqa: BLE001 - one bad delivery must not end the connection
            log.exception("data plane: delivering %r of step %d failed", key, step_id)

    def _count(self, name, n):
        with self._counts_lock:
            self._counts[name] += n

    # -- steps and status

    def release_step(self, step_id):
        """The step is over on this worker: frees the buffers of its half-received tensors, and gives back
        the output buffers (send_buffer) it staged and never sent.

        Their remaining stripes are read and dropped as they come. Memory lent
        to the step's deliveries (segments, pooled buffers) goes back as soon
        as nothing references the delivered arrays; nothing waits for this
        call to reuse it.
        """
        with self._partials_lock:
            for partial in self._partials.values():
                if partial.step_id == step_id:
                    partial.buf = None
        with self._lock:
            staging = [o for o in self._out.values() if o.staged]
        for out in staging:  # output buffers of a step that failed before it sent them
            out.unstage(step_id)

    def peer_stats(self):
        """{(peer data address, path): (bytes sent, tensors sent)}: what the dashboard's matrix shows."""
        with self._counts_lock:
            return {k: (n, self._peer_tensors[k]) for k, n in self._peer_counts.items()}

    def stats(self):
        """Counters: bytes and tensors per path each way (tensors_sent_in_place: those of shm a kernel wrote
        into their segment, send_buffer), connections, segments, lent and pooled buffers."""
        with self._lock:
            outs = list(self._out.values())
            inbound = list(self._inbound)
        with self._counts_lock:
            out = dict(self._counts)
        lanes = [o.counts() for o in outs]
        lent_pool, idle_pool = self._pool.counts()
        with self._partials_lock:
            partials = sum(p.buf is not None for p in self._partials.values())
        out.update(
            peers=len(outs),
            connections_out=sum(c[0] for c in lanes),
            connections_in=len(inbound),
            shm_segments=sum(c[1] for c in lanes),
            shm_segments_busy=sum(c[2] for c in lanes),
            shm_segment_bytes=sum(c[3] for c in lanes),
            shm_mappings=sum(len(c.mappings) for c in inbound if c.mappings is not None),
            lent_buffers=out.pop("lent_shm", 0) + lent_pool,
            pooled_buffers=idle_pool,
            partial_transfers=partials,
        )
        return out

    # -- the gRPC path

    def _start_grpc(self):
        import grpc

        from tensorgrid import security
        from tensorgrid.proto import worker_pb2

        self._grpc_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="tg-dataplane-grpc")
        server = security.new_server(self._grpc_executor, self._token_text())
        handler = grpc.stream_unary_rpc_method_handler(
            self._serve_grpc, request_deserializer=worker_pb2.TensorChunk.FromString,
            response_serializer=worker_pb2.SendTensorResponse.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {"SendTensor": handler}),))
        service, method = _LOCAL_SOCKET_METHOD.strip("/").split("/")
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {method: grpc.unary_unary_rpc_method_handler(self._serve_local_name)}),))
        port = security.bind(server, _join_address(self.host, self._port), self._tls)
        server.start()
        self._grpc_server = server
        return port

    def _token_text(self):
        return self._token.decode("utf-8") if self._token is not None else None

    def _serve_grpc(self, request_iterator, context):
        from tensorgrid.proto import worker_pb2

        try:
            serve_tensor_stream(request_iterator, self._arrived_grpc)
        except errors.OpError as e:
            context.abort(e.grpc_code, e.message)
        return worker_pb2.SendTensorResponse()

    def _serve_local_name(self, request, context):
        return (self._local_name or "").encode("ascii")

    def _arrived_grpc(self, step_id, key, array):
        nbytes = array.nbytes if array.dtype != object else 8 * array.size + sum(len(b) for b in array.flat)
        self._arrived(step_id, key, array, "grpc", nbytes)

    def _grpc_peer(self, address):
        """(channel, WorkerService stub) to the data plane at `address`, with TLS when this plane has it."""
        from tensorgrid import security
        from tensorgrid.proto import worker_pb2_grpc

        with self._lock:
            if self._closed:
                raise errors.CancelledError(None, None, f"data plane of {self.address} is closed")
            entry = self._grpc_stubs.get(address)
            if entry is None:
                channel = security.open_channel(address, self._tls)
                entry = self._grpc_stubs[address] = (channel, worker_pb2_grpc.WorkerServiceStub(channel))
            return entry

    def _peer_local_name(self, address):
        """The name of the Unix socket the peer at `address` takes same-host connections on ("" when none)."""
        import grpc

        from tensorgrid import security

        channel, _ = self._grpc_peer(address)
        try:
            name = channel.unary_unary(_LOCAL_SOCKET_METHOD)(
                b"", timeout=HANDSHAKE_TIMEOUT_S, metadata=security.call_metadata(self._token_text()))
        except grpc.RpcError as e:
            raise _peer_error(address, e) from None
        return name.decode("ascii", "replace") if len(name) <= _MAX_LOCAL_NAME else ""

    def _send_grpc(self, address, step_id, key, array):
        import grpc

        from tensorgrid import security

        hand_off_reading()  # a gRPC call waits for its reply
        _, stub = self._grpc_peer(address)
        nbytes = 0

        def counted():
            nonlocal nbytes
            for chunk in tensor_chunks(step_id, key, array):
                nbytes += len(chunk.data)
                yield chunk
        try:
            stub.SendTensor(counted(), metadata=security.call_metadata(self._token_text()))
        except grpc.RpcError as e:
            raise _peer_error(address, e) from None
        return "grpc", nbytes


def _peer_error(address, rpc_error):
    """The OpError of a failed gRPC call to the data plane peer at `address`."""
    cls = errors.error_class_for_code(rpc_error.code())
    return cls(None, None, f"data plane peer {address}: {rpc_error.details()}")


# ---------------------------------------------------------------- the gRPC stream's two ends

def tensor_chunks(step_id, key, array, chunk_bytes=GRPC_CHUNK_BYTES):
    """Yields the TensorChunk messages that carry `array` (the first with every field, the rest data and offset).

    String tensors travel in wire.encode_strings' layout; every other dtype
    as its raw little-endian bytes.
    """
    from tensorgrid.proto import worker_pb2

    array = _as_numpy(array)
    try:
        enum, data = _payload(array)
    except TypeError as e:
        raise errors.InvalidArgumentError(None, None, f"cannot send {key!r} for step {step_id}: {e}") from None
    view = memoryview(data)
    total = len(view)
    yield worker_pb2.TensorChunk(step_id=step_id, key=key, dtype=enum, shape=array.shape, total_bytes=total,
                                 offset=0, data=bytes(view[:chunk_bytes]))
    for offset in range(chunk_bytes, total, chunk_bytes):
        yield worker_pb2.TensorChunk(offset=offset, data=bytes(view[offset:offset + chunk_bytes]))


def serve_tensor_stream(request_iterator, deliver):
    """Consumes TensorChunk messages (one tensor after another) and calls deliver(step_id, key, array) for each.

    Raises InvalidArgumentError on chunks that do not fit together (wrong
    order, sizes, dtype or shape) or a stream that ends inside a tensor.
    """
    current = None
    for chunk in request_iterator:
        if current is None:
            current = _StreamTensor(chunk)
        elif chunk.offset != current.filled:
            raise errors.InvalidArgumentError(
                None, None, f"SendTensor: chunk of {current.key!r} at offset {chunk.offset}, expected {current.filled}")
        if current.add(chunk.data):
            deliver(current.step_id, current.key, current.array())
            current = None
    if current is not None:
        raise errors.InvalidArgumentError(
            None, None, f"SendTensor: the stream ended after {current.filled} of {current.total} bytes of "
            f"{current.key!r}")


class _StreamTensor:
    """A tensor being assembled from its TensorChunks."""

    __slots__ = ("step_id", "key", "enum", "shape", "total", "filled", "buf")

    def __init__(self, chunk):
        self.step_id, self.key, self.enum = chunk.step_id, chunk.key, chunk.dtype
        self.shape, self.total, self.filled = tuple(chunk.shape), chunk.total_bytes, 0
        if chunk.offset != 0:
            raise errors.InvalidArgumentError(
                None, None, f"SendTensor: {self.key!r} starts at offset {chunk.offset}, not 0")
        if self.total < 0:
            raise errors.InvalidArgumentError(None, None, f"SendTensor: {self.key!r} has total_bytes {self.total}")
        try:
            _check_tensor(self.enum, self.shape, self.total, 0, self.total, self.key)
        except wire.ProtocolError as e:
            raise errors.InvalidArgumentError(None, None, f"SendTensor: {e}") from None
        try:
            self.buf = np.empty(self.total, dtype=np.uint8)
        except (MemoryError, ValueError):
            raise errors.ResourceExhaustedError(
                None, None, f"SendTensor: {self.key!r} declares {self.total} bytes, more than this worker can hold") from None

    def add(self, data):
        """Appends a chunk's bytes; True once the tensor is whole."""
        end = self.filled + len(data)
        if end > self.total:
            raise errors.InvalidArgumentError(
                None, None, f"SendTensor: {self.key!r} got {end} bytes, its header says {self.total}")
        self.buf[self.filled:end] = np.frombuffer(data, dtype=np.uint8)
        self.filled = end
        return end == self.total

    def array(self):
        if self.enum == wire.STRING:
            try:
                return wire.decode_strings(memoryview(self.buf), self.shape)
            except wire.ProtocolError as e:
                raise errors.InvalidArgumentError(None, None, f"SendTensor: {e}") from None
        return wire.from_wire_bytes(self.buf, self.enum, self.shape)
