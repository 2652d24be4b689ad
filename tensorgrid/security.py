"""The boundary between tensorgrid processes: tokens, TLS, message limits, and errors that cross it.

Every server (master, worker) and every channel (client to master, master to
worker, worker to worker) is made here, so they all apply the same rules:

- Two credentials (docs/security.md). The cluster token (--token-file, or
  TENSORGRID_TOKEN) is shared by the master and its workers and reaches
  every RPC. A master may also take a client token (--client-token-file, or
  TENSORGRID_CLIENT_TOKEN), which reaches only the master's CLIENT_METHODS.
  A token travels in the call metadata under TOKEN_KEY; a call without a
  known one is UNAUTHENTICATED, a client token on any other method
  PERMISSION_DENIED (`TokenInterceptor`). Without a client token, clients
  present the cluster token, as before.
- Roles between the master and its workers. A `tensorgrid worker` draws a
  random key at start and gives it to its master in RegisterWorker (call
  metadata KEY_KEY, beside the token). The master presents it on every call
  to that worker, and the worker's servers let only such a call (role
  MASTER) reach its control methods; the cluster token alone reaches only
  PEER_METHODS (GetStatus, SendTensor). The master in turn accepts a
  Heartbeat, or a registration of a task under its incarnation, only with
  the key that task registered with. So a holder of the cluster token (any
  worker) cannot drive another worker, nor speak for another task.
- TLS turns on when a certificate and key are given (--tls-cert/--tls-key,
  --tls-ca for the authority that signs peers; clients read
  TENSORGRID_TLS_CA, TENSORGRID_TLS_CERT and TENSORGRID_TLS_KEY).
- Messages are capped at MAX_MESSAGE_BYTES both ways (documented in
  master.proto); tensors that cross workers stream in chunks instead. A
  server's gRPC takes no single message over GRPC_RECEIVE_BYTES (grpcio's
  receive limit is one per server, checked before a message is buffered),
  and each method's requests are capped by `request_limit`: a request of a
  method that carries graphs or tensors, when it is larger, travels as a
  stream of chunks to `<Method>Chunks` (`ServiceClient`), which the server
  reads one chunk at a time up to that limit.
- Requests arrive as raw bytes and are parsed by `invoke` (under gRPC
  through `service_handlers`, and under tensorgrid/step_channel.py), so
  garbage gets INVALID_ARGUMENT instead of gRPC's INTERNAL, and a handler's
  OpError goes back as its own status code, message and node name
  (trailing metadata NODE_KEY); `error_from_rpc` turns it back into the same
  OpError class on the caller's side. A call that failed on the way, with
  no answer from the server, is an UnavailableError marked `.in_transit`:
  the peer is gone, which is not the same as a peer reporting unavailability.
"""

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import hmac
import itertools
import logging
import os
import socket
import threading

import grpc
from google.protobuf import message as protobuf_message

from tensorgrid.framework import errors

TOKEN_KEY = "tg-token"
# Call metadata: the key a worker gave its master at registration (see the module docstring).
KEY_KEY = "tg-key"
NODE_KEY = "tg-node"
# Trailing metadata every error a tensorgrid server sends carries; its absence means the call failed in transit.
ORIGIN_KEY = "tg-error"
TOKEN_ENV = "TENSORGRID_TOKEN"
CLIENT_TOKEN_ENV = "TENSORGRID_CLIENT_TOKEN"
# The MasterService methods a client calls (tg.Session, Session.reset, tensorgrid status): all a client
# token reaches. Registration, heartbeats and every WorkerService method need the cluster token.
CLIENT_METHODS = frozenset({"CreateSession", "ExtendSession", "RunStep", "CloseSession", "ListDevices",
                            "ClusterStatus", "Reset"})
