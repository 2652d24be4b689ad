"""Row-wise ops on variables: gathers, scatters, and the sparse optimizer updates (TF's op names).

They read or write only the rows `indices` names, on the variable's own
device (each op is colocated with its variable), so an embedding step moves
its rows and their gradients, never the table. Writes are copy-on-write: an
update writes into the variable's array when no one else holds it (no
earlier read of it is still alive), else into a copy that becomes the new
value, so a value once read never changes under its reader. As with TF's
use_locking=False, a read that starts in the middle of an in-place update
of the same variable by another step may see part of it.

The ResourceSparseApply* kernels compute TF's per-row formulas (lr, rho,
momentum, epsilon are scalars cast to the variable's dtype):

- Momentum: accum = accum * momentum + g; var -= lr * accum
  (Nesterov: var -= g * lr + accum * momentum * lr)
- Adagrad: accum += g^2; var -= lr * g * rsqrt(accum)
- RMSProp: ms = ms * rho + g^2 * (1 - rho); mom = mom * momentum + rsqrt(ms + epsilon) * lr * g; var -= mom
- CenteredRMSProp: as RMSProp with mg = mg * rho + g * (1 - rho) and rsqrt(ms + epsilon - mg^2)

Indices that repeat are applied one after another, in order, as TF's
kernels do (TF1's optimizers sum duplicates before calling them).
"""

import sys

import numpy as np

from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops import core_ops
from tensorgrid.ops.array_ops import _check_indices, _invalid, _require_integer
from tensorgrid.ops.registry import register
from tensorgrid.worker import resources as res


def _var_shape(ctx):
    s = ctx.attr("shape")
    return None if s is None else TensorShape(s).as_tuple()


def _desc(node):
    return f"{node.op} '{node.name}' on {node.device}"


def _check_rows(node, value, indices):
    if np.ndim(value) == 0:
        raise _invalid(f"{_desc(node)}: the variable must be at least a vector, but is a scalar")
    _check_indices(indices, value.shape[0], lambda m: _invalid(f"{_desc(node)}: {m}"))


# ---- ResourceGather, VariableShape ----------------------------------------------------------------

def _infer_gather(ctx):
    _require_integer(ctx, 1, "indices")
    var, indices = _var_shape(ctx), ctx.input_shapes[1]
    dt = dtypes.as_dtype(ctx.attr("dtype"))
    if var is None or indices is None:
        return [(dt, None)]
    if not var:
        raise ctx.error("params must be at least 1 dimensional")
    return [(dt, tuple(indices) + tuple(var[1:]))]


def _gather_kernel(node):
    xp, desc = node.xp, _desc(node)

    def gather(var, indices):
        value = res.read(var, desc)
        _check_rows(node, value, indices)
        return xp.take(value, indices, axis=0)
    return gather


register("ResourceGather", _infer_gather, _gather_kernel, stateful=True, colocate_with_input=0,
         doc="Rows `indices` of a variable (attrs dtype, shape: the variable's).")


def _variable_shape_kernel(node):
    out = dtypes.as_dtype(node.attr("out_type", dtypes.int32)).as_numpy_dtype
    desc = _desc(node)
    return lambda var: np.array(np.shape(res.read(var, desc)), dtype=out)


register("VariableShape", lambda ctx: [(dtypes.as_dtype(ctx.attr("out_type", dtypes.int32)), (None,))],
         _variable_shape_kernel, stateful=True, colocate_with_input=0, cpu_only=True,
         doc="The shape of a variable's current value (attr out_type).")


# ---- copy-on-write rows ---------------------------------------------------------------------------

def writable_value(var, node_desc, xp):
    """var's value as an array this update may write (call under var.lock): its own memory when
    nothing else refers to it, else a copy."""
    value = res.read(var, node_desc)
    if xp is np and isinstance(value, np.ndarray):
        owner = value if value.base is None else value.base
        # Referents of `value`: var's slot, this local, getrefcount's argument; of owner: value.base too.
        alone = sys.getrefcount(value) <= 3 and (owner is value or sys.getrefcount(owner) <= 3)
        if alone and isinstance(owner, np.ndarray) and owner.flags.writeable:
            view = value.view()
            view.flags.writeable = True
            return view
    return xp.array(value, copy=True)


