"""tg.keras.optimizers.schedules: learning rates that change with the optimizer's step (Keras 3's schedules).

A schedule is called with the step (the optimizer's `iterations`, a tensor
inside a traced train step) and gives the learning rate as a tensor of the
initial rate's dtype (float32 for a Python float), so `Adam(learning_rate=ExponentialDecay(...))` reads
the step afresh on every update. The formulas, t the step:

- ExponentialDecay: lr * decay_rate ^ (t / decay_steps) (floor of the exponent when staircase)
- InverseTimeDecay: lr / (1 + decay_rate * t / decay_steps) (floor likewise)
- PolynomialDecay: (lr - end) * (1 - min(t, decay_steps) / decay_steps) ^ power + end (cycle: decay_steps times
  ceil(t / decay_steps))
- CosineDecay: lr * ((1 - alpha) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2 + alpha), after a linear
  warm-up from lr to warmup_target over warmup_steps when warmup_target is given
- PiecewiseConstantDecay: values[i] for boundaries[i-1] < t <= boundaries[i]
"""

import math

from tensorgrid.client import array_ops, math_ops, scopes
from tensorgrid.client.graph import convert_to_tensor

__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay", "PolynomialDecay", "CosineDecay",
           "PiecewiseConstantDecay", "serialize", "deserialize"]


class LearningRateSchedule:
    """Base class: `__call__(step)` gives the learning rate; `get_config` / `from_config` serialize it."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override `get_config()` "
                                  f"in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _check_decay_steps(decay_steps):
    if decay_steps <= 0:
        raise ValueError(f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}")


def _start(schedule, step):
    """(initial rate as a tensor, the step cast to its dtype, decay_steps likewise)."""
    initial = convert_to_tensor(schedule.initial_learning_rate)
    dtype = initial.dtype
    return initial, array_ops.cast(step, dtype), array_ops.cast(schedule.decay_steps, dtype)


class _TimeDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: their arguments and the exponent t / decay_steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name or type(self).__name__
        _check_decay_steps(decay_steps)

    def __call__(self, step):
        with scopes.name_scope(self.name):
            initial, t, decay_steps = _start(self, step)
            p = t / decay_steps
            if self.staircase:
                p = math_ops.floor(p)
            return self._decayed(initial, array_ops.cast(self.decay_rate, initial.dtype), p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_TimeDecay):
    """lr * decay_rate ^ (step / decay_steps)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decayed(self, initial, rate, p):
        return initial * math_ops.pow(rate, p)


class InverseTimeDecay(_TimeDecay):
    """lr / (1 + decay_rate * step / decay_steps)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decayed(self, initial, rate, p):
        return initial / (1.0 + rate * p)


class PolynomialDecay(LearningRateSchedule):
    """(lr - end_learning_rate) * (1 - step / decay_steps) ^ power + end_learning_rate."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name
        _check_decay_steps(decay_steps)

    def __call__(self, step):
        with scopes.name_scope(self.name):
            initial, t, decay_steps = _start(self, step)
            end = array_ops.cast(self.end_learning_rate, initial.dtype)
            if self.cycle:
                multiplier = math_ops.where(math_ops.equal(t, 0), array_ops.ones_like(t),
                                            math_ops.ceil(t / decay_steps))
                decay_steps = decay_steps * multiplier
            else:
                t = math_ops.minimum(t, decay_steps)
            p = t / decay_steps
            return (initial - end) * math_ops.pow(1 - p, array_ops.cast(self.power, initial.dtype)) + end

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from lr (or from warmup_target after a linear warm-up) to alpha * that rate."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target
        _check_decay_steps(decay_steps)

    def _decayed(self, t, decay_steps, start):
        cosine = 0.5 * (1.0 + math_ops.cos(math.pi * (t / decay_steps)))
        return start * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        with scopes.name_scope(self.name):
            initial, t, decay_steps = _start(self, step)
            if self.warmup_target is None:
                return self._decayed(math_ops.minimum(t, decay_steps), decay_steps, initial)
            target = array_ops.cast(self.warmup_target, initial.dtype)
            warmup_steps = array_ops.cast(self.warmup_steps, initial.dtype)
            t = math_ops.minimum(t, decay_steps + warmup_steps)
            # both branches are finite, so a select does what Keras's cond does
            warm = (target - initial) * (t / math_ops.maximum(warmup_steps, 1.0)) + initial
            return math_ops.where(t < warmup_steps, warm, self._decayed(t - warmup_steps, decay_steps, target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] up to boundaries[0], values[i] for boundaries[i-1] < step <= boundaries[i], values[-1] after."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"The length of boundaries should be 1 less than the length of values. Received: "
                             f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of length "
                             f"{len(values)}.")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step):
        with scopes.name_scope(self.name):
            step = convert_to_tensor(step)
            bounds = [array_ops.cast(b, step.dtype) for b in self.boundaries]
            values = [convert_to_tensor(v) for v in self.values]
            dtype = values[0].dtype
            result = array_ops.cast(step <= bounds[0], dtype) * values[0]
            result = result + array_ops.cast(step > bounds[-1], dtype) * values[-1]
            for low, high, value in zip(bounds[:-1], bounds[1:], values[1:-1]):
                inside = math_ops.logical_and(step > low, step <= high)
                result = result + array_ops.cast(inside, dtype) * value
            return result

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


_CLASSES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PolynomialDecay, CosineDecay,
                                    PiecewiseConstantDecay)}


def serialize(schedule):
    """Keras 3's dict for a schedule: {"module", "class_name", "config", "registered_name"}."""
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    """The schedule serialize() described."""
    name = config.get("class_name")
    cls = (custom_objects or {}).get(name) or _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"Could not interpret learning rate schedule: {config}")
    return cls.from_config(dict(config.get("config") or {}))
