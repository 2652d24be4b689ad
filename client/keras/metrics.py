"""tg.keras.metrics: Keras 3's stateful metrics, `update_state` / `result` / `reset_state` over tg.Variables.

A metric keeps its state in non-trainable float32 variables (`variables`, made when it is
constructed, so `update_state` can run inside a traced train step): Mean has `total` and `count`;
the accuracy, regression and cross-entropy metrics are Means of their per-example functions
(MeanMetricWrapper); TruePositives & co., Precision, Recall and AUC keep confusion counts per threshold.

- Mean.update_state(values, sample_weight): values beyond the weights' rank are averaged, weighted,
  and averaged per example; total += sum, count += sum of the weights (or the number of examples).
- Confusion counts: y_true cast to bool, y_pred > threshold (strictly), each example's weight
  broadcast over its elements; `top_k` keeps only the k largest predictions of each row, `class_id`
  one column. Precision = TP / (TP + FP), Recall = TP / (TP + FN), 0 when undefined.
- AUC: counts at `num_thresholds` thresholds evenly spaced on [0, 1] (plus -eps and 1 + eps); ROC or PR
  curve; the Riemann sum 'interpolation' (PR: Davis & Goadrich's interpolation, as Keras), 'minoring' or
  'majoring'.

`get("accuracy")`, `get_metric(identifier, y_true, y_pred)` (what compile's metric strings become:
"accuracy"/"acc" is BinaryAccuracy when y_pred has one column, SparseCategoricalAccuracy when y_true
has a lower rank or one column, CategoricalAccuracy otherwise, all named as given) look metrics up.
"""

import numpy as np

from tensorgrid.client import array_ops, math_ops, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.keras import losses as losses_lib
from tensorgrid.client.keras.losses import squeeze_or_expand_to_same_rank
from tensorgrid.client.keras.naming import auto_name, to_snake_case
from tensorgrid.framework import dtypes

__all__ = [
    "Metric", "Mean", "Sum", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy",
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError",
    "RootMeanSquaredError", "CosineSimilarity", "LogCoshError", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "KLDivergence", "Poisson", "Hinge", "SquaredHinge", "CategoricalHinge",
    "TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives", "Precision", "Recall", "AUC",
    "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    "get", "serialize", "deserialize", "get_metric", "is_binary_or_sparse_categorical",
]

_EPSILON = losses_lib.EPSILON
_NEG_INF = -1e10    # what Keras's top_k filtering gives the predictions it drops


class Metric:
    """Base class: state in `variables`; subclasses define update_state and result.

    `_direction` ("up" or "down", None when unknown) tells callbacks in mode "auto" which way is better.
    """

    _direction = None

    def __init__(self, dtype=None, name=None):
        self.name = name or auto_name(type(self).__name__)
        self._dtype = dtypes.as_dtype(dtype or "float32")
        self._variables = []

    @property
    def dtype(self):
        return self._dtype.name

    def add_variable(self, shape, initializer="zeros", dtype=None, aggregation="sum", name=None):
        """A non-trainable state variable `<metric name>/<name>` of `shape`, zeros unless `initializer`."""
        dtype = dtypes.as_dtype(dtype or self._dtype)
        shape = tuple(shape)
        if initializer in ("zeros", None) or getattr(initializer, "__name__", "") == "zeros":
            value = np.zeros(shape, dtype.as_numpy_dtype)
        elif initializer == "ones":
            value = np.ones(shape, dtype.as_numpy_dtype)
        else:
            value = np.asarray(initializer(shape, dtype=dtype), dtype.as_numpy_dtype)
        with scopes.control_dependencies(None):
            variable = variables_lib.Variable(lambda: value, trainable=False, dtype=dtype,
                                              name=f"{self.name.replace('/', '>')}/{name or 'variable'}")
        self._variables.append(variable)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    @property
    def variables(self):
        return list(self._variables)

    def reset_state(self):
        """Sets every state variable back to zeros."""
        for v in self._variables:
            v.assign(np.zeros(v.shape.as_list(), v.dtype.as_numpy_dtype))

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define update_state")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} does not define result")

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _divide_no_nan(x, y):
    return losses_lib._divide_no_nan(convert_to_tensor(x), convert_to_tensor(y))


