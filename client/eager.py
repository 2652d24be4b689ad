"""Eager execution: ops run at once on this process's CPU, through the same
registry shape functions and NumPy kernels that a graph step uses."""

import threading

import numpy as np

from tensorgrid.client import context
from tensorgrid.client.graph import TensorOps
from tensorgrid.framework import dtypes, errors, strings
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops import registry

EAGER_DEVICE = "/job:localhost/replica:0/task:0/device:CPU:0"


class EagerResources:
    """The variable store of eager mode (and of tg.function graphs run eagerly)."""

    def __init__(self):
        from tensorgrid.worker.resources import ResourceStore
        self.store = ResourceStore()


_resources = None


def resources():
    global _resources
    if _resources is None:
        _resources = EagerResources().store
    return _resources


class EagerTensor(TensorOps):
    """A concrete value with a dtype; `.numpy()` gives it as a numpy array."""

    _is_eager_tensor = True
    __slots__ = ("_value", "dtype")

    def __init__(self, value, dtype=None):
        if dtype is None:
            dtype = dtypes.as_dtype(np.asarray(value).dtype)
        self.dtype = dtype
        if dtype is dtypes.string:
            value = strings.string_array(value)
        elif dtype is not dtypes.resource and dtype is not dtypes.variant:
            value = np.asarray(value, dtype=dtype.as_numpy_dtype)
        self._value = value

    def numpy(self):
        if type(self._value) is np.ndarray and self._value.ndim == 0 and self.dtype.name not in ("resource",
                                                                                                "variant"):
            return self._value[()]     # a scalar is a NumPy scalar (a string one its bytes), as in TF
        return self._value

    @property
    def shape(self):
        return TensorShape(np.shape(self._value))

    def get_shape(self):
        return self.shape

    @property
    def ndim(self):
        return np.ndim(self._value)

    @property
    def device(self):
        return EAGER_DEVICE

    @property
    def name(self):
        raise AttributeError("Tensor.name is meaningless when eager execution is enabled.")

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._value, dtype=dtype)

    def __float__(self):
        return float(self._value)

    def __int__(self):
        return int(self._value)

    def __index__(self):
        return int(self._value)

    def __bool__(self):
        return bool(self._value)

    def __len__(self):
        return len(self._value)

    def __iter__(self):
        for i in range(len(self._value)):
            yield self[i]

    def __repr__(self):
        return f"<tg.Tensor: shape={self.shape}, dtype={self.dtype.name}, numpy={numpy_text(self.numpy(), True)}>"

    def __str__(self):
        return f"tg.Tensor({numpy_text(self.numpy(), False)}, shape={self.shape}, dtype={self.dtype.name})"

    def __eq__(self, other):
        from tensorgrid.client import math_ops
        return math_ops.equal(self, other)

    def __ne__(self, other):
        from tensorgrid.client import math_ops
        return math_ops.not_equal(self, other)

    __hash__ = object.__hash__



def numpy_text(value, is_repr):
    """TF's numpy_text: a value's repr (or str), on a line of its own where it spans lines; a scalar's repr
    is the Python value's (0.10000000149011612 for float32 0.1)."""
    if np.ndim(value) == 0:
        text = repr(np.asarray(value).item()) if is_repr else str(value)
    else:
        text = repr(value) if is_repr else str(value)
    return "\n" + text if "\n" in text else text

def to_eager(value, dtype=None):
    if hasattr(value, "_as_tensor"):
        value = value._as_tensor()
    if isinstance(value, EagerTensor):
        if dtype is not None and dtypes.as_dtype(dtype) != value.dtype:
            raise ValueError(f"Tensor conversion requested dtype {dtypes.as_dtype(dtype).name} "
                             f"for Tensor with dtype {value.dtype.name}")
        return value
    from tensorgrid.client.graph import Tensor, constant_value_array
    if isinstance(value, Tensor):
        raise ValueError(f"graph tensor {value.name} cannot be used while executing eagerly")
    arr, dt = constant_value_array(value, dtype)
    return EagerTensor(arr, dt)


_kernel_cache = {}


def _kernel(opdef, attrs):
    try:
        key = (opdef.name, tuple(sorted((k, _hashable(v)) for k, v in attrs.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _kernel_cache and not opdef.stateful:
        return _kernel_cache[key]
    node = registry.KernelNode(name=opdef.name, op=opdef.name, attrs=attrs, device=EAGER_DEVICE,
                               xp=np, resources=resources(), device_type="CPU")
    fn = opdef.kernel_for("CPU")(node)
    if key is not None and not opdef.stateful:
        _kernel_cache[key] = fn
    return fn


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, np.ndarray):
        raise TypeError
    return v


class _EagerStep:
    """The step context eager kernels that need one get (no rendezvous, no feeds, never cancelled)."""

    step_id = 0
    rendezvous = None
    feeds = {}
    fetches = {}
    cancelled = threading.Event()
    deadline = None


def execute(opdef, inputs, attrs, name=None):
    """Runs one op now and returns its outputs as EagerTensors (None for no outputs)."""
    args = [to_eager(t) for t in inputs]
    ctx = registry.InferContext(opdef.name, name or opdef.name, [a.dtype for a in args],
                                [np.shape(a._value) for a in args], attrs,
                                [a._value for a in args], "")
    specs = opdef.infer(ctx)
    fn = _kernel(opdef, attrs)
    values = [a._value for a in args]
    try:
        out = fn(_EagerStep, *values) if opdef.needs_step else fn(*values)
    except errors.OpError:
        raise
    except (ValueError, IndexError, TypeError, FloatingPointError) as e:
        raise errors.InvalidArgumentError(None, None, f"{opdef.name}: {e}") from None
    if len(specs) == 1:
        outs = [EagerTensor(out, specs[0][0])]
    elif not specs:
        outs = []
    else:
        outs = [EagerTensor(o, s[0]) for o, s in zip(out, specs)]
    if context.tapes():
        from tensorgrid.client import tape
        tape.record(opdef, args, attrs, outs)
    if not outs:
        return None
    return outs[0] if len(outs) == 1 else outs
