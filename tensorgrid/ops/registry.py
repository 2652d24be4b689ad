"""The one op registry: each op type declared once with its shape function,
its kernels per device type and (registered by the client) its gradient.

Shape functions take an InferContext and return one (dtype, shape) pair per
output, shape being a tuple of int-or-None, or None for an unknown rank.
They raise ValueError (TF1's build-time error) for static shape mismatches.

Kernel factories take a KernelNode (the node's name, attrs, device and the
device's array module `xp`: numpy on CPU, cupy on GPU) and return a callable
that maps input arrays to the output array (a tuple for several outputs).
Ops declared `needs_step=True` get the step context as first argument. Ops declared
`is_async=True` (a kernel that waits on other devices, such as one device's part of a loop
spanning several) run on a thread of their own, so the rest of their partition keeps going.
"""

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from tensorgrid.framework import dtypes, errors


@dataclasses.dataclass
class OpDef:
    """Everything the system knows about one op type."""

    name: str
    infer: Callable
    kernels: dict
    stateful: bool = False
    needs_step: bool = False
    grad: Callable | None = None
    # Ops that must run where an input is made (a resource's view, a variant's consumer):
    # that input's index, or "all" for every input.
    colocate_with_input: int | str | None = None
    doc: str = ""
    num_outputs: Any = 1  # an int, or fn(attrs) -> int for ops like Split
    is_async: bool = False
    # An elementwise op whose kernel is exactly this array-module ufunc (its attrs change nothing):
    # runtime/fusion.py fuses chains of them into one kernel.
    ufunc: str | None = None
    # Another elementwise op: fn(xp, attrs) -> f(*inputs, out=None), the computation its kernel runs
    # (register derives the kernel from it unless given one that wraps it). f returns the result, a
    # fresh array (never an input or a view of one); `out`, when given, is an array of the result's
    # shape and dtype that the caller no longer needs (maybe one of the inputs), which f may write the
    # result into. The fused kernel calls the same f, so fused and unfused results cannot differ.
    elementwise: Callable | None = None

    def elementwise_fn(self, xp, attrs):
        """The op's elementwise f(*inputs, out=None) on array module `xp`; None if it is not elementwise."""
        if self.ufunc is not None:
            return getattr(xp, self.ufunc)
        return None if self.elementwise is None else self.elementwise(xp, attrs)

    def output_count(self, attrs):
        n = self.num_outputs
        return n(attrs) if callable(n) else n

    def kernel_for(self, device_type, node_desc=""):
        try:
            return self.kernels[device_type]
        except KeyError:
            raise errors.InvalidArgumentError(
                None, None,
                f"op {self.name} has no kernel for device type {device_type}"
                + (f" (node {node_desc})" if node_desc else "")
                + f"; kernels exist for {sorted(self.kernels)}") from None


OPS: dict[str, OpDef] = {}


def register(name, infer, kernel=None, *, kernels=None, stateful=False, needs_step=False,
             colocate_with_input=None, cpu_only=False, num_outputs=1, is_async=False, ufunc=None, elementwise=None, doc=""):
    """Declares op `name`. A single `kernel` serves every device type (it uses node.xp); an op
    declared `elementwise` without one gets the kernel fn(node.xp, node.attrs)."""
    if name in OPS:
        raise ValueError(f"op {name} is registered twice")
    if kernel is None and kernels is None and elementwise is not None:
        def kernel(node):
            return elementwise(node.xp, node.attrs)
    if kernels is None:
        kernels = {"CPU": kernel} if cpu_only else {"CPU": kernel, "GPU": kernel}
    OPS[name] = OpDef(name, infer, kernels, stateful, needs_step, None, colocate_with_input, doc, num_outputs,
                      is_async, ufunc, elementwise)
    return OPS[name]


def get(name):
    try:
        return OPS[name]
    except KeyError:
        raise errors.NotFoundError(None, None, f"op type '{name}' is not registered") from None


def register_gradient(op_name):
    """Decorator: registers fn(op, *output_grads) -> list of input grads for op type `op_name`."""
    def deco(fn):
        get(op_name).grad = fn
        return fn
    return deco


def not_differentiable(*names):
    for n in names:
        get(n).grad = NO_GRADIENT


def NO_GRADIENT(op, *grads):
    return [None] * len(op.inputs)


@dataclasses.dataclass
class InferContext:
    """What a shape function sees: inputs' dtypes and shapes, attrs, constant input values."""

    op: str
    name: str
    input_dtypes: list
    input_shapes: list
    attrs: dict
    const_values: list  # numpy value of each input when known at build time, else None
    where: str = ""

    def attr(self, key, default=None):
        return self.attrs.get(key, default)

    def error(self, message):
        """A build-time ValueError naming the op and the user's file:line."""
        loc = f" (created at {self.where})" if self.where else ""
        return ValueError(f"{self.op} '{self.name}'{loc}: {message}")


@dataclasses.dataclass
class KernelNode:
    """What a kernel factory sees."""

    name: str
    op: str
    attrs: dict
    device: str
    xp: Any = np
    resources: Any = None  # the device's resource store (variables)
    device_type: str = "CPU"
    seed_base: Any = None
    allow_pickle: bool = True

    def attr(self, key, default=None):
        return self.attrs.get(key, default)


def broadcast_shapes(a, b, ctx=None):
    """Static numpy broadcasting of two shapes (tuples of int-or-None, or None)."""
    if a is None or b is None:
        return None
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)), reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        elif x == y:
            out.append(x)
        else:
            msg = f"Dimensions must be equal, but are {x} and {y} for shapes {list(a)} and {list(b)}"
            raise ctx.error(msg) if ctx else ValueError(msg)
    return tuple(reversed(out))


def quiet_fp(fn):
    """fn run with NumPy's floating-point warnings off: TF returns inf and nan silently."""
    if int(np.__version__.split(".")[0]) >= 2:
        # errstate as a decorator sets a context variable: well under half of a `with` block's cost
        run = np.errstate(all="ignore")(fn)
    else:
        @functools.wraps(fn)
        def run(*args, **kwargs):  # NumPy 1's decorator shares one errstate instance's saved state across threads
            with np.errstate(all="ignore"):
                return fn(*args, **kwargs)
    run.quiets_fp = True
    return run


def quiets_fp(kernel):
    """Whether `kernel` is one quiet_fp made: a fused kernel turns warnings off only where a member's
    own kernel does, since doing so costs about as much as a small ufunc call."""
    return getattr(kernel, "quiets_fp", False)


def np_dtype(dt):
    return dtypes.as_dtype(dt).as_numpy_dtype
