"""tg.strings (client/string_ops.py) and string tensors as bytes: against TensorFlow on the same inputs, on
every executor (the wire included), RaggedTensor results, TF's errors."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1
from tests.conftest import run_with

WORDS = np.array([b"Hello World", b"  a  b ", b"caf\xc3\xa9", b""], dtype=object)


def test_string_tensors_hold_bytes_everywhere(executor):
    def fn(x):
        return [x, tg.strings.join([x, "!"]), tg.constant("lit"), tg.strings.upper(x)]
    got = run_with(executor, fn, np.array(["ab", "ü"], dtype=object))
    assert got[0].tolist() == [b"ab", "ü".encode()]
    assert got[1].tolist() == [b"ab!", "ü!".encode()]
    assert got[2] == b"lit"
    assert got[3].tolist() == [b"AB", "ü".encode()]


def test_bytes_in_eager_function_session_and_py_func():
    assert tg.constant("a").numpy() == b"a"
    assert tg.constant(["x", b"y"]).numpy().tolist() == [b"x", b"y"]
    assert tg.function(lambda s: tg.identity(s))(tg.constant("z")).numpy() == b"z"
    g = tg.Graph()
    with g.as_default():
        p = v1.placeholder(tg.string)
        out = v1.py_func(lambda s: s[()].upper(), [p], tg.string)   # a 0-d object array of bytes, as TF gives
        made = v1.py_func(lambda: np.array("made in python"), [], tg.string)
        with tg.Session(graph=g) as sess:
            assert sess.run(p, {p: "fed"}) == b"fed"
            assert sess.run(out, {p: b"up"}) == b"UP"
            assert sess.run(made) == b"made in python"
    ds = tg.data.Dataset.from_tensor_slices(["a", "b"])
    assert [x.numpy() for x in ds] == [b"a", b"b"]


def _tf():
    return pytest.importorskip("tensorflow")


CASES = {
    "join": lambda m: m.strings.join([WORDS, "-", WORDS], separator="|"),
    "length": lambda m: m.strings.length(WORDS),
    "length_chars": lambda m: m.strings.length(WORDS, unit="UTF8_CHAR"),
    "substr": lambda m: m.strings.substr(WORDS[:3], [0, 1, 2], [5, 2, 10]),
    "substr_negative": lambda m: m.strings.substr(b"hello", -3, 2),
    "substr_chars": lambda m: m.strings.substr(WORDS[2:3], 3, 1, unit="UTF8_CHAR"),
    "to_number": lambda m: m.strings.to_number(["1.5", "-2", " 3e2"]),
    "to_number_int": lambda m: m.strings.to_number(["7", "-12"], out_type=m.int64),
    "format": lambda m: m.strings.format("x={} y={} z={}", [m.constant("a"), m.constant([1, 2, 3]),
                                                            m.constant(np.arange(10.0))]),
    "format_matrix": lambda m: m.strings.format("{}", [m.constant([[1.5, 2.0], [3.0, 4.25]])]),
    "regex_replace": lambda m: m.strings.regex_replace(WORDS, r"([a-z])([a-z])", r"<\2\1>"),
    "regex_replace_tensor": lambda m: m.strings.regex_replace(WORDS, m.constant("l+"), m.constant("L")),
    "regex_full_match_tensor": lambda m: m.strings.regex_full_match(WORDS, m.constant(".*o.*")),
    "regex_replace_first": lambda m: m.strings.regex_replace(WORDS, "o", "0", replace_global=False),
    "regex_full_match": lambda m: m.strings.regex_full_match(WORDS, r"[A-Za-z ]+"),
    "lower": lambda m: m.strings.lower(WORDS),
    "upper_utf8": lambda m: m.strings.upper(WORDS, encoding="utf-8"),
    "strip": lambda m: m.strings.strip(WORDS),
    "reduce_join": lambda m: m.strings.reduce_join([["a", "b"], ["c", "d"]], axis=1, separator="-"),
    "reduce_join_all": lambda m: m.strings.reduce_join([["a", "b"], ["c", "d"]]),
    "reduce_join_keep": lambda m: m.strings.reduce_join([["a", "b"], ["c", "d"]], axis=0, keepdims=True),
    "as_string": lambda m: m.strings.as_string([3.5, 1e10, -0.25]),
    "as_string_precision": lambda m: m.strings.as_string([3.14159, 2.0], precision=2),
    "as_string_int": lambda m: m.strings.as_string([7, -3], width=4, fill="0"),
    "as_string_bool": lambda m: m.strings.as_string([True, False]),
    "hash": lambda m: m.strings.to_hash_bucket_fast(
        list(WORDS) + [b"x" * n for n in (17, 31, 40, 63, 64, 65, 130, 1000)], 97),
    "unicode_encode": lambda m: m.strings.unicode_encode([[104, 233, 0x1F600]], "UTF-8"),
    "unicode_encode_vector": lambda m: m.strings.unicode_encode([104, 105], "UTF-8"),
    "split_scalar": lambda m: m.strings.split("a b  c"),
    "bytes_split_scalar": lambda m: m.strings.bytes_split("ab\xc3"),
    "unicode_split_scalar": lambda m: m.strings.unicode_split("h\u00e9llo", "UTF-8"),
    "unicode_decode_scalar": lambda m: m.strings.unicode_decode("h\u00e9", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_tensorflow(case):
    tf = _tf()
    got, want = CASES[case](tg).numpy(), CASES[case](tf).numpy()
    assert np.asarray(got).dtype == np.asarray(want).dtype
    if np.asarray(want).dtype.kind == "f":
        np.testing.assert_allclose(got, want)
    else:
        assert np.asarray(got).tolist() == np.asarray(want).tolist()


RAGGED = {
    "split": lambda m: m.strings.split(WORDS),
    "split_sep": lambda m: m.strings.split(["a,b,,c", ",x"], ","),
    "split_maxsplit": lambda m: m.strings.split(["a b c d"], maxsplit=2),
    "bytes_split": lambda m: m.strings.bytes_split(["ab", "", "xyz"]),
    "unicode_decode": lambda m: m.strings.unicode_decode(["h\u00e9", "", "\U0001F600!"], "UTF-8"),
    "unicode_split": lambda m: m.strings.unicode_split(["h\u00e9", "ok"], "UTF-8"),
    "unicode_decode_replace": lambda m: m.strings.unicode_decode([b"a\xffb"], "UTF-8", replacement_char=63),
}


@pytest.mark.parametrize("case", sorted(RAGGED))
def test_ragged_results_match_tensorflow(case):
    tf = _tf()
    got, want = RAGGED[case](tg), RAGGED[case](tf)
    assert isinstance(got, tg.RaggedTensor)
    assert got.to_list() == want.to_list()
    assert got.shape.as_list() == want.shape.as_list()
    np.testing.assert_array_equal(got.row_splits.numpy(), want.row_splits.numpy())


def test_ragged_to_tensor_and_values():
    r = tg.strings.split(["a b", "c", ""])
    assert r.to_tensor().numpy().tolist() == [[b"a", b"b"], [b"c", b""], [b"", b""]]
    assert r.to_tensor(b"?").numpy().tolist() == [[b"a", b"b"], [b"c", b"?"], [b"?", b"?"]]
    np.testing.assert_array_equal(r.row_lengths().numpy(), [2, 1, 0])
    num = tg.RaggedTensor.from_row_splits([1.0, 2.0, 3.0], [0, 2, 2, 3])
    np.testing.assert_allclose(num.to_tensor().numpy(), [[1, 2], [0, 0], [3, 0]])
    assert tg.ragged.constant([[1, 2], [3]]).to_list() == [[1, 2], [3]]
    with pytest.raises(tg.errors.InvalidArgumentError, match="row_splits"):
        tg.RaggedTensor.from_row_splits([1.0, 2.0], [0, 3])


def test_ragged_and_sparse_results_in_graphs():
    g = tg.Graph()
    with g.as_default():
        p = v1.placeholder(tg.string, [None])
        ragged = tg.strings.split(p)
        sparse = v1.string_split(p, delimiter=" ")
        with tg.Session(graph=g) as sess:
            r, s = sess.run([ragged, sparse], {p: ["x y", "z"]})
    assert r.to_list() == [[b"x", b"y"], [b"z"]]
    assert isinstance(s, v1.SparseTensorValue)
    assert s.values.tolist() == [b"x", b"y", b"z"] and s.dense_shape.tolist() == [2, 2]

    @tg.function
    def f(x):
        return tg.strings.split(x)
    assert f(tg.constant(["p q"])).to_list() == [[b"p", b"q"]]


def test_tf1_string_split_matches_tensorflow():
    tf = _tf().compat.v1
    g1, g2 = tg.Graph(), tf.Graph()
    results = []
    for m, g in ((v1, g1), (tf, g2)):
        with g.as_default():
            parts = [m.string_split(["a,b;c", ";;d"], delimiter=",;"),
                     m.string_split(["a,b;c", ";;d"], delimiter=",;", skip_empty=False),
                     m.string_split(["a  b"], sep=" "), m.string_split(["ab"], delimiter="")]
            with m.Session(graph=g) as sess:
                results.append([[v.tolist() for v in sess.run([p.indices, p.values, p.dense_shape])]
                                for p in parts])
    assert results[0] == results[1]


def test_errors_are_tensorflows():
    with pytest.raises(tg.errors.InvalidArgumentError, match="StringToNumberOp could not correctly convert string: abc"):
        tg.strings.to_number("abc")
    with pytest.raises(tg.errors.InvalidArgumentError, match=r"pos 5 out of range for string b'abc' at index 0"):
        tg.strings.substr("abc", 5, 1)
    with pytest.raises(tg.errors.InvalidArgumentError, match="Invalid pattern"):
        tg.strings.regex_full_match("a", "(")
    with pytest.raises(TypeError, match="string"):
        tg.strings.length(tg.constant([1, 2]))
    with pytest.raises(ValueError, match="placeholders"):
        tg.strings.format("{} {}", [tg.constant(1)])
    with pytest.raises(tg.errors.InvalidArgumentError, match="UTF-8"):
        tg.strings.length(tg.constant(b"\xff"), unit="UTF8_CHAR")


def test_string_ops_on_a_cluster():
    """String tensors cross workers as TF's DT_STRING string_val, ops run on either worker."""
    from tests.conftest import _local_cluster
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:0"):
            p = v1.placeholder(tg.string, [None])
            words = tg.strings.split(p)
        with tg.device("/job:worker/task:1"):
            joined = tg.strings.reduce_join(words.to_tensor(b"_"), axis=1, separator="+")
            n = tg.strings.to_hash_bucket_fast(words.values, 1000)
        target = _local_cluster().target
        try:
            with tg.Session(target, graph=g) as sess:
                got_joined, got_n, got_words = sess.run([joined, n, words], {p: ["hello world", "abc"]})
        finally:
            tg.Session.reset(target)
    assert got_joined.tolist() == [b"hello+world", b"abc+_"]
    assert got_words.to_list() == [[b"hello", b"world"], [b"abc"]]
    assert got_n[0] == 296 and got_n[2] == 385    # TF's buckets for b"hello" and b"abc"
