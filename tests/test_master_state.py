"""Tests for runtime/master.py driven with no network: in-process Workers behind fake clients."""

import concurrent.futures
import threading
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid import security
from tensorgrid.framework import errors
from tensorgrid.proto import convert
from tensorgrid.runtime import master as master_lib
from tensorgrid.worker.worker import Worker

tf = tg.compat.v1


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakePlane:
    """Data plane between in-process workers: send() calls the peer's deliver directly."""

    def __init__(self, cluster):
        self.cluster = cluster

    def send(self, peer_address, step_id, key, array):
        peer = self.cluster.by_data_address.get(peer_address)
        if peer is None or peer.killed:
            raise errors.UnavailableError(None, None, f"data plane peer {peer_address} is gone")
        peer.worker.deliver(step_id, key, array)

    def release_step(self, step_id):
        pass

    def stats(self):
        return {}


class FakeClient:
    """A worker client that calls a Worker in this process, on a thread of its own per call."""

    def __init__(self, node):
        self.node = node
        self.calls = []

    def _submit(self, fn, *args):
        if self.node is None:  # an address no in-process worker has
            fut = concurrent.futures.Future()
            fut.set_exception(security.in_transit("connection refused"))
            return fut
        return self.node.cluster.pool.submit(self._guard, fn, *args)

    def _guard(self, fn, *args):
        if self.node.killed:
            raise security.in_transit("connection refused")
        hold = self.node.hold.get(fn.__name__)
        if hold is not None:
            hold.wait(10)
        return fn(*args)

    def register_graph(self, session, graph_defs, device_address):
        self.calls.append("register_graph")
        parts = {d: convert.graph_def_to_ir(g) for d, g in graph_defs.items()}
        return self._submit(self._register, session, parts, device_address, graph_defs)

    def _register(self, session, parts, addresses, graph_defs):
        return self.node.worker.register_graph(session, parts, addresses, graph_defs)

    def run_graph(self, handle, step_id, feeds, trace, timeout_ms):
        self.calls.append("run_graph")
        self.node.feeds_seen.append(sorted(n for n, _ in feeds))
        return self._submit(self.run_graph_now, handle, step_id, feeds, trace, timeout_ms)

    def run_graph_now(self, handle, step_id, feeds, trace, timeout_ms):
        res = self.node.worker.run_graph(handle, step_id, dict(feeds), trace, timeout_ms)
        return master_lib.RunGraphResult(list(res.fetches.items()))

    def cleanup_step(self, step_id, reason):
        self.calls.append("cleanup_step")
        return self._submit(self.node.worker.cleanup_step, step_id, reason)

    def deregister_graph(self, handle):
        self.calls.append("deregister_graph")
        return self._submit(self.node.worker.deregister_graph, handle)

    def reset(self, containers=None):
        return self._submit(self.node.worker.reset, containers)

    def get_status(self):
        return self._submit(self.status_now)

    def status_now(self):
        w = self.node.worker
        return dict(w.status(), incarnation=w.incarnation, job=w.job, task=w.task, devices=w.device_attributes(),
                    data_address=self.node.address, step_address="")

    def close(self):
        pass


class Node:
    def __init__(self, cluster, task, incarnation, devices=(("CPU", 0, 0),)):
        self.cluster = cluster
        self.task = task
        self.worker = Worker(devices, incarnation=incarnation)
        self.worker.plane = FakePlane(cluster)
        self.address = f"w{task}-{incarnation}"
        self.killed = False
        self.hold = {}
        self.feeds_seen = []


class FakeCluster:
    """A Master and in-process workers; `start(n)` registers n of them as /job:worker/task:0..n-1."""

    def __init__(self, heartbeat_timeout=10.0):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self.clock = FakeClock()
        self.nodes = {}
        self.clients = {}
        self.by_data_address = {}
        self.master = master_lib.Master(self._connect, heartbeat_timeout=heartbeat_timeout, clock=self.clock)

    def _connect(self, address, step_address="", key=None):
        client = FakeClient(self.by_data_address.get(address))
        self.clients.setdefault(address, []).append(client)
        return client

    def add(self, task, incarnation=None, devices=(("CPU", 0, 0),)):
        node = Node(self, task, incarnation or (task + 1) * 1000 + len(self.by_data_address), devices)
        self.by_data_address[node.address] = node
        rec = self.master.register_worker(node.address, node.address, "worker", task, node.worker.incarnation,
                                          list(devices))
        node.worker.set_identity(rec.job, rec.task)
        self.nodes[rec.task] = node
        return node

    def start(self, n):
        for i in range(n):
            self.add(i)
        return self

    def calls(self, task, what):
        node = self.nodes[task]
        return sum(c.calls.count(what) for c in self.clients[node.address])

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def cluster():
    c = FakeCluster()
    yield c
    c.close()


