"""Random ops: draws from a NumPy Philox generator keyed by the node's (seed, seed2) attrs.

As in TF, seed == seed2 == 0 means "not seeded": the generator then takes
fresh entropy. Each kernel owns its generator (created by the kernel
factory), so successive runs of one compiled step continue the stream while
a fresh session, which compiles again, starts it over. Numbers are drawn on
the host and then moved to the device, so they do not depend on placement.
"""

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.registry import register

_UINT64 = (1 << 64) - 1


def generator(node):
    """The generator of a random node: Philox keyed by (seed, seed2), or unseeded."""
    seed, seed2 = int(node.attr("seed", 0)), int(node.attr("seed2", 0))
    if seed == 0 and seed2 == 0:
        return np.random.default_rng()
    return np.random.Generator(np.random.Philox(key=np.array([seed & _UINT64, seed2 & _UINT64], dtype=np.uint64)))


def _host_shape(shape):
    values = shape.tolist() if hasattr(shape, "tolist") else shape
    dims = tuple(int(d) for d in np.ravel(values))
    if any(d < 0 for d in dims):
        raise errors.InvalidArgumentError(None, None, f"shape {list(dims)} has a negative dimension")
    return dims


def _infer_shape_input(ctx, index=0):
    """The static output shape given by a 1-D shape input: its constant value, else its length."""
    value = ctx.const_values[index]
    if value is not None:
        return tuple(int(d) for d in np.ravel(value))
    shp = ctx.input_shapes[index]
    if shp is not None and len(shp) == 1 and shp[0] is not None:
        return (None,) * shp[0]
    return None


def _check_shape_input(ctx, index=0):
    if ctx.input_dtypes[index] not in (dtypes.int32, dtypes.int64):
        raise ctx.error(f"shape must be int32 or int64, got {ctx.input_dtypes[index].name}")
    shp = ctx.input_shapes[index]
    if shp is not None and len(shp) != 1:
        raise ctx.error(f"shape must be a vector, got a tensor of shape {list(shp)}")


def _infer_float_draw(ctx):
    _check_shape_input(ctx)
    dt = dtypes.as_dtype(ctx.attr("dtype"))
    if not dt.is_floating:
        raise ctx.error(f"dtype must be floating-point, got {dt.name}")
    return [(dt, _infer_shape_input(ctx))]


def _float_kernel(draw):
    """A kernel factory for draw(gen, shape, numpy dtype) -> array of that dtype."""
    def factory(node):
        gen = generator(node)
        dtype = dtypes.as_dtype(node.attr("dtype")).as_numpy_dtype
        xp = node.xp
        return lambda shape: xp.asarray(draw(gen, _host_shape(shape), dtype))
    return factory


def _drawn_as(dtype):
    """The dtype Generator draws in for `dtype`: it has float32 and float64 streams only."""
    return np.float32 if dtype == np.float16 else dtype


def _normal(gen, shape, dtype):
    return gen.standard_normal(shape, dtype=_drawn_as(dtype)).astype(dtype, copy=False)


def _uniform(gen, shape, dtype):
    values = gen.random(shape, dtype=_drawn_as(dtype)).astype(dtype, copy=False)
    # rounding a float32 draw to float16 can reach 1.0, which [0, 1) excludes
    return np.minimum(values, np.nextafter(dtype(1), dtype(0)))


def _truncated(gen, shape, dtype):
    values = gen.standard_normal(shape, dtype=_drawn_as(dtype))
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = gen.standard_normal(int(outside.sum()), dtype=values.dtype)
        outside = np.abs(values) > 2
    return values.astype(dtype, copy=False)


register("RandomStandardNormal", _infer_float_draw, _float_kernel(_normal), stateful=True,
         doc="Samples of N(0, 1); input shape; attrs dtype, seed, seed2.")
register("RandomUniform", _infer_float_draw, _float_kernel(_uniform), stateful=True,
         doc="Samples of U[0, 1); input shape; attrs dtype, seed, seed2.")
register("TruncatedNormal", _infer_float_draw, _float_kernel(_truncated), stateful=True,
         doc="Samples of N(0, 1), redrawn until within 2 standard deviations; attrs dtype, seed, seed2.")


def _infer_uniform_int(ctx):
    _check_shape_input(ctx)
    dt = ctx.input_dtypes[1]
    if dt not in (dtypes.int32, dtypes.int64) or ctx.input_dtypes[2] != dt:
        raise ctx.error(f"minval and maxval must both be int32 or both int64, got "
                        f"{ctx.input_dtypes[1].name} and {ctx.input_dtypes[2].name}")
    for i, what in ((1, "minval"), (2, "maxval")):
        if ctx.input_shapes[i] not in (None, ()):
            raise ctx.error(f"{what} must be a scalar, got shape {list(ctx.input_shapes[i])}")
    return [(dt, _infer_shape_input(ctx))]


def _uniform_int_kernel(node):
    gen = generator(node)
    xp = node.xp

    def run(shape, minval, maxval):
        lo, hi = int(minval), int(maxval)
        if lo >= hi:
            raise errors.InvalidArgumentError(None, None, f"Need minval < maxval: {lo} >= {hi}")
        return xp.asarray(gen.integers(lo, hi, size=_host_shape(shape), dtype=np.dtype(minval.dtype)))
    return run


register("RandomUniformInt", _infer_uniform_int, _uniform_int_kernel, stateful=True,
         doc="Integers uniform in [minval, maxval); inputs shape, minval, maxval; attrs seed, seed2.")


def _infer_shuffle(ctx):
    shp = ctx.input_shapes[0]
    if shp is not None and len(shp) == 0:
        raise ctx.error("random_shuffle needs a tensor of rank >= 1")
    return [(ctx.input_dtypes[0], shp)]


def _shuffle_kernel(node):
    gen = generator(node)
    xp = node.xp

    def run(value):
        return value[xp.asarray(gen.permutation(value.shape[0]))]
    return run


register("RandomShuffle", _infer_shuffle, _shuffle_kernel, stateful=True,
         doc="Its input with the first dimension randomly permuted; attrs seed, seed2.")