def _store(var, array):
    """Makes `array` (writable_value's) var's value; nothing to do where it is var's own memory, updated
    in place, which var's read-only view already shows."""
    value = var.value
    if isinstance(value, np.ndarray) and array.base is not None and array.base is (
            value if value.base is None else value.base):
        return
    var.value = core_ops._frozen(array)


def host_float(x):
    """A scalar input (on any device) as a Python float."""
    if isinstance(x, (np.ndarray, np.generic)):
        return float(x)
    return float(np.asarray(core_ops.to_host(x)))


def _updates_for(node, value, indices, updates, xp):
    updates = xp.asarray(updates, dtype=value.dtype)
    want = tuple(indices.shape) + tuple(value.shape[1:])
    if updates.shape != want and updates.ndim != 0:
        raise _invalid(f"{_desc(node)}: updates of shape {list(updates.shape)} do not fit indices of shape "
                       f"{list(indices.shape)} and a variable of shape {list(value.shape)}: expected {list(want)}")
    return xp.broadcast_to(updates, want)


def _scatter_kernel(how):
    def factory(node):
        xp, desc = node.xp, _desc(node)

        def scatter(var, indices, updates):
            with var.lock:
                value = writable_value(var, desc, xp)
                _check_rows(node, value, indices)
                updates = _updates_for(node, value, indices, updates, xp)
                if how == "add":
                    xp.add.at(value, indices, updates)       # repeated indices accumulate
                elif how == "sub" and xp is np:
                    xp.subtract.at(value, indices, updates)
                elif how == "sub":
                    xp.add.at(value, indices, -updates)      # CuPy's subtract.at takes integers only
                elif xp is np or indices.size < 2:
                    value[indices] = updates                 # the last of repeated indices wins
                else:
                    _assign_last_wins(xp, value, indices, updates)
                _store(var, value)
        return scatter
    return factory


def _assign_last_wins(xp, value, indices, updates):
    """value[indices] = updates on a GPU, where a CUDA scatter of repeated indices keeps any one of
    them: each index takes its last update, as on the CPU."""
    flat = indices.reshape(-1)[::-1]
    rows = updates.reshape((flat.size,) + value.shape[1:])[::-1]
    unique, last = xp.unique(flat, return_index=True)
    value[unique] = rows[last]


def _infer_scatter(ctx):
    _require_integer(ctx, 1, "indices")
    return []


for _name, _how, _what in (("ResourceScatterAdd", "add", "Adds `updates` to"),
                           ("ResourceScatterSub", "sub", "Subtracts `updates` from"),
                           ("ResourceScatterUpdate", "update", "Sets")):
    register(_name, _infer_scatter, _scatter_kernel(_how), stateful=True, colocate_with_input=0, num_outputs=0,
             doc=f"{_what} rows `indices` of a variable (updates: indices.shape + var.shape[1:], or a scalar).")


# ---- the sparse optimizer updates -------------------------------------------------------------------

