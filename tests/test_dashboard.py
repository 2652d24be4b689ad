"""The web dashboard in a real headless browser (Debian's Chromium driven by Playwright) against a live
local cluster: workers, a running step, latency, bytes, the graph, a traced step and an error appear;
then the same page from the history the master kept (`tensorgrid dashboard --from`)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

import tensorgrid.compat.v1 as tf
from tensorgrid.dashboard import history, server
from tensorgrid.runtime.cluster import LocalCluster
from tests.waiting import poll, run_in_thread

CHROMIUM = os.environ.get("TENSORGRID_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "dashboard-test-token"
# Where the screenshot is copied for a person to look at (the test always writes one into tmp_path).
SCREENSHOT_ENV = "TENSORGRID_DASHBOARD_SCREENSHOT"


def _browser():
    """A Chromium launched by Playwright; skips only where neither is installed and CI does not require it."""
    required = os.environ.get("TENSORGRID_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        if required:
            raise AssertionError(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright, CHROMIUM


def _get(url, token=TOKEN):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read()


def _model():
    """A blocking dequeue (a step that runs until fed), a two-worker step, and a step that fails on a node."""
    g = tf.Graph()
    with g.as_default():
        with tf.device("/job:worker/task:0"):
            q = tf.FIFOQueue(4, tf.float32, shapes=[[]], shared_name="dashboard_test_queue")
            waiting = q.dequeue(name="wait_for_item")
            put = q.enqueue([1.0])
            x = tf.placeholder(tf.float32, [256], name="x")
            a = tf.multiply(x, 2.0, name="scaled")
        with tf.device("/job:worker/task:1"):
            total = tf.reduce_sum(a + 1.0, name="total")
            checked = tf.debugging.assert_positive(x, message="x must be positive", name="check_x")
    return g, waiting, put, x, total, checked


def test_dashboard_in_a_browser_live_and_from_history(tmp_path):
    sync_playwright, chromium = _browser()
    hist = tmp_path / "history"
    cluster = LocalCluster(num_workers=2, token=TOKEN, extra_master_args=[
        "--dashboard-port", "0", "--metrics-port", "0", "--history-dir", str(hist)])
    g, waiting, put, x, total, checked = _model()
    sess = tf.Session(cluster.target, graph=g, config=tf.ConfigProto(token=TOKEN))
    thread = None
    try:
        ones = np.ones(256, np.float32)
        for _ in range(30):
            sess.run(total, {x: ones})
        with pytest.raises(tf.errors.InvalidArgumentError):
            sess.run(checked, {x: -ones})
        thread, box = run_in_thread(lambda: sess.run(waiting))
        poll(lambda: json.loads(_get(cluster.dashboard_url.split("?")[0] + "api/snapshot"))["running"], 30,
             "the blocked dequeue to show as running")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(cluster.dashboard_url)            # ?token= logs in, then the page drops it from the URL
            assert "token" not in page.url
            page.wait_for_selector("#state.live")
            page.wait_for_function("document.querySelector('#workers tbody').innerText.includes('/job:worker/task:1')")
            workers = page.inner_text("#workers tbody")
            assert workers.count("alive") == 2 and "/job:worker/task:0" in workers and "CPU:0" in workers
            assert "wait_for_item" in page.inner_text("#running tbody")
            page.wait_for_selector("#latency circle")
            page.select_option("#signature", label=next(o for o in page.eval_on_selector_all(
                "#signature option", "os => os.map(o => o.textContent)") if o.startswith("total")))
            page.wait_for_selector("#graph svg text")
            graph = page.inner_html("#graph")
            assert "send scaled:0" in graph and "recv scaled:0" in graph and 'stroke="#dc2626"' in graph
            page.wait_for_selector("#timeline rect")
            lanes = page.inner_html("#timeline")
            assert "/job:worker/replica:0/task:0/device:CPU:0" in lanes and "_Send" in lanes
            matrix = page.inner_text("#matrix")
            assert "KiB" in matrix, matrix                         # 30 steps of 1 KiB from task 0 to task 1
            errors = page.inner_text("#errors tbody")
            assert "InvalidArgumentError" in errors and "check_x" in errors and "test_dashboard.py" in errors
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get(SCREENSHOT_ENV):
                shutil.copy(shot, os.environ[SCREENSHOT_ENV])

            # without the token: nothing but a 401 that says how to present it
            with pytest.raises(urllib.error.HTTPError) as denied:
                _get(cluster.dashboard_url.split("?")[0] + "api/snapshot", token=None)
            assert denied.value.code == 401 and b"Bearer" in denied.value.read()

            sess.run(put)
            thread.join(30)
            assert box.get("value") == 1.0
            poll(lambda: not json.loads(_get(cluster.dashboard_url.split("?")[0] + "api/snapshot"))["running"], 30,
                 "the dequeue to finish")
            sess.close()
            cluster.stop()                              # the cluster is gone; its history stays

            recorded = subprocess.Popen([sys.executable, "-m", "tensorgrid.cli", "dashboard", "--from", str(hist),
                                         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                url = re.search(r"http://\S+/", recorded.stdout.readline()).group(0)
                page.goto(url)
                page.wait_for_selector("#state.recorded")
                assert "/job:worker/task:1" in page.inner_text("#workers tbody")
                assert "check_x" in page.inner_text("#errors tbody")
                page.wait_for_selector("#graph svg text")
                page.wait_for_selector("#timeline rect")
            finally:
                recorded.terminate()
                assert recorded.wait(10) == 0
            browser.close()
    finally:
        if thread is not None and thread.is_alive():
            sess.run(put)
        sess.close()
        cluster.stop()


def test_history_of_a_crashed_cluster_reads_back(tmp_path):
    """A worker dies, then the master is SIGKILLed: what it kept on disk is what RecordedView serves."""
    with LocalCluster(num_workers=2, heartbeat_timeout=1.0, heartbeat_interval=0.2, extra_master_args=[
            "--dashboard-port", "0", "--history-dir", str(tmp_path)]) as cluster:
        g, _, _, x, total, _ = _model()
        with tf.Session(cluster.target, graph=g) as sess:
            for _ in range(3):
                sess.run(total, {x: np.ones(256, np.float32)})
        cluster.kill_worker(1)

        def on_disk():
            try:
                with open(tmp_path / history.SNAPSHOT, encoding="utf-8") as f:
                    snap = json.load(f)
            except (OSError, ValueError):
                return False
            return any(s["steps"] == 3 and s["trace_step"] for s in snap["signatures"]) and \
                [w["health"] for w in snap["workers"]] == ["alive", "dead"]
        poll(on_disk, 30, "the steps, the trace and the dead worker on disk")
        cluster.master.signal(signal.SIGKILL)
        cluster.master.popen.wait()
    view = history.RecordedView(str(tmp_path))
    snap = view.snapshot()
    assert snap["live"] is False
    assert "no heartbeat" in snap["workers"][1]["dead_reason"]
    sig = next(s for s in snap["signatures"] if s["steps"] == 3)
    assert "_Recv" in view.graph_svg(sig["id"])
    assert {lane["device"] for lane in view.trace(sig["id"])["lanes"]} == {
        "/job:worker/replica:0/task:0/device:CPU:0", "/job:worker/replica:0/task:1/device:CPU:0"}
    routes = server.routes(view)
    assert routes["/api/graph.svg"]({"sig": "nope"}).status == 404
    with pytest.raises(tf.errors.NotFoundError, match="--history-dir"):
        history.RecordedView(str(tmp_path / "missing"))
