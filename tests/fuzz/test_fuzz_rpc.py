"""Fuzzing the cluster's wire surfaces: the master's and workers' gRPC services, the step channel, the data plane.

Each case sends one malformed or random request, built from a seeded
generator (the seed is in the failure message, so a failure replays):
random bytes, valid requests with bytes flipped or cut, and messages whose
fields are filled with random and extreme values (walking the protobuf
descriptors). Every answer must be an error of the client's making
(INVALID_ARGUMENT, NOT_FOUND, ...) or a success, never INTERNAL or
UNKNOWN; none may take longer than CALL_TIMEOUT_S (a hang); the servers
must stay up, still run a real step afterwards, and their RSS must stay
within RSS_SLACK of what it was before.

The default run sends DEFAULT_CASES cases; the `slow` one SLOW_CASES.
"""

import os
import random
import socket
import struct
import time

import grpc
import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import security, step_channel
from tensorgrid.proto import master_pb2, types_pb2, worker_pb2
from tensorgrid.runtime.cluster import LocalCluster
from tensorgrid.worker import wire

tf = tg.compat.v1
TOKEN = "fuzz-token"
# The worker's key (TENSORGRID_WORKER_KEY), so the fuzzer reaches the worker's control methods as its master.
WORKER_KEY = "fuzz-worker-key"
DEFAULT_CASES = 300
SLOW_CASES = 10_000
CALL_TIMEOUT_S = 20.0
RSS_SLACK = 256 << 20
# Methods left out: Reset would clear the variables the final check reads; the rest is fair game.
SKIP = {"Reset", "ResetResources"}
# Status codes a bad request may get; INTERNAL and UNKNOWN are bugs, DEADLINE_EXCEEDED a hang.
FAIR = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE}

_INTS = [0, 1, -1, 2, 7, 255, 1 << 31, -(1 << 31), (1 << 31) - 1, 1 << 62, -(1 << 63), (1 << 63) - 1]
_UINTS = [0, 1, 2, 255, 1 << 32, (1 << 64) - 1, 1 << 40]
_STRINGS = ["", "a", "x:0", "x:1", "mm:7", "^a", ":", "/job:worker/task:0", "/job:worker/task:99",
            "/job:worker/replica:0/task:0/device:CPU:0", "/job:nope/device:GPU:9", "s1-00000000",
            "\u00e9\u4e2d", "a" * 300, "../../etc/passwd", "\x00", "_Recv", "Placeholder", "Const", "MatMul"]
_OPS = ["NoOp", "Const", "Placeholder", "Identity", "Add", "MatMul", "VariableV2", "VarHandleOp", "FIFOQueueV2",
        "QueueDequeueV2", "PrintV2", "While", "_Recv", "_Send", "NoSuchOp", "Fill", "Reshape", "ConcatV2"]


def _repeated(fd):
    return fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED


