"""Collectives between processes: ring all-reduce, all-gather and broadcast over the data plane.

A `Communicator` is one process's member of a collective group: its rank,
the data addresses of every member (rank order) and a data plane of its own
(worker/transport.py), so same-host members exchange chunks through shared
memory and others over TCP. The collective ops' kernels
(tensorgrid/ops/collective_ops.py) call it.

- all-reduce picks its algorithm by size, as MPI libraries and NCCL do. A
  large tensor goes round a ring: the flattened tensor is cut in group_size
  chunks; n-1 rounds of reduce-scatter (each member sends one chunk to the
  next rank and merges the chunk it gets from the previous one) leave every
  member with one fully reduced chunk, and n-1 rounds of all-gather pass
  the reduced chunks round. Each member sends and receives 2(n-1)/n of the
  tensor, whatever n is, but the rounds are 2(n-1) waits one after the
  other. A small tensor (at most SMALL_BYTES, the gradients of a step
  packed in one buffer by the strategy) is sent whole to every other member
  in one round and each member merges the n tensors itself, in rank order,
  so every member gets the same bits: (n-1) times the bytes of the ring,
  but one wait instead of 2(n-1), and each wait for a peer that is not
  scheduled costs a time slice on a busy host.
- all-gather concatenates every member's tensor on axis 0 in rank order
  (the same ring, pieces of any size); broadcast sends the source's tensor
  to every other member directly.

Executions meet by (group key, instance key, execution count): the k-th
time each member runs an instance is one collective, as every member runs
the same program (a traced function's collectives keep their instance keys
from call to call). A message's key is `c/<group>/<instance>/<count>/<round>`.

Failure: a member that waits checks, every POLL_S, that the member it waits
for is still reachable (a process that died closed its sockets, so
reconnecting is refused), and the step's cancellation and deadline; a member
gone for GRACE_S (what it sent before it went has had time to arrive) fails
the collective, and a member whose collective fails for any reason tells
every other member, which fail at once with the same error. So a dead member
fails the collective everywhere within about GRACE_S, never a hang. (A host that vanishes from
the network without closing its connections is found by the timeout, as
anywhere else.)
"""

import logging
import threading
import time

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.worker import transport

log = logging.getLogger("tensorgrid.collectives")

POLL_S = 0.1
# How long a member waits for the tensors of a member that has gone (a member that finished its last
# collective and exited may leave its last chunk in flight).
GRACE_S = 1.0
# All-reduces of at most this many bytes exchange whole tensors in one round (`_exchange_reduce`),
# larger ones go round the ring (`_ring_reduce`).
SMALL_BYTES = 256 * 1024
MERGE_OPS = {"Add": np.add, "Mul": np.multiply, "Min": np.minimum, "Max": np.maximum}
FINAL_OPS = ("Id", "Div")
_ABORT = "abort/"
_RING_TAGS, _EXCHANGE_TAGS = "rg", "x"   # first letters of the tags of the all-reduce algorithms' messages


class _Inbox:
    """Messages that arrived from other members, by key, and the executions another member aborted."""

    def __init__(self):
        self._cond = threading.Condition()
        self._values = {}
        self._aborted = {}  # execution prefix -> message

    def put(self, key, value):
        with self._cond:
            if key.startswith(_ABORT):
                self._aborted[key[len(_ABORT):]] = bytes(value).decode("utf-8", "replace")
            else:
                self._values[key] = value
            self._cond.notify_all()

    def take(self, key, prefix, timeout):
        """The value under `key` (None after `timeout`); raises UnavailableError when `prefix` was aborted."""
        with self._cond:
            if key not in self._values and prefix not in self._aborted:
                self._cond.wait(timeout)
            why = self._aborted.get(prefix)
            if why is not None:
                raise errors.UnavailableError(None, None, why)
            return self._values.pop(key, None)

    def tags(self, prefix):
        """The tags of the messages of execution `prefix` that are here, not yet taken."""
        with self._cond:
            return [k[len(prefix):] for k in self._values if k.startswith(prefix)]

    def forget(self, prefix):
        """Drops what is left of one execution (it failed here)."""
        with self._cond:
            for k in [k for k in self._values if k.startswith(prefix)]:
                del self._values[k]
            self._aborted.pop(prefix, None)