def _graph_session(master, graph, config=None):
    handle, _ = master.create_session(graph.to_ir(), config)
    return handle


def _feed(value):
    return np.asarray(value, dtype=np.float32)


def _three_worker_graph():
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [3], name="x")
        with tg.device("/job:worker/task:0"):
            a = tg.add(x, 1.0, name="a")
        with tg.device("/job:worker/task:1"):
            b = tg.multiply(a, 2.0, name="b")
        with tg.device("/job:worker/task:2"):
            c = tg.add(a, b, name="c")
            y = tg.multiply(x, 3.0, name="y")
    return g, x, [a, b, c, y]


def test_tasks_are_assigned_lowest_free_first(cluster):
    m = cluster.master
    rec = m.register_worker("h:1", "h:1", "", None, 11, [("CPU", 0, 0)])
    assert (rec.job, rec.task) == ("worker", 0)
    rec = m.register_worker("h:2", "h:2", "", None, 12, [("CPU", 0, 0)])
    assert rec.task == 1
    assert m.register_worker("h:1", "h:1", "", None, 11, [("CPU", 0, 0)]).task == 0  # same incarnation: same task
    rec = m.register_worker("h:3", "h:3", "ps", None, 13, [("CPU", 0, 0), ("GPU", 0, 1 << 30)])
    assert rec.name == "/job:ps/task:0"
    assert [d[0] for d in rec.devices] == ["/job:ps/replica:0/task:0/device:CPU:0",
                                           "/job:ps/replica:0/task:0/device:GPU:0"]


def test_a_worker_restarted_at_its_address_takes_its_task_back(cluster):
    m = cluster.master
    for address, incarnation in (("h:1", 11), ("h:2", 12)):
        m.register_worker(address, address, "", None, incarnation, [("CPU", 0, 0)])
    # h:2's old process still counts as alive (no heartbeat missed yet), but it no longer answers there
    assert [w.alive for w in m.workers()] == [True, True]
    assert m.register_worker("h:2", "h:2", "", None, 22, [("CPU", 0, 0)]).task == 1
    assert m.workers()[1].incarnation == 22
    assert m.register_worker("h:3", "h:3", "", None, 33, [("CPU", 0, 0)]).task == 2


def test_bad_registrations_are_invalid_argument(cluster):
    m = cluster.master
    with pytest.raises(errors.InvalidArgumentError):
        m.register_worker("", "", "worker", 0, 1, [("CPU", 0, 0)])
    with pytest.raises(errors.InvalidArgumentError):
        m.register_worker("h:1", "h:1", "worker", -2, 1, [("CPU", 0, 0)])
    with pytest.raises(errors.InvalidArgumentError):
        m.register_worker("h:1", "h:1", "worker", 0, 1, [("TPU", 0, 0)])


def test_a_live_task_is_not_taken_over_but_a_gone_one_is(cluster):
    cluster.start(1)
    old = cluster.nodes[0]
    with pytest.raises(errors.AlreadyExistsError, match="task:0"):
        cluster.add(0, incarnation=777)
    old.killed = True
    new = cluster.add(0, incarnation=778)
    assert cluster.master.workers()[0].incarnation == 778
    assert new.worker.task_name == "/job:worker/task:0"


def test_heartbeats_keep_workers_alive_and_silence_kills_them():
    c = FakeCluster(heartbeat_timeout=10.0).start(2)
    m = c.master
    c.clock.now += 6
    assert m.heartbeat("worker", 0, c.nodes[0].worker.incarnation)
    c.clock.now += 6
    dead = m.check_health()
    assert [r.name for r in dead] == ["/job:worker/task:1"]
    assert [d for d, _, _ in m.list_devices()] == ["/job:worker/replica:0/task:0/device:CPU:0"]
    assert not m.heartbeat("worker", 1, 42)  # unknown incarnation: register again
    assert m.heartbeat("worker", 1, c.nodes[1].worker.incarnation)  # a late heartbeat brings it back
    assert len(m.list_devices()) == 2
    assert m.heartbeat("worker", 1, c.nodes[1].worker.incarnation, shutting_down=True)
    assert len(m.list_devices()) == 1
    c.close()


