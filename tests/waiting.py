"""Waiting in multi-process tests without fixed sleeps: poll a condition, run a blocking call aside."""

import threading
import time


def poll(predicate, timeout, what):
    """Returns once predicate() is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_in_thread(fn):
    """Starts fn() on a daemon thread; returns (thread, box): box gets 'value' or 'error'."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001 - the test inspects it
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box