class Communicator:
    """This process's member of the collective group whose members' data addresses are `members`.

    `members[rank]` is this process's own address, where its data plane
    listens (a TF_CONFIG address: host:port). `timeout` (seconds, None for
    none) bounds each collective, as CommunicationOptions.timeout_seconds.
    """

    def __init__(self, members, rank, token=None, timeout=None, mode="auto"):
        if not 0 <= rank < len(members):
            raise errors.InvalidArgumentError(None, None, f"rank {rank} is not one of the {len(members)} members")
        self.members = list(members)
        self.rank = rank
        self.timeout = timeout
        self._inbox = _Inbox()
        host, port = transport._split_address(self.members[rank])
        self.plane = transport.DataPlane(host=host, port=port, token=token, deliver=self._deliver, mode=mode)
        self._counts = {}
        self._lock = threading.Lock()
        self.closed = False

    @property
    def size(self):
        return len(self.members)

    def start(self):
        self.plane.start()
        return self

    def close(self):
        self.closed = True
        self.plane.close()

    def _deliver(self, step_id, key, array):
        self._inbox.put(key, array)

    def wait_for_peers(self, timeout=None, what="collective group"):
        """Connects to every other member, waiting for those not up yet with a log line every 10 s."""
        started = time.monotonic()
        next_log = started + 10.0
        for r, address in enumerate(self.members):
            if r == self.rank:
                continue
            while True:
                try:
                    self.plane.connect(address)
                    break
                except errors.UnavailableError as e:
                    now = time.monotonic()
                    if timeout is not None and now - started > timeout:
                        raise errors.DeadlineExceededError(
                            None, None, f"{what}: member {r} at {address} did not come up in {timeout:g} s: "
                            f"{e.message}") from None
                    if now >= next_log:
                        log.warning("%s: waiting for member %d at %s (%s), %.0f s so far", what, r, address,
                                    e.message, now - started)
                        next_log = now + 10.0
                    time.sleep(0.05)

    # ---- one execution ---------------------------------------------------------------------------
    def _begin(self, kind, group_key, instance_key, group_size):
        if self.closed:
            raise errors.CancelledError(None, None, "the collective group was closed")
        if group_size != self.size:
            raise errors.InvalidArgumentError(
                None, None, f"{kind}: group_size {group_size} for group {group_key}, but this process's collective "
                f"group has {self.size} members ({', '.join(self.members)})")
        with self._lock:
            n = self._counts.get((group_key, instance_key), 0)
            self._counts[(group_key, instance_key)] = n + 1
        return _Execution(self, kind, f"c/{group_key}/{instance_key}/{n}/", step=None)

    def all_reduce(self, value, group_size, group_key, instance_key, merge_op="Add", final_op="Id", step=None,
                   timeout=None, ring=False):
        """The merge of every member's `value` (same shape and dtype everywhere), then final_op.

        `ring` makes every size go round the ring (communication_hint "ring"; every member must pass
        the same)."""
        if merge_op not in MERGE_OPS:
            raise errors.InvalidArgumentError(None, None, f"merge_op {merge_op!r} is not one of {sorted(MERGE_OPS)}")
        if final_op not in FINAL_OPS:
            raise errors.InvalidArgumentError(None, None, f"final_op {final_op!r} is not one of {list(FINAL_OPS)}")
        value = np.asarray(value)
        ex = self._begin("all_reduce", group_key, instance_key, group_size)
        ex.start(step, timeout)
        # members reduce tensors of one shape and dtype, so they pick the same algorithm; one that gets
        # a message of the other algorithm fails (a member with another shape), see _Execution._check
        algorithm = _ring_reduce if ring or value.nbytes > SMALL_BYTES else _exchange_reduce
        ex.tags = _RING_TAGS if algorithm is _ring_reduce else _EXCHANGE_TAGS
        out = ex.run(lambda: algorithm(ex, value, MERGE_OPS[merge_op]))
        if final_op == "Div":
            out = _divide(out, group_size)
        return out

    def all_gather(self, value, group_size, group_key, instance_key, step=None, timeout=None):
        """Every member's `value` concatenated on axis 0, in rank order."""
        value = np.asarray(value)
        if value.ndim == 0:
            raise errors.InvalidArgumentError(None, None, "all_gather: the input must have at least one dimension")
        ex = self._begin("all_gather", group_key, instance_key, group_size)
        ex.start(step, timeout)
        return ex.run(lambda: _ring_gather(ex, value))

    def broadcast_send(self, value, group_size, group_key, instance_key, step=None, timeout=None):
        """Sends `value` to every other member (their broadcast_recv); returns it."""
        value = np.asarray(value, order="C")   # (ascontiguousarray would make a scalar 1-d)
        ex = self._begin("broadcast", group_key, instance_key, group_size)
        ex.start(step, timeout)

        def send_all():
            for r in range(self.size):
                if r != self.rank:
                    ex.send(r, "b", value)
            return value
        return ex.run(send_all)

    def broadcast_recv(self, shape, dtype, group_size, group_key, instance_key, step=None, timeout=None):
        """The value some member broadcast_send-s in this collective."""
        ex = self._begin("broadcast", group_key, instance_key, group_size)
        ex.start(step, timeout)
        dtype = np.dtype(dtype)
        shape = tuple(int(d) for d in shape)

        def recv():
            got = ex.recv_any("b")
            if got.shape != shape or got.dtype != dtype:
                raise errors.InvalidArgumentError(
                    None, None, f"broadcast_recv expected {dtype.name}{list(shape)}, the source sent "
                    f"{got.dtype.name}{list(got.shape)}")
            return np.array(got)
        return ex.run(recv)


