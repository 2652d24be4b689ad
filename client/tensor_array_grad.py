"""Gradients of the TensorArray ops, as TF1 makes them.

The gradient of an array's elements lives in its gradient array (TensorArrayGradV3, one
per gradient computation, named by the `gradients` name scope it runs in): a read's
gradient is written there, a write's is read back from there, a gather's is scattered
there and a scatter's gathered. Flows carry the order: a write's incoming flow gradient is
the gradient array's flow after the writes of everything downstream, so reads of the
gradient array run after them, through loops too.
"""

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op
from tensorgrid.ops import registry


def grad_source():
    """The gradient computation the current gradient function belongs to: the outermost name
    scope component that starts with 'gradients' ('gradients' when there is none)."""
    if not context.executing_eagerly():
        for part in graph_lib.get_default_graph().get_name_scope().split("/"):
            if part.startswith("gradients"):
                return part
    return "gradients"


def _grad_array(handle, flow):
    return apply_op("TensorArrayGradV3", [handle, flow], {"source": grad_source()}, name="TensorArrayGrad")


@registry.register_gradient("TensorArrayReadV3")
def _read_grad(op, grad):
    handle, index, flow = op.inputs
    g_handle, g_flow = _grad_array(handle, flow)
    return [None, None, apply_op("TensorArrayWriteV3", [g_handle, index, grad, g_flow])]


@registry.register_gradient("TensorArrayWriteV3")
def _write_grad(op, flow_grad):
    handle, index, value, _ = op.inputs
    g_handle, g_flow = _grad_array(handle, flow_grad)
    grad = apply_op("TensorArrayReadV3", [g_handle, index, g_flow],
                    {"dtype": value.dtype, "element_shape": value.shape})
    return [None, None, grad, flow_grad]


@registry.register_gradient("TensorArrayGatherV3")
def _gather_grad(op, grad):
    handle, indices, flow = op.inputs
    g_handle, g_flow = _grad_array(handle, flow)
    return [None, None, apply_op("TensorArrayScatterV3", [g_handle, indices, grad, g_flow])]


@registry.register_gradient("TensorArrayScatterV3")
def _scatter_grad(op, flow_grad):
    handle, indices, value, _ = op.inputs
    g_handle, g_flow = _grad_array(handle, flow_grad)
    element = value.shape.as_list()[1:] if value.shape.ndims else None
    grad = apply_op("TensorArrayGatherV3", [g_handle, indices, g_flow],
                    {"dtype": value.dtype, "element_shape": graph_lib.TensorShape(element)})
    return [None, None, grad, flow_grad]


@registry.register_gradient("TensorArrayConcatV3")
def _concat_grad(op, grad, lengths_grad):
    handle, flow = op.inputs
    g_handle, g_flow = _grad_array(handle, flow)
    return [None, apply_op("TensorArraySplitV3", [g_handle, grad, op.outputs[1], g_flow])]


@registry.register_gradient("TensorArraySplitV3")
def _split_grad(op, flow_grad):
    handle, value, _, _ = op.inputs
    g_handle, g_flow = _grad_array(handle, flow_grad)
    dims = value.shape.as_tuple()
    rest = graph_lib.TensorShape(None if dims is None else dims[1:])
    grad, _ = apply_op("TensorArrayConcatV3", [g_handle, g_flow], {"dtype": value.dtype, "element_shape_except0": rest})
    return [None, grad, None, flow_grad]


registry.not_differentiable("TensorArrayV3", "TensorArrayGradV3", "TensorArraySizeV3", "TensorArrayCloseV3")
