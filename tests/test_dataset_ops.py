"""tg.data.Dataset in eager mode: every deterministic transformation element by element against
tf.data on the same input, element specs, cardinality, errors, and the eager iteration protocol."""

import collections

import numpy as np
import pytest

import tensorgrid as tg


def _same(got, want, where="element"):
    """Structure, dtype and value equality of two nests of NumPy values."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), (where, got, want)
        for k in want:
            _same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, tuple):
        assert type(got) is type(want) and len(got) == len(want), (where, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    else:
        g, w = np.asarray(got), np.asarray(want)
        assert g.dtype == w.dtype, (where, g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w, err_msg=where)


def _elements(ds):
    return list(ds.as_numpy_iterator())


def _assert_like_tf(build):
    """build(m) with m = tensorgrid, then tensorflow: the same elements in the same order."""
    tf = pytest.importorskip("tensorflow")
    got, want = _elements(build(tg)), _elements(build(tf))
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        _same(g, w, f"element {i}")


X = np.arange(24, dtype=np.float32).reshape(12, 2)
Y = np.arange(12, dtype=np.int64) % 3
Point = collections.namedtuple("Point", "x y")

DETERMINISTIC = {
    "from_tensor_slices": lambda m: m.data.Dataset.from_tensor_slices((X, Y)),
    "from_tensor_slices_dict": lambda m: m.data.Dataset.from_tensor_slices({"x": X, "y": Y, "s": [b"a"] * 12}),
    "from_tensor_slices_list_is_a_tensor": lambda m: m.data.Dataset.from_tensor_slices([[1, 2], [3, 4]]),
    "from_tensors": lambda m: m.data.Dataset.from_tensors((X, {"label": 7})),
    "range": lambda m: m.data.Dataset.range(3, 20, 4),
    "range_negative_step": lambda m: m.data.Dataset.range(10, 0, -3),
    "range_int32": lambda m: m.data.Dataset.range(5, output_type=m.int32),
    "map": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).map(lambda x, y: (m.reduce_sum(x) * 2.0, y + 1)),
    "map_dict_and_namedtuple": lambda m: m.data.Dataset.from_tensor_slices({"x": X}).map(
        lambda d: Point(d["x"][0], d["x"] * 3.0)),
    "map_list_becomes_tuple": lambda m: m.data.Dataset.range(4).map(lambda v: [v, v * v]),
    "map_python_constant": lambda m: m.data.Dataset.range(3).map(lambda v: (v, 5)),
    "parallel_map": lambda m: m.data.Dataset.range(50).map(lambda v: v * 3, num_parallel_calls=4),
    "parallel_map_autotune": lambda m: m.data.Dataset.range(20).map(lambda v: v - 1,
                                                                    num_parallel_calls=m.data.AUTOTUNE),
    "filter": lambda m: m.data.Dataset.range(30).filter(lambda v: m.equal(v % 4, 1)),
    "filter_elementwise_eq": lambda m: m.data.Dataset.range(30).filter(lambda v: v % 3 == 0),
    "filter_tuple": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: y > 0),
    "batch": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).batch(5),
    "batch_drop_remainder": lambda m: m.data.Dataset.range(11).batch(3, drop_remainder=True),
    "batch_of_mapped": lambda m: m.data.Dataset.range(10).map(lambda v: (v, m.fill([2], v))).batch(4),
    "batch_bigger_than_data": lambda m: m.data.Dataset.range(3).batch(10),
    "padded_batch": lambda m: m.data.Dataset.range(7).map(lambda v: m.fill([v], v)).padded_batch(3),
    "padded_batch_shapes_values": lambda m: m.data.Dataset.range(5).map(
        lambda v: (m.fill([v], v), m.fill([np.int64(2), v], 1.0))).padded_batch(
        2, padded_shapes=([6], [None, 4]), padding_values=(np.int64(-1), 0.5), drop_remainder=True),
    "repeat": lambda m: m.data.Dataset.range(4).repeat(3),
    "repeat_zero": lambda m: m.data.Dataset.range(4).repeat(0),
    "repeat_forever_take": lambda m: m.data.Dataset.range(3).repeat().take(10),
    "take": lambda m: m.data.Dataset.from_tensor_slices(X).take(5),
    "take_all": lambda m: m.data.Dataset.range(5).take(-1),
    "skip": lambda m: m.data.Dataset.range(10).skip(7),
    "skip_all": lambda m: m.data.Dataset.range(10).skip(-1),
    "shard": lambda m: m.data.Dataset.range(10).shard(3, 1),
    "take_while": lambda m: m.data.Dataset.range(10).batch(3).unbatch().take_while(lambda v: v < 5),
    "take_while_tuple": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).take_while(lambda x, y: x[0] < 9.0),
    "choose_from_datasets": lambda m: m.data.Dataset.choose_from_datasets(
        [m.data.Dataset.range(3), m.data.Dataset.range(10, 13)],
        m.data.Dataset.from_tensor_slices(np.array([0, 1, 1, 0, 0, 0, 1], np.int64))),
    "choose_from_datasets_skipping": lambda m: m.data.experimental.choose_from_datasets(
        [m.data.Dataset.range(3), m.data.Dataset.range(10, 13)],
        m.data.Dataset.from_tensor_slices(np.array([0, 1, 1, 0, 0, 0, 1], np.int64)), stop_on_empty_dataset=False),
    "counter": lambda m: m.data.Dataset.counter(3, -2).take(4),
    "experimental_counter": lambda m: m.data.experimental.Counter(5).take(3),
    "zip": lambda m: m.data.Dataset.zip((m.data.Dataset.range(5), m.data.Dataset.range(10, 13))),
    "zip_nested": lambda m: m.data.Dataset.zip({"a": m.data.Dataset.from_tensor_slices((X, Y)),
                                               "b": m.data.Dataset.range(100)}),
    "zip_varargs": lambda m: m.data.Dataset.zip(m.data.Dataset.range(3), m.data.Dataset.range(3).map(lambda v: -v)),
    "concatenate": lambda m: m.data.Dataset.range(3).concatenate(m.data.Dataset.range(10, 12)),
    "concatenate_shapes_relax": lambda m: m.data.Dataset.from_tensors([1, 2]).concatenate(
        m.data.Dataset.from_tensors([3, 4, 5])),
    "enumerate": lambda m: m.data.Dataset.from_tensor_slices([b"a", b"b", b"c"]).enumerate(start=4),
    "window_flat_map": lambda m: m.data.Dataset.range(7).window(3, 1, drop_remainder=True).flat_map(
        lambda w: w.batch(3)),
    "window_stride_shift": lambda m: m.data.Dataset.range(10).window(3, shift=2, stride=2).flat_map(
        lambda w: w.batch(3)),
    "window_shift_past_its_end": lambda m: m.data.Dataset.range(10).window(2, shift=4).flat_map(lambda w: w.batch(2)),
    "window_tuple": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).window(4, 5).flat_map(
        lambda a, b: m.data.Dataset.zip((a.batch(4), b.batch(4)))),
    "unbatch": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).batch(5).unbatch(),
    "unbatch_of_tensors": lambda m: m.data.Dataset.from_tensors((X, Y)).unbatch(),
    "flat_map": lambda m: m.data.Dataset.range(5).flat_map(lambda v: m.data.Dataset.range(v).map(lambda w: w * v)),
    "interleave": lambda m: m.data.Dataset.range(1, 6).interleave(
        lambda v: m.data.Dataset.from_tensors(v).repeat(v), cycle_length=2, block_length=2),
    "interleave_cycle_3": lambda m: m.data.Dataset.range(4).interleave(
        lambda v: m.data.Dataset.range(v * 10, v * 10 + v + 1), cycle_length=3),
    "prefetch": lambda m: m.data.Dataset.range(100).batch(7).prefetch(2),
    "prefetch_autotune": lambda m: m.data.Dataset.range(10).prefetch(m.data.AUTOTUNE),
    "cache_repeat": lambda m: m.data.Dataset.range(5).map(lambda v: v * v).cache().repeat(2),
    "strings": lambda m: m.data.Dataset.from_tensor_slices(["ab", "c", ""]).batch(2),
    "chain": lambda m: m.data.Dataset.from_tensor_slices((X, Y)).map(lambda x, y: (x + 1.0, y)).filter(
        lambda x, y: y < 2).batch(3).repeat(2).prefetch(1),
}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_transformation_matches_tf(name):
    _assert_like_tf(DETERMINISTIC[name])


def test_from_generator_matches_tf():
    def gen():
        for i in range(5):
            yield i, {"v": [float(i)] * i}

    def build(m):
        sig = (m.TensorSpec([], m.int32), {"v": m.TensorSpec([None], m.float32)})
        return m.data.Dataset.from_generator(gen, output_signature=sig)
    _assert_like_tf(build)
    _assert_like_tf(lambda m: m.data.Dataset.from_generator(
        lambda n: iter(range(n)), output_types=m.int64, output_shapes=(), args=(4,)))
    _assert_like_tf(lambda m: m.data.Dataset.from_generator(
        lambda: iter([(1, b"x"), (2, b"y")]), (m.int64, m.string), (m.TensorShape([]), m.TensorShape([]))))


def test_reduce_matches_tf():
    tf = pytest.importorskip("tensorflow")
    for m in (tg, tf):
        got = m.data.Dataset.from_tensor_slices((X, Y)).reduce(
            (np.float32(0), np.int64(0)), lambda state, e: (state[0] + m.reduce_sum(e[0]), state[1] + e[1]))
        assert [float(got[0]), int(got[1])] == [float(X.sum()), int(Y.sum())]
    # a state whose shape grows is traced again with that dim unknown, as TF does
    grown = tg.data.Dataset.range(4).reduce(tg.constant([], tg.int64), lambda s, v: tg.concat([s, [v]], 0))
    np.testing.assert_array_equal(grown.numpy(), [0, 1, 2, 3])


def test_window_elements_are_datasets_iterated_eagerly():
    ds = tg.data.Dataset.from_tensor_slices((X, Y)).window(5, shift=4)
    assert repr(ds.element_spec) == ("(DatasetSpec(TensorSpec(shape=(2,), dtype=tg.float32, name=None), "
                                     "TensorShape([])), DatasetSpec(TensorSpec(shape=(), dtype=tg.int64, name=None), "
                                     "TensorShape([])))")
    windows = [(list(x.as_numpy_iterator()), [int(v) for v in y]) for x, y in ds]
    assert [len(y) for _, y in windows] == [5, 5, 4]
    np.testing.assert_array_equal(windows[1][0], X[4:9])
    with pytest.raises(tg.errors.InvalidArgumentError, match="Window size must be greater than zero"):
        list(tg.data.Dataset.range(3).window(0))


def test_sample_from_datasets_draws_by_weight_and_uses_every_element():
    ones = [tg.data.Dataset.from_tensors(np.int64(k)).repeat() for k in (0, 1)]
    draws = list(tg.data.Dataset.sample_from_datasets(ones, [0.2, 0.8], seed=3).take(4000).as_numpy_iterator())
    assert abs(np.mean(draws) - 0.8) < 0.03   # 5 standard deviations of the mean of 4000 draws
    mixed = tg.data.Dataset.sample_from_datasets([tg.data.Dataset.range(100), tg.data.Dataset.range(100, 150)], seed=1)
    first = list(mixed.as_numpy_iterator())
    assert sorted(first) == list(range(150)) and first != sorted(first)
    assert list(mixed.as_numpy_iterator()) == first   # a seed: the same order each pass
    assert [x for x in first if x < 100] == list(range(100))   # each input's own order is kept
    random = tg.data.Dataset.random(seed=4)
    assert random.element_spec == tg.TensorSpec([], tg.int64) and int(random.cardinality()) == -1
    with pytest.raises(tg.errors.InvalidArgumentError, match="Selector index out of range: 3 >= 1"):
        list(tg.data.Dataset.choose_from_datasets(
            [tg.data.Dataset.range(3)], tg.data.Dataset.from_tensor_slices(np.array([0, 3], np.int64))))


def test_get_single_element_as_tf():
    tf = pytest.importorskip("tensorflow")
    for m in (tg, tf):
        x, y = m.data.Dataset.from_tensors((np.float32(2.5), [1, 2])).get_single_element()
        assert float(x) == 2.5 and list(np.asarray(y)) == [1, 2]
        assert int(m.data.experimental.get_single_element(m.data.Dataset.range(7, 8))) == 7
    for ds, message in [(lambda m: m.data.Dataset.range(0), "Dataset was empty."),
                        (lambda m: m.data.Dataset.range(2), "Dataset had more than one element.")]:
        with pytest.raises(tg.errors.InvalidArgumentError, match=message):
            ds(tg).get_single_element()
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            ds(tf).get_single_element()


def test_element_spec_and_tf1_output_properties():
    ds = tg.data.Dataset.from_tensor_slices({"a": [1, 2], "b": (np.zeros((2, 3), np.float32), ["x", "y"])})
    assert ds.element_spec == {"a": tg.TensorSpec([], tg.int32),
                               "b": (tg.TensorSpec([3], tg.float32), tg.TensorSpec([], tg.string))}
    assert ds.output_types == {"a": tg.int32, "b": (tg.float32, tg.string)}
    assert ds.output_shapes["b"][0] == tg.TensorShape([3])
    batched = tg.data.Dataset.range(10).batch(4)
    assert batched.element_spec == tg.TensorSpec([None], tg.int64)
    assert tg.data.Dataset.range(10).batch(4, drop_remainder=True).element_spec == tg.TensorSpec([4], tg.int64)
    assert tg.data.Dataset.range(3).map(lambda v: [v, v]).element_spec == (tg.TensorSpec([], tg.int64),) * 2
    assert repr(tg.TensorSpec([None, 2])) == "TensorSpec(shape=(None, 2), dtype=tg.float32, name=None)"


def test_cardinality_and_len_as_tf():
    tf = pytest.importorskip("tensorflow")
    cases = [lambda m: m.data.Dataset.range(10), lambda m: m.data.Dataset.range(10).repeat(),
             lambda m: m.data.Dataset.range(10).filter(lambda v: v > 2), lambda m: m.data.Dataset.range(10).batch(3),
             lambda m: m.data.Dataset.range(10).batch(3, drop_remainder=True), lambda m: m.data.Dataset.range(5).repeat(3),
             lambda m: m.data.Dataset.range(10).take(4), lambda m: m.data.Dataset.range(3).repeat().take(7),
             lambda m: m.data.Dataset.range(10).skip(4), lambda m: m.data.Dataset.range(10).shard(3, 2),
             lambda m: m.data.Dataset.zip((m.data.Dataset.range(4), m.data.Dataset.range(7))),
             lambda m: m.data.Dataset.range(4).concatenate(m.data.Dataset.range(2)),
             lambda m: m.data.Dataset.range(4).shuffle(2).prefetch(1).cache(),
             lambda m: m.data.Dataset.range(10).window(3, 4), lambda m: m.data.Dataset.range(10).window(3, 2, 2, True),
             lambda m: m.data.Dataset.range(10).take_while(lambda v: v < 3)]
    for build in cases:
        assert int(build(tg).cardinality()) == int(build(tf).cardinality())
    assert tg.data.INFINITE_CARDINALITY == -1 and tg.data.UNKNOWN_CARDINALITY == -2
    assert len(tg.data.Dataset.range(7).batch(2)) == 4
    with pytest.raises(TypeError, match="infinite"):
        len(tg.data.Dataset.range(3).repeat())
    with pytest.raises(TypeError, match="unknown"):
        len(tg.data.Dataset.range(3).filter(lambda v: v > 0))


def test_iterating_twice_restarts_and_iterators_are_independent():
    ds = tg.data.Dataset.range(5)
    assert [int(x) for x in ds] == [0, 1, 2, 3, 4]
    assert [int(x) for x in ds.take(3)] == [0, 1, 2]
    a, b = iter(ds), iter(ds)
    assert int(next(a)) == 0 and int(next(a)) == 1 and int(next(b)) == 0
    first = next(iter(tg.data.Dataset.from_tensor_slices((X, Y))))
    assert isinstance(first[0], type(tg.constant(1.0))) and first[0].dtype == tg.float32
    np.testing.assert_array_equal(first[0].numpy(), X[0])


def test_end_of_an_eager_iterator():
    it = iter(tg.data.Dataset.range(2))
    assert int(it.get_next()) == 0 and int(next(it)) == 1
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(tg.errors.OutOfRangeError, match="End of sequence"):
        it.get_next()
    assert it.element_spec == tg.TensorSpec([], tg.int64)


def test_map_traces_once_and_reads_captured_tensors_and_variables():
    traces = []
    offset = tg.constant(100, tg.int64)
    scale = tg.Variable(np.int64(2))

    def f(v):
        traces.append(1)
        return v * scale + offset

    ds = tg.data.Dataset.range(3).map(f)
    assert [int(x) for x in ds] == [100, 102, 104]
    scale.assign(10)  # the variable is read at every call, not when the map was built
    assert [int(x) for x in ds] == [100, 110, 120]
    assert len(traces) == 1


def test_shuffle_is_a_permutation_deterministic_per_seed_and_reshuffles_per_iteration():
    ds = tg.data.Dataset.range(100).shuffle(100, seed=7)
    first, second = _elements(ds), _elements(ds)
    assert sorted(first) == list(range(100)) and sorted(second) == list(range(100))
    assert first != list(range(100)) and first != second
    again = tg.data.Dataset.range(100).shuffle(100, seed=7)
    assert _elements(again) == first and _elements(again) == second
    fixed = tg.data.Dataset.range(100).shuffle(100, seed=7, reshuffle_each_iteration=False)
    assert _elements(fixed) == _elements(fixed)
    epochs = _elements(tg.data.Dataset.range(10).shuffle(10, seed=3).repeat(2))
    assert sorted(epochs[:10]) == list(range(10)) and sorted(epochs[10:]) == list(range(10))
    assert epochs[:10] != epochs[10:]


def test_shuffle_with_global_seed_is_deterministic():
    tg.random.set_seed(5)
    a = _elements(tg.data.Dataset.range(50).shuffle(50))
    tg.random.set_seed(5)
    b = _elements(tg.data.Dataset.range(50).shuffle(50))
    tg.random.set_seed(None)
    assert a == b and sorted(a) == list(range(50))


def test_bad_input_errors_have_tf_classes():
    with pytest.raises(ValueError, match="Dimensions 3 and 4 are not compatible"):
        tg.data.Dataset.from_tensor_slices((np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="rank >= 1"):
        tg.data.Dataset.from_tensor_slices(np.float32(3))
    with pytest.raises(tg.errors.InvalidArgumentError, match="different shapes in component 0"):
        _elements(tg.data.Dataset.range(4).map(lambda v: tg.fill([v], v)).batch(2))
    with pytest.raises(ValueError, match="must return a `tf.bool` scalar"):
        tg.data.Dataset.range(3).filter(lambda v: v)
    with pytest.raises(TypeError, match="must return a `Dataset`"):
        tg.data.Dataset.range(3).flat_map(lambda v: v)
    with pytest.raises(TypeError, match="Incompatible dataset elements"):
        tg.data.Dataset.range(3).concatenate(tg.data.Dataset.from_tensors(1.0))
    with pytest.raises(TypeError, match="callable"):
        tg.data.Dataset.from_generator([1, 2], tg.int32)
    with pytest.raises(tg.errors.InvalidArgumentError, match="Batch size must be greater than zero"):
        _elements(tg.data.Dataset.range(3).batch(0))


def test_generator_values_that_do_not_fit_are_invalid_argument():
    shape_bad = tg.data.Dataset.from_generator(lambda: iter([[1, 2, 3]]), output_signature=tg.TensorSpec([2], tg.int32))
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"shape \(3,\) where an element of shape \(2,\)"):
        _elements(shape_bad)
    structure_bad = tg.data.Dataset.from_generator(lambda: iter([1]), output_types=(tg.int32, tg.int32))
    with pytest.raises(tg.errors.InvalidArgumentError, match="did not match the expected structure"):
        _elements(structure_bad)

    def failing():
        yield 1
        raise ValueError("broken source")
    with pytest.raises(tg.errors.InvalidArgumentError, match="broken source"):
        _elements(tg.data.Dataset.from_generator(failing, output_types=tg.int32))


def test_options_are_accepted_and_merged():
    options = tg.data.Options()
    options.experimental_deterministic = False
    options.experimental_distribute.auto_shard_policy = tg.data.experimental.AutoShardPolicy.DATA
    ds = tg.data.Dataset.range(3).with_options(options)
    assert ds.options().experimental_deterministic is False
    assert ds.map(lambda v: v).options().experimental_distribute.auto_shard_policy == \
        tg.data.experimental.AutoShardPolicy.DATA
    with pytest.raises(AttributeError):
        options.no_such_option = 1
    assert tg.data.experimental.AUTOTUNE == tg.data.AUTOTUNE == -1
    assert int(tg.data.experimental.cardinality(ds)) == 3


def test_graph_mode_python_iteration_is_refused():
    with tg.Graph().as_default():
        ds = tg.data.Dataset.range(3)
        with pytest.raises(RuntimeError, match="only supports Python-style iteration in eager mode"):
            iter(ds)
        with pytest.raises(RuntimeError, match="eager mode"):
            ds.as_numpy_iterator()
