"""TF1's tf.losses: weighted losses with TF1's reductions, and the LOSSES / REGULARIZATION_LOSSES collections.

Each loss computes per-element losses, weights them, reduces them as
`reduction` says (default SUM_BY_NONZERO_WEIGHTS: the weighted sum over the
number of non-zero weights, 0 when there are none), adds the result to
`loss_collection` (default tf.GraphKeys.LOSSES) and returns it, built under
the scope `scope` (default the loss's name) with the result named
`<scope>/value` where TF names it so. (TF2's tf.losses are Keras's: tg.keras.)
"""

from tensorgrid.client import array_ops, math_ops, nn_ops, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.framework import dtypes

__all__ = ["Reduction", "compute_weighted_loss", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
           "sigmoid_cross_entropy", "mean_squared_error", "absolute_difference", "huber_loss", "log_loss",
           "hinge_loss", "add_loss", "get_losses", "get_regularization_losses", "get_regularization_loss",
           "get_total_loss"]

_LOSSES = variables_lib.GraphKeys.LOSSES


class Reduction:
    """How compute_weighted_loss reduces the weighted per-element losses."""

    NONE = "none"
    SUM = "weighted_sum"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    MEAN = "weighted_mean"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls):
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE, cls.SUM_OVER_NONZERO_WEIGHTS,
                cls.SUM_BY_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key):
        if key not in cls.all():
            raise ValueError(f"Invalid Reduction Key {key}.")


def _float(t):
    t = convert_to_tensor(t, dtype_hint=dtypes.float32)
    return t if t.dtype == dtypes.float32 else array_ops.cast(t, dtypes.float32)


def _safe_mean(total, count):
    """total / count, 0 where count is 0 (TF's div_no_nan), named `value`."""
    positive = math_ops.greater(count, 0.0)
    safe = math_ops.where(positive, count, array_ops.ones_like(count))
    return math_ops.where(positive, math_ops.truediv(total, safe), array_ops.zeros_like(total), name="value")


def _num_present(losses, weights):
    """How many elements of `losses` have a non-zero weight (weights broadcast to the losses' shape)."""
    present = math_ops.where(math_ops.equal(weights, 0.0), array_ops.zeros_like(weights),
                             array_ops.ones_like(weights))
    return math_ops.reduce_sum(math_ops.multiply(present, array_ops.ones_like(losses)))


