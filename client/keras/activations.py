"""tg.keras.activations: the activation functions `activation=` strings name, with Keras 3's formulas."""

import math

from tensorgrid.client import math_ops, nn_ops
from tensorgrid.client.graph import convert_to_tensor

__all__ = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "sigmoid", "hard_sigmoid", "tanh", "softmax", "log_softmax",
    "softplus", "softsign", "swish", "silu", "gelu", "exponential", "linear", "mish", "get", "serialize",
    "deserialize",
]


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0), with Keras's optional slope below the threshold and a cap."""
    x = convert_to_tensor(x)
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return nn_ops.relu(x)
    y = math_ops.where(x > threshold, x, negative_slope * (x - threshold))
    if max_value is not None:
        y = math_ops.minimum(y, max_value)
    return y


def relu6(x):
    return nn_ops.relu6(x)


def leaky_relu(x, negative_slope=0.2):
    return nn_ops.leaky_relu(x, alpha=negative_slope)


def elu(x, alpha=1.0):
    y = nn_ops.elu(x)
    return y if alpha == 1.0 else math_ops.where(convert_to_tensor(x) > 0, y, alpha * y)


_SELU_ALPHA = 1.67326324
_SELU_SCALE = 1.05070098


def selu(x):
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def sigmoid(x):
    return math_ops.sigmoid(x)


def hard_sigmoid(x):
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between (Keras 3's)."""
    return nn_ops.relu6(convert_to_tensor(x) + 3.0) / 6.0


def tanh(x):
    return math_ops.tanh(x)


def softmax(x, axis=-1):
    return nn_ops.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return nn_ops.log_softmax(x, axis=axis)


def softplus(x):
    return nn_ops.softplus(x)


def softsign(x):
    x = convert_to_tensor(x)
    return x / (math_ops.abs(x) + 1.0)


def silu(x):
    x = convert_to_tensor(x)
    return x * math_ops.sigmoid(x)


swish = silu


def gelu(x, approximate=False):
    """x * Phi(x); the exact form needs erf, which tensorgrid lacks, so both forms use the tanh approximation."""
    x = convert_to_tensor(x)
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + math_ops.tanh(inner))


def exponential(x):
    return math_ops.exp(x)


def linear(x):
    return x


def mish(x):
    x = convert_to_tensor(x)
    return x * math_ops.tanh(nn_ops.softplus(x))


_ALL = {name: globals()[name] for name in __all__ if name not in ("get", "serialize", "deserialize")}
_ALL_REVERSE = {fn: name for name, fn in _ALL.items() if name != "swish"}


def serialize(activation):
    """The name of a built-in activation (its function's name otherwise)."""
    if activation in _ALL_REVERSE:
        return _ALL_REVERSE[activation]
    from tensorgrid.client.keras import saving
    return saving.serialize_keras_object(activation)


def deserialize(config, custom_objects=None):
    if isinstance(config, str) and config in _ALL:
        return _ALL[config]
    if isinstance(config, str) and custom_objects and config in custom_objects:
        return custom_objects[config]
    from tensorgrid.client.keras import saving
    return saving.deserialize_keras_object(config, custom_objects=custom_objects)


def get(identifier):
    """The activation function `identifier` names: None or 'linear' is the identity."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = _ALL.get(identifier)
        if fn is None:
            raise ValueError(f"Could not interpret activation function identifier: {identifier}")
        return fn
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier}")
