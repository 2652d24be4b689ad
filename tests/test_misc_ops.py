"""Tests of py_func / numpy_function (outputs, errors, pickled payloads and workers that refuse
them), tg.print / tg.Print and the tg.debugging assertions, on every executor."""

import sys

import numpy as np
import pytest

import tensorgrid as tg
from conftest import run_with
from gradcheck import check_gradients
from tensorgrid.worker import executor as executor_lib

# ---- py_func -------------------------------------------------------------------------------------


def test_py_func_single_output_converted_to_tout(executor):
    offset = np.array([10, 20, 30])  # captured: travels with the function

    def add(a, b):
        assert isinstance(a, np.ndarray)
        return a * b + offset  # float64 (and int64) arithmetic, returned as float32

    x = np.array([1.0, 2.0, 3.0], np.float32)
    got = run_with(executor, lambda a, b: tg.py_func(add, [a, b], tg.float32), x, np.float32(2))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [12, 24, 36])


def test_numpy_function_several_outputs(executor):
    def split(a):
        return a.sum(), a.argmax(), [float(v) for v in a]

    x = np.array([3, 9, 4], np.int32)
    got = run_with(executor, lambda a: tg.numpy_function(split, [a], [tg.int64, tg.int32, tg.float64]), x)
    assert [g.dtype for g in got] == [np.int64, np.int32, np.float64]
    assert got[0] == 16 and got[1] == 1
    np.testing.assert_array_equal(got[2], [3.0, 9.0, 4.0])


def test_py_func_tout_list_of_one_stateless_and_none(capsys):
    out = tg.py_func(lambda a: a + 1, [tg.constant([1, 2])], [tg.int32], stateful=False)
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(out[0].numpy(), [2, 3])
    g = tg.Graph()
    with g.as_default():
        assert tg.py_func(lambda a: a, [1.0], tg.float32, stateful=False).op.type == "PyFuncStateless"
        assert tg.py_func(lambda a: a, [1.0], tg.float32).op.type == "PyFunc"
        side_effect = tg.py_func(lambda a: sys.stdout.write(f"saw {a}\n") and None, [1.5], [])
        assert isinstance(side_effect, tg.Operation)
        with tg.Session(graph=g) as sess:
            assert sess.run(side_effect) is None
    assert capsys.readouterr().out == "saw 1.5\n"


@pytest.mark.parametrize("exc, error", [
    (ValueError("bad value 42"), tg.errors.InvalidArgumentError),
    (TypeError("bad type 42"), tg.errors.InvalidArgumentError),
    (KeyError("missing 42"), tg.errors.UnknownError),
    (tg.errors.OutOfRangeError(None, None, "done 42"), tg.errors.OutOfRangeError),
])
def test_py_func_exceptions_keep_message(executor, exc, error):
    def fail(a):
        raise exc

    with pytest.raises(error, match="42") as info:
        run_with(executor, lambda a: tg.py_func(fail, [a], tg.float32, name="failing"), np.zeros(2, np.float32))
    if executor != "eager":  # eager ops have no node names
        assert "failing" in str(info.value)


def test_py_func_error_names_node_and_device():
    g = tg.Graph()
    with g.as_default():
        out = tg.py_func(lambda a: 1 / 0, [tg.constant(1.0)], tg.float32, name="divider")
        with tg.Session(graph=g) as sess, pytest.raises(tg.errors.UnknownError) as info:
            sess.run(out)
    text = str(info.value)
    assert "'divider'" in text and "CPU:0" in text and "ZeroDivisionError: division by zero" in text


def test_py_func_wrong_result_count_or_type():
    with pytest.raises(tg.errors.InvalidArgumentError, match="returned 1 values, Tout lists 2"):
        tg.py_func(lambda a: a, [tg.constant(1.0)], [tg.float32, tg.float32])
    with pytest.raises(tg.errors.InvalidArgumentError, match="cannot be converted to float32"):
        tg.py_func(lambda a: "text", [tg.constant(1.0)], tg.float32)


def test_py_func_travels_in_the_graph_def():
    scale = 3.0
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float64, [2], name="x")
        tg.py_func(lambda a: a * scale, [x], tg.float64, name="scaled")
    g2 = tg.Graph()
    with g2.as_default():
        tg.import_graph_def(g.as_graph_def(), name="")
        with tg.Session(graph=g2) as sess:
            np.testing.assert_array_equal(sess.run("scaled:0", {"x:0": [1.0, 2.0]}), [3.0, 6.0])


def test_worker_without_allow_pickle_refuses_py_func():
    g = tg.Graph()
    with g.as_default():
        out = tg.py_func(lambda a: a, [tg.constant(1.0)], tg.float32, name="callback")
        out.op._node.attrs["func"] = b"not a pickle: it must never be loaded"
    device = executor_lib.DeviceContext("/job:worker/replica:0/task:1/device:CPU:0", allow_pickle=False)
    with pytest.raises(tg.errors.PermissionDeniedError) as info:
        executor_lib.Executable(g.to_ir(), device)
    assert "'callback'" in str(info.value) and "--allow-pickle" in str(info.value)