class _Execution:
    """One execution of one collective on this member: its messages, deadline and failure handling."""

    def __init__(self, comm, kind, prefix, step):
        self.comm = comm
        self.kind = kind
        self.prefix = prefix
        self.step = step
        self.deadline = None
        self.gone_since = None   # when the member waited for was first found unreachable
        self.tags = None         # an all-reduce's: the first letters of the tags its algorithm sends

    def start(self, step, timeout):
        self.step = step
        limits = [t for t in (timeout, self.comm.timeout) if t]
        if limits:
            self.deadline = time.monotonic() + min(limits)
        if step is not None and getattr(step, "deadline", None) is not None:
            self.deadline = step.deadline if self.deadline is None else min(self.deadline, step.deadline)

    def run(self, body):
        try:
            return body()
        except errors.OpError as e:
            self._abort_others(e)
            self.comm._inbox.forget(self.prefix)
            raise

    def _where(self):
        c = self.comm
        return f"{self.kind} {self.prefix[2:-1]} on member {c.rank} of {c.size} ({c.members[c.rank]})"

    def send(self, to_rank, tag, array):
        address = self.comm.members[to_rank]
        try:
            self.comm.plane.send(address, 0, self.prefix + tag, array)
        except errors.OpError as e:
            raise errors.UnavailableError(
                None, None, f"{self._where()}: member {to_rank} at {address} is unavailable: {e.message}") from None

    def recv(self, from_rank, tag):
        return self._wait(self.prefix + tag, from_rank)

    def recv_any(self, tag):
        return self._wait(self.prefix + tag, None)

    def _wait(self, key, from_rank):
        comm = self.comm
        while True:
            value = comm._inbox.take(key, self.prefix, POLL_S)
            if value is not None:
                return value
            self._check(from_rank)

    def _check(self, from_rank):
        step = self.step
        if step is not None and step.cancelled.is_set():
            raise errors.CancelledError(None, None, f"{self._where()}: the step was cancelled")
        if self.comm.closed:
            raise errors.CancelledError(None, None, f"{self._where()}: the collective group was closed")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise errors.DeadlineExceededError(None, None, f"{self._where()}: timed out waiting for the other members")
        if self.tags is not None:
            stray = [t for t in self.comm._inbox.tags(self.prefix) if t[:1] not in self.tags]
            if stray:
                raise errors.InvalidArgumentError(
                    None, None, f"{self._where()}: members reduce different tensors (another member's is on the other "
                    f"side of {SMALL_BYTES} bytes from this one's, so it picked the other algorithm)")
        peers = [from_rank] if from_rank is not None else [r for r in range(self.comm.size) if r != self.comm.rank]
        for r in peers:
            address = self.comm.members[r]
            try:
                self.comm.plane.connect(address)
            except errors.OpError as e:
                # what it sent before it went may still be on its way in: wait a little for it
                now = time.monotonic()
                if self.gone_since is None:
                    self.gone_since = now
                if now - self.gone_since >= GRACE_S:
                    raise errors.UnavailableError(
                        None, None, f"{self._where()}: member {r} at {address} is unavailable: {e.message}") from None

    def _abort_others(self, error):
        """Tells every other member this execution failed here (best effort: some may be gone)."""
        comm = self.comm
        message = f"{error.message}" if error.message.startswith(self.kind) else f"{self._where()}: {error.message}"
        payload = np.frombuffer(message.encode("utf-8"), dtype=np.uint8)
        for r, address in enumerate(comm.members):
            if r == comm.rank:
                continue
            try:
                comm.plane.send(address, 0, _ABORT + self.prefix, payload)
            except errors.OpError:
                pass
        log.info("%s", message)


