"""Gradients of the variable ops: a read hands its gradient to the variable's handle.

So tg.gradients(loss, v) and GradientTape.gradient(loss, v), which
differentiate with respect to v's handle, sum the gradients of every read.
"""

from tensorgrid.ops import registry


@registry.register_gradient("ReadVariableOp")
def _read_variable_grad(op, grad):
    return [grad]


registry.not_differentiable("VarHandleOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
                            "VarIsInitializedOp", "UninitializedNames")
