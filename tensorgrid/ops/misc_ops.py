"""Ops that call back into Python or talk to people: py_func, printing and assertions.

PyFunc carries its Python function as cloudpickle bytes (attr `func`), so it
runs on whichever worker the node lands on. Unpickling runs arbitrary code,
so a device that was not allowed to (a worker started without
--allow-pickle) refuses the node before it looks at the bytes.
"""

import sys

import cloudpickle
import numpy as np

from tensorgrid.framework import dtypes, errors, strings
from tensorgrid.ops.registry import register
from tensorgrid.worker import file_access

# How TF's py_func maps a Python exception raised by the function to an error class.
_PY_ERRORS = (
    ((ValueError, TypeError), errors.InvalidArgumentError),
    ((StopIteration,), errors.OutOfRangeError),
    ((MemoryError,), errors.ResourceExhaustedError),
    ((NotImplementedError,), errors.UnimplementedError),
)


def python_error(exc, where):
    """The OpError for an exception user Python code raised in a kernel at `where`, classed as TF's py_func does."""
    if isinstance(exc, errors.OpError):
        return type(exc)(None, None, f"{where}: {exc.message}")
    cls = next((c for types_, c in _PY_ERRORS if isinstance(exc, types_)), errors.UnknownError)
    return cls(None, None, f"{where}: {type(exc).__name__}: {exc}")


def refuse_pickle(node):
    """PermissionDeniedError unless node's device may unpickle Python code (a worker's --allow-pickle)."""
    if not node.allow_pickle:
        raise errors.PermissionDeniedError(
            None, None,
            f"{node.op} '{node.name}' on {node.device}: this worker refuses to unpickle Python functions "
            "(start it with --allow-pickle to run py_func / numpy_function / Dataset.from_generator)")


def _infer_py_func(ctx):
    return [(dtypes.as_dtype(t), None) for t in ctx.attr("Tout")]


def _to_host(value):
    return value.get() if hasattr(value, "get") else np.asarray(value)


def _py_func_kernel(node):
    refuse_pickle(node)
    func = cloudpickle.loads(node.attr("func"))
    tout = [dtypes.as_dtype(t) for t in node.attr("Tout")]
    xp = node.xp
    where = f"{node.op} '{node.name}' on {node.device}"

    def run(*args):
        try:
            result = func(*[_to_host(a) for a in args])
        except Exception as e:  # the user's function failed: keep its message, map its class like TF
            raise python_error(e, where) from None
        if result is None and not tout:
            return None
        values = list(result) if isinstance(result, (list, tuple)) else [result]
        if len(values) != len(tout):
            raise errors.InvalidArgumentError(
                None, None, f"{where}: the function returned {len(values)} values, Tout lists {len(tout)}")
        out = []
        for i, (v, dt) in enumerate(zip(values, tout)):
            try:
                out.append(strings.string_array(v) if dt is dtypes.string
                           else xp.asarray(np.asarray(v, dtype=dt.as_numpy_dtype)))
            except (TypeError, ValueError) as e:
                raise errors.InvalidArgumentError(
                    None, None,
                    f"{where}: return value {i} ({v!r:.80}) cannot be converted to {dt.name}: {e}") from None
        return out[0] if len(out) == 1 else tuple(out)
    return run


for _name, _stateful in (("PyFunc", True), ("PyFuncStateless", False)):
    register(_name, _infer_py_func, _py_func_kernel, stateful=_stateful, cpu_only=True,
             num_outputs=lambda attrs: len(attrs["Tout"]),
             doc="Calls a Python function (attr func: cloudpickle bytes) on numpy arrays; attr Tout "
                 "lists the output dtypes.")

# ---- printing ----------------------------------------------------------------------------


def _element(v):
    """One element as TF prints it: bools as 1/0, floats in their shortest exact form."""
    kind = np.asarray(v).dtype.kind
    if kind == "b":
        return "1" if v else "0"
    if kind == "f":
        if not np.isfinite(v):
            return str(float(v))
        if v == 0 or 1e-4 <= abs(v) < 1e16:
            return np.format_float_positional(v, unique=True, trim="-")
        return np.format_float_scientific(v, unique=True, trim="-")
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def format_tensor(value, summarize):
    """A tensor as tf.print and tf.strings.format show it: nested [..], `summarize` first and last items per
    axis (-1: all), strings quoted."""
    arr = _to_host(value)
    limit = arr.size if summarize is None or summarize < 0 else summarize

    def nested(a):
        if not isinstance(a, np.ndarray) or a.ndim == 0:   # an element of a string tensor is its bytes
            v = a[()] if isinstance(a, np.ndarray) else a
            return f'"{_element(v)}"' if isinstance(v, (bytes, str)) else _element(v)
        n = a.shape[0]
        if n > 2 * limit:
            parts = [nested(a[i]) for i in range(limit)] + ["..."] + [nested(a[i]) for i in range(n - limit, n)]
        else:
            parts = [nested(a[i]) for i in range(n)]
        return "[" + ("\n" * (a.ndim - 1) + " " if a.ndim > 1 else " ").join(parts) + "]"
    return nested(arr)


