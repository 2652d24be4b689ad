"""Micro-benchmark of the data plane between two processes: latency of tiny tensors, throughput of big ones.

    python benchmarks/bench_transport.py [--paths shm,tcp,grpc] [--sizes 4,64M] [--iters 200]

For each path a receiver process starts a DataPlane whose deliver answers
every arrival with a 4-byte acknowledgement. The sender times
send -> acknowledgement, so "one way" is half a 4-byte round trip and the
big-tensor figure includes one such one-way trip. With --w2 the timed loop
also does W2's compute (`v + 1` before sending, a sum on arrival), i.e. a
W2 step without the master. Warm-up iterations are excluded. Prints a table
and one JSON line per measurement.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time

import numpy as np

from tensorgrid.worker.transport import DataPlane


def _parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def _receiver(mode, w2, conn):
    """The peer process: acknowledges every tensor (after summing it when w2) to the address it is told."""
    ack = np.zeros(1, dtype=np.float32)
    box = {}

    def deliver(step_id, key, array):
        if w2:
            ack[0] = array.sum(dtype=np.float32)
        del array
        box["plane"].send(box["reply_to"], step_id, "ack", ack)

    plane = DataPlane(mode=mode, deliver=deliver)
    box["plane"] = plane
    conn.send(plane.start())
    box["reply_to"] = conn.recv()
    conn.recv()
    conn.send(plane.stats())
    plane.close()


def measure(mode, nbytes, iters, warmup, w2=False):
    """Times `iters` sends of an nbytes float32 tensor (4 bytes: uint8 ... float32) and their acknowledgements."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver, args=(mode, w2, child), daemon=True)
    proc.start()
    acked = threading.Event()
    plane = DataPlane(mode=mode, deliver=lambda step_id, key, array: acked.set())
    try:
        reply_to = plane.start()
        peer = parent.recv()
        parent.send(reply_to)
        v = np.ones(max(nbytes // 4, 1), dtype=np.float32)
        times = []
        for i in range(warmup + iters):
            acked.clear()
            t0 = time.perf_counter()
            tensor = v + 1 if w2 else v
            plane.send(peer, i, "x", tensor)
            del tensor
            if not acked.wait(60):
                raise RuntimeError(f"no acknowledgement from the receiver ({mode}, {nbytes} bytes)")
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        parent.send("stop")
        peer_stats = parent.recv()
        return times, plane.stats(), peer_stats
    finally:
        plane.close()
        proc.join(10)


def copy_reference(nbytes, iters):
    """Times np.copyto of nbytes between two warm arrays: the floor of a one-copy path."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.zeros_like(src)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="shm,tcp,grpc", help="comma-separated modes (auto, shm, tcp, grpc)")
    parser.add_argument("--sizes", default="4,64M", help="comma-separated tensor sizes in bytes (K, M, G suffixes)")
    parser.add_argument("--iters", type=int, default=0, help="timed iterations (default: 500 small, 30 big)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--w2", action="store_true", help="add W2's compute: v + 1 before sending, a sum on arrival")
    args = parser.parse_args(argv)
    os.environ.pop("TENSORGRID_TRANSPORT", None)
    rows = []
    print(f"{'path':6} {'bytes':>12} {'median ms':>10} {'p10 ms':>9} {'p90 ms':>9} {'GB/s':>7}  note")
    for mode in args.paths.split(","):
        for size_text in args.sizes.split(","):
            nbytes = _parse_size(size_text)
            iters = args.iters or (500 if nbytes < (1 << 20) else 30)
            times, mine, theirs = measure(mode, nbytes, iters, args.warmup, args.w2)
            times.sort()
            med = statistics.median(times)
            p10, p90 = times[len(times) // 10], times[(len(times) * 9) // 10]
            small = nbytes < (1 << 20)
            note = f"one way {med / 2 * 1e6:.0f} us" if small else "send + 4-byte ack"
            gbps = nbytes / med / 1e9
            print(f"{mode:6} {nbytes:>12} {med * 1e3:>10.3f} {p10 * 1e3:>9.3f} {p90 * 1e3:>9.3f} {gbps:>7.2f}  {note}")
            rows.append({"benchmark": "transport", "path": mode, "bytes": nbytes, "w2": args.w2,
                         "median_s": med, "p10_s": p10, "p90_s": p90, "n": len(times), "gb_per_s": gbps,
                         "sender_stats": {k: v for k, v in mine.items() if v},
                         "receiver_stats": {k: v for k, v in theirs.items() if v}})
    for size_text in args.sizes.split(","):
        nbytes = _parse_size(size_text)
        if nbytes >= (1 << 20):
            ref = copy_reference(nbytes, 30)
            print(f"{'copyto':6} {nbytes:>12} {ref * 1e3:>10.3f} {'':>9} {'':>9} {nbytes / ref / 1e9:>7.2f}  "
                  "np.copyto in one process, for reference")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
