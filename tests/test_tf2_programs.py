"""examples/tf2: TF2 programs run on tensorgrid with only their imports changed (run.py).

The public programs this was checked against are listed, with what stopped those that do not run, in
examples/tf2/MANIFEST.md; the two programs here are this project's own, written for TF 2.x: one trains
a tf.Module and resumes from its CheckpointManager, the other exports a SavedModel and serves it
eagerly and through a Session on a cluster.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "tf2")
sys.path.insert(0, EXAMPLES)

import mnist  # noqa: E402


def _tf2_run():
    import importlib.util
    spec = importlib.util.spec_from_file_location("tf2_run", os.path.join(EXAMPLES, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rewrite_changes_only_the_imports_and_notebooks_run_their_code_cells():
    run = _tf2_run()
    source = ("import numpy as np\nimport tensorflow as tf\nfrom tensorflow.keras import layers, Model\n"
              "from tensorflow.keras.datasets import mnist\nsteps = 1000\nx = tf.constant(1)  # import tensorflow\n")
    new, changed = run.rewrite(source, [("steps", "5")])
    assert [number for number, _, _ in changed] == [2, 3, 4, 5]
    assert new.splitlines()[1:5] == ["import tensorgrid as tf", "from tensorgrid.client.keras import layers, Model",
                                     "import mnist", "steps = 5"]
    assert run.rewrite(source, tensorflow=True)[0].splitlines()[1:4] == [
        "import tensorflow as tf", "from tensorflow.keras import layers, Model", "import mnist"]
    notebook = {"cells": [{"cell_type": "markdown", "source": ["# title"]},
                          {"cell_type": "code", "source": ["%matplotlib inline\n", "import tensorflow as tf"]},
                          {"cell_type": "code", "source": "print(1)\n!pip install x"}]}
    assert run.notebook_source(json.dumps(notebook)) == "import tensorflow as tf\n\nprint(1)\n"


def test_local_mnist_has_mnists_shapes():
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape[1:] == (28, 28) and x_train.dtype == np.uint8 and x_train.max() == 255
    assert x_test.shape == (300, 28, 28) and y_test.dtype == np.uint8 and set(np.unique(y_train)) == set(range(10))


def test_local_cifar10_has_cifar10s_shapes():
    import cifar10
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    assert x_train.shape[1:] == (32, 32, 3) and x_train.dtype == np.uint8 and x_train.max() > 200
    assert y_train.shape == (len(x_train), 1) and x_test.shape == (300, 32, 32, 3) and y_test.dtype == np.uint8


def _run(program, cwd, *args, target=None):
    cmd = [sys.executable, os.path.join(EXAMPLES, "run.py"), os.path.join(EXAMPLES, program), *args]
    if target:
        cmd += ["--target", target]
    env = dict(os.environ, TENSORGRID_EXAMPLE_TRAIN_SIZE="400", PYTHONPATH=ROOT)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_module_checkpoint_trains_and_resumes(tmp_path):
    ckpt_dir = f"ckpt_dir={str(tmp_path / 'ckpts')!r}"
    first = _run("module_checkpoint.py", tmp_path, "--set", "steps=100", "--set", ckpt_dir)
    assert "restored from None at step 0" in first and "step 100 test accuracy" in first
    assert "variables: ['mlp/hidden/b:0', 'mlp/hidden/w:0', 'mlp/logits/b:0', 'mlp/logits/w:0']" in first
    accuracy = float(first.split("step 100 test accuracy ")[1].split()[0])
    assert accuracy > 0.5, first
    again = _run("module_checkpoint.py", tmp_path, "--set", "steps=150", "--set", ckpt_dir)
    assert f"restored from {tmp_path / 'ckpts' / 'ckpt-2'} at step 100" in again
    assert "kept checkpoints: ['ckpt-2', 'ckpt-3']" in again


def test_saved_model_serving_on_a_cluster(tmp_path):
    from conftest import _local_cluster
    import tensorgrid as tg
    target = _local_cluster().target
    try:
        out = _run("saved_model_serving.py", tmp_path, "--set", "steps=100", target=target)
    finally:
        tg.Session.reset(target)
    assert "signature outputs: ['prediction']" in out
    eager = out.split("served eagerly: ")[1].splitlines()[0]
    assert out.split("served in a session: ")[1].splitlines()[0] == eager


def test_numpy_operands_take_the_tensors_dtype_as_in_tf():
    """linear_regression's `W * X` (W float32, X a float64 array): TF casts a NumPy operand to the
    tensor's dtype in operators and binary ops alike, an int32 tensor truncating a float array;
    a Python value that does not fit stays a TypeError. Same values and dtypes as TF."""
    import tensorflow as real_tf

    import tensorgrid as tg
    x = np.array([3.3, 4.4, 10.791])
    cases = [lambda t: t.Variable(0.5) * x, lambda t: x * t.Variable(0.5),
             lambda t: t.multiply(t.Variable(0.5), x), lambda t: t.constant([1, 2, 3]) + x,
             lambda t: t.constant([1.5, 2.5], dtype=t.float64) - np.float32(0.1),
             lambda t: t.add(x, np.float32(2)),
             # a Python number or list is rounded to a float tensor's dtype, float16 included
             lambda t: t.constant([1.0, 2.0], dtype=t.float16) * 0.001,
             lambda t: 0.5 - t.constant([1.0, 2.0], dtype=t.float16),
             lambda t: t.constant([1.0, 2.0], dtype=t.float16) + [0.1, 2]]
    for case in cases:
        ours, theirs = case(tg), case(real_tf)
        assert ours.dtype.name == theirs.dtype.name
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(cases[0](tg).numpy(), np.float32(0.5) * x.astype(np.float32))
    with pytest.raises(TypeError):
        tg.constant([1, 2]) * 1.5


def test_keras_optimizer_in_a_checkpoint_has_tfs_keys_and_restores(tmp_path):
    """save_restore_model's `tf.train.Checkpoint(optimizer=<Keras Adam>)`: the optimizer's variables
    are saved under tf.keras's keys (TF's checkpoint of the same step has the same list) and restore
    to the values TF's step gives."""
    import tensorflow as real_tf

    import tensorgrid as tg

    def one_step(t, directory):
        w = t.Variable(np.full([2, 2], 1.5, np.float32), name="W")
        opt = t.optimizers.Adam(0.01)
        with t.GradientTape() as tape:
            loss = t.reduce_sum(w * w)
        opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        ckpt = t.train.Checkpoint(W=w, optimizer=opt)
        return w, opt, ckpt, ckpt.save(str(tmp_path / directory / "c"))

    w, opt, ckpt, ours = one_step(tg, "tg")
    real_w, real_opt, _, theirs = one_step(real_tf, "tf")
    assert [n for n, _ in tg.train.list_variables(ours)] == [n for n, _ in real_tf.train.list_variables(theirs)]
    for v in [w] + opt.variables:
        v.assign(np.zeros(v.shape, v.dtype.as_numpy_dtype))
    ckpt.restore(ours)
    for v, real_v in zip([w] + opt.variables, [real_w] + real_opt.variables):
        np.testing.assert_allclose(v.numpy(), real_v.numpy(), rtol=1e-6)