def _chunks(n, parts):
    """[lo, hi) bounds of `parts` near-equal pieces of n elements."""
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def _ring_reduce(ex, value, merge):
    comm = ex.comm
    size, rank = comm.size, comm.rank
    flat = np.array(value, copy=True).reshape(-1)
    if size == 1:
        return flat.reshape(value.shape)
    bounds = _chunks(flat.size, size)
    nxt, prev = (rank + 1) % size, (rank - 1) % size
    for s in range(size - 1):
        lo, hi = bounds[(rank - s) % size]
        ex.send(nxt, f"r{s}", flat[lo:hi])
        got = ex.recv(prev, f"r{s}")
        lo, hi = bounds[(rank - s - 1) % size]
        _check_piece(ex, got, flat.dtype, hi - lo)
        merge(flat[lo:hi], got, out=flat[lo:hi])
        del got
    for s in range(size - 1):
        lo, hi = bounds[(rank + 1 - s) % size]
        ex.send(nxt, f"g{s}", flat[lo:hi])
        got = ex.recv(prev, f"g{s}")
        lo, hi = bounds[(rank - s) % size]
        _check_piece(ex, got, flat.dtype, hi - lo)
        flat[lo:hi] = got
        del got
    return flat.reshape(value.shape)


def _exchange_reduce(ex, value, merge):
    """All-reduce in one round: `value` to every other member, then the n values merged in rank order."""
    comm = ex.comm
    size, rank = comm.size, comm.rank
    flat = np.ascontiguousarray(value).reshape(-1)
    if size == 1:
        return np.array(flat).reshape(value.shape)
    for s in range(1, size):   # rank+1 first: each member's first message goes to a different member
        ex.send((rank + s) % size, f"x{rank}", flat)   # tagged by sender: a member gets n-1 of them
    parts = [None] * size
    parts[rank] = flat
    for s in range(1, size):
        r = (rank - s) % size
        parts[r] = ex.recv(r, f"x{r}")
        _check_piece(ex, parts[r], flat.dtype, flat.size)
    out = np.array(parts[0])
    for r in range(1, size):
        merge(out, parts[r], out=out)
    return out.reshape(value.shape)


def _ring_gather(ex, value):
    comm = ex.comm
    size, rank = comm.size, comm.rank
    pieces = [None] * size
    pieces[rank] = np.ascontiguousarray(value)
    nxt, prev = (rank + 1) % size, (rank - 1) % size
    for s in range(size - 1):
        ex.send(nxt, f"a{s}", pieces[(rank - s) % size])
        got = ex.recv(prev, f"a{s}")
        if got.dtype != value.dtype or got.shape[1:] != value.shape[1:]:
            raise errors.InvalidArgumentError(
                None, None, f"{ex._where()}: members gather different tensors: {value.dtype.name}"
                f"[?,{','.join(map(str, value.shape[1:]))}] here, {got.dtype.name}{list(got.shape)} from another")
        pieces[(rank - s - 1) % size] = np.array(got)
        del got
    return np.concatenate(pieces, axis=0)


def _check_piece(ex, got, dtype, n):
    if got.dtype != dtype or got.size != n:
        raise errors.InvalidArgumentError(
            None, None, f"{ex._where()}: members reduce different tensors ({dtype.name} chunk of {n} elements "
            f"here, {got.dtype.name} of {got.size} from the previous member)")


def _divide(x, n):
    if np.issubdtype(x.dtype, np.integer):
        return (x // n).astype(x.dtype)
    return (x / n).astype(x.dtype)


# ---- the process's group ---------------------------------------------------------------------------------

_current = None
_current_lock = threading.Lock()


def current():
    """This process's Communicator, or None when no strategy (or test) set one up."""
    return _current


def set_current(comm):
    """Makes `comm` this process's group (closing the one before, if another)."""
    global _current
    with _current_lock:
        old, _current = _current, comm
    if old is not None and old is not comm:
        old.close()
