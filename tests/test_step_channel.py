"""The step channel's calls whose waiter reads the reply itself (AsyncCall.drive_all), over real sockets."""

import socket
import threading
import time

import pytest

from tensorgrid import step_channel
from tensorgrid.framework import errors
from tensorgrid.proto import worker_pb2


class _Worker:
    """A WorkerService whose CleanupStep answers after `gate` opens, echoing the step id in the reason."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()

    def CleanupStep(self, request):
        assert self.gate.wait(10)
        return worker_pb2.CleanupStepResponse()

    def __getattr__(self, name):
        def refuse(request):
            raise errors.UnimplementedError(None, None, f"{name} is not served here")
        return refuse


@pytest.fixture
def served():
    impl = _Worker()
    server = step_channel.StepChannelServer(worker_pb2, "WorkerService", impl).start()
    client = step_channel.StepChannelClient(f"127.0.0.1:{server.port}", worker_pb2, "WorkerService")
    yield impl, server, client
    impl.gate.set()
    client.close()
    server.close()


def _cleanup(client, step_id):
    return client.call_async("CleanupStep", worker_pb2.CleanupStepRequest(step_id=step_id),
                             lambda data: worker_pb2.CleanupStepResponse.FromString(data), driven=True)


def test_driven_calls_are_read_and_called_back_on_the_driving_thread(served):
    _, _, client = served
    calls = [_cleanup(client, i) for i in (1, 2)]
    seen = []
    for call in calls:
        call.add_done_callback(lambda c: seen.append(threading.get_ident()))
    step_channel.AsyncCall.drive_all(calls, threading.Event(), timeout=10)
    assert all(c.done() for c in calls)
    assert [type(c.result()) for c in calls] == [worker_pb2.CleanupStepResponse] * 2
    assert seen == [threading.get_ident()] * 2


def test_a_stop_event_ends_driving_and_the_poller_finishes_the_call(served):
    impl, _, client = served
    impl.gate.clear()
    call = _cleanup(client, 3)
    threads = []
    call.add_done_callback(lambda c: threads.append(threading.current_thread().name))
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    step_channel.AsyncCall.drive_all([call], stop)
    assert time.monotonic() - started < 0.1 + 5 * step_channel.DRIVE_SLICE_S
    assert not call.done()
    impl.gate.set()
    assert isinstance(call.result(timeout=10), worker_pb2.CleanupStepResponse)
    assert threads == ["tg-step-poller"]


def test_a_server_that_goes_away_fails_a_driven_call_at_once_as_in_transit(served):
    impl, server, client = served
    impl.gate.clear()
    call = _cleanup(client, 4)
    threading.Timer(0.1, server.close).start()
    started = time.monotonic()
    step_channel.AsyncCall.drive_all([call], threading.Event(), timeout=10)
    assert time.monotonic() - started < 5
    err = call.exception(timeout=0)
    assert isinstance(err, errors.UnavailableError) and getattr(err, "in_transit", False), err
    assert client.address in err.message


def test_a_same_host_client_moves_to_the_servers_unix_socket(served):
    impl, server, client = served
    assert isinstance(client.call("CleanupStep", worker_pb2.CleanupStepRequest(step_id=5)), bytes)
    assert client.local
    conn = client._checkout()
    try:
        assert conn.sock.family == socket.AF_UNIX
    finally:
        client._checkin(conn)
    # the token is checked there as on TCP
    guarded = step_channel.StepChannelServer(worker_pb2, "WorkerService", impl, token="s3cret").start()
    try:
        wrong = step_channel.StepChannelClient(f"127.0.0.1:{guarded.port}", worker_pb2, "WorkerService", "nope")
        with pytest.raises(errors.UnauthenticatedError):
            wrong.probe()
        right = step_channel.StepChannelClient(f"127.0.0.1:{guarded.port}", worker_pb2, "WorkerService", "s3cret")
        right.call("CleanupStep", worker_pb2.CleanupStepRequest(step_id=6))
        assert right.local
        right.close()
    finally:
        guarded.close()


def test_without_a_unix_socket_the_client_stays_on_tcp(monkeypatch):
    monkeypatch.setattr(step_channel, "_listen_local", lambda: (None, None))
    server = step_channel.StepChannelServer(worker_pb2, "WorkerService", _Worker()).start()
    client = step_channel.StepChannelClient(f"127.0.0.1:{server.port}", worker_pb2, "WorkerService")
    try:
        client.call("CleanupStep", worker_pb2.CleanupStepRequest(step_id=7))
        assert not client.local
        conn = client._checkout()
        assert conn.sock.family == socket.AF_INET
        client._checkin(conn)
    finally:
        client.close()
        server.close()


def test_a_client_whose_unix_socket_went_away_falls_back_to_tcp(served):
    _, server, client = served
    client.call("CleanupStep", worker_pb2.CleanupStepRequest(step_id=8))
    assert client.local
    client._local = "tensorgrid-step-nobody-listens-here"
    for conn in client._idle:
        conn.close()
    client._idle.clear()
    client.call("CleanupStep", worker_pb2.CleanupStepRequest(step_id=9))
    assert not client.local
