"""Shared fixtures: the executors every op test runs on, parametrized, not copied."""

import contextlib
import faulthandler
import os
import tempfile

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client import context

# Each executor runs fn(*tensors) and returns numpy results:
#   eager     - ops run at once
#   graph     - TF1 graph + in-process Session, one device
#   graph4    - the same graph on 4 virtual CPU devices, each input pinned to its own device
#   function  - @tg.function traced, then called with eager tensors
#   graphdef  - the graph serialized to GraphDef bytes, imported into a fresh graph, then run
#   cluster   - a real local cluster (master + 2 worker processes), inputs pinned alternately to each worker
#   unfused   - graph, with elementwise fusion (on in every other executor) off through ConfigProto
#   cluster-unfused - cluster, fusion off: only test_math_ops.py's battery (the elementwise ops) runs it,
#               to keep the default run short
#   gpu       - only where an NVIDIA GPU and CuPy are: a local cluster whose workers serve every device,
#               inputs fed on task 0's CPU, the ops placed on its GPU:0 (soft placement for ops without
#               a GPU kernel), so the whole op battery checks the GPU kernels against NumPy's
EXECUTORS = ["eager", "graph", "graph4", "function", "graphdef", "cluster", "unfused"]

_cluster = None
_gpu_cluster = None
_gpus = None


def gpu_count():
    """How many GPUs CuPy sees here; 0 without CuPy (not imported unless it is installed)."""
    global _gpus
    if _gpus is None:
        import importlib.util
        _gpus = 0
        if importlib.util.find_spec("cupy") is not None:
            try:
                import cupy
                _gpus = cupy.cuda.runtime.getDeviceCount()
            except Exception:  # noqa: BLE001 - CuPy without a driver or a device: no GPU
                _gpus = 0
    return _gpus


if gpu_count():
    EXECUTORS.append("gpu")


def _local_cluster():
    """One cluster for the whole test session, stopped at exit."""
    global _cluster
    if _cluster is None:
        from tensorgrid.runtime.cluster import LocalCluster
        # tests' files live under the temp directory (tmp_path): the workers may open files there
        _cluster = LocalCluster(num_workers=2, extra_worker_args=["--allow-pickle", "--allow-file-access",
                                                                  tempfile.gettempdir()])
    return _cluster


def _local_gpu_cluster():
    global _gpu_cluster
    if _gpu_cluster is None:
        from tensorgrid.runtime.cluster import LocalCluster
        _gpu_cluster = LocalCluster(num_workers=2, extra_worker_args=["--allow-pickle", "--devices", "all"])
    return _gpu_cluster


def pytest_sessionfinish(session, exitstatus):
    for cluster in (_cluster, _gpu_cluster):
        if cluster is not None:
            cluster.stop()


# pytest-timeout's signal method cannot end a test whose main thread is stuck in C code (its SIGALRM
# handler never runs), so the run would stall for good. faulthandler's watchdog is a C thread: a test
# still running STALL_GRACE_S after its timeout dumps every thread's stack and ends the run (status 1).
STALL_GRACE_S = 60.0
_STDERR = pytest.StashKey[int]()


def pytest_configure(config):
    config.stash[_STDERR] = os.dup(2)   # the run's stderr: capturing is suspended while plugins configure


def _timeout(item):
    """The test's pytest-timeout limit in seconds (its timeout mark, else --timeout, else the ini); 0: none."""
    if not item.config.pluginmanager.hasplugin("timeout"):
        return 0.0
    mark = item.get_closest_marker("timeout")
    if mark is not None:
        value = mark.args[0] if mark.args else mark.kwargs.get("timeout")
    else:
        value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    return float(value or 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    limit = _timeout(item)
    # -o faulthandler_timeout=N takes the one watchdog for its own dumps
    if limit <= 0 or float(item.config.getini("faulthandler_timeout") or 0) > 0:
        return (yield)
    faulthandler.dump_traceback_later(limit + STALL_GRACE_S, exit=True, file=item.config.stash[_STDERR])
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _to_numpy(out):
    if isinstance(out, (list, tuple)):
        return type(out)(_to_numpy(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if hasattr(out, "numpy"):
        return np.asarray(out.numpy())
    return np.asarray(out)


def run_with(executor, fn, *arrays):
    """Runs fn on tensors holding `arrays` with the named executor; returns numpy values."""
    arrays = [np.asarray(a) for a in arrays]
    if executor == "eager":
        return _to_numpy(fn(*[tg.constant(a, dtype=tg.as_dtype(a.dtype)) for a in arrays]))
    if executor == "function":
        return _to_numpy(tg.function(fn)(*[tg.constant(a, dtype=tg.as_dtype(a.dtype)) for a in arrays]))
    g = tg.Graph()
    ndev = 4 if executor == "graph4" else 1
    devices = {"cluster": [f"/job:worker/task:{i}" for i in range(2)],
               "cluster-unfused": [f"/job:worker/task:{i}" for i in range(2)],
               "gpu": ["/job:worker/task:0/device:CPU:0"]}.get(executor, [f"/cpu:{i}" for i in range(ndev)])
    with g.as_default():
        phs = []
        for i, a in enumerate(arrays):
            with tg.device(devices[i % len(devices)]):
                phs.append(tg.compat.v1.placeholder(tg.as_dtype(a.dtype), a.shape, name=f"in{i}"))
        with tg.device("/job:worker/task:0/device:GPU:0") if executor == "gpu" else contextlib.nullcontext():
            out = fn(*phs)
    if executor == "graphdef":
        g, phs, out = _reimported(g, phs, out)
    if executor in ("cluster", "cluster-unfused", "gpu"):
        target = (_local_gpu_cluster() if executor == "gpu" else _local_cluster()).target
        config = tg.ConfigProto(allow_soft_placement=executor == "gpu")
        if executor == "cluster-unfused":
            config.graph_options.rewrite_options.remapping = tg.RewriterConfig.OFF
        try:
            with g.as_default(), tg.Session(target, graph=g, config=config) as sess:
                return _to_numpy(sess.run(out, dict(zip(phs, arrays))))
        finally:
            tg.Session.reset(target)  # variables live on the workers across sessions; tests must not share them
    config = tg.ConfigProto(device_count={"CPU": ndev})
    if executor == "unfused":
        config.graph_options.rewrite_options.remapping = tg.RewriterConfig.OFF
    with g.as_default():
        with tg.Session(graph=g, config=config) as sess:
            return _to_numpy(sess.run(out, dict(zip(phs, arrays))))


def _reimported(g, phs, out):
    """The same graph after a trip through GraphDef bytes, with phs and out looked up in it."""
    data = g.as_graph_def().SerializeToString()
    g2 = tg.Graph()
    with g2.as_default():
        tg.import_graph_def(data, name="")

    def find(t):
        if isinstance(t, (list, tuple)):
            return type(t)(find(x) for x in t)
        if isinstance(t, dict):
            return {k: find(v) for k, v in t.items()}
        return g2.as_graph_element(t.name)
    return g2, [find(p) for p in phs], find(out)


@pytest.fixture(params=EXECUTORS)
def executor(request):
    return request.param


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts eager, with an empty default graph and no default session."""
    context.set_eager(True)
    tg.reset_default_graph()
    yield
    context.set_eager(True)
    del context.session_stack()[:]
    del context.graph_stack()[:]
    tg.reset_default_graph()
