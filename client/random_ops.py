"""tg.random: random tensors, seeded the way TensorFlow seeds them.

An op's (seed, seed2) attrs come from the graph-level seed (the default
graph's `.seed`, set by `set_random_seed`; in eager mode the global seed set
by `tg.random.set_seed`) and the op-level `seed` argument:

- both set: (graph seed, op seed);
- only the graph seed: the op seed is the number of ops the graph held when
  the op was created (TF's `_last_id`), so rebuilding the same program gives
  the same numbers; in eager mode it is the next draw of a generator that
  `set_seed` restarts;
- only the op seed: (87654321, op seed), TF's default graph seed;
- neither: (0, 0), which the kernels read as "not seeded".

A tg.function graph takes the global seed in force when it is traced.
Eagerly, an op run again with the same seeds continues its stream instead of
repeating its numbers (TF keeps one kernel per seed pair): the k-th run of a
pair draws from Philox stream k.
"""

import random as _py_random

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["random_normal", "random_uniform", "truncated_normal", "random_shuffle", "set_random_seed"]

DEFAULT_GRAPH_SEED = 87654321
_MAXINT32 = 2**31 - 1

_global_seed = None
_op_seeds = None          # random.Random(global seed): eager op seeds when only the global one is set
_eager_runs = {}          # (seed, seed2) -> how many times eager ops ran with that pair


def _truncate(seed):
    return seed % (_MAXINT32 + 1)


def _graph_seed(graph):
    from tensorgrid.client.function import FuncGraph
    if graph.seed is None and isinstance(graph, FuncGraph):
        return _global_seed
    return graph.seed


def get_seed(op_seed, continue_stream=True):
    """The (seed, seed2) attrs of a random op created now with op-level seed `op_seed`.

    continue_stream=False (stateful ops that keep their own stream, such as a
    dataset's shuffle) leaves out the eager bump: the same seeds give the same numbers.
    """
    eager = context.executing_eagerly()
    graph = None if eager else graph_lib.get_default_graph()
    global_seed = _global_seed if eager else _graph_seed(graph)
    if global_seed is not None:
        if op_seed is None:
            op_seed = _op_seeds.randint(0, _MAXINT32) if eager else len(graph.get_operations())
        seeds = (_truncate(global_seed), _truncate(op_seed))
    elif op_seed is not None:
        seeds = (DEFAULT_GRAPH_SEED, _truncate(op_seed))
    else:
        return (0, 0)
    if seeds == (0, 0):  # (0, 0) would read as "not seeded"
        seeds = (0, _MAXINT32)
    if eager and continue_stream:
        runs = _eager_runs.get(seeds, 0)
        _eager_runs[seeds] = runs + 1
        seeds = (seeds[0], seeds[1] + (runs << 32))
    return seeds


def set_seed(seed):
    """Sets the graph-level seed (in eager mode the global seed, restarting eager op seeds)."""
    global _global_seed, _op_seeds
    if not context.executing_eagerly():
        graph_lib.get_default_graph().seed = seed
        return
    _global_seed = seed
    _op_seeds = None if seed is None else _py_random.Random(seed)
    _eager_runs.clear()


set_random_seed = set_seed


def _shape_tensor(shape):
    if isinstance(shape, graph_lib.TensorOps) or hasattr(shape, "_as_tensor"):
        return convert_to_tensor(shape)
    dims = [int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape)]
    return convert_to_tensor(dims, dtype=dtypes.int32, name="shape")


def _draw(op_type, shape, dtype, seed):
    return apply_op(op_type, [_shape_tensor(shape)], _seed_attrs(seed, {"dtype": dtypes.as_dtype(dtype)}),
                    name=op_type)


def _seed_attrs(seed, attrs):
    seed, seed2 = get_seed(seed)
    attrs.update(seed=seed, seed2=seed2)
    return attrs


def _scaled(op_type, shape, loc, scale, dtype, seed, name, default_name):
    """loc + scale * (a draw of op_type), TF's composition for normal, uniform and truncated normal."""
    from tensorgrid.client import math_ops
    dtype = dtypes.as_dtype(dtype)
    with name_scope(name, default_name) as scope:
        loc = convert_to_tensor(loc, dtype=dtype, name="loc")
        scale = convert_to_tensor(scale, dtype=dtype, name="scale")
        return math_ops.add(math_ops.multiply(_draw(op_type, shape, dtype, seed), scale), loc, name=scope)


def normal(shape, mean=0.0, stddev=1.0, dtype=dtypes.float32, seed=None, name=None):
    """Samples of a normal distribution with the given mean and standard deviation."""
    return _scaled("RandomStandardNormal", shape, mean, stddev, dtype, seed, name, "random_normal")


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=dtypes.float32, seed=None, name=None):
    """Normal samples, redrawn where they fall more than 2 standard deviations from the mean."""
    return _scaled("TruncatedNormal", shape, mean, stddev, dtype, seed, name, "truncated_normal")


def uniform(shape, minval=0, maxval=None, dtype=dtypes.float32, seed=None, name=None):
    """Samples uniform in [minval, maxval): maxval defaults to 1 for floats; integer dtypes need it."""
    from tensorgrid.client import math_ops
    dtype = dtypes.as_dtype(dtype)
    if dtype.is_integer:
        if maxval is None:
            raise ValueError(f"Must specify maxval for integer dtype {dtype.name}")
        if dtype not in (dtypes.int32, dtypes.int64):
            raise ValueError(f"random uniform integers must be int32 or int64, got {dtype.name}")
        with name_scope(name, "random_uniform") as scope:
            lo = convert_to_tensor(minval, dtype=dtype, name="min")
            hi = convert_to_tensor(maxval, dtype=dtype, name="max")
            return apply_op("RandomUniformInt", [_shape_tensor(shape), lo, hi], _seed_attrs(seed, {}), name=scope)
    if maxval is None:
        maxval = 1
    with name_scope(name, "random_uniform") as scope:
        lo = convert_to_tensor(minval, dtype=dtype, name="min")
        hi = convert_to_tensor(maxval, dtype=dtype, name="max")
        draw = _draw("RandomUniform", shape, dtype, seed)
        return math_ops.add(math_ops.multiply(draw, math_ops.subtract(hi, lo)), lo, name=scope)


def shuffle(value, seed=None, name=None):
    """`value` with its first dimension randomly permuted."""
    return apply_op("RandomShuffle", [convert_to_tensor(value)], _seed_attrs(seed, {}),
                    name=name or "RandomShuffle")


random_normal = normal
random_uniform = uniform
random_shuffle = shuffle


registry.not_differentiable("RandomStandardNormal", "RandomUniform", "RandomUniformInt", "TruncatedNormal",
                            "RandomShuffle")

# tg.random's candidate samplers (client/candidate_sampling.py)
from tensorgrid.client.candidate_sampling import log_uniform_candidate_sampler, uniform_candidate_sampler  # noqa: E402,F401,E501
