"""Python callbacks (py_func, numpy_function), printing (tg.print, TF1's tg.Print) and the
tg.debugging assertions."""

import sys

import cloudpickle

from tensorgrid.client import array_ops, context, math_ops
from tensorgrid.client.graph import TensorOps, apply_op, convert_to_tensor
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["py_func", "numpy_function", "print", "Print", "assert_equal", "assert_positive"]


def py_func(func, inp, Tout, stateful=True, name=None):  # noqa: N803 - TF's argument name
    """Runs func on the numpy values of `inp` where the node is placed; returns tensors of Tout.

    Tout is one dtype (one tensor returned) or a list of dtypes (a list
    returned). func travels in the graph as cloudpickle bytes, so it runs
    on the worker that executes the node, which must allow pickled code.
    Its results are converted to Tout; an exception it raises fails the
    step (InvalidArgumentError for ValueError/TypeError, else UnknownError)
    with its message. With Tout=[] the op itself is returned (None eagerly).
    """
    single = not isinstance(Tout, (list, tuple))
    tout = [dtypes.as_dtype(t) for t in ([Tout] if single else Tout)]
    inputs = [convert_to_tensor(x) for x in (inp if isinstance(inp, (list, tuple)) else [inp])]
    op_type = "PyFunc" if stateful else "PyFuncStateless"
    out = apply_op(op_type, inputs, {"func": cloudpickle.dumps(func), "Tout": tout}, name=name or op_type)
    if single or not tout:
        return out
    return [out] if len(tout) == 1 else list(out)


def numpy_function(func, inp, Tout, stateful=True, name=None):  # noqa: N803 - TF's argument name
    """TF2's name for py_func: func takes and returns numpy arrays."""
    return py_func(func, inp, Tout, stateful=stateful, name=name)


def _stream_name(output_stream):
    if output_stream is None or output_stream is sys.stderr or output_stream is sys.__stderr__:
        return "stderr"
    if output_stream is sys.stdout or output_stream is sys.__stdout__:
        return "stdout"
    if isinstance(output_stream, str) and output_stream.startswith("file://"):
        return output_stream
    raise ValueError(f"output_stream must be sys.stdout, sys.stderr or a 'file://path' string, got {output_stream!r}")


def print(*inputs, output_stream=None, summarize=3, sep=" ", end="\n", name=None):  # noqa: A001 - tf.print
    """Prints its inputs (tensors and Python values) on the process that runs it; stderr by default.

    Eagerly it prints at once and returns None; in a graph it returns the
    op, to run or to use in control_dependencies (tg.function runs it in
    program order). `summarize` elements are shown at each end of every
    axis (None: all).
    """
    parts, tensors = [], []
    for x in inputs:
        if isinstance(x, TensorOps) or hasattr(x, "_as_tensor") or hasattr(x, "__array_interface__"):
            tensors.append(convert_to_tensor(x))
            parts.append("{}")
        else:
            parts.append(str(x).replace("{", "{{").replace("}", "}}"))
    attrs = {"template": sep.join(parts), "output_stream": _stream_name(output_stream),
             "summarize": -1 if summarize is None else int(summarize), "end": end}
    return apply_op("PrintV2", tensors, attrs, name=name or "PrintV2")


def Print(input_, data, message=None, first_n=None, summarize=None, name=None):  # noqa: N802 - TF1's name
    """TF1's Print: returns input_ and, each time it runs, prints message then data to stderr."""
    attrs = {"message": message or "", "first_n": -1 if first_n is None else int(first_n),
             "summarize": 3 if summarize is None else int(summarize)}
    return apply_op("Print", [input_] + list(data), attrs, name=name or "Print")


@registry.register_gradient("Print")
def _print_grad(op, grad):
    return [grad] + [None] * (len(op.inputs) - 1)


registry.not_differentiable("PyFunc", "PyFuncStateless", "PrintV2", "Assert")

# ---- assertions ----------------------------------------------------------------------------


def _label(what, t):
    return what if context.executing_eagerly() else f"{what} ({t.name})"


def _assert(condition, data, labels, message, summarize, name):
    """An Assert op named `name` (graph mode: returned, to run or depend on); eagerly it checks at once."""
    attrs = {"message": message, "labels": labels, "summarize": 3 if summarize is None else int(summarize)}
    return apply_op("Assert", [condition] + data, attrs, name=name)


def assert_equal(x, y, message=None, summarize=None, name=None, data=None):
    """Fails with InvalidArgumentError, showing x and y, unless x == y everywhere.

    Eagerly it raises at once (and returns None); in a graph it returns the
    op that checks when run, for control_dependencies.
    """
    with name_scope(name, "assert_equal") as scope:
        x = convert_to_tensor(x)
        y = convert_to_tensor(y, dtype_hint=x.dtype)
        condition = math_ops.reduce_all(math_ops.equal(x, y))
        text = (message + "\n" if message else "") + "Condition x == y did not hold element-wise:"
        if data is None:
            return _assert(condition, [x, y], [_label("x", x), _label("y", y)], text, summarize, scope)
        return _assert(condition, [convert_to_tensor(d) for d in data], [], text, summarize, scope)


def assert_positive(x, message=None, summarize=None, name=None, data=None):
    """Fails with InvalidArgumentError, showing x, unless x > 0 everywhere (see assert_equal)."""
    with name_scope(name, "assert_positive") as scope:
        x = convert_to_tensor(x)
        condition = math_ops.reduce_all(math_ops.less(array_ops.zeros_like(x), x))
        text = (message + "\n" if message else "") + "Condition x > 0 did not hold element-wise:"
        if data is None:
            return _assert(condition, [x], [_label("x", x)], text, summarize, scope)
        return _assert(condition, [convert_to_tensor(d) for d in data], [], text, summarize, scope)