def format_tensor_v1(value, summarize):
    """A tensor as TF1's Print shows it: its first `summarize` elements in nested [..], then '...'."""
    arr = _to_host(value)
    flat = arr.reshape(-1)
    limit = arr.size if summarize is None or summarize < 0 else summarize
    shown = [0]

    def nested(shape):
        if len(shape) == 1:
            items = []
            for _ in range(shape[0]):
                if shown[0] >= limit:
                    return " ".join(items) + ("..." if len(arr.shape) > 1 else "")
                items.append(_element(flat[shown[0]]))
                shown[0] += 1
            return " ".join(items)
        text = ""
        for _ in range(shape[0]):
            if shown[0] >= limit:
                break
            text += "[" + nested(shape[1:]) + "]"
        return text
    if arr.ndim:
        body = nested(arr.shape)
    else:
        body = _element(flat[0]) if limit else ""
    return "[" + body + ("..." if limit < arr.size else "") + "]"


def _stream(name):
    """The stream attr `output_stream` names, looked up at run time so redirections apply."""
    if name == "stdout":
        return sys.stdout
    return sys.stderr


def _write(name, text, who=None):
    if name.startswith("file://"):
        path = file_access.check_path(name[len("file://"):], "w", who)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    stream = _stream(name)
    stream.write(text)
    stream.flush()


def _print_kernel(node):
    message = node.attr("message", "")
    first_n = node.attr("first_n", -1)
    summarize = node.attr("summarize", 3)
    calls = [0]

    def run(value, *data):
        calls[0] += 1
        if first_n < 0 or calls[0] <= first_n:
            _write("stderr", message + "".join(format_tensor_v1(d, summarize) for d in data) + "\n")
        return value
    return run


register("Print", lambda ctx: [(ctx.input_dtypes[0], ctx.input_shapes[0])], _print_kernel, stateful=True,
         cpu_only=True,
         doc="TF1's Print: passes input 0 through and prints `message` then inputs 1.. to stderr; "
             "attrs message, first_n, summarize.")


def _print_v2_kernel(node):
    template = node.attr("template")
    summarize = node.attr("summarize", 3)
    stream = node.attr("output_stream", "stderr")
    end = node.attr("end", "\n")

    who = f"{node.op} '{node.name}' on {node.device}"

    def run(*values):
        _write(stream, template.format(*[format_tensor(v, summarize) for v in values]) + end, who)
    return run


register("PrintV2", lambda ctx: [], _print_v2_kernel, stateful=True, cpu_only=True, num_outputs=0,
         doc="tf.print: writes attr template formatted with its inputs to attr output_stream "
             "('stderr', 'stdout' or 'file://path').")

# ---- assertions --------------------------------------------------------------------------


def _infer_assert(ctx):
    if ctx.input_dtypes[0] != dtypes.bool_ or ctx.input_shapes[0] not in (None, ()):
        raise ctx.error(f"condition must be a bool scalar, got {ctx.input_dtypes[0].name} "
                        f"of shape {ctx.input_shapes[0]}")
    return []


def _assert_kernel(node):
    summarize = node.attr("summarize", 3)
    message = node.attr("message", "")
    labels = node.attr("labels", [])

    def run(condition, *data):
        if bool(condition):
            return
        shown = [f"{label} = {format_tensor(d, summarize)}" if label else format_tensor(d, summarize)
                 for label, d in zip(list(labels) + [""] * len(data), data)]
        raise errors.InvalidArgumentError(
            None, None, f"assertion failed: {message}" + ("\n" + "\n".join(shown) if shown else ""))
    return run


register("Assert", _infer_assert, _assert_kernel, stateful=True, num_outputs=0,
         doc="Fails the step with InvalidArgumentError (message, then its data inputs) when input 0 is false; "
             "attrs message, labels (one per data input), summarize.")