def _sparse_apply(slots, scalars, grad_at, rule):
    """A kernel factory for ResourceSparseApply*: inputs are the variable and its `slots` slot variables, then
    scalars at positions `scalars`, grad at `grad_at` and indices after it, in TF's order; rule(node, rows, g,
    *scalars) updates the row arrays `rows` (the variable's first) in place."""
    def factory(node):
        xp, desc = node.xp, _desc(node)

        def apply(*args):
            handles, grad, indices = args[:1 + slots], args[grad_at], args[grad_at + 1]
            with locked(handles):
                arrays = [writable_value(v, desc, xp) for v in handles]
                _check_rows(node, arrays[0], indices)
                for a, v in zip(arrays[1:], handles[1:]):
                    if a.shape != arrays[0].shape:
                        raise _invalid(f"{desc}: slot {v.name} has shape {list(a.shape)}, the variable "
                                       f"{handles[0].name} {list(arrays[0].shape)}")
                dt = arrays[0].dtype
                cs = [dt.type(host_float(args[i])) for i in scalars]
                flat = indices.reshape(-1)
                g = _updates_for(node, arrays[0], indices, grad, xp).reshape((flat.size,) + arrays[0].shape[1:])
                if np.unique(core_ops.to_host(flat)).size == flat.size:
                    _rows(arrays, flat, g, cs, rule, node)
                else:
                    for k in range(flat.size):      # repeated rows: one after another, as TF's kernels
                        _rows(arrays, flat[k:k + 1], g[k:k + 1], cs, rule, node)
                for v, a in zip(handles, arrays):
                    _store(v, a)
        return apply
    return factory


class locked:
    """Holds the locks of the variables `handles`, taken in order and released in reverse (a class, not
    a generator: an optimizer step takes it once per variable)."""

    __slots__ = ("handles",)

    def __init__(self, handles):
        self.handles = handles

    def __enter__(self):
        for v in self.handles:
            v.lock.acquire()

    def __exit__(self, *exc):
        for v in reversed(self.handles):
            v.lock.release()


def _rows(arrays, idx, g, cs, rule, node):
    rows = [a[idx] for a in arrays]
    rule(node, rows, g, *cs)
    for a, r in zip(arrays, rows):
        a[idx] = r


def momentum_rule(node, rows, g, lr, momentum):
    """TF's Momentum on the arrays `rows` (var, accum) in place; ResourceApplyMomentum's rule too."""
    var, accum = rows
    accum *= momentum
    accum += g
    if node.attr("use_nesterov", False):
        var -= g * lr + accum * momentum * lr
    else:
        var -= lr * accum


def _adagrad(node, rows, g, lr):
    var, accum = rows
    if node.attr("update_slots", True):
        accum += g * g
    var -= lr * g * (1 / np.sqrt(accum))


def _rms_prop(node, rows, g, lr, rho, momentum, epsilon):
    var, ms, mom = rows
    ms[...] = ms * rho + g * g * (1 - rho)
    mom[...] = mom * momentum + (1 / np.sqrt(ms + epsilon)) * lr * g
    var -= mom


def _centered_rms_prop(node, rows, g, lr, rho, momentum, epsilon):
    var, mg, ms, mom = rows
    ms[...] = ms * rho + g * g * (1 - rho)
    mg[...] = mg * rho + g * (1 - rho)
    mom[...] = mom * momentum + (1 / np.sqrt(ms + epsilon - mg * mg)) * lr * g
    var -= mom


def _infer_sparse_apply(grad_at):
    def infer(ctx):
        _require_integer(ctx, grad_at + 1, "indices")
        return []
    return infer


# Inputs in TF's order: Momentum (var, accum, lr, grad, indices, momentum); Adagrad (var, accum, lr, grad,
# indices); RMSProp (var, ms, mom, lr, rho, momentum, epsilon, grad, indices); CenteredRMSProp (var, mg, ms,
# mom, lr, rho, momentum, epsilon, grad, indices).
for _name, _slots, _scalars, _grad_at, _rule in (
        ("ResourceSparseApplyMomentum", 1, (2, 5), 3, momentum_rule),
        ("ResourceSparseApplyAdagrad", 1, (2,), 3, _adagrad),
        ("ResourceSparseApplyRMSProp", 2, (3, 4, 5, 6), 7, _rms_prop),
        ("ResourceSparseApplyCenteredRMSProp", 3, (4, 5, 6, 7), 8, _centered_rms_prop)):
    register(_name, _infer_sparse_apply(_grad_at), _sparse_apply(_slots, _scalars, _grad_at, _rule), stateful=True,
             colocate_with_input=0, num_outputs=0, doc=f"TF's {_name[len('Resource'):]} (module docstring).")
