"""Candidate sampling: LogUniformCandidateSampler, UniformCandidateSampler and ComputeAccidentalHits.

A sampler draws num_sampled classes in [0, range_max) (distinct ones when
`unique`, by drawing until that many are distinct) and says how often each
true and sampled class is expected to appear in a draw: p * num_sampled, or,
for a unique draw that took n tries, 1 - (1 - p)^n (TF's formula). Draws
come from the node's Philox generator (random_ops.generator), so a seeded
graph samples the same classes on every fresh session; the numbers are not
TF's for the same seed.
"""

import math

import numpy as np

from tensorgrid.framework import dtypes
from tensorgrid.ops.array_ops import _host, _invalid
from tensorgrid.ops.random_ops import generator
from tensorgrid.ops.registry import register


def _log_uniform_probability(classes, range_max):
    c = np.asarray(classes, dtype=np.float64)
    return (np.log(c + 2.0) - np.log(c + 1.0)) / math.log(range_max + 1.0)


def _log_uniform_draw(rng, n, range_max):
    # the inverse CDF of P(c) = log((c + 2) / (c + 1)) / log(range_max + 1)
    v = np.floor(np.exp(rng.random(n) * math.log(range_max + 1.0))).astype(np.int64) - 1
    return np.clip(v, 0, range_max - 1)


_DISTRIBUTIONS = {
    "LogUniformCandidateSampler": (_log_uniform_draw, _log_uniform_probability),
    "UniformCandidateSampler": (lambda rng, n, range_max: rng.integers(0, range_max, n, dtype=np.int64),
                                lambda classes, range_max: np.full(np.shape(classes), 1.0 / range_max)),
}


def _infer_sampler(ctx):
    if not ctx.input_dtypes[0] is dtypes.int64:
        raise TypeError(f"{ctx.op} '{ctx.name}': true_classes must be int64, not {ctx.input_dtypes[0].name}")
    num_true, num_sampled = ctx.attr("num_true"), ctx.attr("num_sampled")
    range_max = ctx.attr("range_max")
    if range_max is None or range_max < 1:
        raise ctx.error(f"range_max must be at least 1, got {range_max}")
    if ctx.attr("unique") and num_sampled > range_max:
        raise ctx.error(f"Sampler's range is too small: num_sampled {num_sampled} > range_max {range_max} "
                        "with unique=True")
    shape = ctx.input_shapes[0]
    if shape is not None and (len(shape) != 2 or shape[1] not in (None, num_true)):
        raise ctx.error(f"true_classes must be a matrix [batch_size, num_true={num_true}], got {list(shape)}")
    batch = None if shape is None else shape[0]
    return [(dtypes.int64, (num_sampled,)), (dtypes.float32, (batch, num_true)), (dtypes.float32, (num_sampled,))]


def _sampler_kernel(node):
    xp = node.xp
    draw, probability = _DISTRIBUTIONS[node.op]
    num_true, num_sampled = node.attr("num_true"), node.attr("num_sampled")
    unique, range_max = bool(node.attr("unique")), int(node.attr("range_max"))
    rng = generator(node)

    def candidate_sampler(true_classes):
        true = _host(true_classes)
        if true.ndim != 2 or true.shape[1] != num_true:
            raise _invalid(f"true_classes must be a matrix [batch_size, num_true={num_true}], got "
                           f"{list(true.shape)}")
        if unique:
            picked, seen, tries = [], set(), 0
            while len(picked) < num_sampled:
                for c in draw(rng, num_sampled - len(picked), range_max).tolist():
                    tries += 1
                    if c not in seen:
                        seen.add(c)
                        picked.append(c)
                        if len(picked) == num_sampled:
                            break
            sampled = np.asarray(picked, dtype=np.int64)
        else:
            sampled, tries = draw(rng, num_sampled, range_max), num_sampled

        def expected(classes):
            p = probability(classes, range_max)
            if tries == num_sampled:
                return (p * num_sampled).astype(np.float32)
            return (-np.expm1(tries * np.log1p(-p))).astype(np.float32)
        return xp.asarray(sampled), xp.asarray(expected(true)), xp.asarray(expected(sampled))
    return candidate_sampler


for _op in _DISTRIBUTIONS:
    register(_op, _infer_sampler, _sampler_kernel, stateful=True, num_outputs=3, cpu_only=True,
             doc="(sampled_candidates, true_expected_count, sampled_expected_count): see the module docstring.")


def _infer_accidental_hits(ctx):
    for i, what in enumerate(("true_classes", "sampled_candidates")):
        if ctx.input_dtypes[i] is not dtypes.int64:
            raise TypeError(f"{ctx.op} '{ctx.name}': {what} must be int64, not {ctx.input_dtypes[i].name}")
    return [(dtypes.int32, (None,)), (dtypes.int64, (None,)), (dtypes.float32, (None,))]


def _accidental_hits_kernel(node):
    xp = node.xp
    num_true = node.attr("num_true")

    def compute_accidental_hits(true_classes, sampled_candidates):
        true = _host(true_classes)
        if true.ndim != 2 or true.shape[1] != num_true:
            raise _invalid(f"true_classes must be a matrix [batch_size, num_true={num_true}], got "
                           f"{list(true.shape)}")
        position = {int(c): j for j, c in enumerate(_host(sampled_candidates).tolist())}
        rows, ids = [], []
        for i, row in enumerate(true.tolist()):
            for c in row:
                j = position.get(int(c))
                if j is not None:
                    rows.append(i)
                    ids.append(j)
        weights = np.full(len(rows), -np.finfo(np.float32).max, dtype=np.float32)
        return xp.asarray(np.asarray(rows, np.int32)), xp.asarray(np.asarray(ids, np.int64)), xp.asarray(weights)
    return compute_accidental_hits


register("ComputeAccidentalHits", _infer_accidental_hits, _accidental_hits_kernel, num_outputs=3, cpu_only=True,
         doc="(indices, ids, weights): the sampled candidates that are a row's true class, weighted -FLT_MAX.")