def _rank(x):
    return x.shape.ndims


def _reduce_to_samplewise_values(values, sample_weight, reduce_fn, dtype):
    """(one value per example, its weight): Keras's reduce_to_samplewise_values."""
    values = array_ops.cast(convert_to_tensor(values), dtype)
    if sample_weight is not None:
        sample_weight = array_ops.cast(convert_to_tensor(sample_weight), dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim, values_ndim = _rank(sample_weight), _rank(values)
        if values_ndim > weight_ndim:
            values = reduce_fn(values, axis=list(range(weight_ndim, values_ndim)))
        sample_weight = array_ops.broadcast_to(sample_weight, array_ops.shape(values))
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = reduce_fn(sample_weight, axis=list(range(1, weight_ndim)))
    if _rank(values) > 1:
        values = reduce_fn(values, axis=list(range(1, _rank(values))))
    return values, sample_weight


class Sum(Metric):
    """The running (weighted) sum of the values."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), name="total")

    def update_state(self, values, sample_weight=None):
        values, _ = _reduce_to_samplewise_values(values, sample_weight, math_ops.reduce_sum, self._dtype)
        self.total.assign_add(math_ops.reduce_sum(values))

    def result(self):
        return array_ops.identity(self.total)


class Mean(Metric):
    """The running (weighted) mean of the values."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), name="total")
        self.count = self.add_variable((), name="count")

    def update_state(self, values, sample_weight=None):
        values, sample_weight = _reduce_to_samplewise_values(values, sample_weight, math_ops.reduce_mean,
                                                             self._dtype)
        self.total.assign_add(math_ops.reduce_sum(values))
        if sample_weight is not None:
            num_samples = math_ops.reduce_sum(sample_weight)
        elif _rank(values) >= 1:
            num_samples = array_ops.cast(array_ops.shape(values)[0], self._dtype)
        else:
            num_samples = 1.0
        self.count.assign_add(array_ops.cast(num_samples, self._dtype))

    def result(self):
        return _divide_no_nan(self.total, self.count)


class MeanMetricWrapper(Mean):
    """The mean of fn(y_true, y_pred, **kwargs) over every example seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or auto_name("MeanMetricWrapper"), dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs
        if getattr(fn, "__module__", None) == losses_lib.__name__ and fn is not _cosine_similarity:
            self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype}
        if type(self) is MeanMetricWrapper:
            config["fn"] = getattr(self._fn, "__name__", repr(self._fn))
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if cls is MeanMetricWrapper and isinstance(config.get("fn"), str):
            config["fn"] = _FUNCTIONS[config["fn"]]
        return cls(**config)


# ---- accuracy functions ---------------------------------------------------------------------

def _matches(y_true, y_pred):
    return array_ops.cast(math_ops.equal(y_true, y_pred), dtypes.float32)


def accuracy(y_true, y_pred):
    """1.0 where y_true == y_pred, else 0.0."""
    y_pred = convert_to_tensor(y_pred)
    y_true = array_ops.cast(convert_to_tensor(y_true), y_pred.dtype)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return _matches(y_true, y_pred)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where (y_pred > threshold) equals y_true."""
    y_pred = convert_to_tensor(y_pred)
    y_true = convert_to_tensor(y_true)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    y_pred = array_ops.cast(math_ops.greater(y_pred, array_ops.cast(threshold, y_pred.dtype)), y_true.dtype)
    return _matches(y_true, y_pred)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_true) == argmax(y_pred) (one-hot labels)."""
    return _class_matches(math_ops.argmax(convert_to_tensor(y_true), axis=-1), y_pred, squeeze_always=True)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where y_true (class indices) == argmax(y_pred)."""
    return _class_matches(y_true, y_pred, squeeze_always=False)


