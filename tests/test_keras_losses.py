"""tg.keras.losses against their formulas in NumPy and against Keras 3 on the same inputs."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.keras import losses

keras = pytest.importorskip("keras")

EPS = 1e-7
rng = np.random.default_rng(7)
Y_TRUE = rng.random((5, 4)).astype("float32")
Y_PRED = rng.uniform(0.05, 0.95, (5, 4)).astype("float32")
LABELS = np.array([0, 3, 1, 2, 3])
ONE_HOT = np.eye(4, dtype="float32")[LABELS]
BINARY = (rng.random((5, 4)) > 0.5).astype("float32")
LOGITS = rng.normal(size=(5, 4)).astype("float32") * 3
WEIGHTS = np.array([1.0, 0.5, 0.0, 2.0, 1.5], dtype="float32")


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# name: (y_true, y_pred, per-example numpy formula)
FORMULAS = {
    "MeanSquaredError": (Y_TRUE, Y_PRED, lambda t, p: ((t - p) ** 2).mean(-1)),
    "MeanAbsoluteError": (Y_TRUE, Y_PRED, lambda t, p: np.abs(t - p).mean(-1)),
    "MeanAbsolutePercentageError": (Y_TRUE, Y_PRED,
                                    lambda t, p: 100 * np.abs((t - p) / np.maximum(np.abs(t), EPS)).mean(-1)),
    "MeanSquaredLogarithmicError": (Y_TRUE, Y_PRED, lambda t, p: ((np.log1p(p) - np.log1p(t)) ** 2).mean(-1)),
    "Huber": (Y_TRUE, Y_PRED * 3, lambda t, p: np.where(np.abs(p - t) <= 1, 0.5 * (p - t) ** 2,
                                                       np.abs(p - t) - 0.5).mean(-1)),
    "LogCosh": (Y_TRUE, Y_PRED * 3, lambda t, p: np.log(np.cosh(p - t)).mean(-1)),
    "BinaryCrossentropy": (BINARY, Y_PRED, lambda t, p: -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(-1)),
    "CategoricalCrossentropy": (ONE_HOT, Y_PRED, lambda t, p: -(t * np.log(p / p.sum(-1, keepdims=True))).sum(-1)),
    "SparseCategoricalCrossentropy": (LABELS, _softmax(LOGITS),
                                      lambda t, p: -np.log(p[np.arange(len(t)), t.astype(int)])),
    "KLDivergence": (_softmax(Y_TRUE), Y_PRED, lambda t, p: (t * np.log(t / p)).sum(-1)),
    "Poisson": (Y_TRUE, Y_PRED, lambda t, p: (p - t * np.log(p + EPS)).mean(-1)),
    "CosineSimilarity": (Y_TRUE, Y_PRED, lambda t, p: -(t * p).sum(-1) / np.linalg.norm(t, axis=-1)
                         / np.linalg.norm(p, axis=-1)),
    "Hinge": (BINARY, LOGITS, lambda t, p: np.maximum(1 - (2 * t - 1) * p, 0).mean(-1)),
    "SquaredHinge": (BINARY, LOGITS, lambda t, p: (np.maximum(1 - (2 * t - 1) * p, 0) ** 2).mean(-1)),
    "CategoricalHinge": (ONE_HOT, LOGITS, lambda t, p: np.maximum(
        ((1 - t) * p).max(-1) - (t * p).sum(-1) + 1, 0)),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_loss_against_numpy_and_keras(name):
    y_true, y_pred, formula = FORMULAS[name]
    per_example = formula(y_true.astype("float64"), y_pred.astype("float64"))
    ours = getattr(losses, name)
    np.testing.assert_allclose(ours(reduction="none")(y_true, y_pred).numpy(), per_example, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours()(y_true, y_pred).numpy(), per_example.mean(), rtol=1e-4, atol=1e-6)
    weighted = ours()(y_true, y_pred, sample_weight=WEIGHTS).numpy()
    np.testing.assert_allclose(weighted, (per_example * WEIGHTS).sum() / len(WEIGHTS), rtol=1e-4, atol=1e-6)
    theirs = getattr(keras.losses, name)
    for reduction in ("sum_over_batch_size", "sum", "none", "mean_with_sample_weight"):
        np.testing.assert_allclose(ours(reduction=reduction)(y_true, y_pred, sample_weight=WEIGHTS).numpy(),
                                   theirs(reduction=reduction)(y_true, y_pred, sample_weight=WEIGHTS).numpy(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_crossentropies_against_keras(from_logits, label_smoothing):
    pred = LOGITS if from_logits else Y_PRED
    for name, y_true in (("CategoricalCrossentropy", ONE_HOT), ("BinaryCrossentropy", BINARY)):
        ours = getattr(losses, name)(from_logits=from_logits, label_smoothing=label_smoothing)
        theirs = getattr(keras.losses, name)(from_logits=from_logits, label_smoothing=label_smoothing)
        np.testing.assert_allclose(ours(y_true, pred, WEIGHTS).numpy(), theirs(y_true, pred, WEIGHTS).numpy(),
                                   rtol=1e-5)
    ours = losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    np.testing.assert_allclose(ours(LABELS, pred).numpy(), theirs(LABELS, pred).numpy(), rtol=1e-5)
    # labels of shape (batch, 1) are squeezed
    np.testing.assert_allclose(ours(LABELS[:, None], pred).numpy(), theirs(LABELS[:, None], pred).numpy(), rtol=1e-5)
    focal = losses.BinaryFocalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing, gamma=1.5,
                                           apply_class_balancing=True)
    keras_focal = keras.losses.BinaryFocalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing,
                                                       gamma=1.5, apply_class_balancing=True)
    np.testing.assert_allclose(focal(BINARY, pred).numpy(), keras_focal(BINARY, pred).numpy(), rtol=1e-5)


def test_probabilities_are_clipped_before_the_log():
    # a zero probability for the true class costs -log(1e-7), not infinity
    pred = np.array([[0.0, 1.0], [1.0, 0.0]], dtype="float32")
    value = losses.sparse_categorical_crossentropy(np.array([0, 0]), pred).numpy()
    np.testing.assert_allclose(value, [-np.log(EPS), -np.log(1 - EPS)], rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(value, keras.losses.sparse_categorical_crossentropy(np.array([0, 0]), pred).numpy(),
                               rtol=1e-5)


def test_ignore_class_leaves_those_labels_out_of_the_mean():
    labels = np.array([0, 2, 1, 2])
    pred = _softmax(LOGITS[:4, :3])
    ours = losses.SparseCategoricalCrossentropy(ignore_class=2)(labels, pred).numpy()
    kept = [0, 2]
    np.testing.assert_allclose(ours, np.mean(-np.log(pred[kept, labels[kept]])), rtol=1e-5)
    theirs = keras.losses.SparseCategoricalCrossentropy(ignore_class=2)(labels, pred).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_function_forms_and_aliases_match_keras():
    for name in ("mean_squared_error", "mse", "mae", "mape", "msle", "kld", "log_cosh", "huber", "poisson", "bce",
                 "binary_crossentropy", "categorical_crossentropy", "hinge", "squared_hinge", "categorical_hinge"):
        ours = losses.get(name)(Y_TRUE, Y_PRED).numpy()
        theirs = keras.losses.get(name)(Y_TRUE, Y_PRED).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(LABELS, LOGITS, from_logits=True).numpy(),
                               keras.losses.sparse_categorical_crossentropy(LABELS, LOGITS, from_logits=True).numpy(),
                               rtol=1e-5)


def test_get_serialize_and_config_round_trip():
    assert losses.get("mse") is losses.mean_squared_error
    assert losses.get("sparse_categorical_crossentropy") is losses.sparse_categorical_crossentropy
    assert isinstance(losses.get("BinaryCrossentropy"), losses.BinaryCrossentropy)
    assert losses.get(None) is None
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, name="cce")
    assert loss.get_config() == keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1,
                                                                     name="cce").get_config() | {
        k: v for k, v in loss.get_config().items() if k not in keras.losses.CategoricalCrossentropy().get_config()}
    again = losses.get(losses.serialize(loss))
    assert type(again) is losses.CategoricalCrossentropy and again.from_logits and again.label_smoothing == 0.1
    assert again.name == "cce"
    with pytest.raises(ValueError, match="Could not interpret loss identifier: no_such_loss"):
        losses.get("no_such_loss")
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        losses.MeanSquaredError(reduction="average")


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must have the same shape"):
        losses.categorical_crossentropy(np.zeros((2, 3), "float32"), np.ones((2, 4), "float32") / 4)
    with pytest.raises(ValueError, match=r"must have rank \(ndim\) `target.ndim - 1`"):
        losses.sparse_categorical_crossentropy(np.zeros((2, 3, 1)), np.ones((2, 4), "float32") / 4)


def test_loss_inside_tg_function_and_its_gradient():
    w = tg.Variable(np.ones((4, 4), "float32") * 0.1)
    loss_fn = losses.SparseCategoricalCrossentropy(from_logits=True)

    @tg.function
    def value_and_grad(x, y):
        with tg.GradientTape() as tape:
            loss = loss_fn(y, tg.matmul(x, w))
        return loss, tape.gradient(loss, w)

    loss, grad = value_and_grad(Y_TRUE, LABELS.astype("int32"))
    logits = Y_TRUE @ np.full((4, 4), 0.1)
    np.testing.assert_allclose(loss.numpy(), -np.log(_softmax(logits)[np.arange(5), LABELS]).mean(), rtol=1e-5)
    expected = Y_TRUE.T @ ((_softmax(logits) - np.eye(4)[LABELS]) / 5)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-4, atol=1e-6)