CLIENT_SERVICE = "tensorgrid.v1.MasterService"
WORKER_SERVICE = "tensorgrid.v1.WorkerService"
# What the cluster token alone reaches on a worker that has a master key: the status, and tensors from
# peers (the data plane's gRPC fallback). RegisterGraph, RunGraph, CleanupStep, DeregisterGraph and
# ResetResources need the key the worker gave its master.
PEER_METHODS = frozenset({"GetStatus", "SendTensor"})
CLUSTER, CLIENT, MASTER = "cluster", "client", "master"
# What a master says of a session handle an earlier master (before a restart) gave out; clients that
# still have the graph create the session again on it (client/remote.py).
MASTER_RESTARTED = "created by an earlier master, which restarted"
# ... and of a session it closed for being idle (--session-gc-seconds): its client creates it again too.
SESSION_EXPIRED = "closed by the master as idle"
# Control messages carry feeds and fetches; tensors between workers are chunked, so 1 GiB is ample.
MAX_MESSAGE_BYTES = 1 << 30
# The requests that carry graphs or tensors; every other method's request is small (a heartbeat, a
# registration, a cleanup), and a server refuses one over SMALL_REQUEST_BYTES unread where it reads the
# length first (the step channel).
LARGE_REQUESTS = frozenset({"CreateSession", "ExtendSession", "RunStep", "RegisterGraph", "RunGraph", "SendTensor"})
SMALL_REQUEST_BYTES = 1 << 20
# One chunk of a request or tensor streamed over gRPC (a large method's request, SendTensor's TensorChunks).
STREAM_CHUNK_BYTES = 4 << 20
# The most a gRPC server buffers for one message: a chunk and its header. grpcio refuses a longer message
# from its length prefix, before it is read; a request that needs more streams in chunks (ServiceClient).
GRPC_RECEIVE_BYTES = STREAM_CHUNK_BYTES + (1 << 20)
# The method a large method's chunked request goes to: RunStep's is RunStepChunks.
CHUNKS = "Chunks"
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Connection failures must surface at once (a killed worker), not after a reconnect backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
)
SERVER_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_RECEIVE_BYTES),
    ("grpc.so_reuseport", 0),
)

# Steps a server runs over gRPC at once with a thread each (RunGraph on a worker: its executor blocks in
# a step's _Recv or dequeue); each holds a thread of the server's pool while it runs, so more get
# RESOURCE_EXHAUSTED instead of waiting for one.
MAX_GRPC_STEPS = 1024
# Steps a master runs over gRPC at once: its RunStep holds no thread while the workers run (AsyncServer),
# so this bounds only the memory of the steps in flight.
MAX_ASYNC_STEPS = 16384
# Threads of a server's pool that steps never take: heartbeats, registration, cleanup and status
# calls always find one, however many steps are running.
CONTROL_THREADS = 64
# A burst of steps arrives faster than the event loop takes calls: gRPC would cancel those past its
# default 1000 calls not yet taken, where they are a bounded number of steps.
ASYNC_SERVER_OPTIONS = SERVER_OPTIONS + (("grpc.server.max_pending_requests", MAX_ASYNC_STEPS),
                                         ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_ASYNC_STEPS))

log = logging.getLogger("tensorgrid.rpc")
request_id = contextvars.ContextVar("tensorgrid_request_id", default="-")
# The worker key (KEY_KEY metadata) of the gRPC call being served, for the methods service_handlers was told
# read it (`keyed`); "" elsewhere, and over the step channel, which carries no metadata.
caller_key = contextvars.ContextVar("tensorgrid_caller_key", default="")
_request_ids = itertools.count(1)


def read_token(token_file=None, env=TOKEN_ENV):
    """The token in `token_file`, else in the environment variable `env`; None when neither sets one."""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise ValueError(f"cannot read token file {token_file}: {e.strerror}") from None
        if not token:
            raise ValueError(f"token file {token_file} is empty")
        return token
    return os.environ.get(env) or None


def check_credentials(token, client_token):
    """ValueError for a client token without a cluster token, or equal to it."""
    if client_token and not token:
        raise ValueError("a client token needs a cluster token too (--token-file or $TENSORGRID_TOKEN): "
                         "without one, the workers' RPCs would be open to anyone")
    if client_token and client_token == token:
        raise ValueError("the client token must differ from the cluster token")


def secret_bytes(secret):
    """A token or key as bytes (str is UTF-8), None when unset."""
    if secret is None or secret == "" or secret == b"":
        return None
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def same_secret(given, expected):
    """Whether `given` equals `expected` (str or bytes), compared in constant time; False when either is unset."""
    given, expected = secret_bytes(given), secret_bytes(expected)
    return given is not None and expected is not None and hmac.compare_digest(given, expected)


