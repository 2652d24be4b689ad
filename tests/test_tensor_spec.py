"""tg.TensorSpec: construction, compatibility, equality and repr, as tf.TensorSpec has them."""

import pickle

import numpy as np

import tensorgrid as tg
from tensorgrid.framework.tensor_spec import most_specific_compatible_shape


def test_spec_fields_defaults_and_repr():
    spec = tg.TensorSpec([None, 3])
    assert spec.shape == tg.TensorShape([None, 3]) and spec.dtype == tg.float32 and spec.name is None
    assert repr(tg.TensorSpec((), tg.int64, "n")) == "TensorSpec(shape=(), dtype=tg.int64, name='n')"
    assert tg.TensorSpec([2], "int32").dtype == tg.int32


def test_compatibility_and_equality():
    spec = tg.TensorSpec([None, 3], tg.float32)
    assert spec.is_compatible_with(tg.TensorSpec([5, 3], tg.float32))
    assert not spec.is_compatible_with(tg.TensorSpec([5, 4], tg.float32))
    assert not spec.is_compatible_with(tg.TensorSpec([5, 3], tg.float64))
    assert spec.is_compatible_with(tg.constant(np.zeros((2, 3), np.float32)))
    assert spec == tg.TensorSpec([None, 3]) and spec != tg.TensorSpec([None, 3], name="x")
    assert len({spec, tg.TensorSpec([None, 3])}) == 1
    assert spec.most_specific_compatible_type(tg.TensorSpec([4, 3])) == spec
    assert most_specific_compatible_shape([2, 3], [2, 4]) == tg.TensorShape([2, None])
    assert most_specific_compatible_shape([2], [2, 4]) == tg.TensorShape(None)


def test_from_tensor_names_a_graph_tensor_and_specs_pickle():
    with tg.Graph().as_default():
        x = tg.compat.v1.placeholder(tg.int32, [None], name="ids")
        assert tg.TensorSpec.from_tensor(x) == tg.TensorSpec([None], tg.int32, "ids")
    eager = tg.TensorSpec.from_tensor(tg.constant([1.0, 2.0]))
    assert eager == tg.TensorSpec([2], tg.float32)
    assert pickle.loads(pickle.dumps(eager)) == eager