def compute_weighted_loss(losses, weights=1.0, scope=None, loss_collection=_LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """losses * weights reduced as `reduction` says; added to `loss_collection`."""
    Reduction.validate(reduction)
    with scopes.name_scope(scope, "weighted_loss"):
        losses = convert_to_tensor(losses)
        input_dtype = losses.dtype
        losses, weights = _float(losses), _float(weights)
        weighted = math_ops.multiply(losses, weights)
        if reduction == Reduction.NONE:
            loss = weighted
        else:
            loss = math_ops.reduce_sum(weighted)
            if reduction == Reduction.MEAN:
                loss = _safe_mean(loss, math_ops.reduce_sum(math_ops.multiply(array_ops.ones_like(losses), weights)))
            elif reduction == Reduction.SUM_BY_NONZERO_WEIGHTS:
                loss = _safe_mean(loss, _num_present(losses, weights))
            elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
                loss = _safe_mean(loss, array_ops.cast(array_ops.size(losses), dtypes.float32))
        if input_dtype != dtypes.float32:
            loss = array_ops.cast(loss, input_dtype)
        add_loss(loss, loss_collection)
        return loss


def _check(labels, logits, what):
    if labels is None:
        raise ValueError(f"Argument `{what[0]}` must not be None.")
    if logits is None:
        raise ValueError(f"Argument `{what[1]}` must not be None.")


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=_LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Softmax cross-entropy of one-hot labels; label_smoothing moves labels towards 1 / num_classes."""
    _check(onehot_labels, logits, ("onehot_labels", "logits"))
    with scopes.name_scope(scope, "softmax_cross_entropy_loss") as name:
        logits = convert_to_tensor(logits)
        labels = array_ops.cast(convert_to_tensor(onehot_labels), logits.dtype)
        if not logits.shape.is_compatible_with(labels.shape):
            raise ValueError(f"Shapes {logits.shape} and {labels.shape} are incompatible")
        if label_smoothing > 0:
            classes = array_ops.cast(array_ops.shape(labels)[-1], logits.dtype)
            labels = labels * (1.0 - label_smoothing) + label_smoothing / classes
        losses = nn_ops.softmax_cross_entropy_with_logits_v2(labels=array_ops.stop_gradient(labels), logits=logits,
                                                             name="xentropy")
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None, loss_collection=_LOSSES,
                                 reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Softmax cross-entropy of class-index labels (a trailing labels dimension of 1 is squeezed)."""
    _check(labels, logits, ("labels", "logits"))
    with scopes.name_scope(scope, "sparse_softmax_cross_entropy_loss") as name:
        logits, labels = convert_to_tensor(logits), convert_to_tensor(labels)
        if labels.shape.ndims is not None and logits.shape.ndims is not None \
                and labels.shape.ndims == logits.shape.ndims and labels.shape[-1] == 1:
            labels = array_ops.squeeze(labels, [-1])
        losses = nn_ops.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits, name="xentropy")
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=_LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Sigmoid cross-entropy per element; label_smoothing moves labels towards 1/2."""
    _check(multi_class_labels, logits, ("multi_class_labels", "logits"))
    with scopes.name_scope(scope, "sigmoid_cross_entropy_loss") as name:
        logits = convert_to_tensor(logits)
        labels = array_ops.cast(convert_to_tensor(multi_class_labels), logits.dtype)
        if label_smoothing > 0:
            labels = labels * (1 - label_smoothing) + 0.5 * label_smoothing
        losses = nn_ops.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits, name="xentropy")
        return compute_weighted_loss(losses, weights, name, loss_collection, reduction)


def _regression(default_scope, labels, predictions, scope, elementwise, weights, loss_collection, reduction):
    _check(labels, predictions, ("labels", "predictions"))
    with scopes.name_scope(scope, default_scope) as name:
        predictions, labels = _float(predictions), _float(labels)
        if not predictions.shape.is_compatible_with(labels.shape):
            raise ValueError(f"Shapes {predictions.shape} and {labels.shape} are incompatible")
        return compute_weighted_loss(elementwise(labels, predictions), weights, name, loss_collection, reduction)


def mean_squared_error(labels, predictions, weights=1.0, scope=None, loss_collection=_LOSSES,
                       reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """(predictions - labels) ** 2, weighted and reduced."""
    return _regression("mean_squared_error", labels, predictions, scope,
                       lambda y, p: math_ops.square(math_ops.subtract(p, y)), weights, loss_collection, reduction)


def absolute_difference(labels, predictions, weights=1.0, scope=None, loss_collection=_LOSSES,
                        reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """|predictions - labels|, weighted and reduced."""
    return _regression("absolute_difference", labels, predictions, scope,
                       lambda y, p: math_ops.abs(math_ops.subtract(p, y)), weights, loss_collection, reduction)


def huber_loss(labels, predictions, weights=1.0, delta=1.0, scope=None, loss_collection=_LOSSES,
               reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """0.5 e**2 where |e| <= delta, else delta * (|e| - 0.5 delta), e = predictions - labels."""
    def huber(y, p):
        error = math_ops.abs(math_ops.subtract(p, y))
        quadratic = math_ops.minimum(error, delta)
        linear = math_ops.subtract(error, quadratic)
        return math_ops.add(0.5 * math_ops.square(quadratic), delta * linear)
    return _regression("huber_loss", labels, predictions, scope, huber, weights, loss_collection, reduction)


def log_loss(labels, predictions, weights=1.0, epsilon=1e-7, scope=None, loss_collection=_LOSSES,
             reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """-labels * log(p + epsilon) - (1 - labels) * log(1 - p + epsilon) for probabilities p."""
    def loss(y, p):
        return math_ops.subtract(-math_ops.multiply(y, math_ops.log(p + epsilon)),
                                 math_ops.multiply(1 - y, math_ops.log(1 - p + epsilon)))
    return _regression("log_loss", labels, predictions, scope, loss, weights, loss_collection, reduction)


def hinge_loss(labels, logits, weights=1.0, scope=None, loss_collection=_LOSSES,
               reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """max(0, 1 - (2 labels - 1) * logits) for labels in {0, 1}."""
    def loss(y, p):
        return nn_ops.relu(math_ops.subtract(1.0, math_ops.multiply(2.0 * y - 1.0, p)))
    return _regression("hinge_loss", labels, logits, scope, loss, weights, loss_collection, reduction)


def add_loss(loss, loss_collection=_LOSSES):
    """Adds `loss` to the graph collection `loss_collection` (nothing eagerly or when it is None)."""
    from tensorgrid.client import context
    if loss_collection and not context.executing_eagerly():
        variables_lib.add_to_collection(loss_collection, loss)


def get_losses(scope=None, loss_collection=_LOSSES):
    """The losses in `loss_collection` (those whose name matches `scope`)."""
    return variables_lib.get_collection(loss_collection, scope)


def get_regularization_losses(scope=None):
    """The losses regularizers added (tf.GraphKeys.REGULARIZATION_LOSSES)."""
    return variables_lib.get_collection(variables_lib.GraphKeys.REGULARIZATION_LOSSES, scope)


def get_regularization_loss(scope=None, name="total_regularization_loss"):
    """The sum of the regularization losses, or a 0.0 constant when there are none."""
    losses = get_regularization_losses(scope)
    if losses:
        return math_ops.add_n(losses, name=name)
    return array_ops.constant(0.0)


def get_total_loss(add_regularization_losses=True, name="total_loss", scope=None):
    """The sum of get_losses() and, by default, the regularization losses; ValueError if there are none."""
    losses = get_losses(scope)
    if add_regularization_losses:
        losses += get_regularization_losses(scope)
    if not losses:
        raise ValueError("No losses found in the graph")
    return math_ops.add_n(losses, name=name)
