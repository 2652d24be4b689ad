"""A raw-socket channel for the control calls on every step's path: RunStep (client to master) and
RunGraph and CleanupStep (master to workers).

A gRPC call from Python costs about half a millisecond of thread hand-offs
on each side, and a step makes two in a row; a length-prefixed frame on a
persistent TCP connection costs tens of microseconds. This channel carries
the very request and response messages of master.proto and worker.proto,
serialized, and the same errors (status code, message, node name), so a
server behaves the same whichever way a call arrives. gRPC stays the
protocol of record: every server also serves these calls over gRPC, and a
client that cannot use this channel (TLS is on, TENSORGRID_CONTROL=grpc, or
its port cannot be reached) uses gRPC instead.

Wire format, integers little-endian:
  on connect  server -> client  CHALLENGE  b"TGSC", version u16, flags u8 (bit 0: token required), nonce[16]
              client -> server  HELLO      b"TGSC", version u16, HMAC-SHA256(token, nonce)[32] (zeros: no token)
              server -> client  WELCOME    status u8 (0 ok, 1 wrong token, 2 unknown version)
  each call   client -> server  REQUEST    method u16 (its index in the service descriptor), length u64,
                                           then the serialized request
              server -> client  REPLY      code u8 (gRPC status code, 0 = OK), node-name length u16, length u64,
                                           then the serialized response (OK) or the UTF-8 message, then the node name
Method LOCAL_NAME (0xFFFF, no request bytes) is no service method: its reply
is the name of the Unix socket (Linux's abstract namespace) the server also
takes connections on, empty when none (a server that predates it answers
INVALID_ARGUMENT). A client asks once, on its first TCP connection, and
dials that socket from then on when it can reach it: only the server's host
(and there its network namespace) can, so a same-host client skips the TCP
stack, about half a loopback round trip's cost. The handshake is the same.
The HMAC may be of the cluster token, on a master with one of the client
token, and on a worker of the cluster token followed by the key the worker
gave its master (security.Roles); a connection gets PERMISSION_DENIED for
the methods its role does not reach (security.Roles.may_call), decided once
per connection. A connection carries one call at a time. Clients keep idle connections per
server and open another when all are busy; the server serves each
connection on a thread of its own, so a call runs there from start to end.
A request longer than its method allows (security.request_limit: a heartbeat
gets 1 MiB, RunStep and RunGraph 1 GiB) ends the connection unread; a long
one is read as it arrives, so a declared length alone commits no memory.
At most wire.MAX_HANDSHAKES connections wait for their HELLO at once (a
thread each); one more shuts the oldest down (wire.Handshakes). A failed
accept (out of descriptors) or thread start is logged and the server accepts
again; it never gives up its port while it runs. A client whose connection
fails before anything was sent uses gRPC for the call.
"""

import logging
import os
import secrets
import select
import selectors
import socket
import struct
import sys
import threading
import time

from tensorgrid import security
from tensorgrid.framework import errors
from tensorgrid.observability import stages
from tensorgrid.worker import wire
from tensorgrid.worker.wire import dial_local, peer_closed, recv_exact, token_bytes, token_mac

log = logging.getLogger("tensorgrid.rpc")

CONTROL_ENV = "TENSORGRID_CONTROL"
MAGIC = b"TGSC"
VERSION = 1
CHALLENGE = struct.Struct("<4sHB16s")
HELLO = struct.Struct("<4sH32s")
WELCOME = struct.Struct("<B")
REQUEST = struct.Struct("<HQ")
REPLY = struct.Struct("<BHQ")
OK, BAD_TOKEN, BAD_VERSION = 0, 1, 2
LOCAL_NAME = 0xFFFF
CONNECT_TIMEOUT_S = 5.0
# Idle connections a client keeps per server; more are opened under load and closed after.
MAX_IDLE = 16
# How often a thread reading its own calls' replies (AsyncCall.drive_all) looks at its stop event.
DRIVE_SLICE_S = 0.05


def enabled(tls=None):
    """Whether calls may take this channel: not under TLS (it does not encrypt), not when told to use gRPC."""
    return not (tls is not None and tls.enabled) and os.environ.get(CONTROL_ENV, "") != "grpc"


