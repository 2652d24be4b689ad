"""Security and bad input across real processes: tokens on every hop, TLS, py_func refusal, malformed requests."""

import datetime
import ipaddress

import grpc
import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import security
from tensorgrid.framework import errors
from tensorgrid.proto import master_pb2, types_pb2, worker_pb2
from tensorgrid.runtime.cluster import LocalCluster

tf = tg.compat.v1
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(num_workers=2, token=TOKEN) as c:
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
            payload, timeout=10, metadata=security.call_metadata(token))
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
    from tensorgrid.worker import transport
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


def test_tls_cluster(tmp_path, monkeypatch):
    paths = _write_certs(tmp_path)
    tls_args = ["--tls-cert", paths["cert"], "--tls-key", paths["key"], "--tls-ca", paths["ca"]]
    with LocalCluster(num_workers=2, extra_master_args=tls_args, extra_worker_args=tls_args) as c:
        with pytest.raises(errors.UnavailableError):
            _run_pair(c.target)  # plaintext to a TLS master
        monkeypatch.setenv("TENSORGRID_TLS_CA", paths["ca"])
        monkeypatch.setenv("TENSORGRID_TLS_CERT", paths["cert"])
        monkeypatch.setenv("TENSORGRID_TLS_KEY", paths["key"])
        np.testing.assert_allclose(_run_pair(c.target), [4.0, 6.0])
