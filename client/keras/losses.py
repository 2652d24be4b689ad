"""tg.keras.losses: Keras 3's losses, as classes (`MeanSquaredError()(y_true, y_pred)`) and functions.

A loss object converts both arguments to its dtype (float32 by default),
computes one value per example with its function (the mean over the last
axis for the regression losses), multiplies by `sample_weight` (broadcast
after squeezing or expanding it to the losses' rank) and reduces as
`reduction` says:

- "sum_over_batch_size" (the default) and "mean": the sum over the number of loss values
  (0 when there are none);
- "mean_with_sample_weight": the sum over the sum of the sample weights;
- "sum": the sum; "none" / None: the per-example values.

The functions (`sparse_categorical_crossentropy(y_true, y_pred)`, ...) give the per-example values.
Probabilities are clipped to [1e-7, 1 - 1e-7] (Keras's epsilon) before a log, as Keras's
TensorFlow backend does; `from_logits=True` uses tg.nn's fused cross-entropies instead.
`get("mse")`, `get("sparse_categorical_crossentropy")`, `get({"class_name": ..., "config": ...})`
look losses up the way `compile(loss=...)` needs.
"""

import math
import warnings

from tensorgrid.client import array_ops, math_ops, nn_ops, scopes
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.keras.naming import auto_name
from tensorgrid.framework import dtypes

__all__ = [
    "Loss", "LossFunctionWrapper", "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "Huber", "LogCosh", "BinaryCrossentropy", "BinaryFocalCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "Hinge", "SquaredHinge", "CategoricalHinge",
    "KLDivergence", "Poisson", "CosineSimilarity",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "log_cosh", "binary_crossentropy", "binary_focal_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge", "squared_hinge",
    "categorical_hinge", "kl_divergence", "poisson", "cosine_similarity",
    "mse", "mae", "mape", "msle", "MSE", "MAE", "MAPE", "MSLE", "kld", "KLD", "logcosh", "huber_loss", "bce", "BCE",
    "get", "get_loss", "serialize", "deserialize",
]

EPSILON = 1e-7  # keras.backend.epsilon()

_REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


def standardize_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of {set(_REDUCTIONS)}. "
                         f"Received: reduction={reduction}")
    return reduction


def _rank(x):
    return x.shape.ndims


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """x1 and x2 made the same rank where they differ by a trailing dimension of 1 (Keras's rule)."""
    r1, r2 = _rank(x1), _rank(x2)
    if r1 is None or r2 is None or r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = array_ops.expand_dims(x2, -1)
        else:
            x1 = array_ops.squeeze(x1, [-1])
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = array_ops.expand_dims(x1, -1)
        else:
            x2 = array_ops.squeeze(x2, [-1])
    return x1, x2


def _divide_no_nan(x, y):
    safe = math_ops.where(math_ops.equal(y, 0), array_ops.ones_like(y), y)
    return math_ops.where(math_ops.equal(y, 0), array_ops.zeros_like(x), x / safe)


def _apply_mask(sample_weight, mask, dtype, reduction):
    """sample_weight times the mask; for the mean reductions the mask is scaled so the mean is over valid values."""
    if mask is None:
        return sample_weight
    float_mask = array_ops.cast(mask, dtype)
    if reduction in ("mean", "sum_over_batch_size"):
        total = array_ops.cast(array_ops.size(float_mask), dtype)
        float_mask = float_mask * _divide_no_nan(total, math_ops.reduce_sum(float_mask))
    if sample_weight is None:
        return float_mask
    sample_weight = array_ops.cast(convert_to_tensor(sample_weight), dtype)
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight)
    return sample_weight * float_mask


