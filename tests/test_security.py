"""Security and bad input across real processes: tokens on every hop, TLS, py_func refusal, malformed requests."""

import datetime
import ipaddress
import subprocess
import sys

import grpc
import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import security
from tensorgrid.framework import errors
from tensorgrid.proto import master_pb2, types_pb2, worker_pb2
from tensorgrid.runtime.cluster import LocalCluster
from tensorgrid.worker import transport
from tests.test_transport import Inbox

tf = tg.compat.v1
TOKEN = "s3cret-token"
# The workers' key (TENSORGRID_WORKER_KEY): these tests call the workers' control methods as their master.
WORKER_KEY = "s3cret-worker-key"


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(num_workers=2, token=TOKEN, env={"TENSORGRID_WORKER_KEY": WORKER_KEY}) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch):
    for name in ("TENSORGRID_TOKEN", "TENSORGRID_TLS_CA", "TENSORGRID_TLS_CERT", "TENSORGRID_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)


def _pair_graph():
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        with tg.device("/job:worker/task:0"):
            a = x + 1.0
        with tg.device("/job:worker/task:1"):
            b = a * 2.0
    return g, x, b


def _run_pair(target, config=None):
    g, x, b = _pair_graph()
    with tg.Session(target, graph=g, config=config) as sess:
        return sess.run(b, {x: [1.0, 2.0]})


# ---------------------------------------------------------------- tokens

def test_a_client_without_the_token_is_unauthenticated(cluster):
    with pytest.raises(errors.UnauthenticatedError, match="token"):
        _run_pair(cluster.target)
    with pytest.raises(errors.UnauthenticatedError):
        _run_pair(cluster.target, tg.ConfigProto(token="wrong"))


def test_the_token_from_config_or_environment_works(cluster, monkeypatch):
    np.testing.assert_allclose(_run_pair(cluster.target, tg.ConfigProto(token=TOKEN)), [4.0, 6.0])
    monkeypatch.setenv("TENSORGRID_TOKEN", TOKEN)
    np.testing.assert_allclose(_run_pair(cluster.target), [4.0, 6.0])


def _call(address, service, method, payload, token=None):
    channel = grpc.insecure_channel(address)
    try:
        return channel.unary_unary(f"/tensorgrid.v1.{service}/{method}")(
            payload, timeout=10, metadata=security.call_metadata(token, WORKER_KEY if token else None))
    finally:
        channel.close()


def test_workers_require_the_token_too(cluster):
    address = cluster.worker_info(0)["address"]
    request = worker_pb2.GetStatusRequest().SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        _call(address, "WorkerService", "GetStatus", request)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = worker_pb2.GetStatusResponse.FromString(_call(address, "WorkerService", "GetStatus", request, TOKEN))
    assert reply.task == 0


def test_the_data_plane_requires_the_token(cluster):
    data_address = cluster.worker_info(1)["data_address"]
    with transport.DataPlane(token="wrong") as plane:
        with pytest.raises(errors.UnauthenticatedError):
            plane.send(data_address, 1, "k", np.ones(4, np.float32))


@pytest.mark.parametrize("who", ["master", "worker"])
def test_the_step_channel_requires_the_token(cluster, who):
    from tensorgrid import step_channel
    if who == "master":
        address = f"127.0.0.1:{cluster.master.info['step_port']}"
        pb2, service, request = master_pb2, "MasterService", master_pb2.ListDevicesRequest()
    else:
        address = cluster.worker_info(0)["step_address"]
        pb2, service, request = worker_pb2, "WorkerService", worker_pb2.GetStatusRequest()
    for token in (None, "wrong"):
        client = step_channel.StepChannelClient(address, pb2, service, token)
        with pytest.raises(errors.UnauthenticatedError):
            client.call("ListDevices" if who == "master" else "GetStatus", request)
        client.close()
    client = step_channel.StepChannelClient(address, pb2, service, TOKEN)
    assert client.call("ListDevices" if who == "master" else "GetStatus", request)
    client.close()


def test_garbage_on_the_step_channel_is_invalid_argument(cluster):
    from tensorgrid import step_channel
    client = step_channel.StepChannelClient(f"127.0.0.1:{cluster.master.info['step_port']}", master_pb2,
                                            "MasterService", TOKEN)

    class Garbage:
        def SerializeToString(self):
            return GARBAGE
    with pytest.raises(errors.InvalidArgumentError, match="malformed"):
        client.call("RunStep", Garbage())
    assert client.call("ListDevices", master_pb2.ListDevicesRequest())  # the same connection still serves
    client.close()


# ---------------------------------------------------------------- py_func

def test_py_func_is_refused_without_allow_pickle(cluster):
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:1"):
            y = tf.py_func(lambda: np.float32(1), [], tg.float32, name="my_py_func")
        with tg.Session(cluster.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            with pytest.raises(errors.PermissionDeniedError, match="my_py_func") as info:
                sess.run(y)
    assert "--allow-pickle" in str(info.value)
    np.testing.assert_allclose(_run_pair(cluster.target, tg.ConfigProto(token=TOKEN)), [4.0, 6.0])


# ---------------------------------------------------------------- malformed requests

GARBAGE = b"\xff\xff\xff\xff\x0f garbage \x00\x01"


@pytest.mark.parametrize("service, method", [
    ("MasterService", "CreateSession"), ("MasterService", "RunStep"), ("MasterService", "RegisterWorker"),
    ("WorkerService", "RegisterGraph"), ("WorkerService", "RunGraph"), ("WorkerService", "CleanupStep"),
])
def test_garbage_bytes_are_invalid_argument(cluster, service, method):
    address = cluster.master_address if service == "MasterService" else cluster.worker_info(0)["address"]
    with pytest.raises(grpc.RpcError) as info:
        _call(address, service, method, GARBAGE, TOKEN)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in info.value.details()


def _node(name, op, inputs=(), **attrs):
    nd = types_pb2.NodeDef(name=name, op=op, input=list(inputs))
    for key, value in attrs.items():
        nd.attr[key].CopyFrom(value)
    return nd


_FLOAT = types_pb2.AttrValue(type=types_pb2.DT_FLOAT)
_BAD_GRAPHS = {
    "cycle": [_node("a", "Identity", ["b"]), _node("b", "Identity", ["a"])],
    "unknown op": [_node("a", "NoSuchOp")],
    "dangling input": [_node("a", "Identity", ["nowhere:0"])],
    "duplicate name": [_node("a", "NoOp"), _node("a", "NoOp")],
    "empty attr": [_node("a", "Placeholder", dtype=types_pb2.AttrValue())],
    "bad dtype": [_node("a", "Placeholder", dtype=types_pb2.AttrValue(type=77))],
}


@pytest.mark.parametrize("bad", sorted(_BAD_GRAPHS))
def test_bad_graph_defs_are_invalid_argument(cluster, bad):
    request = master_pb2.CreateSessionRequest(graph_def=types_pb2.GraphDef(node=_BAD_GRAPHS[bad]))
    with pytest.raises(grpc.RpcError) as info:
        _call(cluster.master_address, "MasterService", "CreateSession", request.SerializeToString(), TOKEN)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details()


def test_unknown_sessions_and_tensors_are_not_found(cluster):
    request = master_pb2.RunStepRequest(session_handle="no-such-session", fetch=["x:0"])
    with pytest.raises(grpc.RpcError) as info:
        _call(cluster.master_address, "MasterService", "RunStep", request.SerializeToString(), TOKEN)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    g, x, b = _pair_graph()
    with tg.Session(cluster.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
        with pytest.raises(errors.NotFoundError):
            sess._backend.run(g, {}, ["nope:0"], [])


def test_absurd_shapes_are_refused_and_the_server_keeps_serving(cluster):
    config = tg.ConfigProto(token=TOKEN)
    g, x, b = _pair_graph()
    with tg.Session(cluster.target, graph=g, config=config) as sess:
        sess.run(b, {x: [0.0, 0.0]})
        handle = sess._backend._handle
        feed = master_pb2.NamedTensorProto(name="x:0")
        feed.tensor.dtype = types_pb2.DT_FLOAT
        for d in (1 << 40, 1 << 40):
            feed.tensor.tensor_shape.dim.add(size=d)
        request = master_pb2.RunStepRequest(session_handle=handle, feed=[feed], fetch=[b.name])
        with pytest.raises(grpc.RpcError) as info:
            _call(cluster.master_address, "MasterService", "RunStep", request.SerializeToString(), TOKEN)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    big = tg.Graph()
    with big.as_default():
        with tg.device("/job:worker/task:1"):
            huge = tg.fill([1 << 40, 1 << 40], 1.0)
        with tg.Session(cluster.target, graph=big, config=config) as sess:
            with pytest.raises((errors.InvalidArgumentError, errors.ResourceExhaustedError)):
                sess.run(huge)
    np.testing.assert_allclose(_run_pair(cluster.target, config), [4.0, 6.0])


# ---------------------------------------------------------------- TLS

def _write_certs(tmp_path):
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(subject, issuer_name, issuer_key, key, ca):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make("tensorgrid test CA", "tensorgrid test CA", ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make("localhost", "tensorgrid test CA", ca_key, key, False)
    paths = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key")}
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return _write_certs(tmp_path_factory.mktemp("certs"))


def _tls_args(certs):
    return ["--tls-cert", certs["cert"], "--tls-key", certs["key"], "--tls-ca", certs["ca"]]


def _use_tls(monkeypatch, certs):
    monkeypatch.setenv("TENSORGRID_TLS_CA", certs["ca"])
    monkeypatch.setenv("TENSORGRID_TLS_CERT", certs["cert"])
    monkeypatch.setenv("TENSORGRID_TLS_KEY", certs["key"])


def _transport_stats(cluster, i, certs, token=None):
    """Worker i's data-plane counters, from GetStatus over TLS."""
    channel = security.open_channel(cluster.worker_info(i)["address"],
                                    security.TlsFiles(certs["cert"], certs["key"], certs["ca"]))
    try:
        reply = channel.unary_unary("/tensorgrid.v1.WorkerService/GetStatus")(
            worker_pb2.GetStatusRequest().SerializeToString(), timeout=10, metadata=security.call_metadata(token))
    finally:
        channel.close()
    return dict(worker_pb2.GetStatusResponse.FromString(reply).transport)


def test_tls_cluster(certs, monkeypatch):
    with LocalCluster(num_workers=2, extra_master_args=_tls_args(certs), extra_worker_args=_tls_args(certs)) as c:
        with pytest.raises(errors.UnavailableError):
            _run_pair(c.target)  # plaintext to a TLS master
        _use_tls(monkeypatch, certs)
        np.testing.assert_allclose(_run_pair(c.target), [4.0, 6.0])
        received = _transport_stats(c, 1, certs)
    # both workers share this host: the Unix socket (gRPC where there is no /dev/shm), never raw TCP
    assert received["tensors_received_tcp"] == 0
    assert received["tensors_received_unix"] + received["tensors_received_grpc"] == 1


def test_tls_cluster_sends_tensors_between_workers_over_tls(certs, monkeypatch):
    value = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    with LocalCluster(num_workers=2, token=TOKEN, extra_master_args=_tls_args(certs),
                      extra_worker_args=_tls_args(certs), env={"TENSORGRID_TRANSPORT": "grpc"}) as c:
        _use_tls(monkeypatch, certs)
        g = tg.Graph()
        with g.as_default():
            x = tf.placeholder(tg.float32, [None], name="x")
            with tg.device("/job:worker/task:0"):
                a = x + 1.0
            with tg.device("/job:worker/task:1"):
                b = a * 2.0
        with tg.Session(c.target, graph=g, config=tg.ConfigProto(token=TOKEN)) as sess:
            np.testing.assert_array_equal(sess.run(b, {x: value}), (value + np.float32(1)) * np.float32(2))
        sent, received = _transport_stats(c, 0, certs, TOKEN), _transport_stats(c, 1, certs, TOKEN)
        with pytest.raises(grpc.RpcError) as info:
            _transport_stats(c, 1, certs)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert sent["bytes_sent_grpc"] == received["bytes_received_grpc"] == value.nbytes
    for path in ("tcp", "unix", "shm"):
        assert sent[f"bytes_sent_{path}"] == received[f"bytes_received_{path}"] == 0, path


# ---------------------------------------------------------------- the data plane under TLS

@pytest.fixture
def tls_planes(certs):
    """Opens DataPlanes (with TLS unless tls=None is given) and closes every one at the end of the test."""
    opened = []

    def make(**kwargs):
        kwargs.setdefault("tls", security.TlsFiles(certs["cert"], certs["key"], certs["ca"]))
        plane = transport.DataPlane(**kwargs)
        opened.append(plane)
        return plane, plane.start()
    yield make
    for plane in opened:
        plane.close()


def _tensors_through(sender, address, inbox):
    tensors = {"small": np.arange(3, dtype=np.int32), "large": np.arange(1 << 15, dtype=np.float64),
               "strings": np.array([b"a", b"bc"], dtype=object)}
    for key, value in tensors.items():
        sender.send(address, 1, key, value)
    for key, value in tensors.items():
        assert inbox.pop(1, key).tolist() == value.tolist()
    return sum(v.nbytes for v in tensors.values() if v.dtype != object) + 8 * 2 + 3


@pytest.mark.parametrize("mode", ["auto", "grpc"])
def test_tls_data_plane_never_uses_raw_tcp(tls_planes, mode):
    inbox = Inbox()
    receiver, address = tls_planes(mode=mode, token=TOKEN, deliver=inbox)
    sender, _ = tls_planes(mode=mode, token=TOKEN)
    total = _tensors_through(sender, address, inbox)
    stats = sender.stats()
    assert stats["bytes_sent_tcp"] == receiver.stats()["bytes_received_tcp"] == 0
    if mode == "auto" and sender._shm_dir is not None:
        assert stats["bytes_sent_shm"] == 8 << 15 and stats["tensors_sent_unix"] == 2
    else:
        assert stats["bytes_sent_grpc"] == total


def test_tls_data_plane_sends_over_grpc_to_a_peer_without_shared_memory(tls_planes):
    inbox = Inbox()
    _, address = tls_planes(mode="grpc", token=TOKEN, deliver=inbox)  # offers no Unix socket: as if elsewhere
    sender, _ = tls_planes(mode="auto", token=TOKEN)
    total = _tensors_through(sender, address, inbox)
    stats = sender.stats()
    assert stats["bytes_sent_grpc"] == total and stats["connections_out"] == 0


@pytest.mark.parametrize("mode", ["auto", "grpc"])
def test_tls_data_plane_requires_the_token(tls_planes, mode):
    inbox = Inbox()
    _, address = tls_planes(mode=mode, token=TOKEN, deliver=inbox)
    for token in (None, "wrong"):
        intruder, _ = tls_planes(mode=mode, token=token)
        with pytest.raises(errors.UnauthenticatedError):
            intruder.send(address, 1, "x", np.ones(2))
    assert not inbox.items


@pytest.mark.parametrize("mode", ["auto", "grpc"])
def test_plaintext_and_tls_data_planes_cannot_talk(tls_planes, monkeypatch, mode):
    monkeypatch.setattr(transport, "HANDSHAKE_TIMEOUT_S", 0.5)  # a plaintext handshake with TLS just hangs
    _, tls_address = tls_planes(mode=mode, token=TOKEN, deliver=lambda *a: pytest.fail("arrived"))
    plain, plain_address = tls_planes(mode=mode, token=TOKEN, tls=None, deliver=lambda *a: pytest.fail("arrived"))
    secure, _ = tls_planes(mode=mode, token=TOKEN)
    with pytest.raises(errors.UnavailableError, match=tls_address):
        plain.send(tls_address, 1, "x", np.ones(2))
    with pytest.raises(errors.UnavailableError, match=plain_address):
        secure.send(plain_address, 1, "x", np.ones(2))


def test_tls_refuses_the_raw_tcp_mode(certs, monkeypatch):
    tls = security.TlsFiles(certs["cert"], certs["key"], certs["ca"])
    with pytest.raises(ValueError, match="unencrypted"):
        transport.DataPlane(mode="tcp", tls=tls)
    monkeypatch.setenv(transport.TRANSPORT_ENV, "tcp")
    result = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "worker", "--master", "127.0.0.1:1",
                             *_tls_args(certs)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "tcp" in result.stderr and "unencrypted" in result.stderr and "Traceback" not in result.stderr


def test_grpc_steps_past_the_bound_are_resource_exhausted_and_control_calls_still_run(monkeypatch):
    """A real gRPC server made as the master's is (security.rpc_pool, service_handlers with RunStep as the
    step method), its bound lowered to 4: 4 RunSteps blocked, a fifth is RESOURCE_EXHAUSTED at once, a
    Heartbeat is answered meanwhile, and once they finish RunStep runs again."""
    import threading
    monkeypatch.setattr(security, "MAX_GRPC_STEPS", 4)
    release, running = threading.Event(), threading.Semaphore(0)

    class Servicer:
        def __getattr__(self, name):
            return lambda request: None

        def RunStep(self, request):
            running.release()
            release.wait(30)
            return master_pb2.RunStepResponse(step_id=7)

        def Heartbeat(self, request):
            return master_pb2.HeartbeatResponse(known=True)

    server = security.new_server(security.rpc_pool("test-rpc"))
    port = security.bind(server, "127.0.0.1:0")
    server.add_generic_rpc_handlers((security.service_handlers(master_pb2, "MasterService", Servicer(),
                                                               ("RunStep",)),))
    server.start()
    try:
        with security.open_channel(f"127.0.0.1:{port}") as ch:
            stub = security.ServiceClient(ch, master_pb2, "MasterService")
            blocked = [stub.future("RunStep", master_pb2.RunStepRequest(), timeout=30) for _ in range(4)]
            for _ in range(4):
                assert running.acquire(timeout=10)
            with pytest.raises(grpc.RpcError) as e:
                stub("RunStep", master_pb2.RunStepRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "4 steps are already running" in e.value.details()
            assert stub("Heartbeat", master_pb2.HeartbeatRequest(), timeout=5).known
            release.set()
            assert [f.result(timeout=30).step_id for f in blocked] == [7] * 4
            assert stub("RunStep", master_pb2.RunStepRequest(), timeout=10).step_id == 7
    finally:
        release.set()
        server.stop(None)
