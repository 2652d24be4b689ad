"""The TF1 optimizers: a dense gradient updates each variable and its slots with one fused op, as TF's do.

The ops are TF's: ResourceApplyGradientDescent, ResourceApplyMomentum,
ResourceApplyAdagrad, ResourceApplyRMSProp / ResourceApplyCenteredRMSProp and
ResourceApplyAdam (tensorgrid/ops/training_ops.py), in place on the
variables' arrays. Hyperparameters become float32 tensors (TF's conversion
of Python floats) that the kernels cast to each variable's dtype, so float32
and float64 variables follow TF's numbers. The update rules, with g the
gradient:

- GradientDescent: var -= g * lr
- Momentum: accum = accum * momentum + g;
  var -= accum * lr, or with Nesterov var -= g * lr + accum * momentum * lr
- Adagrad: accum += g^2; var -= g * lr * rsqrt(accum)
- RMSProp: ms += (g^2 - ms) * (1 - decay); [centered: mg += (g - mg) * (1 - decay)];
  mom = mom * momentum + (g * lr) / sqrt(ms [- mg^2] + epsilon); var -= mom
- Adam: alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t); m += (g - m) * (1 - beta1);
  v += (g^2 - v) * (1 - beta2); var -= (m * alpha) / (sqrt(v) + epsilon);
  then beta1^t and beta2^t (variables beta1_power, beta2_power) advance once per step.

A gradient that is an IndexedSlices updates as TF1's `_resource_apply_sparse` does, rows repeated in it
summed first: GradientDescent, Momentum, Adagrad and RMSProp change only those rows, through one
ResourceScatterAdd / ResourceSparseApply* op per variable (tensorgrid/ops/scatter_ops.py, where the
per-row formulas are); Adam decays all of m and v (m = m * beta1, then rows m += g * (1 - beta1); v
likewise with g^2) and updates all of var from them, as TF1's sparse Adam does.
"""

from tensorgrid.client import array_ops, math_ops, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.train.optimizer import Optimizer, _colocate

__all__ = ["GradientDescentOptimizer", "MomentumOptimizer", "AdagradOptimizer", "RMSPropOptimizer",
           "AdamOptimizer"]


def _hyper(value, name):
    """A hyperparameter (a number, tensor, or a callable giving one) as a tensor."""
    if callable(value):
        value = value()
    return convert_to_tensor(value, name=name)


def _like(t, var):
    return array_ops.cast(t, var.dtype)


def _fused(op, inputs, attrs):
    """One fused update op named as TF names it (the kernel casts the float32 hyperparameters itself)."""
    return apply_op(op, inputs, attrs, name=op)


class GradientDescentOptimizer(Optimizer):
    """Plain gradient descent: var -= learning_rate * gradient."""

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate

    def _prepare(self):
        self._lr_t = _hyper(self._learning_rate, "learning_rate")

    def _apply_dense(self, grad, var):
        return _fused("ResourceApplyGradientDescent", [var.handle, self._lr_t, grad], {"use_locking": False})

    def _resource_apply_sparse_duplicate_indices(self, grad, var, indices):
        # scatter-add accumulates repeated rows itself, so they need no summing first
        return apply_op("ResourceScatterAdd", [var.handle, indices, -grad * _like(self._lr_t, var)],
                        {"dtype": var.dtype}, name="ResourceScatterAdd")


class MomentumOptimizer(Optimizer):
    """Gradient descent with momentum (slot "momentum", variable `<var>/Momentum`), optionally Nesterov's."""

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum", use_nesterov=False):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._momentum = momentum
        self._use_nesterov = use_nesterov

    def _create_slots(self, var_list):
        for v in var_list:
            self._zeros_slot(v, "momentum", self._name)

    def _prepare(self):
        self._lr_t = _hyper(self._learning_rate, "learning_rate")
        self._momentum_t = _hyper(self._momentum, "momentum")

    def _apply_dense(self, grad, var):
        return _fused("ResourceApplyMomentum", [var.handle, self.get_slot(var, "momentum").handle, self._lr_t, grad,
                                                self._momentum_t],
                      {"use_locking": False, "use_nesterov": bool(self._use_nesterov)})

    def _resource_apply_sparse(self, grad, var, indices):
        accum = self.get_slot(var, "momentum")
        return apply_op("ResourceSparseApplyMomentum",
                        [var.handle, accum.handle, _like(self._lr_t, var), grad, indices,
                         _like(self._momentum_t, var)],
                        {"use_locking": False, "use_nesterov": bool(self._use_nesterov)},
                        name="ResourceSparseApplyMomentum")


class AdagradOptimizer(Optimizer):
    """Adagrad (slot "accumulator", variable `<var>/Adagrad`, starting at initial_accumulator_value)."""

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False, name="Adagrad"):
        if initial_accumulator_value <= 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: {initial_accumulator_value}")
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._initial_accumulator_value = initial_accumulator_value

    def _create_slots(self, var_list):
        init = variables_lib.constant_initializer(self._initial_accumulator_value)
        for v in var_list:
            self._slot_with_initializer(v, init, "accumulator", self._name)

    def _prepare(self):
        self._lr_t = _hyper(self._learning_rate, "learning_rate")

    def _apply_dense(self, grad, var):
        return _fused("ResourceApplyAdagrad", [var.handle, self.get_slot(var, "accumulator").handle, self._lr_t, grad],
                      {"use_locking": False, "update_slots": True})

    def _resource_apply_sparse(self, grad, var, indices):
        accum = self.get_slot(var, "accumulator")
        return apply_op("ResourceSparseApplyAdagrad", [var.handle, accum.handle, _like(self._lr_t, var), grad, indices],
                        {"use_locking": False, "update_slots": True}, name="ResourceSparseApplyAdagrad")


