"""examples/tf1: TF1 programs run on tensorgrid with only their import lines changed (run.py).

The public programs this was checked against are listed, with what stopped
those that do not run, in examples/tf1/MANIFEST.md; the two programs here
are this project's own, written for TF 1.x, run in-process and on a cluster.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "tf1")
sys.path.insert(0, EXAMPLES)

import input_data  # noqa: E402
import run as tf1_run  # noqa: E402


def test_rewrite_changes_only_the_import_lines_and_asked_settings():
    source = ("import numpy as np\nimport tensorflow as tf\nfrom tensorflow.examples.tutorials.mnist import input_data\n"
              "num_steps = 1000\nfor i in range(20000):\n    pass\nx = tf.constant(1)  # import tensorflow as tf\n")
    new, changed = tf1_run.rewrite(source, [("num_steps", "5")], [("range(20000)", "range(3)")])
    assert [number for number, _, _ in changed] == [2, 3, 4, 5]
    assert new.splitlines() == ["import numpy as np", "import tensorgrid.compat.v1 as tf; tf.disable_v2_behavior()",
                                "import input_data", "num_steps = 5", "for i in range(3):", "    pass",
                                "x = tf.constant(1)  # import tensorflow as tf"]
    assert tf1_run.rewrite("import tensorflow.compat.v1 as tf\n")[0].startswith("import tensorgrid.compat.v1 as tf")


def test_local_mnist_has_mnists_shapes_and_batches():
    data = input_data.read_data_sets("/tmp/ignored", one_hot=True)
    assert data.train.images.shape[1:] == (784,) and data.train.labels.shape[1:] == (10,)
    assert data.test.num_examples == 300 and 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0
    seen = [data.train.next_batch(500)[0] for _ in range(4)]
    assert all(len(b) == 500 for b in seen) and data.train.epochs_completed >= 1
    assert input_data.read_data_sets("").train.labels.dtype == np.int64


def _run(program, *args, target=None):
    cmd = [sys.executable, os.path.join(EXAMPLES, "run.py"), os.path.join(EXAMPLES, program), *args]
    if target:
        cmd += ["--target", target]
    env = dict(os.environ, TENSORGRID_EXAMPLE_TRAIN_SIZE="400", PYTHONPATH=ROOT)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_cnn_with_layers_summaries_and_saver(tmp_path):
    out = _run("cnn_layers_summaries.py", "--set", "steps=4", "--set", "batch_size=16", "--set",
               f"log_dir={str(tmp_path)!r}")
    assert "step 4 test accuracy" in out
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    assert any(p.name.startswith("model.ckpt-4") for p in tmp_path.iterdir())


def test_programs_on_a_cluster(tmp_path):
    from conftest import _local_cluster
    target = _local_cluster().target
    import tensorgrid as tg
    try:
        assert "served (256, 1)" in _run("graph_names.py", "--set", "steps=20", target=target)
        tg.Session.reset(target)
        out = _run("cnn_layers_summaries.py", "--set", "steps=2", "--set", "batch_size=16", "--set",
                   f"log_dir={str(tmp_path)!r}", target=target)
        assert "step 2 test accuracy" in out
    finally:
        tg.Session.reset(target)


def test_graph_names_in_process():
    assert "served (256, 1)" in _run("graph_names.py", "--set", "steps=50")


def test_app_run_calls_main_and_exits_with_its_result():
    import tensorgrid.compat.v1 as tf
    seen = []
    with pytest.raises(SystemExit) as info:
        tf.app.run(main=lambda argv: seen.append(argv) or 3, argv=["prog", "--flag"])
    assert info.value.code == 3 and seen == [["prog", "--flag"]]