def test_step_across_three_workers_plans_and_registers_once(cluster):
    cluster.start(3)
    g, x, fetches = _three_worker_graph()
    m = cluster.master
    h = _graph_session(m, g)
    names = [t.name for t in fetches]
    for i in range(5):
        v = _feed([1, 2, 3 + i])
        out, meta, _ = m.run_step(h, [("x:0", v)], names, [])
        a = v + 1
        expect = [a, a * 2, a + a * 2, v * 3]
        assert [n for n, _ in out] == names
        for (_, got), want in zip(out, expect):
            np.testing.assert_allclose(got, want)
        assert meta is None
    assert m.cluster_status()["sessions"][0]["cached_plans"] == 1
    for task in range(3):
        assert cluster.calls(task, "register_graph") == 1
        assert cluster.calls(task, "run_graph") == 5
    # x's feed lands on the one device its _Feed node was placed on; the others never see it
    assert sorted(cluster.nodes[t].feeds_seen[-1] for t in range(3)) == [[], [], ["x:0"]]
    assert cluster.nodes[1].feeds_seen[-1] == []


def test_a_worker_with_two_devices_runs_both_partitions_in_one_run_graph(cluster):
    cluster.add(0, devices=[("CPU", 0, 0), ("CPU", 1, 0)])
    cluster.add(1)
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [2], name="x")
        with tg.device("/job:worker/task:0/device:CPU:0"):
            a = x + 1.0
        with tg.device("/job:worker/task:0/device:CPU:1"):
            b = a * 3.0  # a crosses devices inside task 0: handed over in memory
        with tg.device("/job:worker/task:1"):
            c = b - a  # both cross to task 1 through the data plane
    h = _graph_session(cluster.master, g)
    out, meta, _ = cluster.master.run_step(h, [("x:0", _feed([1, 2]))], [c.name], [])
    np.testing.assert_allclose(out[0][1], [4.0, 6.0])
    assert cluster.calls(0, "run_graph") == 1 and cluster.calls(0, "register_graph") == 1
    _wait_resting(cluster)


def test_only_the_workers_a_step_needs_run(cluster):
    cluster.start(3)
    g, x, (a, b, c, y) = _three_worker_graph()
    h = _graph_session(cluster.master, g)
    out, _, _ = cluster.master.run_step(h, [("x:0", _feed([1, 1, 1]))], [y.name], [])
    np.testing.assert_allclose(out[0][1], [3, 3, 3])
    assert [cluster.calls(t, "run_graph") for t in range(3)] == [0, 0, 1]


def test_a_restarted_worker_gets_the_graphs_again(cluster):
    cluster.start(2)
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:0"):
            a = tg.constant([1.0, 2.0]) * 2.0
        with tg.device("/job:worker/task:1"):
            b = a + 1.0
    h = _graph_session(cluster.master, g)
    cluster.master.run_step(h, [], [b.name], [])
    cluster.nodes[1].killed = True
    cluster.add(1, incarnation=999)
    out, _, _ = cluster.master.run_step(h, [], [b.name], [])
    np.testing.assert_allclose(out[0][1], [3.0, 5.0])
    assert cluster.calls(0, "register_graph") == 2  # task 0's routes name task 1's new data address
    assert cluster.calls(0, "deregister_graph") == 1


def test_the_root_error_reaches_the_caller_and_every_worker_is_cleaned(cluster):
    cluster.start(2)
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [None], name="x")
        with tg.device("/job:worker/task:0"):
            checked = tg.debugging.assert_positive(x, message="x must be positive")
            with tg.control_dependencies([checked]):
                a = tg.identity(x, name="a")
        with tg.device("/job:worker/task:1"):
            b = tg.multiply(a, 2.0, name="b")
    h = _graph_session(cluster.master, g)
    with pytest.raises(errors.InvalidArgumentError) as info:
        cluster.master.run_step(h, [("x:0", _feed([-1.0]))], [b.name], [])
    assert "task:0" in str(info.value) and "x must be positive" in str(info.value)
    assert cluster.calls(1, "cleanup_step") == 1
    _wait_resting(cluster)
    out, _, _ = cluster.master.run_step(h, [("x:0", _feed([2.0]))], [b.name], [])
    np.testing.assert_allclose(out[0][1], [4.0])