class RMSPropOptimizer(Optimizer):
    """RMSProp (slots "rms" starting at one, "mg" when centered, "momentum"), as TF1's RMSPropOptimizer."""

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False, centered=False,
                 name="RMSProp"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._decay = decay
        self._momentum = momentum
        self._epsilon = epsilon
        self._centered = centered

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot_with_initializer(v, variables_lib.ones_initializer(), "rms", self._name)
            if self._centered:
                self._zeros_slot(v, "mg", self._name)
            self._zeros_slot(v, "momentum", self._name)

    def _prepare(self):
        self._lr_t = _hyper(self._learning_rate, "learning_rate")
        self._decay_t = _hyper(self._decay, "decay")
        self._momentum_t = _hyper(self._momentum, "momentum")
        self._epsilon_t = _hyper(self._epsilon, "epsilon")

    def _apply_dense(self, grad, var):
        slots = [self.get_slot(var, "mg")] if self._centered else []
        slots += [self.get_slot(var, "rms"), self.get_slot(var, "momentum")]
        op = "ResourceApplyCenteredRMSProp" if self._centered else "ResourceApplyRMSProp"
        return _fused(op, [var.handle] + [s.handle for s in slots]
                      + [self._lr_t, self._decay_t, self._momentum_t, self._epsilon_t, grad], {"use_locking": False})

    def _resource_apply_sparse(self, grad, var, indices):
        slots = [self.get_slot(var, "mg")] if self._centered else []
        slots += [self.get_slot(var, "rms"), self.get_slot(var, "momentum")]
        scalars = [_like(t, var) for t in (self._lr_t, self._decay_t, self._momentum_t, self._epsilon_t)]
        op = "ResourceSparseApplyCenteredRMSProp" if self._centered else "ResourceSparseApplyRMSProp"
        return apply_op(op, [var.handle] + [s.handle for s in slots] + scalars + [grad, indices],
                        {"use_locking": False}, name=op)


class AdamOptimizer(Optimizer):
    """Adam (slots "m" and "v", variables `<var>/Adam` and `<var>/Adam_1`; beta1_power and beta2_power)."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking=False, name="Adam"):
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._beta1 = beta1
        self._beta2 = beta2
        self._epsilon = epsilon

    def _create_slots(self, var_list):
        first = min(var_list, key=lambda v: v.name)
        self._powers = (self._non_slot_variable(self._beta1, "beta1_power", first),
                        self._non_slot_variable(self._beta2, "beta2_power", first))
        for v in var_list:
            self._zeros_slot(v, "m", self._name)
            self._zeros_slot(v, "v", self._name + "_1")

    def _prepare(self):
        self._lr_t = _hyper(self._lr, "learning_rate")
        self._beta1_t = _hyper(self._beta1, "beta1")
        self._beta2_t = _hyper(self._beta2, "beta2")
        self._epsilon_t = _hyper(self._epsilon, "epsilon")
        # read once for every variable's update (each runs before _finish advances them)
        self._power_reads = None

    def _apply_dense(self, grad, var):
        if self._power_reads is None:
            self._power_reads = tuple(p.value() for p in self._powers)
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        return _fused("ResourceApplyAdam", [var.handle, m.handle, v.handle, *self._power_reads, self._lr_t,
                                            self._beta1_t, self._beta2_t, self._epsilon_t, grad],
                      {"use_locking": False, "use_nesterov": False})

    def _resource_apply_sparse(self, grad, var, indices):
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        beta1_power, beta2_power = (_like(p, var) for p in self._powers)
        lr, beta1, beta2, epsilon = (_like(t, var) for t in (self._lr_t, self._beta1_t, self._beta2_t,
                                                              self._epsilon_t))
        lr = lr * math_ops.sqrt(1 - beta2_power) / (1 - beta1_power)
        m_t = m.assign(m * beta1)
        with scopes.control_dependencies([m_t]):
            m_t = variables_lib.scatter_add(m, indices, grad * (1 - beta1))
        v_t = v.assign(v * beta2)
        with scopes.control_dependencies([v_t]):
            v_t = variables_lib.scatter_add(v, indices, (grad * grad) * (1 - beta2))
        update = var.assign_sub(lr * m_t / (math_ops.sqrt(v_t) + epsilon), read_value=False)
        return array_ops.group(update, m_t, v_t)

    def _finish(self, update_ops, name):
        beta1_power, beta2_power = self._powers
        with scopes.control_dependencies(update_ops), _colocate(beta1_power):
            update_beta1 = beta1_power.assign(beta1_power * self._beta1_t, read_value=False)
            update_beta2 = beta2_power.assign(beta2_power * self._beta2_t, read_value=False)
        return super()._finish(list(update_ops) + [update_beta1, update_beta2], name)
