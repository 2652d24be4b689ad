"""The second peer and the physical limits, for the suite of benchmarks/run.py.

Ray Compiled Graphs (where `ray` is installed: `pip install -e ".[bench]"`): W1-W3's shapes as two
actors, one per worker of the tensorgrid and TensorFlow runs, bound into one compiled graph
(`dag.experimental_compile()`), the input passed to `execute` as tensorgrid's feed is:
- W1: `a = x + 1` on actor 0, `b = a * 2` on actor 1, x a 1-element float32;
- W2: a 64 MiB float32 `v + 1` on actor 0 (v resident in the actor), summed on actor 1;
- W3: 1,000 `y * 1.0001 + 0.5` style ops in ten blocks of 100, alternating between the actors.
W4 (10,000 separately scheduled nodes) has no counterpart: a compiled graph binds actor methods,
and one bound method per node would measure Ray's channel set-up, not a dataflow graph.

The limits, measured in the same run on the same machine:
- a Python gRPC unary round trip of a 4-byte message over loopback (grpcio, one channel);
- a 64 MiB memcpy (numpy.copyto into a preallocated array);
- W2's compute alone: `v + 1` and the sum of 64 MiB in one process.
"""

import time

import numpy as np

from benchmarks.workloads import _timed

W2_ELEMS = 64 * (1 << 20) // 4


def _ray_actor_class(ray):
    @ray.remote(num_cpus=0)
    class Worker:
        def __init__(self):
            self.v = np.zeros(W2_ELEMS, np.float32)
            self.m, self.c = np.float32(1.0001), np.float32(0.5)

        def add1(self, x):
            return x + np.float32(1.0)

        def mul2(self, x):
            return x * np.float32(2.0)

        def make(self, _):
            return self.v + np.float32(1.0)

        def total(self, y):
            return np.float32(y.sum())

        def block(self, y, ops=100):
            for _ in range(ops // 2):
                y = y * self.m + self.c
            return y
    return Worker


def ray_compiled_graphs(workloads):
    """Yields {name: samples} for W1-W3 on Ray Compiled Graphs (names as tensorgrid's rows)."""
    import ray
    from ray.dag import InputNode
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        worker = _ray_actor_class(ray)
        for w in workloads:
            if w not in _RAY_SHAPES:
                continue
            name, build, arg, expect, n, warmup = _RAY_SHAPES[w]
            # a fresh pair of actors per workload, killed at teardown: a graph that moved 64 MiB
            # can leave its actors busy past teardown(), which then waits 30 s and more for them
            a, b = worker.remote(), worker.remote()
            with InputNode() as inp:
                dag = build(a, b, inp)
            compiled = dag.experimental_compile()
            try:
                # a float, not the array: a result array is a zero-copy view of the channel's buffer,
                # and holding it blocks every later execute (RayChannelTimeoutError on the read lock)
                got = float(np.ravel(ray.get(compiled.execute(arg)))[0])
                if expect is not None:
                    assert abs(got - expect) <= 1e-3 * expect, got
                yield {name: _timed(lambda: ray.get(compiled.execute(arg)), n, warmup)}
            finally:
                compiled.teardown(kill_actors=True)
    finally:
        ray.shutdown()


def _w3_dag(a, b, inp):
    y = inp
    for i in range(10):
        y = (a if i % 2 == 0 else b).block.bind(y)
    return y


# workload: (row name, dag builder (actor a, actor b, input node), execute's argument, expected first
# element or None, repetitions, warm-up runs)
_RAY_SHAPES = {
    "W1": ("W1 step latency", lambda a, b, inp: b.mul2.bind(a.add1.bind(inp)), np.ones(1, np.float32), 4.0, 300, 30),
    "W2": ("W2 transfer 64MiB", lambda a, b, inp: b.total.bind(a.make.bind(inp)), 0, float(W2_ELEMS), 20, 3),
    "W3": ("W3 chain 1000 ops", _w3_dag, np.ones(1, np.float32), None, 50, 5),
}


def limits():
    """{name: samples} of the raw limits the tensorgrid figures are set against."""
    out = {"gRPC round trip (Python, loopback)": _grpc_round_trip()}
    src = np.ones(W2_ELEMS, np.float32)
    dst = np.empty_like(src)
    out["memcpy 64MiB"] = _timed(lambda: np.copyto(dst, src), 20, 3)
    out["W2 compute alone (v + 1, sum)"] = _timed(lambda: float((src + np.float32(1.0)).sum()), 20, 3)
    return out


def _grpc_round_trip(n=2000, warmup=200):
    from concurrent import futures

    import grpc

    def echo(request, context):
        return request
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/bench.Echo/Echo")
            assert call(b"ping") == b"ping"
            return _timed(lambda: call(b"ping"), n, warmup)
    finally:
        server.stop(0)


if __name__ == "__main__":
    t0 = time.perf_counter()
    for k, v in limits().items():
        print(f"{k:<40} {np.median(v) * 1e3:.3f} ms")
    print(f"({time.perf_counter() - t0:.1f} s)")