# ---- printing -------------------------------------------------------------------------------------------

def test_print_eager_prints_at_once(capsys):
    assert tg.print("loss:", tg.constant([1.5, 2.0]), {"step": 3}, tg.constant(7)) is None
    assert capsys.readouterr().err == "loss: [1.5 2] {'step': 3} 7\n"


def test_print_stream_summarize_sep_end(capsys, tmp_path):
    tg.print(tg.range(10), output_stream=sys.stdout, summarize=2, sep="|", end="!\n")
    tg.print(tg.constant([[1, 2], [3, 4]]), tg.constant([True, False]))
    captured = capsys.readouterr()
    assert captured.out == "[0 1 ... 8 9]!\n"
    assert captured.err == "[[1 2]\n [3 4]] [1 0]\n"
    path = tmp_path / "log.txt"
    tg.print("x", tg.constant(1.25), output_stream=f"file://{path}")
    assert path.read_text() == "x 1.25\n"
    with pytest.raises(ValueError, match="output_stream"):
        tg.print(1, output_stream=42)


def test_print_in_graph_runs_with_the_op(capsys):
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.int32, [3])
        op = tg.print("x =", x)
        assert isinstance(op, tg.Operation)
        with tg.control_dependencies([op]):
            y = tg.identity(x)
        assert capsys.readouterr().err == ""
        with tg.Session(graph=g, config=tg.ConfigProto(device_count={"CPU": 2})) as sess:
            sess.run(y, {x: [1, 2, 3]})
    assert capsys.readouterr().err == "x = [1 2 3]\n"


def test_print_inside_function_runs_each_call(capsys):
    @tg.function
    def f(x):
        tg.print("got", x)
        return x * 2

    f(tg.constant(1.0))
    f(tg.constant(2.0))
    assert capsys.readouterr().err == "got 1\ngot 2\n"


def test_tf1_print_returns_input_and_prints_first_n(executor, capsys):
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    got = run_with(executor, lambda t: tg.Print(t, [t, t[0, :2]], "value: ", summarize=5), x)
    np.testing.assert_array_equal(got, x)
    # On a cluster the worker that runs the node prints, in its own process.
    want = "" if executor in ("cluster", "gpu") else "value: [[0 1 2 3][4...]...][0 1]\n"
    assert capsys.readouterr().err == want
    g = tg.Graph()
    with g.as_default():
        y = tg.Print(tg.constant(1.0), [tg.constant(2.0)], message="m", first_n=2)
        with tg.Session(graph=g) as sess:
            for _ in range(4):
                sess.run(y)
    assert capsys.readouterr().err == "m[2]\nm[2]\n"


def test_tf1_print_passes_gradient_through():
    check_gradients(lambda t: tg.Print(t, [t], "t") * t, np.array([1.0, -2.0]))


# ---- assertions ------------------------------------------------------------------------------------------

def _checked_identity(check):
    def fn(x, y):
        with tg.control_dependencies([check(x, y)]):
            return tg.identity(x)
    return fn


def test_assert_equal_passes_and_fails(executor):
    same = np.array([1, 2], np.int32)
    np.testing.assert_array_equal(run_with(executor, _checked_identity(tg.debugging.assert_equal), same, same), same)
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"(?s)x == y.*\[1 2\].*\[1 3\]"):
        run_with(executor, _checked_identity(tg.debugging.assert_equal), same, np.array([1, 3], np.int32))


def test_assert_positive(executor):
    check = _checked_identity(lambda x, y: tg.debugging.assert_positive(x, message="need positive"))
    run_with(executor, check, np.array([1.0, 2.0]), np.zeros(1))
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"(?s)need positive.*x > 0.*\[1 0\]"):
        run_with(executor, check, np.array([1, 0]), np.zeros(1))


def test_assert_equal_eager_raises_at_once():
    assert tg.debugging.assert_equal(tg.constant([1.0]), 1.0) is None
    with pytest.raises(tg.errors.InvalidArgumentError, match="shapes differ"):
        tg.debugging.assert_equal(tg.constant([1.0, 2.0]), tg.constant([1.0, 3.0]), message="shapes differ")


def test_assert_in_graph_is_an_op_naming_node_and_values():
    g = tg.Graph()
    with g.as_default():
        x = tg.compat.v1.placeholder(tg.float32, [2], name="x")
        check = tg.debugging.assert_equal(x, tg.constant([1.0, 2.0]), name="check_x")
        assert isinstance(check, tg.Operation)
        with tg.Session(graph=g) as sess:
            sess.run(check, {x: [1.0, 2.0]})
            with pytest.raises(tg.errors.InvalidArgumentError) as info:
                sess.run(check, {x: [1.0, 5.0]})
    text = str(info.value)
    assert "Assert 'check_x'" in text and "x (x:0) = [1 5]" in text and "[1 2]" in text


def test_assert_static_shape_mismatch_is_a_value_error():
    g = tg.Graph()
    with g.as_default(), pytest.raises(ValueError):
        tg.debugging.assert_equal(tg.zeros([2]), tg.zeros([3]))
