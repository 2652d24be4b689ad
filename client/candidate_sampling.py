"""Candidate samplers (tg.random.*_candidate_sampler) and the sampled losses tg.nn.nce_loss and
tg.nn.sampled_softmax_loss, which train a wide softmax layer on a few sampled classes per step.

Both losses score the true classes and `num_sampled` classes drawn by a
sampler (log-uniform by default, distinct ones), subtract the log of each
class's expected count (so the estimate is unbiased), and compare: NCE with
a logistic loss per class, sampled softmax with a softmax over them.
`sampled_values`, a sampler's (sampled, true_expected_count,
sampled_expected_count), fixes the samples, as in TF. `weights` may be one
[num_classes, dim] tensor or a list of shards (TF1's partition_strategy).
"""

from tensorgrid.client import array_ops as ao
from tensorgrid.client import math_ops
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["log_uniform_candidate_sampler", "uniform_candidate_sampler", "compute_accidental_hits",
           "nce_loss", "sampled_softmax_loss"]


def _sampler(op_type, true_classes, num_true, num_sampled, unique, range_max, seed, name):
    from tensorgrid.client import random_ops   # random_ops exports the samplers: imported late
    seed, seed2 = random_ops.get_seed(seed)
    return apply_op(op_type, [convert_to_tensor(true_classes, dtype=dtypes.int64)],
                    {"num_true": int(num_true), "num_sampled": int(num_sampled), "unique": bool(unique),
                     "range_max": int(range_max), "seed": seed, "seed2": seed2}, name=name or op_type)


def log_uniform_candidate_sampler(true_classes, num_true, num_sampled, unique, range_max, seed=None, name=None):
    """Samples classes in [0, range_max) with P(c) = log((c+2)/(c+1)) / log(range_max+1) (Zipf-like).

    Returns (sampled_candidates, true_expected_count, sampled_expected_count).
    """
    return _sampler("LogUniformCandidateSampler", true_classes, num_true, num_sampled, unique, range_max, seed,
                    name)


def uniform_candidate_sampler(true_classes, num_true, num_sampled, unique, range_max, seed=None, name=None):
    """Samples classes uniformly from [0, range_max); returns the sampler triple as log_uniform's does."""
    return _sampler("UniformCandidateSampler", true_classes, num_true, num_sampled, unique, range_max, seed, name)


def compute_accidental_hits(true_classes, sampled_candidates, num_true, seed=None, name=None):
    """(indices, ids, weights): for each sampled candidate that is a true class of row indices[k], its position
    ids[k] among the samples and weight -FLT_MAX, to be added to that logit."""
    return apply_op("ComputeAccidentalHits", [convert_to_tensor(true_classes, dtype=dtypes.int64),
                                              convert_to_tensor(sampled_candidates, dtype=dtypes.int64)],
                    {"num_true": int(num_true)}, name=name or "ComputeAccidentalHits")


registry.not_differentiable("LogUniformCandidateSampler", "UniformCandidateSampler", "ComputeAccidentalHits")