def _wait_resting(cluster):
    _poll_until(lambda: all(s["active_steps"] == 0 and s["rendezvous_entries"] == 0
                            for s in (n.worker.status() for n in cluster.nodes.values())))


def _blocked_step_graph():
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:0"):
            a = tg.constant([1.0]) + 1.0
        with tg.device("/job:worker/task:1"):
            b = a * 2.0
    return g, b


def test_a_worker_dying_mid_step_fails_it_with_unavailable_naming_the_task(cluster):
    cluster.start(2)
    g, b = _blocked_step_graph()
    h = _graph_session(cluster.master, g)
    cluster.master.run_step(h, [], [b.name], [])
    gate = threading.Event()
    cluster.nodes[0].hold["run_graph_now"] = gate  # task 0 never sends; task 1 waits for it
    result = {}

    def run():
        try:
            cluster.master.run_step(h, [], [b.name], [])
        except errors.OpError as e:
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 5
    while not cluster.master.cluster_status()["active_steps"] and time.monotonic() < deadline:
        time.sleep(0.005)
    cluster.clock.now += 11
    assert cluster.master.heartbeat("worker", 1, cluster.nodes[1].worker.incarnation)
    cluster.master.check_health()
    t.join(5)
    gate.set()
    assert isinstance(result.get("error"), errors.UnavailableError), result
    assert "/job:worker/task:0" in str(result["error"])
    with pytest.raises(errors.UnavailableError, match="task:0"):
        cluster.master.run_step(h, [], [b.name], [])


def test_deadline_exceeded(cluster):
    cluster.start(2)
    g, b = _blocked_step_graph()
    h = _graph_session(cluster.master, g)
    gate = threading.Event()
    cluster.nodes[0].hold["run_graph_now"] = gate
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceededError):
        cluster.master.run_step(h, [], [b.name], [], timeout_ms=200)
    assert time.monotonic() - start < 3
    gate.set()
    _wait_resting(cluster)


def test_a_thousand_steps_leave_nothing_behind(cluster):
    cluster.start(2)
    g = tg.Graph()
    with g.as_default():
        x = tf.placeholder(tg.float32, [None], name="x")
        with tg.device("/job:worker/task:0"):
            checked = tg.debugging.assert_positive(x)
            with tg.control_dependencies([checked]):
                a = tg.identity(x)
        with tg.device("/job:worker/task:1"):
            b = a * 2.0
    h = _graph_session(cluster.master, g)
    failures = 0
    for i in range(1000):
        try:
            cluster.master.run_step(h, [("x:0", _feed([1.0 if i % 3 else -1.0]))], [b.name], [])
        except errors.InvalidArgumentError:
            failures += 1
    assert failures == 334
    _wait_resting(cluster)
    status = cluster.master.cluster_status()
    assert status["active_steps"] == 0
    for w in status["workers"]:
        assert w["active_steps"] == 0 and w["rendezvous_entries"] == 0 and w["registered_graphs"] == 1


def test_graph_growth_and_version_check(cluster):
    cluster.start(1)
    m = cluster.master
    g = tg.Graph()
    with g.as_default():
        a = tg.constant(2.0, name="a")
    h = _graph_session(m, g)
    with g.as_default():
        b = tf.multiply(a, 5.0, name="b")
    new = [n for n in g.to_ir() if n.name not in ("a",)]
    assert m.extend_session(h, new, 1) == 2
    out, _, _ = m.run_step(h, [], [b.name], [])
    assert out[0][1] == 10.0
    with pytest.raises(errors.FailedPreconditionError):
        m.extend_session(h, new, 1)