def _rss(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


class Generator:
    """Random requests for one seeded case."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def value(self, field, depth):
        rng, fd = self.rng, field
        if fd.type == fd.TYPE_MESSAGE:
            return self.message(fd.message_type, depth + 1)
        if fd.type == fd.TYPE_BOOL:
            return rng.random() < 0.5
        if fd.type == fd.TYPE_ENUM:
            values = [v.number for v in fd.enum_type.values]
            return rng.choice(values + [rng.randint(-5, 200)])
        if fd.type in (fd.TYPE_STRING,):
            if fd.name == "op":
                return rng.choice(_OPS)
            return rng.choice(_STRINGS) if rng.random() < 0.8 else "".join(
                chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(0, 40)))
        if fd.type == fd.TYPE_BYTES:
            return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 4, 8, 16, 64, 300])))
        if fd.type in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
            return rng.choice([0.0, -1.0, 1e300 if fd.type == fd.TYPE_DOUBLE else 3e38, float("nan"),
                               float("inf"), rng.uniform(-1e6, 1e6)])
        unsigned = fd.type in (fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_FIXED32, fd.TYPE_FIXED64)
        wide = fd.type in (fd.TYPE_INT64, fd.TYPE_SINT64, fd.TYPE_SFIXED64, fd.TYPE_UINT64, fd.TYPE_FIXED64)
        pool = _UINTS if unsigned else _INTS
        v = rng.choice(pool + [rng.randint(-1000, 1000) if not unsigned else rng.randint(0, 1000)])
        bits = 64 if wide else 32
        if unsigned:
            return v % (1 << bits)
        return (v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))

    def fill(self, msg, depth=0):
        rng = self.rng
        for fd in msg.DESCRIPTOR.fields:
            if rng.random() < (0.35 if depth > 1 else 0.6):
                continue
            try:
                if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                    target = getattr(msg, fd.name)
                    key_fd, value_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
                    for _ in range(rng.randint(0, 3)):
                        key = self.value(key_fd, depth)
                        if value_fd.type == value_fd.TYPE_MESSAGE:
                            if depth < 4:
                                self.fill(target[key], depth + 1)
                        else:
                            target[key] = self.value(value_fd, depth)
                elif _repeated(fd):
                    target = getattr(msg, fd.name)
                    for _ in range(rng.randint(0, 3)):
                        if fd.type == fd.TYPE_MESSAGE:
                            if depth < 4:
                                self.fill(target.add(), depth + 1)
                        else:
                            target.append(self.value(fd, depth))
                elif fd.type == fd.TYPE_MESSAGE:
                    if depth < 4:
                        self.fill(getattr(msg, fd.name), depth + 1)
                        getattr(msg, fd.name).SetInParent()
                else:
                    setattr(msg, fd.name, self.value(fd, depth))
            except (ValueError, TypeError):
                pass  # a value this field cannot hold (utf-8, range): leave it out
        return msg

    def message(self, descriptor, depth=0):
        return self.fill(security.message_class(descriptor)(), depth)

    def mangle(self, data):
        """Random bytes, or `data` flipped, cut, grown or spliced."""
        rng = self.rng
        kind = rng.randrange(5)
        if kind == 0 or not data:
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        data = bytearray(data)
        if kind == 1:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 2:
            del data[rng.randrange(len(data)):]
        elif kind == 3:
            data[rng.randrange(len(data)):rng.randrange(len(data) + 1)] = bytes(
                rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        else:
            data += data[:rng.randint(0, len(data))]
        return bytes(data)


class Fuzzer:
    """The cluster under test and one request per case, to whichever surface the case draws."""

    def __init__(self, cluster, session_handle):
        self.cluster = cluster
        self.handle = session_handle
        self.master = grpc.insecure_channel(cluster.master_address)
        self.worker_info = cluster.worker_info(0)
        self.worker = grpc.insecure_channel(self.worker_info["address"])
        self.metadata = security.call_metadata(TOKEN, WORKER_KEY)
        self.methods = []
        for pb2, service, channel in ((master_pb2, "MasterService", self.master),
                                      (worker_pb2, "WorkerService", self.worker)):
            for m in pb2.DESCRIPTOR.services_by_name[service].methods:
                if m.name not in SKIP:
                    self.methods.append((pb2, service, m, channel))
        self.steps = {
            "master": step_channel.StepChannelClient(f"127.0.0.1:{cluster.master.info['step_port']}", master_pb2,
                                                     "MasterService", TOKEN),
            "worker": step_channel.StepChannelClient(self.worker_info["step_address"], worker_pb2,
                                                     "WorkerService", TOKEN, WORKER_KEY),
        }

    def close(self):
        self.master.close()
        self.worker.close()
        for client in self.steps.values():
            client.close()

    def request(self, gen, method):
        """Serialized request bytes for `method`: random fields (sometimes on the real session), or mangled."""
        rng = gen.rng
        msg = gen.message(method.input_type)
        if "session_handle" in msg.DESCRIPTOR.fields_by_name and rng.random() < 0.5:
            msg.session_handle = self.handle
        data = msg.SerializeToString()
        return gen.mangle(data) if rng.random() < 0.3 else data

    def case(self, seed):
        """Runs case `seed`; returns a description of what went wrong, or None."""
        gen = Generator(seed)
        surface = gen.rng.choices(["grpc", "step", "data"], weights=[6, 3, 1])[0]
        started = time.monotonic()
        if surface == "grpc":
            problem = self._grpc_case(gen)
        elif surface == "step":
            problem = self._step_case(gen)
        else:
            problem = self._data_case(gen)
        if problem is None and time.monotonic() - started > CALL_TIMEOUT_S:
            problem = f"took {time.monotonic() - started:.1f} s"
        return None if problem is None else f"case {seed} ({surface}): {problem}"

    def _grpc_case(self, gen):
        pb2, service, method, channel = gen.rng.choice(self.methods)
        path = f"/{method.full_name.rsplit('.', 1)[0]}/{method.name}"
        data = self.request(gen, method)
        try:
            if method.client_streaming:
                chunks = [data] + [self.request(gen, method) for _ in range(gen.rng.randint(0, 2))]
                channel.stream_unary(path)(iter(chunks), timeout=CALL_TIMEOUT_S, metadata=self.metadata)
            else:
                channel.unary_unary(path)(data, timeout=CALL_TIMEOUT_S, metadata=self.metadata)
        except grpc.RpcError as e:
            if e.code() not in FAIR:
                return f"{service}.{method.name} -> {e.code().name}: {e.details()[:300]}"
        return None

    def _step_case(self, gen):
        who = gen.rng.choice(["master", "worker"])
        client = self.steps[who]
        pb2, service = (master_pb2, "MasterService") if who == "master" else (worker_pb2, "WorkerService")
        methods = [m for m in pb2.DESCRIPTOR.services_by_name[service].methods
                   if not m.client_streaming and m.name not in SKIP]
        method = gen.rng.choice(methods)
        data = self.request(gen, method)

        class Raw:
            def SerializeToString(self):
                return data
        try:
            client.call(method.name, Raw(), timeout=CALL_TIMEOUT_S)
        except tg.errors.DeadlineExceededError:
            return f"step channel {service}.{method.name} hung"
        except (tg.errors.InternalError, tg.errors.UnknownError) as e:
            return f"step channel {service}.{method.name} -> {type(e).__name__}: {e.message[:300]}"
        except tg.errors.OpError:
            pass
        return None

    def _data_case(self, gen):
        """A data-plane connection that sends random message headers (and a little payload) after the handshake."""
        rng = gen.rng
        host, port = self.worker_info["data_address"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT_S) as sock:
            _, _, _, nonce = wire.CHALLENGE.unpack(wire.recv_exact(sock, wire.CHALLENGE.size))
            sock.sendall(wire.HELLO.pack(wire.MAGIC, wire.VERSION, rng.randrange(3), 0, rng.getrandbits(32),
                                         wire.token_mac(TOKEN.encode(), nonce), 0, bytes(16)))
            if wire.WELCOME.unpack(wire.recv_exact(sock, wire.WELCOME.size))[0] != wire.OK:
                return "the handshake with the right token was refused"
            for _ in range(rng.randint(1, 3)):
                ndim = rng.choice([0, 1, 2, 3, 255])
                key = rng.choice([b"k", b"", b"\xff\xfe", b"x" * 100])
                shape = [rng.choice([0, 1, 3, -1, 1 << 40]) for _ in range(min(ndim, 4))]
                length = rng.choice([0, 1, 8, 24, 1 << 20, 1 << 40])
                head = wire.HEADER.pack(rng.choice([1, 2, 3, 9]), rng.choice([1, 3, 7, 9, 100]), ndim, len(key),
                                        rng.getrandbits(31), rng.getrandbits(31), length,
                                        rng.choice([0, 0, 4, 1 << 41]), length, rng.choice([0, 64]), 0)
                body = struct.pack(f"<{len(shape)}q", *shape) + key + bytes(rng.getrandbits(8)
                                                                          for _ in range(rng.randint(0, 64)))
                try:
                    sock.sendall(head + body)
                except OSError:
                    break  # the worker dropped the connection: what it should do with garbage
        return None

    def alive(self):
        """None when every process still runs and a real step still gives the right answer."""
        procs = [self.cluster.master] + self.cluster.workers
        dead = [p.name for p in procs if p.popen.poll() is not None]
        if dead:
            return f"{dead} died"
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:0"):
            x = tf.placeholder(tg.float32, [3])
            y = x * 2.0
        with tg.Session(self.cluster.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            got = sess.run(y, {x: [1.0, 2.0, 3.0]})
        return None if np.allclose(got, [2.0, 4.0, 6.0]) else f"wrong answer after fuzzing: {got}"


def _fuzz(cases, seed0):
    with LocalCluster(num_workers=1, token=TOKEN, env={"TENSORGRID_WORKER_KEY": WORKER_KEY}) as cluster:
        g = tg.Graph()
        with g.as_default(), tg.device("/job:worker/task:0"):
            a = tg.constant([[1.0, 2.0]], name="a")
            tg.matmul(a, a, transpose_b=True, name="mm")
        with tg.Session(cluster.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            sess.run("mm:0")
            fuzzer = Fuzzer(cluster, sess._backend._handle)
            pids = [cluster.master.popen.pid, cluster.worker_info(0)["pid"]]
            for i in range(min(20, cases)):  # warm up the servers' caches before the baseline
                fuzzer.case(seed0 + cases + i)
            before = [_rss(p) for p in pids]
            problems = []
            try:
                for seed in range(seed0, seed0 + cases):
                    problem = fuzzer.case(seed)
                    if problem:
                        problems.append(problem)
                        if len(problems) >= 10:
                            break
                problems += [p for p in [fuzzer.alive()] if p]
            finally:
                fuzzer.close()
            after = [_rss(p) for p in pids]
        grown = [(a - b) >> 20 for a, b in zip(after, before)]
        assert not problems, "\n".join(problems)
        assert all(g < RSS_SLACK >> 20 for g in grown), f"RSS grew by {grown} MiB (master, worker)"


def test_fuzz_the_cluster_services():
    _fuzz(DEFAULT_CASES, int(os.environ.get("TENSORGRID_FUZZ_SEED", "1")))


@pytest.mark.slow
def test_fuzz_the_cluster_services_long():
    _fuzz(SLOW_CASES, int(os.environ.get("TENSORGRID_FUZZ_SEED", "100000")))