def _class_matches(y_true, y_pred, squeeze_always):
    y_pred = convert_to_tensor(y_pred)
    y_true = array_ops.cast(convert_to_tensor(y_true), y_pred.dtype)
    original_shape = array_ops.shape(y_true)
    reshape = False
    if _rank(y_true) == _rank(y_pred) and (squeeze_always or y_true.shape[-1] == 1):
        y_true = array_ops.squeeze(y_true, [-1])
        reshape = True
    predicted = array_ops.cast(math_ops.argmax(y_pred, axis=-1), y_true.dtype)
    matches = _matches(y_true, predicted)
    if reshape:
        matches = array_ops.reshape(matches, original_shape)
    if _rank(matches) > 1 and matches.shape[-1] == 1:
        matches = array_ops.squeeze(matches, [-1])
    return matches


def _in_top_k(targets, predictions, k):
    """True where predictions[i, targets[i]] is among the k largest of row i (ties count in, as tf.math.in_top_k)."""
    targets = array_ops.cast(targets, dtypes.int32)
    classes = array_ops.shape(predictions)[-1]
    target_values = math_ops.reduce_sum(predictions * array_ops.one_hot(targets, classes,
                                                                        dtype=predictions.dtype), axis=-1)
    above = math_ops.reduce_sum(array_ops.cast(math_ops.greater(predictions, array_ops.expand_dims(target_values, -1)),
                                               dtypes.int32), axis=-1)
    return math_ops.less(above, k)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the one-hot label's class is among the k largest predictions."""
    y_pred = convert_to_tensor(y_pred)
    return sparse_top_k_categorical_accuracy(math_ops.argmax(convert_to_tensor(y_true), axis=-1), y_pred, k=k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1.0 where the class index y_true is among the k largest predictions (or the first k ids given)."""
    y_pred = convert_to_tensor(y_pred)
    y_true = array_ops.cast(convert_to_tensor(y_true), y_pred.dtype if from_sorted_ids else dtypes.int32)
    original_shape = array_ops.shape(y_true)
    reshape = False
    if _rank(y_pred) > 2:
        y_pred = array_ops.reshape(y_pred, [-1, y_pred.shape[-1]])
    if _rank(y_true) > 1:
        reshape = True
        y_true = array_ops.reshape(y_true, [-1])
    if from_sorted_ids:
        hits = math_ops.reduce_any(math_ops.equal(array_ops.expand_dims(y_true, 1), y_pred[:, :k]), axis=1)
    else:
        hits = _in_top_k(y_true, y_pred, k)
    matches = array_ops.cast(hits, dtypes.float32)
    return array_ops.reshape(matches, original_shape) if reshape else matches


def _metric_class(class_name, fn, default_name, doc, direction=None, **defaults):
    """A MeanMetricWrapper subclass of fn, its constructor taking `defaults` (Keras's argument order: name first)."""
    def __init__(self, name=default_name, dtype=None, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{class_name}() got unexpected keyword arguments {sorted(unknown)}")
        options = dict(defaults, **kwargs)
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **options)
        for key, value in options.items():
            setattr(self, key, value)
    body = {"__init__": __init__, "__doc__": doc}
    if direction:
        body["_direction"] = direction
    cls = type(class_name, (MeanMetricWrapper,), body)
    cls.__module__ = __name__
    return cls


def _cosine_similarity(y_true, y_pred, axis=-1):
    return -losses_lib.cosine_similarity(y_true, y_pred, axis=axis)


Accuracy = _metric_class("Accuracy", accuracy, "accuracy", "How often predictions equal labels.", direction="up")
BinaryAccuracy = _metric_class("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                               "How often (y_pred > threshold) equals the binary label.", direction="up",
                               threshold=0.5)
CategoricalAccuracy = _metric_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy",
                                    "How often the argmax of the predictions is the one-hot label's class.",
                                    direction="up")
SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                          "sparse_categorical_accuracy",
                                          "How often the argmax of the predictions is the integer label.",
                                          direction="up")
MeanSquaredError = _metric_class("MeanSquaredError", losses_lib.mean_squared_error, "mean_squared_error",
                                 "Mean of the squared errors.")
MeanAbsoluteError = _metric_class("MeanAbsoluteError", losses_lib.mean_absolute_error, "mean_absolute_error",
                                  "Mean of the absolute errors.")