def test_plans_of_an_older_graph_leave_the_workers(cluster):
    cluster.start(1)
    m = cluster.master
    g = tg.Graph()
    with g.as_default():
        t = tg.constant(1.0, name="t0")
    h = _graph_session(m, g)
    version = 1
    for i in range(1, 6):
        with g.as_default():
            t = tf.add(t, 1.0, name=f"t{i}")
        version = m.extend_session(h, list(g.to_ir()), version)
        assert m.run_step(h, [], [t.name], [])[0][0][1] == i + 1
    worker = cluster.nodes[0].worker
    assert worker.status()["registered_graphs"] == 5  # retired plans stay a while for steps in flight
    cluster.clock.now += master_lib.RETIRE_AFTER_S + 1
    version = m.extend_session(h, [], version)
    _poll_until(lambda: worker.status()["registered_graphs"] == 1)
    m.close_session(h)
    _poll_until(lambda: worker.status()["registered_graphs"] == 0)


def _poll_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("bad", ["cycle", "unknown op", "dangling input"])
def test_bad_graphs_are_invalid_argument(cluster, bad):
    from tensorgrid.runtime.ir import GraphIR, Node
    nodes = [Node("a", "Const", attrs={"value": np.float32(1), "dtype": tg.float32})]
    if bad == "cycle":
        nodes += [Node("b", "Identity", ["c:0"]), Node("c", "Identity", ["b:0"])]
    elif bad == "unknown op":
        nodes += [Node("b", "NoSuchOp", ["a:0"])]
    else:
        nodes += [Node("b", "Identity", ["zzz:0"])]
    with pytest.raises(errors.InvalidArgumentError):
        cluster.master.create_session(GraphIR(nodes))


def test_variables_outlive_sessions_and_reset_clears_them(cluster):
    cluster.start(2)
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:1"):
            v = tf.Variable([1.0, 2.0], name="v")
            inc = v.assign_add([1.0, 1.0])
            read = v.read_value()
    m = cluster.master
    h = _graph_session(m, g)
    m.run_step(h, [], [], [v.initializer.name])
    m.run_step(h, [], [inc.name], [])
    m.close_session(h)
    h2 = _graph_session(m, g)
    out, _, _ = m.run_step(h2, [], [read.name], [])
    np.testing.assert_allclose(out[0][1], [2.0, 3.0])
    m.reset()
    with pytest.raises(errors.NotFoundError):
        m.run_step(h2, [], [read.name], [])
    h3 = _graph_session(m, g)
    with pytest.raises(errors.FailedPreconditionError, match="v"):
        m.run_step(h3, [], [read.name], [])


def test_unknown_session_is_not_found(cluster):
    with pytest.raises(errors.NotFoundError):
        cluster.master.run_step("nope", [], [], [])


def _started(cluster, h, fetch, **kwargs):
    """A step started with start_step, and an Event set when its on_done is called."""
    ended = threading.Event()
    step = cluster.master.start_step(h, [], [fetch], [], on_done=lambda s: ended.set(), **kwargs)
    return step, ended


def test_a_started_step_ends_through_its_callbacks_with_run_steps_outcome(cluster):
    """start_step holds no thread: its on_done comes from the RunGraph callbacks, a failure or expire, and
    end_step then gives run_step's result or raises its error."""
    cluster.start(2)
    g, b = _blocked_step_graph()
    h = _graph_session(cluster.master, g)
    step, ended = _started(cluster, h, b.name)
    assert ended.wait(5)
    out, metadata, step_id = cluster.master.end_step(step)
    assert [n for n, _ in out] == [b.name] and float(out[0][1][0]) == 4.0 and step_id == step.step_id
    assert cluster.master.cluster_status()["active_steps"] == 0

    gate = threading.Event()
    cluster.nodes[0].hold["run_graph_now"] = gate
    step, ended = _started(cluster, h, b.name, timeout_ms=60_000)
    assert not ended.wait(0.1) and 0 < cluster.master.seconds_left(step) <= 60
    cluster.master.expire(step)   # what the server's timer does at step.deadline
    assert ended.is_set()
    with pytest.raises(errors.DeadlineExceededError):
        cluster.master.end_step(step)

    step, ended = _started(cluster, h, b.name)
    cluster.master.close_session(h)
    assert ended.wait(5)
    with pytest.raises(errors.CancelledError, match="closed"):
        cluster.master.end_step(step)
    gate.set()
    _wait_resting(cluster)
    assert cluster.master.cluster_status()["active_steps"] == 0