def test_eager_tensor_str_and_repr_are_tfs():
    """helloworld's `print(hello)`: str() and repr() of eager tensors as TF formats them (tf. -> tg.),
    scalars, strings, multi-line arrays; numpy() of a scalar is a NumPy scalar (bytes for a string) as TF's."""
    import tensorflow as real_tf

    import tensorgrid as tg
    for value in ["hello world", 3, 0.1, True, [1, 2], [[1.0, 2.0], [3.0, 4.0]], [b"a", b"b"]]:
        ours, theirs = tg.constant(value), real_tf.constant(value)
        assert str(ours) == str(theirs).replace("tf.", "tg.", 1)
        assert repr(ours) == repr(theirs).replace("tf.", "tg.", 1)
        assert type(ours.numpy()) is type(theirs.numpy())     # a scalar's numpy() is a NumPy scalar


def test_variables_print_compare_and_fail_as_in_tf():
    """The variable guide's cells: a complex variable, str() of a DType, a variable's multi-line repr,
    element-wise == of two variables eagerly, the ValueError of an assign that would resize."""
    import tensorflow as real_tf

    import tensorgrid as tg
    out = {}
    for lib in (real_tf, tg):
        m = lib.constant([[1.0, 2.0], [3.0, 4.0]])
        a, b = lib.Variable(m, name="Mark"), lib.Variable(m + 1, name="Mark")
        c = lib.Variable([5 + 4j, 6 + 1j])
        with pytest.raises(ValueError, match="Shape mismatch") as failed:
            lib.Variable([2.0, 3.0]).assign([1.0, 2.0, 3.0])
        out[lib] = [str(a.dtype), repr(a), str(a == b), str(a != b), c.dtype.name, str(c.numpy()),
                    str(failed.value).split(":", 1)[1]]
    assert [s.replace("tf.", "tg.") for s in out[real_tf]] == out[tg]