class Roles:
    """Which credential a caller presented: CLUSTER, CLIENT, MASTER or None (compared in constant time).

    MASTER is the cluster token plus `master_key`, the key a worker gave its
    master; without a cluster token (an open cluster) every caller is CLUSTER,
    and the key alone makes MASTER.
    """

    def __init__(self, token, client_token=None, master_key=None):
        self._token, self._client, self._key = (secret_bytes(t) for t in (token, client_token, master_key))
        self.token_required = self._token is not None
        self.keyed = self._key is not None
        # the secrets a step-channel HELLO may prove (an HMAC of one over the nonce), strongest first
        self._secrets = [(r, t) for r, t in ((MASTER, (self._token or b"") + self._key if self.keyed else None),
                                              (CLUSTER, self._token), (CLIENT, self._client)) if t]

    def of(self, token, key=None):
        """The role of a gRPC call that presented `token` and `key` (metadata values, or None)."""
        role = None if self.token_required else CLUSTER
        if same_secret(token, self._token):
            role = CLUSTER
        elif same_secret(token, self._client):
            role = CLIENT
        if role == CLUSTER and same_secret(key, self._key):
            return MASTER
        return role

    def of_mac(self, mac, nonce, mac_of):
        """The role whose secret gives HMAC `mac` over `nonce` (mac_of(secret bytes, nonce))."""
        role = None
        for r, secret in self._secrets:
            if hmac.compare_digest(mac, mac_of(secret, nonce)):
                role = role or r
        return role or (None if self.token_required else CLUSTER)

    def may_call(self, role, service, method):
        """Whether `role` reaches `method` (short name) of `service` (full name) on this server."""
        if role == MASTER:
            return True
        if role == CLUSTER:
            return not (self.keyed and service == WORKER_SERVICE and method not in PEER_METHODS)
        return role == CLIENT and client_may_call(service, method)

    def refusal(self, role, method):
        """(grpc.StatusCode, message) for a call of `role` to `method` (its full name) that may_call refused."""
        if role == CLIENT:
            return grpc.StatusCode.PERMISSION_DENIED, (
                f"{method}: a client token reaches only the master's client methods "
                f"({', '.join(sorted(CLIENT_METHODS))}); this one needs the cluster token")
        if role == CLUSTER:
            return grpc.StatusCode.PERMISSION_DENIED, (
                f"{method}: only this worker's master may call it (the call had the cluster token but not the "
                "key this worker gave its master when it registered)")
        return grpc.StatusCode.UNAUTHENTICATED, (
            f"{method}: this cluster requires its token (tg.ConfigProto(token=...) or {TOKEN_ENV}); "
            "the call had none or a wrong one")


def client_may_call(service, method):
    """Whether a client token reaches `method` (short name) of `service` (full name)."""
    return service == CLIENT_SERVICE and method in CLIENT_METHODS


def request_limit(method):
    """The most bytes one request of `method` (its short name) may have."""
    return MAX_MESSAGE_BYTES if method in LARGE_REQUESTS else SMALL_REQUEST_BYTES


def unchunked(method):
    """The method (short name) a gRPC method name stands for: RunStepChunks is RunStep."""
    base = method[:-len(CHUNKS)] if method.endswith(CHUNKS) else method
    return base if base in LARGE_REQUESTS else method


def call_metadata(token, key=None):
    """The metadata every call presents: the token and a worker's key, those that are set."""
    return tuple((k, v) for k, v in ((TOKEN_KEY, token), (KEY_KEY, key)) if v) or None


class TokenInterceptor(grpc.ServerInterceptor):
    """Lets a call through when its role (Roles.of its token and key) may call its method; refuses any other
    with UNAUTHENTICATED (no known token) or PERMISSION_DENIED (a known credential that does not reach it)."""

    def __init__(self, token, client_token=None, master_key=None):
        self._roles = Roles(token, client_token, master_key)

    def refusal(self, handler_call_details):
        """None when the call may reach its method, else its (status code, reason)."""
        token = key = None
        for k, value in handler_call_details.invocation_metadata or ():
            if k == TOKEN_KEY:
                token = value
            elif k == KEY_KEY:
                key = value
        role = self._roles.of(token, key)
        method = handler_call_details.method
        service, _, short = method.strip("/").rpartition("/")
        if self._roles.may_call(role, service, unchunked(short)):
            return None
        return self._roles.refusal(role, method)

    def intercept_service(self, continuation, handler_call_details):
        refused = self.refusal(handler_call_details)
        handler = continuation(handler_call_details)
        if refused is None or handler is None:
            return handler
        method, (code, why) = handler_call_details.method, refused

        def deny(request, context):
            log.warning("rejected %s: %s", method, why)
            context.abort(code, why)

        # refused before its request is read: an unauthenticated caller commits no memory here
        return grpc.stream_unary_rpc_method_handler(deny)


