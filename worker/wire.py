"""The raw data-plane wire format: handshake, message headers, dtype codes, string payloads.

Every integer is little-endian, every tensor payload is the row-major
little-endian element bytes. A connection opens with three records:

    server -> client  CHALLENGE  magic, version, flags (bit 0: a token is required), 16-byte nonce
    client -> server  HELLO      magic, version, lane, flags (bit 0: probe follows), group id,
                                 HMAC-SHA256(token, nonce) (zeros without a token), probe name length,
                                 probe content; then the probe name
    server -> client  WELCOME    status (OK, BAD_TOKEN, BAD_VERSION), same_host (1 when the server
                                 read the probe file and found the probe content in it)

After that the client (the side that sends tensors) writes messages, each a
HEADER followed by the shape (ndim int64), the key (UTF-8), the segment name
(SHM only) and, for DATA, `length` payload bytes; the server writes back
only RELEASE records, the 8-byte ids of shared-memory segments it no longer
uses. A connection is one of the `lanes` of a group: lane 0 carries every
message kind, the other lanes only DATA stripes of large tensors.
"""

import collections
import hashlib
import hmac
import logging
import socket
import struct
import sys
import threading
import time

import numpy as np

from tensorgrid.framework import dtypes

log = logging.getLogger("tensorgrid.wire")

MAGIC = b"TGDP"
VERSION = 1

CHALLENGE = struct.Struct("<4sHBx16s")
HELLO = struct.Struct("<4sHBBQ32sH16s")
WELCOME = struct.Struct("<BB")
HEADER = struct.Struct("<BBBxIqQQQQQI")
RELEASE = struct.Struct("<Q")

NEED_TOKEN = 1
# HELLO flags
WITH_PROBE = 1
WANTS_LOCAL = 2     # the client would move to the server's Unix socket (WELCOME's LOCAL_FOLLOWS, then the name)
# WELCOME's second byte
SAME_HOST = 1
LOCAL_FOLLOWS = 2   # a u8 length and the server's abstract Unix socket name follow

OK, BAD_TOKEN, BAD_VERSION = 0, 1, 2

# Message kinds (HEADER's first field). The meaning of the other fields:
#   DATA  ident: transfer id (stripes of one tensor share it); bytes [offset, offset+length) of nbytes follow.
#   SHM   ident: segment id; the tensor's nbytes lie at the start of segment `name`, seg_size bytes long.
#   DROP  ident: segment id the sender destroyed; the receiver forgets its mapping.
DATA, SHM, DROP = 1, 2, 3

MAX_NDIM = 254
MAX_KEY_BYTES = 1 << 16
MAX_NAME_BYTES = 255

STRING = dtypes.string.as_datatype_enum
BIG_ENDIAN_HOST = sys.byteorder == "big"

# DataType number -> the little-endian numpy dtype its elements travel as.
WIRE_DTYPE = {
    d.as_datatype_enum: np.dtype(d.as_numpy_dtype).newbyteorder("<")
    for d in dtypes.ALL if d.as_numpy_dtype is not np.object_
}


class ProtocolError(Exception):
    """A peer wrote something this wire format does not allow; the connection is dropped."""


_ENUM_OF = {}


def token_mac(token, nonce):
    """HELLO's proof of the token: HMAC-SHA256(token, nonce), or 32 zero bytes without a token."""
    return hmac.new(token, nonce, hashlib.sha256).digest() if token else bytes(32)


# A payload up to this size is read into a buffer of its declared size; a larger one into buffers that
# grow with the bytes that arrived, so a length in a header never commits memory by itself.
EAGER_BYTES = 1 << 20


def recv_exact(sock, n):
    """Exactly n bytes from a socket; EOFError when the peer closes first."""
    return read_exact(sock.recv_into, n)


def read_exact(recv_into, n, prefix=b""):
    """Exactly n bytes, `prefix` (already read) then what recv_into(view) -> count reads; EOFError at the end
    of the stream. Memory grows with what has arrived (doubling past EAGER_BYTES), not with n."""
    chunks, got, size = [], len(prefix), EAGER_BYTES
    if prefix:
        chunks.append(prefix)
    while got < n:
        part = bytearray(min(size, n - got))
        view = memoryview(part)
        have = 0
        while have < len(part):
            k = recv_into(view[have:])
            if not k:
                raise EOFError(f"connection closed after {got + have} of {n} bytes")
            have += k
        chunks.append(part)
        got += have
        size *= 2
    return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)


def dtype_enum(np_dtype):
    """The DataType number of a numpy dtype (any byte order); strings map to DT_STRING."""
    enum = _ENUM_OF.get(np_dtype)
    if enum is None:
        if np_dtype.kind in "OSU":
            enum = STRING
        else:
            enum = dtypes.as_dtype(np_dtype if np_dtype.isnative else np_dtype.newbyteorder("=")).as_datatype_enum
        _ENUM_OF[np_dtype] = enum
    return enum