def test_tape_gradient_of_a_variable_target_is_tfs():
    """The autodiff guide's `result = v0` under a tape: a Variable that is both target and source has
    gradient ones, an untouched one None, a mixed list of targets sums; same values as TF, and the guide's
    printed `type(x).__name__` (ResourceVariable) and LookupError text of an op with no gradient."""
    import tensorflow as real_tf

    import tensorgrid as tg
    out = {}
    for lib in (real_tf, tg):
        v0, v1, w = lib.Variable(2.0), lib.Variable(2.0), lib.Variable([1.0, 2.0])
        with lib.GradientTape(persistent=True) as tape:
            result = v0
            y = w * 3
        dv0, dv1 = tape.gradient(result, [v0, v1])
        image = lib.Variable([[[0.5, 0.0, 0.0]]])
        with lib.GradientTape() as tape2:
            new_image = lib.image.adjust_contrast(image, 0.1)
        with pytest.raises(LookupError) as missing:
            tape2.gradient(new_image, image)
        out[lib] = [dv0.numpy(), dv1, tape.gradient([y, w], w).numpy().tolist(),
                    tape.gradient(w, w, output_gradients=lib.constant([2.0, 5.0])).numpy().tolist(),
                    type(v0).__name__, str(missing.value)]
    assert out[tg] == out[real_tf]
    assert isinstance(tg.Variable(1.0), tg.Variable)


def test_tensor_scatter_nd_ops_and_sparse_tensor_print_as_in_tf():
    """The tensor-slicing guide's cells: tf.tensor_scatter_nd_update/add/sub/min/max (values, and
    gradients of update/add/sub w.r.t. tensor and updates) and print() of a SparseTensor, as TF's."""
    import tensorflow as real_tf

    import tensorgrid as tg
    t = np.array([[2.0, 7.0, 0.0], [9.0, 0.0, 1.0], [0.0, 3.0, 8.0]], np.float32)
    indices = [[0, 2], [1, 1], [2, 0], [0, 2]]     # a repeated index: add/sub/min/max combine both
    updates = np.array([6.0, -5.0, 4.0, 1.0], np.float32)
    out = {}
    for lib in (real_tf, tg):
        row = [lib.tensor_scatter_nd_update(t, indices[:3], updates[:3]).numpy()]
        for name in ("add", "sub", "min", "max"):
            row.append(getattr(lib, f"tensor_scatter_nd_{name}")(t, indices, updates).numpy())
        for name in ("update", "add", "sub"):
            tv, uv = lib.Variable(t), lib.Variable(updates[:3])
            with lib.GradientTape() as tape:
                y = getattr(lib, f"tensor_scatter_nd_{name}")(tv, indices[:3], uv)
                loss = lib.reduce_sum(y * lib.constant(np.arange(9, dtype=np.float32).reshape(3, 3)))
            row += [g.numpy() for g in tape.gradient(loss, [tv, uv])]
        sparse = lib.SparseTensor(indices=[[0, 2], [2, 1]], values=[2, 11], dense_shape=[4, 5])
        row.append(str(sparse).replace("tf.", "tg."))
        out[lib] = row
    for ours, theirs in zip(out[tg][:-1], out[real_tf][:-1]):
        np.testing.assert_array_equal(ours, theirs)
    assert out[tg][-1] == out[real_tf][-1]


def test_csv_dataset_reads_as_tfs(tmp_path):
    """load_data's `tf.data.experimental.CsvDataset(path, record_defaults, header=True, select_cols=...)`:
    the same rows, dtypes and batches as TF's, quoted fields with commas, defaults for empty and na_value
    fields, and TF's error class for a required field left empty."""
    import tensorflow as real_tf

    import tensorgrid as tg
    path = tmp_path / "t.csv"
    path.write_text('survived,pclass,name,sex,age,sibsp,parch,ticket,fare\n'
                    '1,1,"Allen, Miss. Elisabeth Walton",female,29,0,0,24160,211.3375\n'
                    '0,3,"Smith, Mr. ""X""",male,,1,0,1234,7.25\n1,2,Jones,female,2.5,0,1,77,NA\n')
    out = {}
    for lib in (real_tf, tg):
        data = lib.data.experimental.CsvDataset(str(path), [lib.int32, lib.int64, lib.string, lib.string, [-1.0],
                                                            [0.0]], header=True, select_cols=[0, 1, 2, 3, 4, 8],
                                                na_value="NA")
        rows = [[np.asarray(c.numpy()).tolist() for c in row] for row in data]
        batch = [b.numpy().tolist() for b in next(iter(data.batch(2)))]
        required = lib.data.experimental.CsvDataset(str(path), [lib.int32, lib.float32], header=True,
                                                    select_cols=[0, 4])
        with pytest.raises(lib.errors.InvalidArgumentError):
            list(required)
        out[lib] = (rows, batch, [s.dtype.name for s in data.element_spec])
    assert out[tg] == out[real_tf]