class AsyncTokenInterceptor(grpc.aio.ServerInterceptor):
    """TokenInterceptor's checks for an AsyncServer."""

    def __init__(self, token, client_token=None):
        self._gate = TokenInterceptor(token, client_token)

    async def intercept_service(self, continuation, handler_call_details):
        refused = self._gate.refusal(handler_call_details)
        handler = await continuation(handler_call_details)
        if refused is None or handler is None:
            return handler
        method, (code, why) = handler_call_details.method, refused

        async def deny(request_iterator, context):
            log.warning("rejected %s: %s", method, why)
            await context.abort(code, why)

        return grpc.stream_unary_rpc_method_handler(deny)


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Paths of a PEM certificate, its key, and the authority that signs peers (any may be None)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @classmethod
    def from_env(cls):
        return cls(os.environ.get("TENSORGRID_TLS_CERT"), os.environ.get("TENSORGRID_TLS_KEY"),
                   os.environ.get("TENSORGRID_TLS_CA"))

    @property
    def enabled(self):
        return bool(self.ca or (self.cert and self.key))

    def _read(self, path, what):
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"cannot read TLS {what} {path}: {e.strerror}") from None

    def server_credentials(self):
        if not (self.cert and self.key):
            raise ValueError("TLS on a server needs both --tls-cert and --tls-key")
        ca = self._read(self.ca, "CA")
        return grpc.ssl_server_credentials([(self._read(self.key, "key"), self._read(self.cert, "certificate"))],
                                           root_certificates=ca, require_client_auth=ca is not None)

    def channel_credentials(self):
        return grpc.ssl_channel_credentials(root_certificates=self._read(self.ca, "CA"),
                                            private_key=self._read(self.key, "key"),
                                            certificate_chain=self._read(self.cert, "certificate"))


def open_channel(address, tls=None):
    """A channel to host:port, with TLS when `tls` is enabled, and tensorgrid's limits."""
    if tls is not None and tls.enabled:
        return grpc.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def rpc_pool(name):
    """The thread pool of a master's or worker's gRPC server: room for MAX_GRPC_STEPS steps plus
    CONTROL_THREADS (threads start only when no idle one is free); the methods that run steps are bounded
    by `service_handlers(..., steps=...)`."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=MAX_GRPC_STEPS + CONTROL_THREADS,
                                                 thread_name_prefix=name)


def new_server(executor, token=None, client_token=None, master_key=None):
    """A gRPC server on `executor` that checks `token` (and `client_token` and a worker's `master_key`, see
    TokenInterceptor) on every call when one is given."""
    interceptors = (TokenInterceptor(token, client_token, master_key),) if token or master_key else ()
    return grpc.server(executor, interceptors=interceptors, options=SERVER_OPTIONS)


def new_async_server(executor, token=None, client_token=None, name="tg-aio"):
    """new_server's AsyncServer: its asynchronous methods run on its event loop, the others on `executor`."""
    interceptors = (AsyncTokenInterceptor(token, client_token),) if token else ()
    return AsyncServer(executor, interceptors, name)


class AsyncServer:
    """A grpc.aio server on an event loop of its own thread, driven like a grpc.server from any thread.

    Handlers that are coroutines (service_handlers' `awaited` methods) run on
    the loop and hold no thread while they wait; the others run on the
    executor, as under grpc.server.
    """

    def __init__(self, executor, interceptors, name):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name=name, daemon=True).start()
        self._stopped = threading.Event()
        self._stopping = False
        self._server = self._run(_made(grpc.aio.server, migration_thread_pool=executor,
                                       interceptors=interceptors, options=ASYNC_SERVER_OPTIONS))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def add_generic_rpc_handlers(self, handlers):
        self._run(_made(self._server.add_generic_rpc_handlers, handlers))

    def add_insecure_port(self, address):
        return self._run(_made(self._server.add_insecure_port, address))

    def add_secure_port(self, address, credentials):
        return self._run(_made(self._server.add_secure_port, address, credentials))

    def start(self):
        self._run(self._server.start())

    def stop(self, grace):
        """Stops serving (calls in flight get `grace` seconds) and then the loop; returns an Event set then."""
        if not self._stopping:
            self._stopping = True
            asyncio.run_coroutine_threadsafe(self._stop(grace), self.loop)
        return self._stopped

    async def _stop(self, grace):
        try:
            await self._server.stop(grace)
        finally:
            self._stopped.set()
            self.loop.call_soon(self.loop.stop)

    def wait_for_termination(self, timeout=None):
        """Waits until stopped; True when `timeout` passed first (as grpc.Server's)."""
        return not self._stopped.wait(timeout)