def _tune(sock):
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _listen_local():
    """(name, listener) of a fresh abstract Unix socket for same-host clients; (None, None) off Linux."""
    if not sys.platform.startswith("linux"):
        return None, None
    name = f"tensorgrid-step-{os.getpid()}-{secrets.token_hex(16)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
        listener.listen(128)
    except OSError as e:
        listener.close()
        log.info("step channel: no Unix socket for same-host clients (%s)", e)
        return None, None
    return name, listener


# ---------------------------------------------------------------- server

class StepChannelServer:
    """Serves the unary methods of `service_name` (pb2_module) with impl.<Method>(request) on a TCP port."""

    def __init__(self, pb2_module, service_name, impl, host="127.0.0.1", port=0, token=None, client_token=None,
                 master_key=None):
        service = pb2_module.DESCRIPTOR.services_by_name[service_name]
        self._methods = [None if m.client_streaming else
                         (getattr(impl, m.name), security.message_class(m.input_type), m.full_name,
                          security.request_limit(m.name))
                         for m in service.methods]
        self._roles = security.Roles(token_bytes(token), token_bytes(client_token) if token else None, master_key)
        self._service = service
        self._stage_names = [(f"serve.read:{m.name}", f"serve.reply:{m.name}") for m in service.methods]
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host.strip("[]"), port))
        except OSError as e:
            self._listener.close()
            raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._local_name, self._local_listener = _listen_local()
        self._lock = threading.Lock()
        self._conns = set()
        self._handshakes = wire.Handshakes()
        self._closed = False

    def start(self):
        for listener in (self._listener, self._local_listener):
            if listener is not None:
                threading.Thread(target=self._accept_loop, args=(listener,), name="tg-step-accept",
                                 daemon=True).start()
        return self

    def _accept_loop(self, listener):
        while True:
            sock = wire.accept(listener, lambda: self._closed)
            if sock is None:
                return
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._conns.add(sock)
            self._handshakes.begin(sock)
            if not wire.start(threading.Thread(target=self._serve, args=(sock,), name="tg-step-conn", daemon=True)):
                self._handshakes.end(sock)
                with self._lock:
                    self._conns.discard(sock)
                sock.close()

    def _handshake(self, sock):
        """The connection's role (security.CLUSTER or CLIENT; CLUSTER when no token is set), None if refused."""
        nonce = secrets.token_bytes(16)
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.sendall(CHALLENGE.pack(MAGIC, VERSION, 1 if self._roles.token_required else 0, nonce))
        magic, version, mac = HELLO.unpack(recv_exact(sock, HELLO.size))
        if magic != MAGIC or version != VERSION:
            sock.sendall(WELCOME.pack(BAD_VERSION))
            return None
        role = self._roles.of_mac(mac, nonce, token_mac)
        if role is None:
            log.warning("step channel: refused a connection with a missing or wrong token")
            sock.sendall(WELCOME.pack(BAD_TOKEN))
            return None
        sock.sendall(WELCOME.pack(OK))
        sock.settimeout(None)
        return role

    def _serve(self, sock):
        try:
            try:
                _tune(sock)
                role = self._handshake(sock)
            finally:
                self._handshakes.end(sock)
            if role is None:
                return
            # what this connection's role reaches, decided once per connection: no per-call checks
            allowed = [self._roles.may_call(role, self._service.full_name, m.name) for m in self._service.methods]
            while True:
                method, length = REQUEST.unpack(recv_exact(sock, REQUEST.size))
                entry = self._methods[method] if method < len(self._methods) else None
                limit = entry[3] if entry is not None else security.SMALL_REQUEST_BYTES
                if length > limit:
                    log.warning("step channel: refused a %d-byte request to method %d (its limit: %d)",
                                length, method, limit)
                    return
                # read as it arrives (wire.read_exact): memory follows the bytes sent, not the length declared
                data = recv_exact(sock, length)
                if stages.ON and entry is not None:
                    stages.mark(self._stage_names[method][0])
                if entry is not None and not allowed[method]:
                    self._reply(sock, errors.PermissionDeniedError(
                        None, None, self._roles.refusal(role, entry[2])[1]), None)
                    continue
                result = self._call(method, data)
                if stages.ON and entry is not None:
                    stages.mark(self._stage_names[method][1])
                self._reply(sock, *result)
        except (OSError, EOFError, struct.error):
            pass
        finally:
            with self._lock:
                self._conns.discard(sock)
            sock.close()

    def _call(self, method, data):
        if method == LOCAL_NAME:
            return None, (self._local_name or "").encode("ascii")
        entry = self._methods[method] if method < len(self._methods) else None
        if entry is None:
            return errors.InvalidArgumentError(None, None, f"step channel: no unary method {method}"), None
        fn, request_cls, name = entry[:3]
        try:
            return None, security.invoke(fn, request_cls, name, data).SerializeToString()
        except errors.OpError as e:
            return e, None

    @staticmethod
    def _reply(sock, err, payload):
        if err is None:
            sock.sendmsg([REPLY.pack(OK, 0, len(payload)), payload])
            return
        node = (getattr(err, "node_name", None) or (err.op if isinstance(err.op, str) else "") or "").encode("utf-8")
        message = (err.message or type(err).__name__).encode("utf-8")
        sock.sendmsg([REPLY.pack(err.grpc_code.value[0], len(node), len(message)), message, node])

    def close(self):
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        for listener in (self._listener, self._local_listener):
            if listener is None:
                continue
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ---------------------------------------------------------------- client

