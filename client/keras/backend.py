"""tg.keras.backend: Keras's global state on tensorgrid: float type, name counters, seeds, name paths.

Layer and model names are made unique per prefix (`dense`, `dense_1`, ...) by
`get_uid`, as Keras does; `clear_session()` starts the counters again. Weights
get a `path` from the names of the layers being built around them
(`sequential/dense/kernel`). Random initial values come from one NumPy
generator, reseeded by `tg.keras.utils.set_random_seed`.
"""

import collections
import contextlib
import threading

import numpy as np

from tensorgrid.client import context
from tensorgrid.framework import dtypes

_FLOATX = "float32"
_EPSILON = 1e-7
_IMAGE_DATA_FORMAT = "channels_last"

_uids = collections.defaultdict(int)
_rng = np.random.default_rng()


class _Local(threading.local):
    def __init__(self):
        self.path = []             # names of the layers being built or called, outermost first
        self.training = []         # the `training` value of the calls in progress, outermost first


_local = _Local()


def floatx():
    return _FLOATX


def set_floatx(value):
    global _FLOATX
    if value not in ("float16", "float32", "float64", "bfloat16"):
        raise ValueError(f"Unknown `floatx` value: {value}. Expected one of "
                         f"{{'float16', 'float32', 'float64', 'bfloat16'}}")
    _FLOATX = str(value)


def epsilon():
    return _EPSILON


def set_epsilon(value):
    global _EPSILON
    _EPSILON = float(value)


def image_data_format():
    return _IMAGE_DATA_FORMAT


def set_image_data_format(data_format):
    global _IMAGE_DATA_FORMAT
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument must be one of {{'channels_first', 'channels_last'}}. "
                         f"Received: data_format={data_format}")
    _IMAGE_DATA_FORMAT = data_format


def standardize_data_format(data_format):
    if data_format is None:
        return image_data_format()
    data_format = str(data_format).lower()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument must be one of {{'channels_first', 'channels_last'}}. "
                         f"Received: data_format={data_format}")
    return data_format


def backend():
    return "tensorgrid"


def get_uid(prefix=""):
    """1 the first time `prefix` is asked for, then 2, 3, ... (until clear_session)."""
    _uids[prefix] += 1
    return _uids[prefix]


def unique_name(prefix):
    """`prefix` the first time, then `prefix_1`, `prefix_2`, ... as Keras names layers and models."""
    uid = get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


def clear_session(free_memory=True):
    """Forgets the name counters (the next Dense is `dense` again, the next Adam `adam`)."""
    from tensorgrid.client.keras import naming
    _uids.clear()
    naming._counts.clear()


def rng():
    """The generator random initial values and dropout seeds are drawn from."""
    return _rng


def set_seed(seed):
    global _rng
    _rng = np.random.default_rng(seed)


@contextlib.contextmanager
def name_path(name):
    """Weights made inside get paths under `name` (`model/layer/kernel`)."""
    _local.path.append(name)
    try:
        yield
    finally:
        _local.path.pop()


def current_path(name):
    return "/".join(_local.path + [name])


@contextlib.contextmanager
def training_scope(training):
    """The `training` value layers called inside inherit when they are not given one."""
    _local.training.append(training)
    try:
        yield
    finally:
        _local.training.pop()


def inherited_training():
    """The `training` of the innermost call in progress that was given one, else None."""
    for value in reversed(_local.training):
        if value is not None:
            return value
    return None


def is_float_dtype(dtype):
    return dtypes.as_dtype(dtype).is_floating


def standardize_dtype(dtype):
    if dtype is None:
        return floatx()
    return dtypes.as_dtype(dtype).name


def executing_eagerly():
    return context.executing_eagerly()


def is_keras_tensor(x):
    from tensorgrid.client.keras.layers.base import KerasTensor
    return isinstance(x, KerasTensor)


def int_shape(x):
    shape = x.shape
    return tuple(shape) if isinstance(shape, tuple) else shape.as_tuple()


def count_params(x):
    return int(np.prod(int_shape(x)))


def get_value(x):
    return np.asarray(x.numpy())


def set_value(x, value):
    x.assign(np.asarray(value))