def _sampled_logits(weights, biases, labels, inputs, num_sampled, num_classes, num_true, sampled_values,
                    remove_accidental_hits, partition_strategy, seed):
    """(logits [batch, num_true + num_sampled], labels of the same shape) for the sampled losses."""
    from tensorgrid.client import embedding_ops, sparse_ops
    shards = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    bias_shards = list(biases) if isinstance(biases, (list, tuple)) else [biases]
    labels = convert_to_tensor(labels)
    if labels.dtype is not dtypes.int64:
        labels = ao.cast(labels, dtypes.int64)
    inputs = convert_to_tensor(inputs)
    flat_labels = ao.reshape(labels, [-1])
    if sampled_values is None:
        sampled_values = log_uniform_candidate_sampler(labels, num_true, num_sampled, True, num_classes, seed=seed)
    sampled, true_expected, sampled_expected = (ao.stop_gradient(convert_to_tensor(v)) for v in sampled_values)
    sampled = ao.cast(sampled, dtypes.int64) if sampled.dtype is not dtypes.int64 else sampled
    ids = ao.concat([flat_labels, sampled], 0)
    n_true = ao.shape(flat_labels)[0]
    rows = embedding_ops.embedding_lookup(shards, ids, partition_strategy=partition_strategy)
    rows = ao.cast(rows, inputs.dtype) if rows.dtype != inputs.dtype else rows
    row_bias = embedding_ops.embedding_lookup(bias_shards, ids, partition_strategy=partition_strategy)
    row_bias = ao.cast(row_bias, inputs.dtype) if row_bias.dtype != inputs.dtype else row_bias
    true_w, sampled_w = rows[:n_true], rows[n_true:]
    true_b, sampled_b = row_bias[:n_true], row_bias[n_true:]

    # each input row against its own num_true true classes
    dim = ao.shape(true_w)[1:2]
    true_w = ao.reshape(true_w, ao.concat([[-1, num_true], dim], 0))
    true_logits = math_ops.reduce_sum(ao.expand_dims(inputs, 1) * true_w, axis=2) + \
        ao.reshape(true_b, [-1, num_true])
    sampled_logits = math_ops.matmul(inputs, sampled_w, transpose_b=True) + sampled_b

    if remove_accidental_hits:
        rows_hit, ids_hit, weights_hit = compute_accidental_hits(labels, sampled, num_true)
        where = ao.concat([ao.reshape(rows_hit, [-1, 1]), ao.reshape(ao.cast(ids_hit, dtypes.int32), [-1, 1])], 1)
        shape = ao.concat([ao.shape(labels)[:1], [num_sampled]], 0)
        sampled_logits += sparse_ops.sparse_to_dense(where, shape, ao.cast(weights_hit, sampled_logits.dtype),
                                                     default_value=0.0, validate_indices=False)
    true_logits -= math_ops.log(ao.cast(true_expected, true_logits.dtype))
    sampled_logits -= math_ops.log(ao.cast(sampled_expected, sampled_logits.dtype))
    logits = ao.concat([true_logits, sampled_logits], 1)
    targets = ao.concat([ao.ones_like(true_logits) / num_true, ao.zeros_like(sampled_logits)], 1)
    return logits, targets


def nce_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1, sampled_values=None,
             remove_accidental_hits=False, name="nce_loss", partition_strategy="mod"):
    """The noise-contrastive estimation loss per example, [batch_size]: see the module docstring."""
    from tensorgrid.client import nn_ops
    with name_scope(name, "nce_loss"):
        logits, targets = _sampled_logits(weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                                          sampled_values, remove_accidental_hits, partition_strategy, None)
        losses = nn_ops.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits, name="sampled_losses")
        return math_ops.reduce_sum(losses, axis=1)


def sampled_softmax_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
                         sampled_values=None, remove_accidental_hits=True, seed=None, name="sampled_softmax_loss",
                         partition_strategy="mod"):
    """The sampled softmax loss per example, [batch_size]: see the module docstring."""
    from tensorgrid.client import nn_ops
    with name_scope(name, "sampled_softmax_loss"):
        logits, targets = _sampled_logits(weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                                          sampled_values, remove_accidental_hits, partition_strategy, seed)
        return nn_ops.softmax_cross_entropy_with_logits_v2(labels=ao.stop_gradient(targets), logits=logits,
                                                           name="sampled_losses")


def nce_loss_v1(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1, sampled_values=None,
                remove_accidental_hits=False, partition_strategy="mod", name="nce_loss"):
    """TF1's tf.nn.nce_loss (partition_strategy before name)."""
    return nce_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true, sampled_values,
                    remove_accidental_hits, name, partition_strategy)


def sampled_softmax_loss_v1(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
                            sampled_values=None, remove_accidental_hits=True, partition_strategy="mod",
                            name="sampled_softmax_loss", seed=None):
    """TF1's tf.nn.sampled_softmax_loss (partition_strategy before name)."""
    return sampled_softmax_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true, sampled_values,
                                remove_accidental_hits, seed, name, partition_strategy)
