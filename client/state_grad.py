"""Gradients of the variable ops: a read hands its gradient to the variable's handle.

So tg.gradients(loss, v) and GradientTape.gradient(loss, v), which
differentiate with respect to v's handle, sum the gradients of every read.
A row read (ResourceGather, what gather and embedding_lookup of a variable
use) hands it an IndexedSlices of those rows.
"""

from tensorgrid.client.array_grad import gathered_rows_gradient
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops import registry


@registry.register_gradient("ReadVariableOp")
def _read_variable_grad(op, grad):
    return [grad]


@registry.register_gradient("ResourceGather")
def _resource_gather_grad(op, grad):
    from tensorgrid.client.graph import apply_op
    handle, indices = op.inputs
    shape = TensorShape(op.get_attr("shape"))
    dims = shape.as_list() if shape.is_fully_defined() else None
    return [gathered_rows_gradient(grad, indices, dims, lambda: apply_op("VariableShape", [handle])), None]


registry.not_differentiable("VarHandleOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
                            "VarIsInitializedOp", "UninitializedNames", "VariableShape",
                            "ResourceScatterAdd", "ResourceScatterSub", "ResourceScatterUpdate",
                            "ResourceSparseApplyMomentum", "ResourceSparseApplyAdagrad", "ResourceSparseApplyRMSProp",
                            "ResourceSparseApplyCenteredRMSProp")