MeanAbsolutePercentageError = _metric_class("MeanAbsolutePercentageError", losses_lib.mean_absolute_percentage_error,
                                            "mean_absolute_percentage_error", "Mean absolute percentage error.")
MeanSquaredLogarithmicError = _metric_class("MeanSquaredLogarithmicError", losses_lib.mean_squared_logarithmic_error,
                                            "mean_squared_logarithmic_error", "Mean squared logarithmic error.")
CosineSimilarity = _metric_class("CosineSimilarity", _cosine_similarity, "cosine_similarity",
                                 "Mean cosine similarity of labels and predictions.", direction="up", axis=-1)
LogCoshError = _metric_class("LogCoshError", losses_lib.log_cosh, "logcosh", "Mean log(cosh(error)).")
BinaryCrossentropy = _metric_class("BinaryCrossentropy", losses_lib.binary_crossentropy, "binary_crossentropy",
                                   "Mean binary cross-entropy.", from_logits=False, label_smoothing=0)
CategoricalCrossentropy = _metric_class("CategoricalCrossentropy", losses_lib.categorical_crossentropy,
                                        "categorical_crossentropy", "Mean categorical cross-entropy.",
                                        from_logits=False, label_smoothing=0, axis=-1)
SparseCategoricalCrossentropy = _metric_class("SparseCategoricalCrossentropy",
                                              losses_lib.sparse_categorical_crossentropy,
                                              "sparse_categorical_crossentropy",
                                              "Mean sparse categorical cross-entropy.", from_logits=False, axis=-1)
KLDivergence = _metric_class("KLDivergence", losses_lib.kl_divergence, "kl_divergence",
                             "Mean Kullback-Leibler divergence.")
