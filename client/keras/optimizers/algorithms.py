"""Keras 3's optimizers, each update_step in the order Keras computes it (g the gradient, lr the rate).

- SGD: m = momentum * m - lr * g; var += m (Nesterov: var += momentum * m - lr * g); without momentum
  var -= lr * g (an IndexedSlices only moves its rows)
- Adam (and RMSprop's g^2): an IndexedSlices is densified, its g^2 the sum of its rows' squares (Keras's)
- Adam: m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2); (amsgrad: v_hat = max(v_hat, v));
  var -= m * lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) / (sqrt(v) + epsilon), t = iterations + 1
- AdamW: Adam after the decoupled decay var -= var * weight_decay * lr (weight_decay default 0.004)
- RMSprop: v = rho v + (1 - rho) g^2; (centered: a = rho a + (1 - rho) g, denominator v - a^2);
  step = lr g / sqrt(denominator + epsilon); momentum > 0: mom = momentum * mom + step, var -= mom
- Adagrad: acc += g^2; var -= lr g / sqrt(acc + epsilon) (an IndexedSlices only moves its rows)

Dense updates of SGD and Adam (without amsgrad) are one fused op per variable
(ResourceApplyGradientDescent, ResourceApplyKerasMomentum, ResourceApplyAdam: tensorgrid/ops/training_ops.py);
the rest are graphs of primitive ops. Each constructor takes its own hyperparameters and passes the
rest (weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency,
loss_scale_factor, name) to the base class, which rejects unknown ones. Hyperparameters are Python floats cast to each variable's dtype.
Defaults are Keras 3's: SGD lr 0.01, Adam / AdamW / RMSprop / Adagrad lr 0.001, epsilon 1e-7.
"""

from tensorgrid.client import array_ops, math_ops
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.client.indexed_slices import IndexedSlices
from tensorgrid.client.keras.optimizers.base import Optimizer, densify

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


def _cast(value, variable):
    return array_ops.cast(value, variable.dtype)


def _grad(gradient, variable):
    if isinstance(gradient, IndexedSlices):
        return IndexedSlices(_cast(gradient.values, variable), gradient.indices, gradient.dense_shape)
    return _cast(gradient, variable)


def _squared(gradient):
    """g^2, dense; for an IndexedSlices the sum of its rows' squares (repeated rows are not summed first),
    as Keras's TensorFlow backend squares one."""
    if isinstance(gradient, IndexedSlices):
        return densify(IndexedSlices(math_ops.square(gradient.values), gradient.indices, gradient.dense_shape))
    return math_ops.square(gradient)


class SGD(Optimizer):
    """Gradient descent with optional momentum and Nesterov momentum."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr = _cast(learning_rate, variable)
        gradient = _grad(gradient, variable)
        if self.momentum == 0:
            if isinstance(gradient, IndexedSlices):
                self.assign_sub(variable, IndexedSlices(gradient.values * lr, gradient.indices, gradient.dense_shape))
            else:
                apply_op("ResourceApplyGradientDescent", [variable.handle, lr, gradient], {"use_locking": False},
                         name="ResourceApplyGradientDescent")
            return
        m = self.momentums[self._get_variable_index(variable)]
        apply_op("ResourceApplyKerasMomentum",
                 [variable.handle, m.handle, lr, densify(gradient), _cast(self.momentum, variable)],
                 {"use_locking": False, "use_nesterov": bool(self.nesterov)}, name="ResourceApplyKerasMomentum")

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


class Adam(Optimizer):
    """Adam (slots momentum and velocity per variable; velocity_hat with amsgrad)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        if self.amsgrad:
            self._velocity_hats = self.add_optimizer_variables(var_list, "velocity_hat")

    def update_step(self, gradient, variable, learning_rate):
        lr = _cast(learning_rate, variable)
        gradient = _grad(gradient, variable)
        step = _cast(self.iterations + 1, variable)
        beta_1_power = math_ops.pow(_cast(self.beta_1, variable), step)
        beta_2_power = math_ops.pow(_cast(self.beta_2, variable), step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        if not self.amsgrad and not isinstance(gradient, IndexedSlices):
            # the betas as float64: the kernel forms 1 - beta in float64, as Keras does in Python
            hyper = [convert_to_tensor(self.beta_1, dtype=dtypes.float64),
                     convert_to_tensor(self.beta_2, dtype=dtypes.float64), _cast(self.epsilon, variable)]
            apply_op("ResourceApplyAdam", [variable.handle, m.handle, v.handle, beta_1_power, beta_2_power, lr]
                     + hyper + [gradient], {"use_locking": False, "use_nesterov": False}, name="ResourceApplyAdam")
            return
        squared, gradient = _squared(gradient), densify(gradient)
        alpha = lr * math_ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m_t = self.assign_add(m, (gradient - m) * _cast(1 - self.beta_1, variable))
        v_t = self.assign_add(v, (squared - v) * _cast(1 - self.beta_2, variable))
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            v_t = self.assign(v_hat, math_ops.maximum(v_hat, v_t))
        self.assign_sub(variable, (m_t * alpha) / (math_ops.sqrt(v_t) + _cast(self.epsilon, variable)))

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                       "amsgrad": self.amsgrad})
        return config