def reduce_weighted_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size", dtype=None):
    """Keras's reduction of per-example loss values, weighted by sample_weight (see the module docstring).

    `mask` (bools, the values' shape) leaves out the values where it is False, as a Keras mask does.
    """
    reduction = standardize_reduction(reduction)
    values = convert_to_tensor(values, dtype=dtype)
    sample_weight = _apply_mask(sample_weight, mask, values.dtype, reduction)
    if sample_weight is not None:
        sample_weight = array_ops.cast(convert_to_tensor(sample_weight), values.dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        values = values * sample_weight
    if reduction in (None, "none") or values.shape.as_tuple() in ((), (0,)):
        return values
    loss = math_ops.reduce_sum(values)
    if reduction == "sum":
        return loss
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = math_ops.reduce_sum(array_ops.broadcast_to(sample_weight, array_ops.shape(values)))
    else:
        divisor = array_ops.cast(array_ops.size(values), loss.dtype)
    return _divide_no_nan(loss, divisor)


class Loss:
    """Base class of the losses: `__call__(y_true, y_pred, sample_weight=None)` reduces what `call` gives."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or auto_name(type(self).__name__)
        self.reduction = standardize_reduction(reduction)
        self._dtype = dtypes.as_dtype(dtype or "float32")

    @property
    def dtype(self):
        return self._dtype.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        with scopes.name_scope(self.name):
            y_pred = _to_dtype(y_pred, self._dtype)
            y_true = _to_dtype(y_true, self._dtype)
            losses, mask = self._values_and_mask(y_true, y_pred)
            return reduce_weighted_values(losses, sample_weight=sample_weight, mask=mask, reduction=self.reduction,
                                          dtype=self._dtype)

    def _values_and_mask(self, y_true, y_pred):
        """(per-example values, the mask of those that count or None)."""
        return self.call(y_true, y_pred), None

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} does not define call(y_true, y_pred)")

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _to_dtype(x, dtype):
    x = convert_to_tensor(x)
    return x if x.dtype == dtype else array_ops.cast(x, dtype)


class LossFunctionWrapper(Loss):
    """A Loss around a function fn(y_true, y_pred, **kwargs) giving per-example values."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(self._fn_kwargs)
        return config

    def __repr__(self):
        return f"<LossFunctionWrapper({self.fn.__name__}, kwargs={self._fn_kwargs})>"


# ---- the functions ------------------------------------------------------------------------

def _pair(y_true, y_pred):
    y_pred = convert_to_tensor(y_pred)
    y_true = _to_dtype(y_true, y_pred.dtype)
    return squeeze_or_expand_to_same_rank(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """mean((y_true - y_pred)^2) over the last axis."""
    y_true, y_pred = _pair(y_true, y_pred)
    return math_ops.reduce_mean(math_ops.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """mean(|y_true - y_pred|) over the last axis."""
    y_true, y_pred = _pair(y_true, y_pred)
    return math_ops.reduce_mean(math_ops.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    """100 * mean(|(y_true - y_pred) / max(|y_true|, epsilon)|) over the last axis."""
    y_true, y_pred = _pair(y_true, y_pred)
    diff = math_ops.abs((y_true - y_pred) / math_ops.maximum(math_ops.abs(y_true), EPSILON))
    return 100.0 * math_ops.reduce_mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    """mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))^2) over the last axis."""
    y_true, y_pred = _pair(y_true, y_pred)
    first = math_ops.log(math_ops.maximum(y_pred, EPSILON) + 1.0)
    second = math_ops.log(math_ops.maximum(y_true, EPSILON) + 1.0)
    return math_ops.reduce_mean(math_ops.square(first - second), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    """mean over the last axis of e^2/2 where |e| <= delta, else delta * |e| - delta^2/2 (e = y_pred - y_true)."""
    y_true, y_pred = _pair(y_true, y_pred)
    delta = convert_to_tensor(delta, dtype=y_pred.dtype)
    error = y_pred - y_true
    abs_error = math_ops.abs(error)
    quadratic = 0.5 * math_ops.square(error)
    linear = delta * abs_error - 0.5 * math_ops.square(delta)
    return math_ops.reduce_mean(math_ops.where(abs_error <= delta, quadratic, linear), axis=-1)


def log_cosh(y_true, y_pred):
    """mean(log(cosh(y_pred - y_true))) over the last axis, as x + softplus(-2x) - log 2."""
    y_true, y_pred = _pair(y_true, y_pred)
    x = y_pred - y_true
    return math_ops.reduce_mean(x + nn_ops.softplus(x * -2.0) - math.log(2.0), axis=-1)


def _check_same_shape(target, output, what):
    if _rank(target) is not None and _rank(output) is not None:
        if _rank(target) != _rank(output):
            raise ValueError(f"Arguments `target` and `output` must have the same rank (ndim). Received: "
                             f"target.shape={target.shape}, output.shape={output.shape}")
        for a, b in zip(target.shape.as_list(), output.shape.as_list()):
            if a is not None and b is not None and a != b:
                raise ValueError(f"Arguments `target` and `output` must have the same shape. Received: "
                                 f"target.shape={target.shape}, output.shape={output.shape}")


def _binary_crossentropy_values(target, output, from_logits):
    _check_same_shape(target, output, "binary_crossentropy")
    if from_logits:
        return nn_ops.sigmoid_cross_entropy_with_logits(labels=target, logits=output)
    output = array_ops.clip_by_value(output, EPSILON, 1.0 - EPSILON)
    return -(target * math_ops.log(output) + (1 - target) * math_ops.log(1 - output))


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """mean over `axis` of -(y log p + (1 - y) log(1 - p)); labels smoothed towards 0.5 by label_smoothing."""
    y_pred = convert_to_tensor(y_pred)
    y_true = _to_dtype(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return math_ops.reduce_mean(_binary_crossentropy_values(y_true, y_pred, from_logits), axis=axis)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0,
                              from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy weighted by (1 - p_t)^gamma (and alpha per class when apply_class_balancing)."""
    y_pred = convert_to_tensor(y_pred)
    y_true = _to_dtype(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = math_ops.sigmoid(y_pred)
    bce = _binary_crossentropy_values(y_true, y_pred, False)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal = math_ops.pow(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal
    return math_ops.reduce_mean(focal, axis=axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """-sum(y_true * log(p)) over `axis`, p = y_pred normalised to sum 1 and clipped (softmax of it from logits)."""
    if isinstance(axis, bool):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
    y_pred = convert_to_tensor(y_pred)
    y_true = _to_dtype(y_true, y_pred.dtype)
    if y_pred.shape.ndims and y_pred.shape[-1] == 1:
        warnings.warn(f"In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) "
                      f"with num_classes > 1. Received: y_pred.shape={y_pred.shape}. Consider using "
                      f"'binary_crossentropy' if you only have 2 classes.", SyntaxWarning, stacklevel=2)
    if label_smoothing:
        classes = array_ops.cast(array_ops.shape(y_true)[-1], y_pred.dtype)
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / classes
    if _rank(y_true) is not None and _rank(y_true) < 1:
        raise ValueError(f"Arguments `target` and `output` must be at least rank 1. Received: "
                         f"target.shape={y_true.shape}, output.shape={y_pred.shape}")
    _check_same_shape(y_true, y_pred, "categorical_crossentropy")
    if from_logits:
        return nn_ops.softmax_cross_entropy_with_logits(labels=y_true, logits=y_pred, axis=axis)
    output = y_pred / math_ops.reduce_sum(y_pred, axis, keepdims=True)
    output = array_ops.clip_by_value(output, EPSILON, 1.0 - EPSILON)
    return -math_ops.reduce_sum(y_true * math_ops.log(output), axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """-log(p[y_true]) per example, y_true class indices (a trailing dim of 1 is squeezed)."""
    y_pred = convert_to_tensor(y_pred)
    y_true = convert_to_tensor(y_true)
    rank = _rank(y_pred)
    if axis != -1 and axis != rank - 1:
        raise ValueError(f"Only axis=-1 is currently supported. Received: axis={axis}")
    if _rank(y_true) == rank and y_true.shape[-1] == 1:
        y_true = array_ops.squeeze(y_true, [-1])
    if rank is not None and rank < 1:
        raise ValueError(f"Argument `output` must be at least rank 1. Received: output.shape={y_pred.shape}")
    if _rank(y_true) is not None and rank is not None:
        if _rank(y_true) != rank - 1:
            raise ValueError(f"Argument `output` must have rank (ndim) `target.ndim - 1`. Received: "
                             f"target.shape={y_true.shape}, output.shape={y_pred.shape}")
        for a, b in zip(y_true.shape.as_list(), y_pred.shape.as_list()[:-1]):
            if a is not None and b is not None and a != b:
                raise ValueError(f"Arguments `target` and `output` must have the same shape up until the last "
                                 f"dimension: target.shape={y_true.shape}, output.shape={y_pred.shape}")
    valid = None
    if ignore_class is not None:
        valid = math_ops.not_equal(y_true, array_ops.cast(ignore_class, y_true.dtype))
        y_true = math_ops.where(valid, y_true, array_ops.zeros_like(y_true))
        y_pred = math_ops.where(array_ops.expand_dims(valid, -1), y_pred, array_ops.zeros_like(y_pred))
    labels = array_ops.cast(y_true, dtypes.int64)
    logits = y_pred
    if not from_logits:
        logits = math_ops.log(array_ops.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON))
    result = nn_ops.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if valid is not None:
        result = math_ops.where(valid, result, array_ops.zeros_like(result))
    return result


def _hinge_labels(y_true):
    """Labels in {0, 1} become {-1, 1}; labels already in {-1, 1} stay."""
    is_binary = math_ops.reduce_all(math_ops.logical_or(math_ops.equal(y_true, 0), math_ops.equal(y_true, 1)))
    return math_ops.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    """mean(max(1 - y_true * y_pred, 0)) over the last axis, labels 0/1 mapped to -1/1."""
    y_pred = convert_to_tensor(y_pred)
    y_true = _hinge_labels(_to_dtype(y_true, y_pred.dtype))
    return math_ops.reduce_mean(math_ops.maximum(1.0 - y_true * y_pred, 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    """mean(max(1 - y_true * y_pred, 0)^2) over the last axis, labels 0/1 mapped to -1/1."""
    y_pred = convert_to_tensor(y_pred)
    y_true = _hinge_labels(_to_dtype(y_true, y_pred.dtype))
    return math_ops.reduce_mean(math_ops.square(math_ops.maximum(1.0 - y_true * y_pred, 0.0)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0) over the last axis."""
    y_pred = convert_to_tensor(y_pred)
    y_true = _to_dtype(y_true, y_pred.dtype)
    pos = math_ops.reduce_sum(y_true * y_pred, axis=-1)
    neg = math_ops.reduce_max((1.0 - y_true) * y_pred, axis=-1)
    return math_ops.maximum(neg - pos + 1.0, 0.0)


def kl_divergence(y_true, y_pred):
    """sum(y_true * log(y_true / y_pred)) over the last axis, both clipped to [epsilon, 1]."""
    y_pred = convert_to_tensor(y_pred)
    y_true = array_ops.clip_by_value(_to_dtype(y_true, y_pred.dtype), EPSILON, 1.0)
    y_pred = array_ops.clip_by_value(y_pred, EPSILON, 1.0)
    return math_ops.reduce_sum(y_true * math_ops.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    """mean(y_pred - y_true * log(y_pred + epsilon)) over the last axis."""
    y_pred = convert_to_tensor(y_pred)
    y_true = _to_dtype(y_true, y_pred.dtype)
    return math_ops.reduce_mean(y_pred - y_true * math_ops.log(y_pred + EPSILON), axis=-1)


def _l2_normalize(x, axis):
    squares = math_ops.reduce_sum(math_ops.square(x), axis=axis, keepdims=True)
    return x * math_ops.rsqrt(math_ops.maximum(squares, 1e-12))


def cosine_similarity(y_true, y_pred, axis=-1):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred)) over `axis`."""
    y_true, y_pred = _pair(y_true, y_pred)
    return -math_ops.reduce_sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


# ---- the classes --------------------------------------------------------------------------

def _wrapper(fn, default_name, doc, **defaults):
    """A LossFunctionWrapper subclass for fn whose constructor takes `defaults` as keyword arguments."""
    def __init__(self, *args, reduction="sum_over_batch_size", name=default_name, dtype=None, **kwargs):
        names = list(defaults)
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes at most {len(names)} positional arguments")
        options = dict(defaults)
        options.update(zip(names, args))
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {sorted(unknown)}")
        options.update(kwargs)
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, dtype=dtype, **options)
        for k, v in options.items():
            setattr(self, k, v)
    return {"__init__": __init__, "__doc__": doc}


MeanSquaredError = type("MeanSquaredError", (LossFunctionWrapper,), _wrapper(
    mean_squared_error, "mean_squared_error", "Mean of the squared errors."))
MeanAbsoluteError = type("MeanAbsoluteError", (LossFunctionWrapper,), _wrapper(
    mean_absolute_error, "mean_absolute_error", "Mean of the absolute errors."))
MeanAbsolutePercentageError = type("MeanAbsolutePercentageError", (LossFunctionWrapper,), _wrapper(
    mean_absolute_percentage_error, "mean_absolute_percentage_error", "Mean absolute percentage error."))
MeanSquaredLogarithmicError = type("MeanSquaredLogarithmicError", (LossFunctionWrapper,), _wrapper(
    mean_squared_logarithmic_error, "mean_squared_logarithmic_error", "Mean squared logarithmic error."))
Huber = type("Huber", (LossFunctionWrapper,), _wrapper(huber, "huber_loss", "Huber loss.", delta=1.0))
LogCosh = type("LogCosh", (LossFunctionWrapper,), _wrapper(log_cosh, "log_cosh", "Logarithm of cosh of the error."))
BinaryCrossentropy = type("BinaryCrossentropy", (LossFunctionWrapper,), _wrapper(
    binary_crossentropy, "binary_crossentropy", "Binary cross-entropy.",
    from_logits=False, label_smoothing=0.0, axis=-1))
BinaryFocalCrossentropy = type("BinaryFocalCrossentropy", (LossFunctionWrapper,), _wrapper(
    binary_focal_crossentropy, "binary_focal_crossentropy", "Binary focal cross-entropy.",
    apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1))
CategoricalCrossentropy = type("CategoricalCrossentropy", (LossFunctionWrapper,), _wrapper(
    categorical_crossentropy, "categorical_crossentropy", "Categorical cross-entropy (one-hot labels).",
    from_logits=False, label_smoothing=0.0, axis=-1))


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Categorical cross-entropy with integer labels; labels equal to ignore_class count for nothing."""

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, ignore_class=ignore_class, axis=axis)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis

    def _values_and_mask(self, y_true, y_pred):
        values = self.call(y_true, y_pred)
        if self.ignore_class is None:
            return values, None
        labels = convert_to_tensor(y_true)
        if _rank(labels) == _rank(y_pred) and labels.shape[-1] == 1:
            labels = array_ops.squeeze(labels, [-1])
        return values, math_ops.not_equal(labels, array_ops.cast(self.ignore_class, labels.dtype))
Hinge = type("Hinge", (LossFunctionWrapper,), _wrapper(hinge, "hinge", "Hinge loss."))
SquaredHinge = type("SquaredHinge", (LossFunctionWrapper,), _wrapper(squared_hinge, "squared_hinge",
                                                                     "Squared hinge loss."))
CategoricalHinge = type("CategoricalHinge", (LossFunctionWrapper,), _wrapper(categorical_hinge, "categorical_hinge",
                                                                             "Categorical hinge loss."))
KLDivergence = type("KLDivergence", (LossFunctionWrapper,), _wrapper(kl_divergence, "kl_divergence",
                                                                     "Kullback-Leibler divergence."))
Poisson = type("Poisson", (LossFunctionWrapper,), _wrapper(poisson, "poisson", "Poisson loss."))
CosineSimilarity = type("CosineSimilarity", (LossFunctionWrapper,), _wrapper(
    cosine_similarity, "cosine_similarity", "Negative cosine similarity.", axis=-1))

for _cls in (MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Huber,
             LogCosh, BinaryCrossentropy, BinaryFocalCrossentropy, CategoricalCrossentropy,
             SparseCategoricalCrossentropy, Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson,
             CosineSimilarity):
    _cls.__module__ = __name__
del _cls

mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kullback_leibler_divergence = kl_divergence
logcosh = log_cosh
huber_loss = huber
bce = BCE = binary_crossentropy

_CLASSES = {c.__name__: c for c in (
    Loss, LossFunctionWrapper, MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, Huber, LogCosh, BinaryCrossentropy, BinaryFocalCrossentropy,
    CategoricalCrossentropy, SparseCategoricalCrossentropy, Hinge, SquaredHinge, CategoricalHinge, KLDivergence,
    Poisson, CosineSimilarity)}

_FUNCTIONS = {f.__name__: f for f in (
    mean_squared_error, mean_absolute_error, mean_absolute_percentage_error, mean_squared_logarithmic_error,
    huber, log_cosh, binary_crossentropy, binary_focal_crossentropy, categorical_crossentropy,
    sparse_categorical_crossentropy, hinge, squared_hinge, categorical_hinge, kl_divergence, poisson,
    cosine_similarity)}
_FUNCTIONS.update({"mse": mse, "mae": mae, "mape": mape, "msle": msle, "MSE": mse, "MAE": mae, "MAPE": mape,
                   "MSLE": msle, "kld": kld, "KLD": kld, "kullback_leibler_divergence": kld,
                   "logcosh": log_cosh, "huber_loss": huber, "bce": binary_crossentropy,
                   "BCE": binary_crossentropy})


def serialize(loss):
    """{"module", "class_name", "config", "registered_name"} of a Loss object (Keras 3's layout)."""
    if not isinstance(loss, Loss):
        if callable(loss) and getattr(loss, "__name__", None) in _FUNCTIONS:
            return loss.__name__
        raise ValueError(f"Cannot serialize {loss!r}: not a tg.keras loss")
    return {"module": "keras.losses", "class_name": type(loss).__name__, "config": loss.get_config(),
            "registered_name": None}


def deserialize(config, custom_objects=None):
    """The loss that `config` (a name or serialize()'s dict) describes."""
    custom_objects = custom_objects or {}
    if isinstance(config, str):
        if config in custom_objects:
            return custom_objects[config]
        if config in _FUNCTIONS:
            return _FUNCTIONS[config]
        if config in _CLASSES:
            return _CLASSES[config]()
        raise ValueError(f"Could not interpret loss identifier: {config}")
    if isinstance(config, dict) and "class_name" in config:
        cls = custom_objects.get(config["class_name"]) or _CLASSES.get(config["class_name"])
        if cls is None:
            raise ValueError(f"Could not interpret loss identifier: {config}")
        return cls.from_config(dict(config.get("config") or {}))
    raise ValueError(f"Could not interpret loss identifier: {config}")


def get_loss(identifier, y_true, y_pred):
    """The Loss compile(loss=identifier) uses for an output: "crossentropy"/"ce" picked by the shapes (binary
    when y_pred has one column, sparse when y_true holds class indices), a function wrapped in
    LossFunctionWrapper named as given; None stays None."""
    if identifier is None:
        return None
    if str(identifier).lower() in ("crossentropy", "ce"):
        from tensorgrid.client.keras.metrics import is_binary_or_sparse_categorical
        is_binary, is_sparse = is_binary_or_sparse_categorical(y_true, y_pred)
        loss = binary_crossentropy if is_binary else (sparse_categorical_crossentropy if is_sparse
                                                      else categorical_crossentropy)
    else:
        loss = get(identifier)
    if not isinstance(loss, Loss):
        name = identifier if isinstance(identifier, str) else getattr(loss, "__name__", None)
        loss = LossFunctionWrapper(loss, name=name)
    return loss


def get(identifier):
    """A loss (callable) from a string, a serialized dict, a Loss object or a function; None stays None."""
    if identifier is None:
        return None
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret loss identifier: {identifier}")