def to_wire_bytes(array):
    """A flat uint8 view (or copy, when the layout or byte order needs one) of a numeric array's wire bytes."""
    wire = WIRE_DTYPE[dtype_enum(array.dtype)]
    if array.dtype != wire:
        array = array.astype(wire)
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def from_wire_bytes(buffer, enum, shape):
    """The array of DataType `enum` and `shape` whose wire bytes start `buffer` (no copy on little-endian hosts)."""
    wire = WIRE_DTYPE[enum]
    arr = np.frombuffer(buffer, dtype=wire, count=element_count(shape)).reshape(shape)
    if BIG_ENDIAN_HOST:
        arr = arr.astype(wire.newbyteorder("="))
    return arr


def element_count(shape):
    count = 1
    for d in shape:
        count *= d
    return count


def encode_strings(array):
    """DT_STRING payload: one uint64 length per element, then the elements' bytes (str as UTF-8)."""
    items = [x if isinstance(x, bytes) else _utf8(x) for x in array.reshape(-1).tolist()]
    lengths = np.array([len(b) for b in items], dtype="<u8")
    return lengths.tobytes() + b"".join(items)


def decode_strings(payload, shape):
    """The numpy object array of bytes that encode_strings wrote."""
    count = element_count(shape)
    head = 8 * count
    if len(payload) < head:
        raise ProtocolError(f"string tensor of shape {list(shape)} needs {head} length bytes, got {len(payload)}")
    lengths = np.frombuffer(payload, dtype="<u8", count=count)
    ends = np.cumsum(lengths, dtype=np.uint64) + np.uint64(head)
    total = int(ends[-1]) if count else head
    if total != len(payload):
        raise ProtocolError(f"string tensor payload is {len(payload)} bytes, its lengths say {total}")
    data = bytes(payload)
    out = np.empty(count, dtype=object)
    start = head
    for i, end in enumerate(ends.tolist()):
        out[i] = data[start:end]
        start = end
    return out.reshape(shape)


def _utf8(element):
    if isinstance(element, str):
        return element.encode("utf-8")
    raise TypeError(f"a string tensor holds bytes or str elements, not {type(element).__name__} ({element!r})")


def token_bytes(token):
    """The shared token as bytes, or None when no token is set."""
    if token is None or token == "" or token == b"":
        return None
    return token.encode("utf-8") if isinstance(token, str) else bytes(token)


_PEEK_NOW = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)  # an int: or-ing the enum flags costs a microsecond a call


def peer_closed(sock):
    """True when the peer has closed the connection (checked without blocking or consuming data)."""
    try:
        return sock.recv(1, _PEEK_NOW) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def dial_local(name, timeout):
    """A connection to the Unix socket `name` of Linux's abstract namespace; OSError when nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect("\0" + name)
    except OSError:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------- accepting connections (data plane, step channel)

# Connections a raw-socket server lets prove their credential at once, each on a thread waiting for its HELLO.
MAX_HANDSHAKES = 64
# How long a server waits after accept() or a thread start failed (out of descriptors, of threads) before it
# accepts again, instead of giving up on its port.
ACCEPT_BACKOFF_S = 0.1


class Handshakes:
    """The connections a server accepted that are still proving their credential, at most `limit`.

    One more evicts the oldest (shut down, so its thread ends at once): connections that never send their
    HELLO hold a bounded number of threads, and cannot keep out a peer that answers its CHALLENGE at once.
    """

    def __init__(self, limit=MAX_HANDSHAKES):
        self._limit = limit
        self._pending = collections.OrderedDict()
        self._lock = threading.Lock()

    def begin(self, sock):
        with self._lock:
            self._pending[sock] = None
            oldest = self._pending.popitem(last=False)[0] if len(self._pending) > self._limit else None
        if oldest is not None:
            log.warning("%d connections are proving a credential; dropped the oldest", self._limit)
            try:
                oldest.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def end(self, sock):
        with self._lock:
            self._pending.pop(sock, None)


def accept(listener, closed):
    """The next connection on `listener`, or None once closed() says the server is closed. A failed accept
    (out of descriptors) is logged and retried after ACCEPT_BACKOFF_S: it costs a connection, not the port."""
    while True:
        try:
            return listener.accept()[0]
        except OSError as e:
            if closed():
                return None
            log.warning("accept failed (%s); accepting again in %.1f s", e, ACCEPT_BACKOFF_S)
            time.sleep(ACCEPT_BACKOFF_S)


def start(thread):
    """Starts `thread`; False (logged, after ACCEPT_BACKOFF_S) when the process has no thread to give."""
    try:
        thread.start()
        return True
    except RuntimeError as e:
        log.warning("cannot start %s (%s)", thread.name, e)
        time.sleep(ACCEPT_BACKOFF_S)
        return False