Poisson = _metric_class("Poisson", losses_lib.poisson, "poisson", "Mean Poisson loss.")
Hinge = _metric_class("Hinge", losses_lib.hinge, "hinge", "Mean hinge loss.")
SquaredHinge = _metric_class("SquaredHinge", losses_lib.squared_hinge, "squared_hinge", "Mean squared hinge loss.")
CategoricalHinge = _metric_class("CategoricalHinge", losses_lib.categorical_hinge, "categorical_hinge",
                                 "Mean categorical hinge loss.")


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot label's class is among the k largest predictions."""

    _direction = "up"

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label is among the k largest predictions."""

    _direction = "up"

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k,
                         from_sorted_ids=from_sorted_ids)
        self.k = k
        self.from_sorted_ids = from_sorted_ids

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype, "k": self.k}
        if self.from_sorted_ids:
            config["from_sorted_ids"] = True
        return config


class RootMeanSquaredError(Mean):
    """sqrt of the mean squared error over every element seen."""

    _direction = "down"

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = array_ops.cast(convert_to_tensor(y_true), self._dtype)
        y_pred = array_ops.cast(convert_to_tensor(y_pred), self._dtype)
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return super().update_state(math_ops.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self):
        return math_ops.sqrt(super().result())


# ---- confusion counts -----------------------------------------------------------------------

def _parse_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    for t in values:
        if t != _NEG_INF and not 0 <= t <= 1:
            raise ValueError(f"Threshold values must be in [0, 1]. Received: {t}")
    return [float(t) for t in values]


def _top_k_mask(x, k):
    """1.0 at the k largest entries of each row of x (ties broken by the lower index, as tf.math.top_k)."""
    col = array_ops.expand_dims(x, -1)     # [..., C, 1]: x_i
    row = array_ops.expand_dims(x, -2)     # [..., 1, C]: x_j
    classes = x.shape[-1]
    earlier = np.tril(np.ones((classes, classes), dtype=bool), -1)   # j < i
    beats = math_ops.logical_or(math_ops.greater(row, col),
                                math_ops.logical_and(math_ops.equal(row, col), earlier))
    rank = math_ops.reduce_sum(array_ops.cast(beats, dtypes.int32), axis=-1)
    return array_ops.cast(math_ops.less(rank, k), x.dtype)


def _update_confusion_counts(counts, y_true, y_pred, thresholds, top_k=None, class_id=None, sample_weight=None):
    """Adds to each variable of `counts` ({"tp"|"fp"|"tn"|"fn": Variable}) its weighted count per threshold."""
    dtype = dtypes.float32
    y_true = array_ops.cast(convert_to_tensor(y_true), dtype)
    y_pred = array_ops.cast(convert_to_tensor(y_pred), dtype)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if sample_weight is not None:
        sample_weight = array_ops.expand_dims(array_ops.cast(convert_to_tensor(sample_weight), dtype), -1)
        _, sample_weight = squeeze_or_expand_to_same_rank(y_true, sample_weight, expand_rank_1=False)
    if top_k is not None:
        mask = _top_k_mask(y_pred, top_k)
        y_pred = y_pred * mask + _NEG_INF * (1 - mask)
    if class_id is not None:
        if _rank(y_pred) != 2:
            raise ValueError(f"When class_id is provided, y_pred must be a 2D array with shape (num_samples, "
                             f"num_classes), found shape: {y_pred.shape}")
        y_true, y_pred = y_true[:, class_id:class_id + 1], y_pred[:, class_id:class_id + 1]
        if sample_weight is not None and _rank(sample_weight) == 2 and sample_weight.shape[-1] != 1:
            sample_weight = sample_weight[:, class_id:class_id + 1]
    predictions = array_ops.reshape(y_pred, [1, -1])
    labels = array_ops.reshape(math_ops.not_equal(y_true, 0.0), [1, -1])
    above = math_ops.greater(predictions, np.asarray(thresholds, np.float32).reshape(-1, 1))    # [T, N]
    if sample_weight is None:
        weights = None
    else:
        weights = array_ops.reshape(array_ops.broadcast_to(sample_weight, array_ops.shape(y_pred)), [1, -1])
    conditions = {"tp": (labels, above), "fp": (math_ops.logical_not(labels), above),
                  "tn": (math_ops.logical_not(labels), math_ops.logical_not(above)),
                  "fn": (labels, math_ops.logical_not(above))}
    for key, variable in counts.items():
        label_cond, pred_cond = conditions[key]
        hits = array_ops.cast(math_ops.logical_and(label_cond, pred_cond), dtype)
        if weights is not None:
            hits = hits * weights
        variable.assign_add(math_ops.reduce_sum(hits, axis=1))


class _ConfusionCount(Metric):
    """One confusion count (TP, FP, TN or FN) per threshold (default 0.5)."""

    _kind = None

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        self.accumulator = self.add_variable((len(self.thresholds),), name="accumulator")

    def update_state(self, y_true, y_pred, sample_weight=None):
        _update_confusion_counts({self._kind: self.accumulator}, y_true, y_pred, self.thresholds,
                                 sample_weight=sample_weight)

    def result(self):
        return self.accumulator[0] if len(self.thresholds) == 1 else array_ops.identity(self.accumulator)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionCount):
    """The weighted number of positive labels predicted positive."""
    _kind = "tp"


class FalsePositives(_ConfusionCount):
    """The weighted number of negative labels predicted positive."""
    _kind = "fp"


class TrueNegatives(_ConfusionCount):
    """The weighted number of negative labels predicted negative."""
    _kind = "tn"


class FalseNegatives(_ConfusionCount):
    """The weighted number of positive labels predicted negative."""
    _kind = "fn"


class _PrecisionRecall(Metric):
    """TP / (TP + other) per threshold, `other` FP (Precision) or FN (Recall)."""

    _direction = "up"
    _other = None

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else _NEG_INF)
        self.true_positives = self.add_variable((len(self.thresholds),), name="true_positives")
        other_name = {"fp": "false_positives", "fn": "false_negatives"}[self._other]
        self._other_count = self.add_variable((len(self.thresholds),), name=other_name)
        setattr(self, other_name, self._other_count)

    def update_state(self, y_true, y_pred, sample_weight=None):
        _update_confusion_counts({"tp": self.true_positives, self._other: self._other_count}, y_true, y_pred,
                                 self.thresholds, top_k=self.top_k, class_id=self.class_id,
                                 sample_weight=sample_weight)

    def result(self):
        value = _divide_no_nan(self.true_positives, self.true_positives + self._other_count)
        return value[0] if len(self.thresholds) == 1 else value

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """TP / (TP + FP): how many of the predicted positives are positive."""
    _other = "fp"


class Recall(_PrecisionRecall):
    """TP / (TP + FN): how many of the positives are predicted positive."""
    _other = "fn"


class AUC(Metric):
    """Area under the ROC or PR curve, from confusion counts at num_thresholds thresholds."""

    _direction = "up"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        if multi_label or num_labels or label_weights is not None:
            raise NotImplementedError("tg.keras.metrics.AUC supports single-label AUC only (multi_label=False, "
                                      "no num_labels or label_weights)")
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC"]')
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f'Invalid AUC summation method value: "{summation_method}". Expected values are '
                             f'["interpolation", "majoring", "minoring"]')
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            self.num_thresholds = len(thresholds) + 2
            inner = sorted(float(t) for t in thresholds)
        else:
            if num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: "
                                 f"num_thresholds={num_thresholds}")
            self.num_thresholds = num_thresholds
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self._thresholds = [0.0 - _EPSILON] + inner + [1.0 + _EPSILON]
        self.curve = str(curve).upper()
        self.summation_method = str(summation_method).lower()
        super().__init__(name=name, dtype=dtype)
        self.multi_label = False
        self.num_labels = None
        self.label_weights = None
        self._from_logits = from_logits
        shape = (self.num_thresholds,)
        self.true_positives = self.add_variable(shape, name="true_positives")
        self.false_positives = self.add_variable(shape, name="false_positives")
        self.true_negatives = self.add_variable(shape, name="true_negatives")
        self.false_negatives = self.add_variable(shape, name="false_negatives")

    @property
    def thresholds(self):
        return list(self._thresholds)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._from_logits:
            y_pred = math_ops.sigmoid(convert_to_tensor(y_pred))
        _update_confusion_counts({"tp": self.true_positives, "tn": self.true_negatives, "fp": self.false_positives,
                                  "fn": self.false_negatives}, y_true, y_pred, self._thresholds,
                                 sample_weight=sample_weight)

    def _interpolate_pr_auc(self):
        n = self.num_thresholds
        tp, fp, fn = (convert_to_tensor(v) for v in (self.true_positives, self.false_positives,
                                                     self.false_negatives))
        dtp = tp[:n - 1] - tp[1:]
        p = tp + fp
        dp = p[:n - 1] - p[1:]
        slope = _divide_no_nan(dtp, math_ops.maximum(dp, 0.0))
        intercept = tp[1:] - slope * p[1:]
        both = math_ops.logical_and(p[:n - 1] > 0, p[1:] > 0)
        ratio = math_ops.where(both, _divide_no_nan(p[:n - 1], math_ops.maximum(p[1:], 0.0)),
                               array_ops.ones_like(p[1:]))
        increments = _divide_no_nan(slope * (dtp + intercept * math_ops.log(ratio)),
                                    math_ops.maximum(tp[1:] + fn[1:], 0.0))
        return math_ops.reduce_sum(increments)

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        n = self.num_thresholds
        tp, fp, tn, fn = (convert_to_tensor(v) for v in (self.true_positives, self.false_positives,
                                                         self.true_negatives, self.false_negatives))
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:n - 1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = math_ops.minimum(y[:n - 1], y[1:])
        else:
            heights = math_ops.maximum(y[:n - 1], y[1:])
        return math_ops.reduce_sum((x[:n - 1] - x[1:]) * heights)

    def get_config(self):
        config = {"num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "multi_label": False, "num_labels": None,
                  "label_weights": None, "from_logits": self._from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return {**super().get_config(), **config}


# ---- lookup ---------------------------------------------------------------------------------

_CLASS_LIST = (Metric, Mean, Sum, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy,
               SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
               MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, RootMeanSquaredError,
               CosineSimilarity, LogCoshError, BinaryCrossentropy, CategoricalCrossentropy,
               SparseCategoricalCrossentropy, KLDivergence, Poisson, Hinge, SquaredHinge, CategoricalHinge,
               TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall, AUC)
_CLASSES = {c.__name__: c for c in _CLASS_LIST}
_CLASSES.update({to_snake_case(c.__name__): c for c in _CLASS_LIST})
_CLASSES.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy, "mse": MeanSquaredError,
                 "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
                 "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
                 "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError})
_FUNCTIONS = {f.__name__: f for f in (accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
                                      top_k_categorical_accuracy, sparse_top_k_categorical_accuracy)}
_FUNCTIONS.update({k: v for k, v in losses_lib._FUNCTIONS.items()})

# Keras's metric functions include the per-example losses
mean_squared_error = losses_lib.mean_squared_error
mean_absolute_error = losses_lib.mean_absolute_error
mean_absolute_percentage_error = losses_lib.mean_absolute_percentage_error
mean_squared_logarithmic_error = losses_lib.mean_squared_logarithmic_error
binary_crossentropy = losses_lib.binary_crossentropy
categorical_crossentropy = losses_lib.categorical_crossentropy
sparse_categorical_crossentropy = losses_lib.sparse_categorical_crossentropy
kl_divergence = losses_lib.kl_divergence
poisson = losses_lib.poisson
hinge = losses_lib.hinge
squared_hinge = losses_lib.squared_hinge
categorical_hinge = losses_lib.categorical_hinge


def serialize(metric):
    """Keras 3's dict for a metric: {"module", "class_name", "config", "registered_name"}."""
    return {"module": "keras.metrics", "class_name": type(metric).__name__, "config": metric.get_config(),
            "registered_name": None}


