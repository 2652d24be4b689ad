"""Tests for runtime/static_cluster.py, driven with no network: a Master and in-process workers that a
StaticCluster finds by address, as a tg.train.Server's master finds the tasks of its ClusterSpec."""

import logging

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime import static_cluster
from tensorgrid.runtime.ir import GraphIR, Node as NodeIR
from tests.test_master_state import FakeClient, FakeCluster, Node

tf = tg.compat.v1
PS, W0, W1 = ("ps", 0), ("worker", 0), ("worker", 1)
ADDRESSES = {PS: "ps0:2222", W0: "w0:2222", W1: "w1:2222"}


class AddressClient(FakeClient):
    """A client of whatever task serves an address now (a restarted task serves the same address)."""

    def __init__(self, cluster, address):
        super().__init__(None)
        self.cluster = cluster
        self.address = address

    @property
    def node(self):
        return self.cluster.by_data_address.get(self.address)

    @node.setter
    def node(self, value):
        pass


class Static(FakeCluster):
    """A master whose tasks come up (`up`), die (`kill`) and restart (`up` again) at fixed addresses."""

    def __init__(self):
        super().__init__()
        self.static = static_cluster.StaticCluster(self.master, ADDRESSES, clock=self.clock, sleep=self._sleep)
        self.master.static = self.static
        self.on_sleep = []
        self.sleep_s = 0.25

    def _connect(self, address, step_address="", key=None):
        client = AddressClient(self, address)
        self.clients.setdefault(address, []).append(client)
        return client

    def _sleep(self, seconds):
        self.clock.now += max(seconds, self.sleep_s)
        if self.on_sleep:
            self.on_sleep.pop(0)()

    def up(self, key, incarnation=None):
        node = Node(self, key[1], incarnation or 100 + len(self.nodes))
        node.address = ADDRESSES[key]
        node.worker.set_identity(*key)
        self.by_data_address[node.address] = node
        self.nodes[key] = node
        return node

    def kill(self, key):
        self.nodes[key].killed = True


@pytest.fixture
def static():
    c = Static()
    yield c
    c.close()


def _graph(*devices):
    g = GraphIR()
    for i, d in enumerate(devices):
        g.add(NodeIR(f"n{i}", "NoOp", device=d))
    return g


def test_tasks_named_by_a_graph():
    tasks = list(ADDRESSES)
    assert static_cluster.tasks_named(_graph("/job:ps/task:0", ""), tasks) == {PS}
    assert static_cluster.tasks_named(_graph("/job:worker/device:CPU:0"), tasks) == {W0, W1}
    assert static_cluster.tasks_named(_graph("/job:worker/task:1", "/job:other/task:0", "/cpu:0"), tasks) == {W1}
    both = _graph("/job:ps/task:0", "/job:worker")
    assert static_cluster.tasks_named(both, tasks, ["/job:ps", "/job:worker/task:0"]) == {PS, W0}


def test_a_task_that_answers_is_registered_under_the_clusterspec_name(static):
    static.up(PS)
    assert static.static.probe([PS]) == {PS}
    rec = static.master.worker(*PS)
    assert (rec.address, rec.incarnation, rec.alive) == ("ps0:2222", static.nodes[PS].worker.incarnation, True)
    assert [n for n, *_ in rec.devices] == ["/job:ps/replica:0/task:0/device:CPU:0"]


def test_a_step_waits_for_a_task_not_up_yet_and_says_so(static, caplog):
    caplog.set_level(logging.WARNING, "tensorgrid.master")
    static.up(W0)
    static.sleep_s = 6.0
    static.on_sleep.extend([lambda: None, lambda: None, lambda: static.up(PS)])
    static.static.wait_for({PS, W0}, what="session s1")
    assert static.master.worker(*PS) is not None
    assert [r.getMessage() for r in caplog.records] == [
        "session s1 is waiting for /job:ps/task:0 at ps0:2222 (connection refused), 0.0 s so far "
        "(tasks may start in any order)",
        "session s1 is waiting for /job:ps/task:0 at ps0:2222 (connection refused), 12 s so far "
        "(tasks may start in any order)",
        "session s1: every task it needs is up after 18 s"]