class AdamW(Adam):
    """Adam with decoupled weight decay (weight_decay required, default 0.004)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-07,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")


class RMSprop(Optimizer):
    """RMSprop (slot velocity; momentum when momentum > 0; average_gradient when centered)."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._velocities = self.add_optimizer_variables(var_list, "velocity")
        self._momentums = self.add_optimizer_variables(var_list, "momentum") if self.momentum > 0 else []
        self._average_gradients = (self.add_optimizer_variables(var_list, "average_gradient")
                                   if self.centered else [])

    def update_step(self, gradient, variable, learning_rate):
        lr = _cast(learning_rate, variable)
        gradient = _grad(gradient, variable)
        squared, gradient = _squared(gradient), densify(gradient)
        index = self._get_variable_index(variable)
        rho = _cast(self.rho, variable)
        one_minus_rho = _cast(1 - self.rho, variable)
        velocity = self.assign(self._velocities[index], rho * self._velocities[index]
                               + one_minus_rho * squared)
        if self.centered:
            average = self._average_gradients[index]
            average_t = self.assign(average, rho * average + one_minus_rho * gradient)
            denominator = velocity - math_ops.square(average_t) + _cast(self.epsilon, variable)
        else:
            denominator = velocity + _cast(self.epsilon, variable)
        increment = (lr * gradient) / math_ops.sqrt(denominator)
        if self.momentum > 0:
            momentum = self._momentums[index]
            momentum_t = self.assign(momentum, _cast(self.momentum, variable) * momentum + increment)
            self.assign_sub(variable, momentum_t)
        else:
            self.assign_sub(variable, increment)

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                       "centered": self.centered})
        return config


class Adagrad(Optimizer):
    """Adagrad (slot accumulator per variable, starting at initial_accumulator_value)."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-07, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators = self.add_optimizer_variables(var_list, "accumulator",
                                                          initializer=float(self.initial_accumulator_value))

    def update_step(self, gradient, variable, learning_rate):
        lr = _cast(learning_rate, variable)
        gradient = _grad(gradient, variable)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        epsilon = _cast(self.epsilon, variable)
        if isinstance(gradient, IndexedSlices):
            # Keras's TF backend: rows only, each listed row's square added (repeats add up)
            squares = IndexedSlices(math_ops.square(gradient.values), gradient.indices, gradient.dense_shape)
            accumulated = array_ops.gather(self.assign_add(accumulator, squares), gradient.indices)
            step = lr * gradient.values / math_ops.sqrt(accumulated + epsilon)
            self.assign_sub(variable, IndexedSlices(step, gradient.indices, gradient.dense_shape))
            return
        accumulated = self.assign_add(accumulator, math_ops.square(gradient))
        self.assign_sub(variable, (lr * gradient) / math_ops.sqrt(accumulated + epsilon))

    def get_config(self):
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon})
        return config