def deserialize(config, custom_objects=None):
    """The metric serialize() described, or the metric class / function a name stands for."""
    custom_objects = custom_objects or {}
    if isinstance(config, str):
        found = custom_objects.get(config) or _CLASSES.get(config) or _FUNCTIONS.get(config)
        if found is None:
            raise ValueError(f"Could not interpret metric identifier: {config}")
        return found
    cls = custom_objects.get(config.get("class_name")) or _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"Could not interpret metric identifier: {config}")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier):
    """A metric object or function from a name ("mse", "AUC", "sparse_categorical_accuracy"), a dict or itself."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        found = deserialize(identifier)
    elif isinstance(identifier, str):
        found = _CLASSES.get(identifier)
        if found is None:
            raise ValueError(f"Could not interpret metric identifier: {identifier}")
    else:
        found = identifier
    if isinstance(found, type):
        return found()
    if callable(found):
        return found
    raise ValueError(f"Could not interpret metric identifier: {identifier}")


def is_binary_or_sparse_categorical(y_true, y_pred):
    """(y_pred has one column, y_true holds class indices): how compile reads "accuracy" and "crossentropy"."""
    t_rank, p_rank = len(y_true.shape), len(y_pred.shape)
    t_last, p_last = y_true.shape[-1], y_pred.shape[-1]
    is_binary = p_last == 1
    is_sparse = t_rank < p_rank or (t_last == 1 and p_last > 1)
    return is_binary, is_sparse


def get_metric(identifier, y_true, y_pred):
    """The Metric compile(metrics=[identifier]) tracks for an output: "accuracy"/"acc" picked by the shapes,
    any other name or function through get (a function wrapped in MeanMetricWrapper), named as given."""
    if identifier is None:
        raise ValueError("Expected metric, received `None`")
    if str(identifier).lower() in ("accuracy", "acc"):
        is_binary, is_sparse = is_binary_or_sparse_categorical(y_true, y_pred)
        if is_binary:
            metric = BinaryAccuracy(name=str(identifier))
        elif is_sparse:
            metric = SparseCategoricalAccuracy(name=str(identifier))
        else:
            metric = CategoricalAccuracy(name=str(identifier))
    else:
        metric = get(identifier)
    if isinstance(identifier, str):
        name = identifier
    else:
        name = getattr(metric, "name", None) or getattr(metric, "__name__", None) or to_snake_case(
            type(metric).__name__)
    if not isinstance(metric, Metric):
        metric = MeanMetricWrapper(metric)
    metric.name = name
    return metric
