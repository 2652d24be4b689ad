"""Core ops: constants, placeholders, identity, grouping, the runtime's send/recv and
feed/fetch nodes, and resource variables."""

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.registry import register
from tensorgrid.worker import resources as res


def _shape_attr(ctx, key="shape"):
    s = ctx.attr(key)
    if s is None:
        return None
    return TensorShape(s).as_tuple()


def _infer_const(ctx):
    v = ctx.attr("value")
    return [(dtypes.as_dtype(ctx.attr("dtype")), tuple(np.shape(v)))]


def _const_kernel(node):
    value = node.attr("value")
    if node.xp is not np:
        value = to_device(node.xp, value)
    else:
        value = value.view()
        value.flags.writeable = False  # fetches copy read-only arrays, so users never alias a constant
    return lambda: value


register("Const", _infer_const, _const_kernel, doc="A constant tensor (attr value).")


def _infer_placeholder(ctx):
    return [(dtypes.as_dtype(ctx.attr("dtype")), _shape_attr(ctx))]


def _placeholder_kernel(node):
    dt = dtypes.as_dtype(node.attr("dtype"))
    shape = node.attr("shape")
    shape_txt = "" if shape is None or TensorShape(shape).as_tuple() is None else \
        " and shape [" + ",".join("?" if d is None else str(d) for d in TensorShape(shape).as_tuple()) + "]"

    def run():
        raise errors.InvalidArgumentError(
            None, None,
            f"You must feed a value for placeholder tensor '{node.name}' with dtype {dt.name}{shape_txt}")
    return run


register("Placeholder", _infer_placeholder, _placeholder_kernel, doc="A value the step must feed.")


def _infer_pwd(ctx):
    shape = _shape_attr(ctx)
    return [(ctx.input_dtypes[0], shape if shape is not None else ctx.input_shapes[0])]


register("PlaceholderWithDefault", _infer_pwd, lambda node: lambda x: x,
         doc="Its input unless fed.")


def _infer_identity(ctx):
    return [(ctx.input_dtypes[0], ctx.input_shapes[0])]


register("Identity", _infer_identity, lambda node: lambda x: x, doc="Passes its input through.")
register("StopGradient", _infer_identity, lambda node: lambda x: x, doc="Identity that blocks gradients.")
register("NoOp", lambda ctx: [], lambda node: lambda *a: None, num_outputs=0, doc="Does nothing; groups control deps.")

# ---- runtime nodes: inserted by the master's passes, never by users -------------------


def _infer_recv(ctx):
    return [(dtypes.as_dtype(ctx.attr("dtype")), None)]


def _send_kernel(node):
    key = node.attr("key")

    def send(step, value=None):
        step.rendezvous.send(key, value)
    return send


def _recv_kernel(node):
    key = node.attr("key")

    def recv(step):
        return step.rendezvous.recv(key)
    return recv


register("_Send", lambda ctx: [], _send_kernel, needs_step=True, stateful=True, num_outputs=0,
         doc="Sends its input to another device under rendezvous key attr 'key'.")
register("_Recv", _infer_recv, _recv_kernel, needs_step=True, stateful=True,
         doc="Receives the tensor sent under rendezvous key attr 'key'.")


def _feed_kernel(node):
    key = node.attr("key")
    xp = node.xp

    def feed(step):
        try:
            value = step.feeds[key]
        except KeyError:
            raise errors.InvalidArgumentError(None, None, f"no value fed for '{key}'") from None
        return value if xp is np else to_device(xp, value)  # a host feed for a GPU partition: one copy in
    return feed


def _fetch_kernel(node):
    key = node.attr("key")

    def fetch(step, value):
        step.fetches[key] = to_host(value)
    return fetch


# Host<->GPU copies of at least this many bytes go through page-locked (pinned) host memory from
# CuPy's pinned pool, which DMA reads and writes at full speed (pageable memory takes about a sixth of
# it); the pool reuses a block once the array holding it is freed, so steady steps allocate nothing.
PINNED_MIN_BYTES = 1 << 20


def to_host(value):
    """A numpy value of `value`: device (CuPy) arrays are copied to the host once (into pinned memory
    when large), others pass through."""
    if type(value).__module__.startswith("cupy"):
        if value.nbytes < PINNED_MIN_BYTES:
            return value.get()
        import cupy
        out = pinned_empty(value.shape, value.dtype)
        cupy.ascontiguousarray(value).get(out=out)
        return out
    return value


def pinned_empty(shape, dtype):
    """An uninitialized numpy array in pinned host memory (only where CuPy is already in use)."""
    import cupy
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    mem = cupy.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
    return np.frombuffer(mem, dtype, count).reshape(shape)


