"""tg.keras.metrics against NumPy formulas and against Keras 3 over the same batches."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.keras import metrics

keras = pytest.importorskip("keras")

rng = np.random.default_rng(11)
PROBS = rng.random((20, 4)).astype("float32")
LABELS = rng.integers(0, 4, 20)
ONE_HOT = np.eye(4, dtype="float32")[LABELS]
BIN_TRUE = (rng.random((20, 1)) > 0.5).astype("float32")
BIN_PRED = rng.random((20, 1)).astype("float32")
WEIGHTS = rng.random(20).astype("float32")

# name, constructor kwargs, batches of update_state arguments
CASES = [
    ("Accuracy", {}, [(LABELS, PROBS.argmax(-1))]),
    ("BinaryAccuracy", {}, [(BIN_TRUE, BIN_PRED), (BIN_TRUE, BIN_PRED, WEIGHTS)]),
    ("BinaryAccuracy", {"threshold": 0.3}, [(BIN_TRUE, BIN_PRED)]),
    ("CategoricalAccuracy", {}, [(ONE_HOT, PROBS), (ONE_HOT, PROBS, WEIGHTS)]),
    ("SparseCategoricalAccuracy", {}, [(LABELS, PROBS), (LABELS[:, None], PROBS, WEIGHTS)]),
    ("TopKCategoricalAccuracy", {"k": 2}, [(ONE_HOT, PROBS)]),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, [(LABELS, PROBS, WEIGHTS)]),
    ("MeanSquaredError", {}, [(ONE_HOT, PROBS, WEIGHTS)]),
    ("MeanAbsoluteError", {}, [(ONE_HOT, PROBS)]),
    ("MeanAbsolutePercentageError", {}, [(PROBS, PROBS[::-1])]),
    ("MeanSquaredLogarithmicError", {}, [(ONE_HOT, PROBS)]),
    ("RootMeanSquaredError", {}, [(ONE_HOT, PROBS, WEIGHTS), (ONE_HOT, PROBS)]),
    ("CosineSimilarity", {}, [(ONE_HOT, PROBS)]),
    ("LogCoshError", {}, [(ONE_HOT, PROBS)]),
    ("BinaryCrossentropy", {}, [(BIN_TRUE, BIN_PRED)]),
    ("CategoricalCrossentropy", {"from_logits": True}, [(ONE_HOT, PROBS * 4)]),
    ("SparseCategoricalCrossentropy", {}, [(LABELS, PROBS / PROBS.sum(-1, keepdims=True))]),
    ("KLDivergence", {}, [(ONE_HOT, PROBS)]),
    ("Poisson", {}, [(ONE_HOT, PROBS)]),
    ("Hinge", {}, [(BIN_TRUE, BIN_PRED)]),
    ("SquaredHinge", {}, [(BIN_TRUE, BIN_PRED)]),
    ("CategoricalHinge", {}, [(ONE_HOT, PROBS)]),
    ("Mean", {}, [(PROBS,), (WEIGHTS, WEIGHTS)]),
    ("Sum", {}, [(PROBS,), (WEIGHTS, WEIGHTS)]),
    ("TruePositives", {}, [(BIN_TRUE, BIN_PRED, WEIGHTS), (ONE_HOT, PROBS)]),
    ("FalsePositives", {"thresholds": [0.2, 0.7]}, [(BIN_TRUE, BIN_PRED)]),
    ("TrueNegatives", {}, [(BIN_TRUE, BIN_PRED, WEIGHTS)]),
    ("FalseNegatives", {"thresholds": [0.2, 0.7]}, [(BIN_TRUE, BIN_PRED)]),
    ("Precision", {}, [(BIN_TRUE, BIN_PRED, WEIGHTS), (ONE_HOT, PROBS)]),
    ("Precision", {"top_k": 1}, [(ONE_HOT, PROBS)]),
    ("Precision", {"thresholds": [0.3, 0.6]}, [(ONE_HOT, PROBS, WEIGHTS)]),
    ("Recall", {}, [(BIN_TRUE, BIN_PRED, WEIGHTS)]),
    ("Recall", {"class_id": 2}, [(ONE_HOT, PROBS)]),
    ("AUC", {}, [(BIN_TRUE, BIN_PRED), (ONE_HOT, PROBS, WEIGHTS)]),
    ("AUC", {"curve": "PR"}, [(BIN_TRUE, BIN_PRED)]),
    ("AUC", {"summation_method": "minoring", "num_thresholds": 50}, [(BIN_TRUE, BIN_PRED)]),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, [(BIN_TRUE, BIN_PRED)]),
    ("AUC", {"from_logits": True, "thresholds": [0.25, 0.5, 0.75]}, [(BIN_TRUE, BIN_PRED * 6 - 3)]),
]


@pytest.mark.parametrize("name,kwargs,batches", CASES,
                         ids=[f"{n}-{'-'.join(map(str, k)) or 'default'}" for n, k, _ in CASES])
def test_metric_matches_keras(name, kwargs, batches):
    ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
    for args in batches:
        ours.update_state(*args)
        theirs.update_state(*args)
    np.testing.assert_allclose(ours.result().numpy(), theirs.result().numpy(), rtol=1e-5, atol=1e-6)
    assert ours.name == theirs.name
    assert [v.name.split(":")[0].split("/")[-1] for v in ours.variables] == [v.name for v in theirs.variables]
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(ours.result().numpy(), theirs.result().numpy())


def test_accuracy_precision_recall_against_numpy():
    acc = metrics.SparseCategoricalAccuracy()
    acc.update_state(LABELS, PROBS, sample_weight=WEIGHTS)
    hits = (PROBS.argmax(-1) == LABELS).astype("float64")
    np.testing.assert_allclose(acc.result().numpy(), (hits * WEIGHTS).sum() / WEIGHTS.sum(), rtol=1e-6)
    positive, predicted = BIN_TRUE[:, 0] > 0, BIN_PRED[:, 0] > 0.5
    precision, recall = metrics.Precision(), metrics.Recall()
    precision.update_state(BIN_TRUE, BIN_PRED)
    recall.update_state(BIN_TRUE, BIN_PRED)
    tp = np.sum(positive & predicted)
    np.testing.assert_allclose(precision.result().numpy(), tp / predicted.sum(), rtol=1e-6)
    np.testing.assert_allclose(recall.result().numpy(), tp / positive.sum(), rtol=1e-6)


def test_auc_is_close_to_the_exact_roc_area():
    labels = (rng.random(400) > 0.5).astype("float32")
    scores = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1).astype("float32")
    auc = metrics.AUC(num_thresholds=1000)
    auc.update_state(labels, scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    exact = np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
    assert abs(float(auc.result().numpy()) - exact) < 2e-3


def test_update_state_inside_tg_function_accumulates_across_calls():
    acc, mean = metrics.SparseCategoricalAccuracy(), metrics.Mean(name="loss")

    @tg.function
    def step(y, p):
        acc.update_state(y, p)
        mean.update_state(tg.reduce_mean(p))
        return acc.result()

    for i in range(0, 20, 5):
        value = step(LABELS[i:i + 5], PROBS[i:i + 5])
    np.testing.assert_allclose(value.numpy(), np.mean(PROBS.argmax(-1) == LABELS), rtol=1e-6)
    np.testing.assert_allclose(mean.result().numpy(), PROBS.mean(), rtol=1e-5)
    acc.reset_state()
    assert float(acc.result().numpy()) == 0.0


def test_compile_strings_resolve_as_keras_does():
    sparse = metrics.get_metric("accuracy", tg.constant(LABELS), tg.constant(PROBS))
    binary = metrics.get_metric("acc", tg.constant(BIN_TRUE), tg.constant(BIN_PRED))
    categorical = metrics.get_metric("accuracy", tg.constant(ONE_HOT), tg.constant(PROBS))
    assert (type(sparse), type(binary), type(categorical)) == (
        metrics.SparseCategoricalAccuracy, metrics.BinaryAccuracy, metrics.CategoricalAccuracy)
    assert (sparse.name, binary.name) == ("accuracy", "acc")
    column = metrics.get_metric("accuracy", tg.constant(LABELS[:, None]), tg.constant(PROBS))
    assert type(column) is metrics.SparseCategoricalAccuracy
    mse = metrics.get_metric("mse", tg.constant(ONE_HOT), tg.constant(PROBS))
    assert type(mse) is metrics.MeanSquaredError and mse.name == "mse"
    wrapped = metrics.get_metric(metrics.sparse_top_k_categorical_accuracy, None, None)
    assert type(wrapped) is metrics.MeanMetricWrapper and wrapped.name == "sparse_top_k_categorical_accuracy"
    auc = metrics.AUC(name="my_auc")
    assert metrics.get_metric(auc, None, None) is auc and auc.name == "my_auc"
    from tensorgrid.client.keras import losses
    assert losses.get_loss("crossentropy", tg.constant(LABELS), tg.constant(PROBS)).fn is \
        losses.sparse_categorical_crossentropy
    assert losses.get_loss("ce", tg.constant(BIN_TRUE), tg.constant(BIN_PRED)).fn is losses.binary_crossentropy
    assert losses.get_loss("mse", None, None).name == "mse"


def test_get_serialize_and_errors():
    assert type(metrics.get("AUC")) is metrics.AUC
    assert type(metrics.get("sparse_categorical_accuracy")) is metrics.SparseCategoricalAccuracy
    assert metrics.get(None) is None
    precision = metrics.Precision(thresholds=[0.3, 0.6], name="p")
    again = metrics.deserialize(metrics.serialize(precision))
    assert type(again) is metrics.Precision and again.thresholds == [0.3, 0.6] and again.name == "p"
    assert metrics.AUC(num_thresholds=10).get_config() | {"name": "x"} == \
        keras.metrics.AUC(num_thresholds=10).get_config() | {"name": "x"}
    with pytest.raises(ValueError, match="Could not interpret metric identifier: no_metric"):
        metrics.get("no_metric")
    with pytest.raises(ValueError, match="Threshold values must be in"):
        metrics.Precision(thresholds=1.5)
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
