"""In-process step latency: the W1 graph (a = x + 1, b = a * 2) run by a target "" Session.

    python -m benchmarks.inprocess

Prints one JSON line per variant: both ops on one device, and split over two
virtual CPU devices (so the step crosses a send/recv pair in memory).
"""

import json
import statistics
import time

import numpy as np


def measure(devices, n=5000, warmup=200):
    import tensorgrid.compat.v1 as tf
    tf.disable_eager_execution()
    g = tf.Graph()
    with g.as_default():
        with tf.device("/cpu:0"):
            x = tf.placeholder(tf.float32, [1], name="x")
            a = x + 1.0
        with tf.device(f"/cpu:{devices - 1}"):
            b = a * 2.0
        with tf.Session(graph=g, config=tf.ConfigProto(device_count={"CPU": devices})) as sess:
            feed = {x: np.ones(1, np.float32)}
            for _ in range(warmup):
                sess.run(b, feed)
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                sess.run(b, feed)
                samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"workload": f"in-process W1 ({devices} device{'s' if devices > 1 else ''})",
            "median_s": statistics.median(samples), "p10_s": samples[len(samples) // 10],
            "p90_s": samples[9 * len(samples) // 10], "n": n}


if __name__ == "__main__":
    for d in (1, 2):
        print(json.dumps(measure(d)))