async def _made(fn, *args, **kwargs):
    """fn(*args, **kwargs), called on the running loop (grpc.aio objects are made and changed there)."""
    return fn(*args, **kwargs)


def bind(server, address, tls=None):
    """Binds host:port (port 0 picks a free one) and returns the bound port."""
    _check_free(address)
    try:
        if tls is not None and tls.enabled:
            port = server.add_secure_port(address, tls.server_credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"cannot listen on {address}: {e}") from None
    if not port:
        raise OSError(f"cannot listen on {address} (in use, or not an address of this host)")
    return port


def _check_free(address):
    """OSError with a plain reason when host:port cannot be bound (gRPC would also log a C++ error line)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
    except OSError as e:
        raise OSError(f"cannot listen on {address}: {e.strerror or e}") from None


# ---------------------------------------------------------------- errors across processes

def abort_with(context, err):
    """Ends the call with `err`'s status code, message and node name."""
    node = getattr(err, "node_name", None) or (err.op if isinstance(err.op, str) else None)
    context.set_trailing_metadata(((ORIGIN_KEY, "1"), (NODE_KEY, node)) if node else ((ORIGIN_KEY, "1"),))
    context.abort(err.grpc_code, err.message or type(err).__name__)


def in_transit(message):
    """The UnavailableError of a call that failed on the way (no answer from the server)."""
    err = errors.UnavailableError(None, None, message)
    err.in_transit = True
    return err


def error_from_rpc(exc, unavailable_prefix=""):
    """The OpError a failed call stands for: same class, same message, node name kept in `.op`.

    A call that failed in transit (the server sent no error of its own) has
    `.in_transit` set, and unavailable_prefix before its message.
    """
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    node, from_server = None, False
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == NODE_KEY:
            node = value
        elif key == ORIGIN_KEY:
            from_server = True
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details.lower():
        details = (f"{details} (tensorgrid's gRPC servers take messages of at most {GRPC_RECEIVE_BYTES} bytes; "
                   f"requests that carry graphs or tensors stream in chunks, up to {MAX_MESSAGE_BYTES} bytes)")
    if code == grpc.StatusCode.UNAVAILABLE and not from_server:
        return in_transit(f"{unavailable_prefix}: {details}" if unavailable_prefix else details)
    cls = errors.error_class_for_code(code)
    err = cls(None, node, details)
    if node:
        err.node_name = node
    return err


# ---------------------------------------------------------------- servicers

def parse_graph_def(graph_def):
    """The GraphIR of a GraphDef from another process; INVALID_ARGUMENT for anything that does not decode."""
    from tensorgrid.proto import convert
    try:
        return convert.graph_def_to_ir(graph_def)
    except errors.OpError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise errors.InvalidArgumentError(None, None, f"malformed GraphDef: {type(e).__name__}: {e}") from None