def to_device(xp, value):
    """`value` in the memory of a device whose array module is xp, with one copy at most. Strings,
    variants and other Python objects stay in host memory on every device (as TF's HostMemory
    tensors do): a GPU has no kernel that reads them, and the ops that take them run on the host."""
    if xp is np:
        return to_host(value)
    if value is None or type(value).__module__.startswith("cupy"):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind in "OSUV":
            return value
        value = np.asarray(value)
        if not value.flags.c_contiguous:
            value = np.ascontiguousarray(value)
        out = xp.empty(value.shape, value.dtype)
        out.set(value)  # a synchronous cudaMemcpy: at DMA speed from pinned memory, with no staging copy
        return out
    if isinstance(value, (bool, int, float, complex)):
        return xp.asarray(value)
    return value


register("_Feed", _infer_recv, _feed_kernel, needs_step=True, stateful=True,
         doc="Produces the value the client fed for tensor attr 'key'.")
register("_Fetch", lambda ctx: [], _fetch_kernel, needs_step=True, stateful=True, num_outputs=0,
         doc="Hands its input back to the client as fetch attr 'key'.")


def _retval_kernel(node):
    key = node.attr("key")

    def retval(step, value):
        step.fetches[key] = value
    return retval


register("_Retval", lambda ctx: [], _retval_kernel, needs_step=True, stateful=True, num_outputs=0,
         doc="Hands its input back to the kernel calling a function, as result attr 'key' (kept on its device).")

# ---- resource variables ------------------------------------------------------------------


def _infer_handle(ctx):
    return [(dtypes.resource, ())]


def _handle_kernel(node):
    var = node.resources.handle(node.attr("shared_name") or node.name,
                                dtypes.as_dtype(node.attr("dtype")), node.attr("shape"), node.attr("container", ""))
    return lambda: var


register("VarHandleOp", _infer_handle, _handle_kernel, stateful=True,
         doc="The handle of variable (attr 'container', attr 'shared_name', dtype, shape) in the device's "
             "resource store (the container rule: worker/resources.py).")


def _infer_read(ctx):
    return [(dtypes.as_dtype(ctx.attr("dtype")), _shape_attr(ctx))]


def _read_kernel(node):
    desc = f"{node.op} '{node.name}' on {node.device}"

    def read(var):
        return res.read(var, desc)
    return read


register("ReadVariableOp", _infer_read, _read_kernel, stateful=True, colocate_with_input=0,
         doc="The current value of a variable.")


def _frozen(value):
    """A read-only view: a variable's value is shared with readers, never written in place."""
    if isinstance(value, np.ndarray):
        value = value.view()
        value.flags.writeable = False
    return value


def _check_assign(var, value, node):
    value = _frozen(node.xp.asarray(value, dtype=var.dtype.as_numpy_dtype))
    if var.shape is not None and node.attr("validate_shape", True):
        want = TensorShape(var.shape)
        if not want.is_compatible_with(value.shape):
            raise errors.InvalidArgumentError(
                None, None,
                f"{node.op} '{node.name}': cannot assign a value of shape {list(value.shape)} "
                f"to variable {var.name} of shape {want}")
    return value


def _assign_kernel(node):
    def assign(var, value):
        value = _check_assign(var, value, node)
        with var.lock:
            var.value = value
        return value
    return assign


def _assign_update_kernel(sign):
    def factory(node):
        desc = f"{node.op} '{node.name}' on {node.device}"

        def update(var, delta):
            with var.lock:
                old = res.read(var, desc)
                new = (old + delta) if sign > 0 else (old - delta)
                var.value = _frozen(node.xp.asarray(new, dtype=var.dtype.as_numpy_dtype))
                return var.value
        return update
    return factory


def _infer_assign(ctx):
    return [(ctx.input_dtypes[1] if ctx.attr("dtype") is None else dtypes.as_dtype(ctx.attr("dtype")),
             ctx.input_shapes[1])]


register("AssignVariableOp", _infer_assign, _assign_kernel, stateful=True, colocate_with_input=0,
         doc="Sets a variable; outputs the new value.")
register("AssignAddVariableOp", _infer_assign, _assign_update_kernel(+1), stateful=True,
         colocate_with_input=0, doc="Adds to a variable; outputs the new value.")
register("AssignSubVariableOp", _infer_assign, _assign_update_kernel(-1), stateful=True,
         colocate_with_input=0, doc="Subtracts from a variable; outputs the new value.")
register("VarIsInitializedOp", lambda ctx: [(dtypes.bool_, ())],
         lambda node: lambda var: np.bool_(var.value is not None), stateful=True,
         colocate_with_input=0, doc="Whether a variable holds a value.")
