"""GPU workers (issue: GPU workers for real). Everything here but the first test needs an NVIDIA GPU
and CuPy; without them those tests skip, saying so. `python benchmarks/gpu.py` runs this file, the op
battery on a GPU (the `gpu` executor of conftest.py) and the GPU benchmarks on a machine that has one.

The first test runs everywhere: a CPU-only install never imports CuPy.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tensorgrid as tg
from tests.conftest import gpu_count


def test_a_cpu_only_worker_and_session_never_import_cupy():
    program = textwrap.dedent("""
        import sys
        import numpy as np
        import tensorgrid.compat.v1 as tf
        from tensorgrid.worker.worker import Worker, local_devices
        tf.disable_eager_execution()
        x = tf.placeholder(tf.float32, [2])
        with tf.Session() as sess:
            assert list(sess.run(x * 2, {x: np.ones(2, np.float32)})) == [2.0, 2.0]
        Worker(local_devices("cpu"))
        print("cupy" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


requires_gpu = pytest.mark.skipif(gpu_count() == 0, reason="no NVIDIA GPU with CuPy on this machine")
GPU = "/job:worker/task:0/device:GPU:0"
CPU0 = "/job:worker/task:0/device:CPU:0"
CPU1 = "/job:worker/task:1/device:CPU:0"


@pytest.fixture(scope="module")
def gpu_cluster():
    """A master and two workers serving every device they have (task 0 has the GPU)."""
    from tensorgrid.runtime.cluster import LocalCluster
    with LocalCluster(num_workers=2, extra_worker_args=["--devices", "all"]) as cluster:
        yield cluster


def _run(target, build, feeds=None, soft=False):
    g = tg.Graph()
    with g.as_default():
        out, feed_tensors = build()
        config = tg.ConfigProto(allow_soft_placement=soft)
        with tg.Session(target, graph=g, config=config) as sess:
            try:
                return sess.run(out, dict(zip(feed_tensors, feeds or [])))
            finally:
                tg.Session.reset(target)


@requires_gpu
def test_list_devices_names_each_gpu_with_its_memory(gpu_cluster):
    with tg.Session(gpu_cluster.target) as sess:
        devices = {d.name: d for d in sess.list_devices()}
    gpus = [d for d in devices.values() if d.device_type == "GPU"]
    assert len(gpus) == 2 * gpu_count()
    assert all(d.memory_limit_bytes > 1 << 30 for d in gpus)
    assert "/job:worker/replica:0/task:0/device:GPU:0" in devices


@requires_gpu
def test_a_kernel_runs_on_the_gpu_and_its_result_comes_back_to_the_host(gpu_cluster):
    a = np.random.RandomState(0).randn(64, 32).astype(np.float32)

    def build():
        x = tg.compat.v1.placeholder(tg.float32, a.shape)
        with tg.device(GPU):
            y = tg.nn.softmax(tg.matmul(x, x, transpose_b=True))
        return y, [x]
    got = _run(gpu_cluster.target, build, [a])
    assert type(got) is np.ndarray
    logits = a @ a.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


@requires_gpu
@pytest.mark.parametrize("src,dst", [(CPU0, GPU), (GPU, CPU0), (GPU, CPU1), (CPU1, GPU)])
def test_a_256_mib_tensor_crosses_between_cpu_and_gpu_intact(gpu_cluster, src, dst):
    n = 64 << 20  # float32 elements: 256 MiB

    def build():
        with tg.device(src):
            v = tg.range(n, dtype=tg.float32) * 0.5
        with tg.device(dst):
            s = tg.reduce_sum(v[::4096]), tg.reduce_max(v)
        return s, []
    total, biggest = _run(gpu_cluster.target, build)
    expect = (np.arange(0, n, 4096, dtype=np.float64) * 0.5).sum()
    assert abs(total - expect) / expect < 1e-5
    assert biggest == np.float32((n - 1) * 0.5)


@requires_gpu
def test_an_op_without_a_gpu_kernel_is_an_error_naming_it_or_falls_back_under_soft_placement(gpu_cluster):
    def build():
        with tg.device(GPU):
            x = tg.constant([1.0, 2.0])
            summary = tg.compat.v1.summary.scalar("s", tg.reduce_sum(x))
        return summary, []
    with pytest.raises(tg.errors.InvalidArgumentError, match="ScalarSummary"):
        _run(gpu_cluster.target, build)
    assert isinstance(_run(gpu_cluster.target, build, soft=True), bytes)


@requires_gpu
def test_the_demo_mlp_with_layers_on_a_gpu_and_a_cpu_of_two_tasks_trains_as_on_cpus(gpu_cluster):
    import tensorgrid.compat.v1 as tf
    from tensorgrid import demo

    def losses(ps, workers):
        x_train, y_train, _, _ = demo.load_digits()
        g = tf.Graph()
        with g.as_default():
            m = demo.build_model(tf, ps, workers)
            with tf.Session(gpu_cluster.target, graph=g) as sess:
                sess.run(m["init"])
                out = [sess.run([m["train_op"], m["loss"]],
                                {m["x"]: x_train[i * 64:(i + 1) * 64], m["y"]: y_train[i * 64:(i + 1) * 64]})[1]
                       for i in range(20)]
            tf.Session.reset(gpu_cluster.target)
        return np.array(out)
    on_gpu = losses(CPU1, [GPU, CPU1])
    on_cpu = losses(CPU1, [CPU0, CPU1])
    assert on_gpu[-1] < on_gpu[0]
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=2e-3, atol=2e-4)


@requires_gpu
def test_kernels_of_a_second_gpu_run_on_that_gpu(gpu_cluster):
    if gpu_count() < 2:
        pytest.skip("one GPU: the second device's test needs two")
    second = "/job:worker/task:0/device:GPU:1"

    def build():
        with tg.device(second):
            y = tg.reduce_sum(tg.ones([1024, 1024]) * 3.0)
        return y, []
    assert _run(gpu_cluster.target, build) == 3.0 * 1024 * 1024
