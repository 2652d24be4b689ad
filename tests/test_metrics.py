"""tensorgrid/metrics.py and the /metrics endpoints of a real master and workers.

The text format is checked against prometheus_client's own parser (the dev
extra), the reference implementation of what Prometheus scrapes.
"""

import json
import math
import os
import re
import urllib.error
import urllib.request

import numpy as np
import pytest

import tensorgrid.compat.v1 as tf
from tensorgrid import metrics
from tensorgrid.runtime.cluster import LocalCluster

TOKEN = "metrics-test-token"
GRAFANA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "grafana",
                       "tensorgrid.json")


def _parse(text):
    parser = pytest.importorskip("prometheus_client.parser")
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def test_registry_renders_prometheus_text():
    r = metrics.Registry()
    c = r.counter("tg_test_things_total", "Things, by kind.", ["kind"])
    c.labels("a").inc()
    c.labels("a").inc(2)
    c.labels('we"ird\\').inc()
    g = r.gauge("tg_test_level", "A level.\nSecond line.")
    g.set(1.5)
    h = r.histogram("tg_test_duration_seconds", "Durations.", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 3.0):
        h.observe(v)
    r.add_collector(lambda: [metrics.gauge_family("tg_test_read_later", "Read at scrape time.", [({"x": "1"}, 7)])])
    families = _parse(r.render())
    things = {s.labels["kind"]: s.value for s in families["tg_test_things"].samples}
    assert things == {"a": 3.0, 'we"ird\\': 1.0}
    assert families["tg_test_level"].samples[0].value == 1.5
    assert families["tg_test_level"].documentation == "A level.\nSecond line."
    buckets = {float(s.labels["le"]): s.value for s in families["tg_test_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets == {0.1: 1, 1.0: 3, math.inf: 4}
    total = next(s.value for s in families["tg_test_duration_seconds"].samples if s.name.endswith("_sum"))
    assert math.isclose(total, 4.05)
    assert families["tg_test_read_later"].samples[0].value == 7


def test_registry_refuses_what_prometheus_would():
    r = metrics.Registry()
    with pytest.raises(ValueError, match="_total"):
        r.counter("tg_test_things", "A counter without _total.")
    with pytest.raises(ValueError, match="bad metric name"):
        r.gauge("tg-test", "A dash.")
    r.gauge("tg_test_once", "Once.")
    with pytest.raises(ValueError, match="twice"):
        r.gauge("tg_test_once", "Twice.")
    with pytest.raises(ValueError, match="takes labels"):
        r.counter("tg_test_labelled_total", "Labelled.", ["a"]).labels("x", "y")


def _scrape(port, token=TOKEN):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Type"] == metrics.CONTENT_TYPE
        return r.read().decode("utf-8")


def _value(families, name, **labels):
    """The sum of the samples called `name` (a counter's family drops _total; a histogram's has _count)."""
    fam = families.get(name) or families[name.rsplit("_", 1)[0]]
    return sum(s.value for s in fam.samples if s.name in (name, name + "_total")
               and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def scraped():
    """Scrapes of a master and two workers (token-protected) after 5 steps, a failed one and an initializer."""
    with LocalCluster(num_workers=2, token=TOKEN, extra_master_args=["--metrics-port", "0"],
                      extra_worker_args=["--metrics-port", "0"]) as cluster:
        g = tf.Graph()
        with g.as_default():
            with tf.device("/job:worker/task:0"):
                x = tf.placeholder(tf.float32, [1024], name="x")
                v = tf.Variable(np.zeros(1000, np.float32), name="v")
                a = x * 2.0
            with tf.device("/job:worker/task:1"):
                total = tf.reduce_sum(a)
                checked = tf.debugging.assert_positive(x, name="check_x")
            with tf.Session(cluster.target, graph=g, config=tf.ConfigProto(token=TOKEN)) as sess:
                sess.run(v.initializer)
                for _ in range(5):
                    sess.run(total, {x: np.ones(1024, np.float32)})
                with pytest.raises(tf.errors.InvalidArgumentError):
                    sess.run(checked, {x: -np.ones(1024, np.float32)})
                texts = {"master": _scrape(cluster.master.info["metrics_port"]),
                         "w0": _scrape(cluster.worker_info(0)["metrics_port"]),
                         "w1": _scrape(cluster.worker_info(1)["metrics_port"])}
                port = cluster.master.info["metrics_port"]
                denied = []
                for token in (None, "wrong"):
                    with pytest.raises(urllib.error.HTTPError) as e:
                        _scrape(port, token)
                    denied.append((e.value.code, e.value.headers["WWW-Authenticate"], e.value.read()))
        yield texts, cluster.worker_info(1)["data_address"], denied


def test_master_and_worker_metrics_on_a_live_cluster(scraped):
    texts, peer, _ = scraped
    master, w0, w1 = (_parse(texts[k]) for k in ("master", "w0", "w1"))
    assert _value(master, "tensorgrid_steps_started") == 7
    assert _value(master, "tensorgrid_steps_finished") == 6
    assert _value(master, "tensorgrid_steps_failed", error="InvalidArgumentError") == 1
    assert _value(master, "tensorgrid_step_duration_seconds_count") == 6
    assert _value(master, "tensorgrid_master_run_graph_duration_seconds_count", worker="/job:worker/task:1") >= 6
    assert _value(master, "tensorgrid_workers", health="alive") == 2
    ages = {s.labels["worker"]: s.value for s in master["tensorgrid_worker_heartbeat_age_seconds"].samples}
    assert set(ages) == {"/job:worker/task:0", "/job:worker/task:1"} and all(0 <= a < 10 for a in ages.values())
    assert _value(master, "tensorgrid_sessions") == 1
    assert _value(master, "process_resident_memory_bytes") > 10 << 20
    assert _value(master, "process_cpu_seconds") > 0
    assert _value(w0, "tensorgrid_transport_sent_bytes", peer=peer) == 6 * 4096   # 5 steps of a, 1 of x
    assert _value(w1, "tensorgrid_transport_received_bytes") == 6 * 4096
    assert _value(w0, "tensorgrid_worker_variables") == 1
    assert _value(w0, "tensorgrid_worker_variable_bytes") == 4000
    assert _value(w1, "tensorgrid_worker_run_graph_duration_seconds_count") == 5
    assert _value(w1, "tensorgrid_worker_run_graphs_failed", error="InvalidArgumentError") == 1
    assert w0["tensorgrid_worker_info"].samples[0].labels["task"] == "0"
    for families in (master, w0, w1):
        for fam in families.values():
            assert fam.name.startswith(("tensorgrid_", "process_")), fam.name


def test_metrics_need_the_token(scraped):
    for code, challenge, body in scraped[2]:
        assert code == 401 and challenge.startswith("Bearer") and b"Authorization: Bearer" in body


def test_grafana_dashboard_asks_for_metrics_that_exist(scraped):
    """Every metric the Grafana dashboard's queries name is one a master or worker serves."""
    served = "".join(scraped[0].values())
    names = {line.split()[2] for line in served.splitlines() if line.startswith("# TYPE")}
    names |= {f"{n}_{s}" for n in list(names) for s in ("bucket", "sum", "count")}
    with open(GRAFANA, encoding="utf-8") as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", ())]
    assert len(exprs) >= 8
    asked = {m for e in exprs for m in re.findall(r"\b((?:tensorgrid|process)_[a-z_]+)\b", e)}
    assert asked and asked <= names, asked - names
