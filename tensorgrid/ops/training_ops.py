"""Fused dense optimizer updates (TF's training ops): one node per variable and step instead of a dozen.

Each reads its scalars (cast to the variable's dtype), takes its variables' locks, updates their
arrays (in place when nothing else holds them, as scatter_ops' writes do) and outputs nothing:

- ResourceApplyGradientDescent(var, alpha, delta): var -= alpha * delta
- ResourceApplyMomentum(var, accum, lr, grad, momentum): accum = accum * momentum + grad;
  var -= accum * lr (use_nesterov: var -= grad * lr + accum * momentum * lr), TF1's Momentum
- ResourceApplyKerasMomentum(var, accum, lr, grad, momentum): accum = accum * momentum - lr * grad;
  var += accum (use_nesterov: var += accum * momentum - lr * grad), Keras's SGD
- ResourceApplyAdam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
  alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power); m += (grad - m) * (1 - beta1);
  v += (grad^2 - v) * (1 - beta2); var -= m * alpha / (sqrt(v) + epsilon)
  (use_nesterov: var -= (m * beta1 + grad * (1 - beta1)) * alpha / (sqrt(v) + epsilon))
- ResourceApplyAdagrad(var, accum, lr, grad): accum += grad^2 (unless update_slots is false);
  var -= grad * lr * rsqrt(accum)
- ResourceApplyRMSProp(var, ms, mom, lr, rho, momentum, epsilon, grad): ms += (grad^2 - ms) * (1 - rho);
  mom = mom * momentum + (grad * lr) / sqrt(ms + epsilon); var -= mom
- ResourceApplyCenteredRMSProp(var, mg, ms, mom, lr, rho, momentum, epsilon, grad): as RMSProp, with
  mg += (grad - mg) * (1 - rho) and sqrt((ms - mg^2) + epsilon)

Each is computed in the order TF1's optimizers (client/train/optimizers.py) wrote it with primitive ops,
so their numbers are unchanged. Inputs are in TF's order; a gradient or slot of another shape than the
variable is InvalidArgumentError naming the node, a hyperparameter that is not a scalar a build-time
ValueError (TF's shape function).
1 - beta1 and 1 - beta2 are formed in float64 from the betas given, then cast to the variable's dtype,
so betas fed as float64 give Keras's numbers (Keras forms them in Python).
"""

import numpy as np

from tensorgrid.ops import scatter_ops
from tensorgrid.ops.array_ops import _invalid, _require_scalar
from tensorgrid.ops.registry import register
from tensorgrid.ops.scatter_ops import _desc, _store, host_float, locked, writable_value


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
                cs = [host_float(args[i]) for i in scalars]
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


def _momentum(node, arrays, grad, lr, momentum):
    t = arrays[0].dtype.type
    scatter_ops.momentum_rule(node, arrays, grad, t(lr), t(momentum))     # the sparse op's rule, on all rows


def _adam(node, arrays, grad, beta1_power, beta2_power, lr, beta1, beta2, epsilon):
    var, m, v = arrays
    t = var.dtype.type
    xp = node.xp
    alpha = t(lr) * np.sqrt(t(1) - t(beta2_power)) / (t(1) - t(beta1_power))
    # The formulas above, each operation in its order, with two temporaries instead of one per operation.
    tmp = xp.subtract(grad, m, out=xp.empty_like(var))  # an array where var is 0-d too
    tmp *= t(1.0 - beta1)
    m += tmp
    xp.multiply(grad, grad, out=tmp)
    tmp -= v
    tmp *= t(1.0 - beta2)
    v += tmp
    step = m * t(beta1) + grad * t(1.0 - beta1) if node.attr("use_nesterov", False) else m
    delta = xp.multiply(step, alpha, out=xp.empty_like(var))
    xp.sqrt(v, out=tmp)
    tmp += t(epsilon)
    delta /= tmp
    var -= delta


def _adagrad(node, arrays, grad, lr):
    var, accum = arrays
    if node.attr("update_slots", True):
        accum += grad * grad
    var -= grad * var.dtype.type(lr) * node.xp.reciprocal(node.xp.sqrt(accum))


def _rms_prop(node, arrays, grad, lr, rho, momentum, epsilon, mg=None):
    var, ms, mom = arrays[0], arrays[-2], arrays[-1]
    t = var.dtype.type
    one_minus_rho = t(1) - t(rho)
    ms += (grad * grad - ms) * one_minus_rho
    if mg is None:
        denom = ms + t(epsilon)
    else:
        mg += (grad - mg) * one_minus_rho
        denom = (ms - mg * mg) + t(epsilon)
    mom *= t(momentum)
    mom += (grad * t(lr)) / node.xp.sqrt(denom)
    var -= mom


def _centered_rms_prop(node, arrays, grad, lr, rho, momentum, epsilon):
    _rms_prop(node, arrays, grad, lr, rho, momentum, epsilon, mg=arrays[1])


def _infer_scalars(scalars, names):
    def infer(ctx):
        for i, what in zip(scalars, names):
            _require_scalar(ctx, i, what)
        return []
    return infer


# Inputs in TF's order (the module docstring); the scalars' names as TF's op definitions give them.
for _name, _slots, _scalars, _grad_at, _rule, _names in (
        ("ResourceApplyGradientDescent", 0, (1,), 2, _gradient_descent, ("alpha",)),
        ("ResourceApplyMomentum", 1, (2, 4), 3, _momentum, ("lr", "momentum")),
        ("ResourceApplyKerasMomentum", 1, (2, 4), 3, _keras_momentum, ("lr", "momentum")),
        ("ResourceApplyAdam", 2, (3, 4, 5, 6, 7, 8), 9, _adam,
         ("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon")),
        ("ResourceApplyAdagrad", 1, (2,), 3, _adagrad, ("lr",)),
        ("ResourceApplyRMSProp", 2, (3, 4, 5, 6), 7, _rms_prop, ("lr", "rho", "momentum", "epsilon")),
        ("ResourceApplyCenteredRMSProp", 3, (4, 5, 6, 7), 8, _centered_rms_prop,
         ("lr", "rho", "momentum", "epsilon"))):
    register(_name, _infer_scalars(_scalars, _names), _fused(_slots, _scalars, _grad_at, _rule), stateful=True,
             colocate_with_input=0, num_outputs=0, doc=f"TF's {_name[len('Resource'):]} (module docstring).")