class _Connection:
    __slots__ = ("sock",)

    def __init__(self, sock):
        self.sock = sock

    def send(self, method, payload):
        self.sock.sendmsg([REQUEST.pack(method, len(payload)), payload])

    def read_reply(self):
        """(None, response bytes) or (OpError, None)."""
        code, node_len, length = REPLY.unpack(recv_exact(self.sock, REPLY.size))
        if length > security.MAX_MESSAGE_BYTES:
            raise EOFError(f"reply of {length} bytes is over the limit")
        payload = recv_exact(self.sock, length)
        if code == OK:
            return None, payload
        node = recv_exact(self.sock, node_len).decode("utf-8") if node_len else None
        err = errors.error_class_for_code(code)(None, node, payload.decode("utf-8", "replace"))
        if node:
            err.node_name = node
        return err, None

    def closed_by_peer(self):
        """True when the server has closed this idle connection (checked without blocking)."""
        return peer_closed(self.sock)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _not_sent(message):
    """The in-transit UnavailableError of a call that never left: no connection, so nothing of it ran."""
    err = security.in_transit(message)
    err.not_sent = True
    return err


class StepChannelClient:
    """Calls unary methods of `service_name` on a StepChannelServer at `address`."""

    def __init__(self, address, pb2_module, service_name, token=None, key=None):
        self.address = address
        service = pb2_module.DESCRIPTOR.services_by_name[service_name]
        self._index = {m.name: i for i, m in enumerate(service.methods)}
        self._token = token_bytes(token)
        # what HELLO proves: the token, and a master's worker key after it (security.Roles)
        self._secret = (self._token or b"") + token_bytes(key) if key else self._token
        self._idle = []
        self._lock = threading.Lock()
        self._closed = False
        # the server's Unix socket: None until asked (LOCAL_NAME), "" when it has none this side can reach
        self._local = None

    def _dial(self):
        """A connection that passed the handshake: over the server's Unix socket when this host reaches it."""
        local = self._local
        if local:
            try:
                return self._handshake(dial_local(local, CONNECT_TIMEOUT_S))
            except (OSError, errors.OpError):
                self._local = ""    # gone (the server restarted with another name): TCP from now on
        host, _, port = self.address.rpartition(":")
        try:
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S)
        except OSError as e:
            raise _not_sent(f"cannot connect to {self.address}: {e.strerror or e}") from None
        conn = self._handshake(sock)
        if self._local is None:
            return self._upgrade(conn)
        return conn

    def _upgrade(self, conn):
        """Asks the server over `conn` for its Unix socket; a connection there instead when it is reachable."""
        self._local = ""
        try:
            conn.sock.settimeout(CONNECT_TIMEOUT_S)
            conn.send(LOCAL_NAME, b"")
            err, name = conn.read_reply()
            conn.sock.settimeout(None)
        except (OSError, EOFError, struct.error):
            conn.close()
            raise _not_sent(f"connection to {self.address} failed while asking for its Unix socket") from None
        if err is not None or not name or len(name) > 107:
            return conn
        try:
            local = self._handshake(dial_local(name.decode("ascii", "replace"), CONNECT_TIMEOUT_S))
        except (OSError, errors.OpError):
            return conn     # another host, or another network namespace: TCP it is
        self._local = name.decode("ascii", "replace")
        conn.close()
        return local

    def _handshake(self, sock):
        """Proves the token on a fresh socket; returns its _Connection (closes it and raises if refused)."""
        try:
            _tune(sock)
            magic, version, flags, nonce = CHALLENGE.unpack(recv_exact(sock, CHALLENGE.size))
            if magic != MAGIC or version != VERSION:
                raise security.in_transit(f"{self.address} does not speak step channel v{VERSION}")
            if flags & 1 and not self._token:
                raise errors.UnauthenticatedError(
                    None, None, f"{self.address} requires the cluster's token (tg.ConfigProto(token=...) "
                    f"or {security.TOKEN_ENV}); none was given")
            sock.sendall(HELLO.pack(MAGIC, VERSION, token_mac(self._secret, nonce)))
            (status,) = WELCOME.unpack(recv_exact(sock, WELCOME.size))
            if status == BAD_TOKEN:
                raise errors.UnauthenticatedError(None, None, f"{self.address} refused this client's token")
            if status != OK:
                raise security.in_transit(f"{self.address} refused the connection (status {status})")
            sock.settimeout(None)
            return _Connection(sock)
        except (OSError, EOFError, struct.error) as e:
            sock.close()
            raise _not_sent(f"connection to {self.address} failed: {e}") from None
        except errors.OpError:
            sock.close()
            raise

    @property
    def local(self):
        """Whether new connections go over the server's Unix socket (the server shares this host)."""
        return bool(self._local)

    def probe(self):
        """Opens one connection now (raises UnavailableError or UnauthenticatedError) and keeps it for later."""
        self._checkin(self._dial())

    def _checkout(self):
        while True:
            with self._lock:
                if self._closed:
                    raise errors.CancelledError(None, None, f"the channel to {self.address} is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._dial()
            if not conn.closed_by_peer():
                return conn
            conn.close()

    def _checkin(self, conn):
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def call(self, method, request, timeout=None):
        """Sends `request` to `method` and returns the response bytes; raises the call's OpError."""
        payload = request.SerializeToString()
        index = self._index[method]
        conn = self._checkout()
        try:
            conn.sock.settimeout(timeout)
            try:
                conn.send(index, payload)
            except OSError:
                # an idle connection the server dropped since: one fresh try
                conn.close()
                conn = self._dial()
                conn.sock.settimeout(timeout)
                conn.send(index, payload)
            if stages.ON:
                stages.mark("call.sent")
            err, data = conn.read_reply()
            if stages.ON:
                stages.mark("call.read")
            conn.sock.settimeout(None)
        except socket.timeout:
            conn.close()
            raise errors.DeadlineExceededError(None, None, f"{method} on {self.address} timed out") from None
        except (OSError, EOFError, struct.error) as e:
            conn.close()
            raise security.in_transit(f"{method} on {self.address} failed: {e}") from None
        self._checkin(conn)
        if err is not None:
            raise err
        return data

    def call_async(self, method, request, parse, driven=False):
        """Sends `request` now; returns an AsyncCall whose result is parse(response bytes).

        The process's poller thread reads the reply, unless `driven`: then the
        thread that waits for it reads it itself (AsyncCall.drive_all), which
        saves the wake-up of one thread by another (tens of microseconds)."""
        payload = request.SerializeToString()
        index = self._index[method]
        call = AsyncCall(self, parse)
        try:
            conn = self._checkout()
            try:
                conn.send(index, payload)
            except OSError:
                conn.close()
                conn = self._dial()
                conn.send(index, payload)
        except OSError as e:
            call.finish(security.in_transit(f"{method} on {self.address} failed: {e}"), None)
            return call
        except errors.OpError as e:
            call.finish(e, None)
            return call
        call.conn = conn
        if driven:
            call.driven = True
        else:
            _poller().watch(call)
        return call

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class AsyncCall:
    """A call in flight on its own connection: result(), exception(), add_done_callback(), cancel()."""

    __slots__ = ("client", "conn", "driven", "_parse", "_done", "_error", "_data", "_cancelled", "_callbacks",
                 "_lock")

    def __init__(self, client, parse):
        self.client = client
        self.conn = None
        self.driven = False             # its reply is read by whoever waits for it (drive_all), not the poller
        self._parse = parse
        self._done = threading.Event()
        self._error = None
        self._data = None
        self._cancelled = False
        self._callbacks = []
        self._lock = threading.Lock()

    def finish(self, error, data):
        with self._lock:
            if self._done.is_set():
                return
            self._error, self._data = error, data
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def result(self, timeout=None):
        if not self._done.wait(timeout):
            raise TimeoutError()
        if self._error is not None:
            raise self._error
        return self._parse(self._data)

    def exception(self, timeout=None):
        if not self._done.wait(timeout):
            raise TimeoutError()
        return self._error

    def add_done_callback(self, fn):
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def cancel(self):
        """Gives up on the call: its connection is closed (the server drops the reply)."""
        if self._done.is_set():
            return False
        self._cancelled = True
        _poller().forget(self)
        if self.conn is not None:
            self.conn.close()
        self.finish(errors.CancelledError(None, None, "the call was cancelled"), None)
        return True

    def cancelled(self):
        return self._cancelled

    def done(self):
        return self._done.is_set()

    @staticmethod
    def drive_all(calls, stop, timeout=None):
        """Reads the replies of the driven `calls` on this thread, running their callbacks here, until each
        is done, `stop` (an Event, looked at every DRIVE_SLICE_S) is set or `timeout` seconds have passed.
        A call still in flight then goes to the poller thread, so it finishes as an undriven one would."""
        waiting = {c.conn.sock.fileno(): c for c in calls if c.driven and not c.done()}
        if not waiting:
            return
        poll = select.poll()
        for fd in waiting:
            poll.register(fd, select.POLLIN)
        end = None if timeout is None else time.monotonic() + timeout
        try:
            while waiting and not stop.is_set():
                slice_s = DRIVE_SLICE_S if end is None else min(DRIVE_SLICE_S, end - time.monotonic())
                if slice_s <= 0:
                    break
                for fd, _ in poll.poll(slice_s * 1000.0):
                    call = waiting.pop(fd, None)
                    if call is not None:
                        poll.unregister(fd)
                        _read_reply(call)
        finally:
            for call in waiting.values():
                call.driven = False
                if not call.done():
                    _poller().watch(call)


class _Poller:
    """One thread per process that reads the replies of every AsyncCall in flight."""

    def __init__(self):
        # epoll (Linux) takes registrations from other threads while select() waits
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, name="tg-step-poller", daemon=True).start()

    def watch(self, call):
        with self._lock:
            self._selector.register(call.conn.sock, selectors.EVENT_READ, call)

    def forget(self, call):
        with self._lock:
            try:
                self._selector.unregister(call.conn.sock)
            except (KeyError, ValueError, AttributeError):
                pass

    def _loop(self):
        while True:
            for key, _ in self._selector.select():
                call = key.data
                with self._lock:
                    try:
                        self._selector.unregister(key.fileobj)
                    except (KeyError, ValueError):
                        continue
                _read_reply(call)


def _read_reply(call):
    """Reads `call`'s reply from its connection (ready to read) and finishes it."""
    conn = call.conn
    try:
        err, data = conn.read_reply()
    except (OSError, EOFError, struct.error) as e:
        conn.close()
        if not call.cancelled():
            call.finish(security.in_transit(f"the call to {call.client.address} failed: {e}"), None)
        return
    if call.cancelled():
        conn.close()
        return
    call.client._checkin(conn)
    call.finish(err, data)


_POLLER = None
_POLLER_LOCK = threading.Lock()


def _poller():
    global _POLLER
    if _POLLER is None:
        with _POLLER_LOCK:
            if _POLLER is None:
                _POLLER = _Poller()
    return _POLLER