def service_handlers(pb2_module, service_name, impl, steps=(), keyed=(), awaited=None):
    """A generic handler serving `service_name` of `pb2_module` with impl.<Method>(request) -> response.

    Requests are parsed here: undecodable bytes get INVALID_ARGUMENT, and a
    request over its method's `request_limit` RESOURCE_EXHAUSTED. The methods
    in LARGE_REQUESTS also take their request as a stream of chunks at
    `<Method>Chunks` (ServiceClient sends one there when it is over
    STREAM_CHUNK_BYTES), read as it arrives up to that limit. A method
    raising an OpError ends the call with that error's status; any other
    exception is logged and ends it with INTERNAL. Every call runs under a
    fresh request id, which the logs print. The methods named in `steps`
    share MAX_GRPC_STEPS calls in flight; one more is RESOURCE_EXHAUSTED, so
    steps never take the threads the other methods need. The methods named
    in `keyed` run with `caller_key` set to the call's worker key. `awaited`
    maps methods to coroutine functions that serve them instead (on an
    AsyncServer's loop, holding no thread), MAX_ASYNC_STEPS calls at once.
    """
    service = pb2_module.DESCRIPTOR.services_by_name[service_name]
    handlers = {}
    slots = threading.BoundedSemaphore(MAX_GRPC_STEPS)
    awaited = awaited or {}
    for method in service.methods:
        request_cls = message_class(method.input_type)
        response_cls = message_class(method.output_type)
        if method.name in awaited:
            handlers.update(_awaited_handlers(awaited[method.name], request_cls, response_cls, method))
            continue
        fn = getattr(impl, method.name)
        if method.name in steps:
            fn = _bounded(fn, slots, f"{service.full_name}.{method.name}")
        if method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                _stream_handler(fn, request_cls, method.full_name),
                response_serializer=response_cls.SerializeToString)
            continue
        handle = _unary_handler(fn, request_cls, method.full_name, request_limit(method.name),
                                method.name in keyed)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            handle, response_serializer=response_cls.SerializeToString)
        if method.name in LARGE_REQUESTS:
            handlers[method.name + CHUNKS] = grpc.stream_unary_rpc_method_handler(
                _chunks_handler(handle, method.full_name, request_limit(method.name)),
                response_serializer=response_cls.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _bounded(fn, slots, name):
    def call(request):
        if not slots.acquire(blocking=False):
            raise errors.ResourceExhaustedError(
                None, None, f"{name}: {MAX_GRPC_STEPS} steps are already running on this server over gRPC; "
                "try again when some have finished")
        try:
            return fn(request)
        finally:
            slots.release()
    return call


def _awaited_handlers(fn, request_cls, response_cls, method):
    """The handlers of an `awaited` method, and of its chunked form when it has one."""
    limit, name = request_limit(method.name), method.full_name
    slots = [MAX_ASYNC_STEPS]   # free ones; only the loop's thread counts them

    async def handle(data, context):
        if len(data) > limit:
            failure = _too_large(name, len(data), limit)
        elif not slots[0]:
            failure = errors.ResourceExhaustedError(
                None, None, f"{name}: {MAX_ASYNC_STEPS} steps are already running on this server over gRPC; "
                "try again when some have finished")
        else:
            slots[0] -= 1
            token = request_id.set(f"r{next(_request_ids)}")
            try:
                return await fn(_parse(request_cls, name, data))
            except errors.OpError as e:
                failure = _refused(name, e)
            except Exception as e:  # noqa: BLE001 - a bug must not take the server down
                failure = _internal(name, e)
            finally:
                request_id.reset(token)
                slots[0] += 1
        await _abort_async(context, failure)

    async def join(request_iterator, context):
        data = bytearray()
        try:
            async for chunk in request_iterator:
                if len(data) + len(chunk) > limit:
                    await _abort_async(context, _too_large(name, len(data) + len(chunk), limit))
                data += chunk
        except grpc.RpcError:
            await _abort_async(context, errors.CancelledError(None, None, f"{name}: the sender went away"))
        return await handle(bytes(data), context)

    handlers = {method.name: grpc.unary_unary_rpc_method_handler(
        handle, response_serializer=response_cls.SerializeToString)}
    if method.name in LARGE_REQUESTS:
        handlers[method.name + CHUNKS] = grpc.stream_unary_rpc_method_handler(
            join, response_serializer=response_cls.SerializeToString)
    return handlers


async def _abort_async(context, err):
    """abort_with on a grpc.aio call."""
    node = getattr(err, "node_name", None) or (err.op if isinstance(err.op, str) else None)
    context.set_trailing_metadata(((ORIGIN_KEY, "1"), (NODE_KEY, node)) if node else ((ORIGIN_KEY, "1"),))
    await context.abort(err.grpc_code, err.message or type(err).__name__)


def message_class(descriptor):
    """The generated message class of a message descriptor."""
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(descriptor)


def invoke(fn, request_cls, name, data):
    """Parses `data` as a request_cls and returns fn(request); raises an OpError for every failure.

    Undecodable bytes are INVALID_ARGUMENT; an exception that is not an
    OpError is a bug: logged, and INTERNAL. Runs under a fresh request id.
    """
    token = request_id.set(f"r{next(_request_ids)}")
    try:
        request = _parse(request_cls, name, data)
        try:
            return fn(request)
        except errors.OpError as e:
            raise _refused(name, e)
        except Exception as e:  # noqa: BLE001 - a bug must not take the server down
            raise _internal(name, e) from None
    finally:
        request_id.reset(token)


def _parse(request_cls, name, data):
    try:
        return request_cls.FromString(data)
    except protobuf_message.DecodeError as e:
        raise errors.InvalidArgumentError(None, None, f"{name}: malformed {request_cls.__name__}: {e}") from None


def _refused(name, err):
    """`err`, a handler's OpError, logged."""
    if log.isEnabledFor(logging.INFO):
        log.info("[%s] %s -> %s: %s", request_id.get(), name, err.grpc_code.name, err.message)
    return err


def _internal(name, exc):
    """The InternalError a handler's bug ends its call with, logged with its traceback."""
    log.error("%s failed", name, exc_info=exc)
    return errors.InternalError(None, None, f"{name}: {type(exc).__name__}: {exc}")


def _too_large(name, size, limit):
    return errors.ResourceExhaustedError(
        None, None, f"{name}: a request of {size} bytes or more, over the {limit} this method takes")


def _unary_handler(fn, request_cls, name, limit, keyed=False):
    def handle(data, context):
        if len(data) > limit:
            abort_with(context, _too_large(name, len(data), limit))
        reset = None
        if keyed:
            reset = caller_key.set(next((v for k, v in context.invocation_metadata() or () if k == KEY_KEY), ""))
        try:
            return invoke(fn, request_cls, name, data)
        except errors.OpError as e:
            failure = e
        finally:
            if reset is not None:
                caller_key.reset(reset)
        abort_with(context, failure)
    return handle


def _chunks_handler(handle, name, limit):
    """A stream handler that joins a request's chunks, read as they arrive up to `limit` bytes, and
    answers it with `handle` (a unary handler's)."""
    def join(iterator, context):
        data = bytearray()
        try:
            for chunk in iterator:
                if len(data) + len(chunk) > limit:
                    abort_with(context, _too_large(name, len(data) + len(chunk), limit))
                data += chunk
        except grpc.RpcError:
            abort_with(context, errors.CancelledError(None, None, f"{name}: the sender went away"))
        return handle(bytes(data), context)
    return join


class ServiceClient:
    """Calls the unary methods of `service_name` (of `pb2_module`) on `channel`, as `stub(method, request)`
    and `stub.future(method, request)` with grpc's keyword arguments; the response comes parsed.

    A request of a LARGE_REQUESTS method over STREAM_CHUNK_BYTES goes to `<Method>Chunks` as a stream of
    chunks, since no server takes one message that large (GRPC_RECEIVE_BYTES).
    """

    def __init__(self, channel, pb2_module, service_name):
        service = pb2_module.DESCRIPTOR.services_by_name[service_name]
        self._calls = {}
        for m in service.methods:
            if m.client_streaming:
                continue
            parse = message_class(m.output_type).FromString
            path = f"/{service.full_name}/{m.name}"
            chunked = channel.stream_unary(path + CHUNKS, response_deserializer=parse) \
                if m.name in LARGE_REQUESTS else None
            self._calls[m.name] = (channel.unary_unary(path, response_deserializer=parse), chunked)

    def _call(self, method, request):
        unary, chunked = self._calls[method]
        data = request.SerializeToString()
        if chunked is None or len(data) <= STREAM_CHUNK_BYTES:
            return unary, data
        view = memoryview(data)
        return chunked, (bytes(view[i:i + STREAM_CHUNK_BYTES]) for i in range(0, len(view), STREAM_CHUNK_BYTES))

    def __call__(self, method, request, **kwargs):
        call, arg = self._call(method, request)
        return call(arg, **kwargs)

    def future(self, method, request, **kwargs):
        call, arg = self._call(method, request)
        return call.future(arg, **kwargs)


def _stream_handler(fn, request_cls, name):
    parse = request_cls.FromString

    def messages(iterator):
        for data in iterator:
            try:
                yield parse(data)
            except protobuf_message.DecodeError as e:
                raise errors.InvalidArgumentError(
                    None, None, f"{name}: malformed {request_cls.__name__}: {e}") from None

    def handle(iterator, context):
        token = request_id.set(f"r{next(_request_ids)}")
        try:
            try:
                return fn(messages(iterator))
            except errors.OpError as e:
                failure = e
            except grpc.RpcError as e:
                failure = errors.CancelledError(None, None, f"{name}: the sender went away: {e}")
            except Exception as e:  # noqa: BLE001
                log.exception("%s failed", name)
                failure = errors.InternalError(None, None, f"{name}: {type(e).__name__}: {e}")
            abort_with(context, failure)
        finally:
            request_id.reset(token)
    return handle
