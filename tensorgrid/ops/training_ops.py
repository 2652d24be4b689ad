"""Fused dense optimizer updates (TF's training ops): one node per variable and step instead of a dozen.

Each reads its scalars (cast to the variable's dtype), takes its variables' locks, updates their
arrays (in place when nothing else holds them, as scatter_ops' writes do) and outputs nothing:

- ResourceApplyGradientDescent(var, alpha, delta): var -= alpha * delta
- ResourceApplyKerasMomentum(var, accum, lr, grad, momentum): accum = accum * momentum - lr * grad;
  var += accum (use_nesterov: var += accum * momentum - lr * grad), Keras's SGD
- ResourceApplyAdam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
  alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power); m += (grad - m) * (1 - beta1);
  v += (grad^2 - v) * (1 - beta2); var -= m * alpha / (sqrt(v) + epsilon)

Inputs are in TF's order; a gradient of another shape than the variable is InvalidArgumentError.
1 - beta1 and 1 - beta2 are formed in float64 from the betas given, then cast to the variable's dtype,
so betas fed as float64 give Keras's numbers (Keras forms them in Python).
"""

import numpy as np

from tensorgrid.ops import core_ops
from tensorgrid.ops.array_ops import _invalid
from tensorgrid.ops.registry import register
from tensorgrid.ops.scatter_ops import _desc, _store, locked, writable_value


def _fused(slots, scalars, grad_at, rule):
    """A kernel factory: inputs are the variable and `slots` slot variables, scalars at positions `scalars`,
    the gradient at `grad_at`; rule(node, arrays, grad, *scalars) updates the arrays in place (the scalars
    come as Python floats, for the rule to cast to the variable's dtype)."""
    def factory(node):
        xp, desc = node.xp, _desc(node)

        def apply(*args):
            handles = args[:1 + slots]
            with locked(handles):
                arrays = [writable_value(v, desc, xp) for v in handles]
                for a, v in zip(arrays, handles):
                    if a.shape != arrays[0].shape:
                        raise _invalid(f"{desc}: {v.name} has shape {list(a.shape)}, the variable "
                                       f"{handles[0].name} {list(arrays[0].shape)}")
                grad = xp.asarray(args[grad_at], dtype=arrays[0].dtype)
                if grad.shape != arrays[0].shape:
                    raise _invalid(f"{desc}: the gradient has shape {list(grad.shape)}, the variable "
                                   f"{handles[0].name} {list(arrays[0].shape)}")
                cs = [float(np.asarray(core_ops.to_host(args[i]))) for i in scalars]
                rule(node, arrays, grad, *cs)
                for v, a in zip(handles, arrays):
                    _store(v, a)
        return apply
    return factory


def _gradient_descent(node, arrays, grad, alpha):
    arrays[0] -= arrays[0].dtype.type(alpha) * grad


def _keras_momentum(node, arrays, grad, lr, momentum):
    var, accum = arrays
    lr, momentum = var.dtype.type(lr), var.dtype.type(momentum)
    accum *= momentum
    accum -= lr * grad
    if node.attr("use_nesterov", False):
        var += accum * momentum - lr * grad
    else:
        var += accum


def _adam(node, arrays, grad, beta1_power, beta2_power, lr, beta1, beta2, epsilon):
    var, m, v = arrays
    t = var.dtype.type
    alpha = t(lr) * np.sqrt(t(1) - t(beta2_power)) / (t(1) - t(beta1_power))
    m += (grad - m) * t(1.0 - beta1)
    v += (grad * grad - v) * t(1.0 - beta2)
    var -= (m * alpha) / (node.xp.sqrt(v) + t(epsilon))


def _infer_none(ctx):
    return []


for _name, _slots, _scalars, _grad_at, _rule in (
        ("ResourceApplyGradientDescent", 0, (1,), 2, _gradient_descent),
        ("ResourceApplyKerasMomentum", 1, (2, 4), 3, _keras_momentum),
        ("ResourceApplyAdam", 2, (3, 4, 5, 6, 7, 8), 9, _adam)):
    register(_name, _infer_none, _fused(_slots, _scalars, _grad_at, _rule), stateful=True, colocate_with_input=0,
             num_outputs=0, doc=f"TF's {_name[len('Resource'):]} (module docstring).")