def test_connection_refused_is_the_reason_given(static, caplog):
    caplog.set_level(logging.WARNING, "tensorgrid.master")
    with pytest.raises(errors.DeadlineExceededError) as e:
        static.static.wait_for({PS}, deadline=static.clock.now + 2.0)
    assert "/job:ps/task:0 at ps0:2222 (connection refused)" in e.value.message
    assert e.value.message.startswith("a step needs tasks that are not up after 2.0 s")


def test_a_task_that_went_away_is_not_waited_for(static):
    static.up(PS)
    static.static.probe([PS])
    static.kill(PS)
    static.static.wait_for({PS})                     # returns at once: the step itself fails, naming it
    assert static.clock.now == 1000.0


def test_a_restarted_task_is_registered_again_with_its_new_incarnation(static):
    first = static.up(PS, incarnation=7)
    static.static.wait_for({PS})
    static.kill(PS)
    static.static.poll()
    assert static.master.worker(*PS).incarnation == 7
    static.up(PS, incarnation=8)
    static.static.poll()
    rec = static.master.worker(*PS)
    assert (rec.incarnation, rec.alive) == (8, True)
    assert first.killed


def test_polls_are_heartbeats(static):
    static.up(PS)
    static.static.wait_for({PS})
    static.clock.now += 30
    static.static.poll()
    assert static.master.check_health() == []
    static.kill(PS)
    static.clock.now += 30
    static.static.poll()
    assert [r.key for r in static.master.check_health()] == [PS]
    static.nodes[PS].killed = False                  # it answers again, same incarnation: alive again
    static.static.poll()
    assert static.master.worker(*PS).alive


def test_a_server_that_is_another_task_is_not_taken_for_it(static, caplog):
    node = static.up(W1)
    static.by_data_address[ADDRESSES[PS]] = node     # the ClusterSpec says ps0:2222 is the ps; it is worker 1
    with pytest.raises(errors.DeadlineExceededError) as e:
        static.static.wait_for({PS}, deadline=static.clock.now + 1.0)
    assert "is /job:worker/task:1, not /job:ps/task:0 as the ClusterSpec says" in e.value.message
    assert static.master.worker(*PS) is None


def test_a_session_waits_for_the_tasks_its_step_names_only(static):
    static.up(W0)
    static.up(PS)
    static.static.wait_for({W0})
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:ps/task:0"):
            v = tg.constant(np.float32(2.0), name="v")
        with tg.device("/job:worker/task:0"):
            y = tg.multiply(v, 3.0, name="y")
    handle, _ = static.master.create_session(g.to_ir())
    out, _, _ = static.master.run_step(handle, [], [y.name], [])   # worker 1 never came up: not needed
    assert float(out[0][1]) == 6.0
    assert static.master.worker(*W1) is None


def test_device_filters_hide_devices_and_tasks(static):
    static.up(W0)
    static.up(W1)
    static.static.wait_for({W0, W1})
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker"):
            y = tg.add(tg.constant(1.0), 2.0, name="y")
    config = tg.ConfigProto(device_filters=["/job:worker/task:1"])
    handle, _ = static.master.create_session(g.to_ir(), config)
    static.master.run_step(handle, [], [y.name], [])
    assert static.calls(W1, "run_graph") == 1 and static.calls(W0, "run_graph") == 0


def test_unpinned_nodes_go_to_the_masters_own_task(static):
    static.master.local_task = W1
    static.up(W0)
    static.up(W1)
    static.static.wait_for({W0, W1})
    g = tg.Graph()
    with g.as_default():
        y = tg.add(tg.constant(1.0), 2.0, name="y")
    handle, _ = static.master.create_session(g.to_ir())
    static.master.run_step(handle, [], [y.name], [])
    assert static.calls(W1, "run_graph") == 1 and static.calls(W0, "run_graph") == 0
