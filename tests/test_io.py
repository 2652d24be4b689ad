"""tg.io and tg.data.TFRecordDataset against TensorFlow: TFRecord files written by one and read by the
other (each compression), tf.train.Example parsing on the same serialized records, decode_raw,
serialize_tensor / parse_tensor, read_file / write_file, gfile, and a TFRecord pipeline on a worker."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf1
from conftest import _local_cluster


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def _example(m, i):
    """Example i, built with module m's protos (tensorgrid or tensorflow): features of every kind."""
    t = m.train
    feature = {
        "x": t.Feature(float_list=t.FloatList(value=[i, i + 0.5])),
        "id": t.Feature(int64_list=t.Int64List(value=[i])),
        "kind": t.Feature(bytes_list=t.BytesList(value=[b"k%d" % i])),
        "tags": t.Feature(bytes_list=t.BytesList(value=[b"t%d" % k for k in range(i % 3)])),
        "seq": t.Feature(float_list=t.FloatList(value=[float(k) for k in range(2 * (i % 3))])),
    }
    if i % 2:
        feature["opt"] = t.Feature(int64_list=t.Int64List(value=[10 * i, 10 * i + 1]))
    for name in ("tags", "opt", "seq"):
        if name in feature:
            feature["var_" + name] = feature[name]
    return t.Example(features=t.Features(feature=feature))


RECORDS = [_example(tg, i).SerializeToString() for i in range(7)]


def _features(m):
    return {
        "x": m.io.FixedLenFeature([2], m.float32),
        "id": m.io.FixedLenFeature([], m.int64),
        "kind": m.io.FixedLenFeature([1], m.string),
        "none": m.io.FixedLenFeature([2], m.string, default_value=[b"a", b"b"]),
        "opt": m.io.FixedLenFeature([2], m.int64, default_value=[-1, -2]),
        "seq": m.io.FixedLenSequenceFeature([2], m.float32, allow_missing=True, default_value=9.0),
        "tags": m.io.FixedLenSequenceFeature([], m.string, allow_missing=True),
        "var_tags": m.io.VarLenFeature(m.string),
        "var_opt": m.io.VarLenFeature(m.int64),
        "var_seq": m.io.VarLenFeature(m.float32),
    }


def _numpy(result):
    """Dense values as arrays; a SparseTensor as key/indices, key/values and key/dense_shape."""
    out = {}
    for k, v in result.items():
        if hasattr(v, "indices"):
            out.update({f"{k}/indices": v.indices.numpy(), f"{k}/values": v.values.numpy(),
                        f"{k}/dense_shape": v.dense_shape.numpy()})
        else:
            out[k] = v.numpy()
    return out


def _same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, (k, got[k], want[k])
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_example_protos_have_tensorflows_bytes(tf):
    for i in range(4):
        assert _example(tg, i).SerializeToString(deterministic=True) == \
            _example(tf, i).SerializeToString(deterministic=True)
    parsed = tf.train.Example.FromString(RECORDS[3])
    assert list(parsed.features.feature["opt"].int64_list.value) == [30, 31]


@pytest.mark.parametrize("compression", ["", "ZLIB", "GZIP"])
def test_tfrecord_files_written_by_one_are_read_by_the_other(tf, tmp_path, compression):
    ours, theirs = str(tmp_path / "ours.tfrecord"), str(tmp_path / "theirs.tfrecord")
    payloads = RECORDS + [b"", np.random.RandomState(0).bytes(70000)]
    with tg.io.TFRecordWriter(ours, tg.io.TFRecordOptions(compression_type=compression)) as w:
        for p in payloads:
            w.write(p)
    assert [r.numpy() for r in tf.data.TFRecordDataset(ours, compression_type=compression)] == payloads
    assert list(tf.compat.v1.io.tf_record_iterator(ours, tf.io.TFRecordOptions(compression))) == payloads
    with tf.io.TFRecordWriter(theirs, compression) as w:
        for p in payloads:
            w.write(p)
    assert list(tg.data.TFRecordDataset(theirs, compression_type=compression).as_numpy_iterator()) == payloads
    assert list(tf1.io.tf_record_iterator(theirs, compression)) == payloads
    assert list(tf1.python_io.tf_record_iterator(theirs, tf1.python_io.TFRecordOptions(compression))) == payloads


def test_tfrecord_dataset_over_lists_datasets_and_parallel_reads_like_tf(tf, tmp_path):
    names = []
    for f in range(3):
        names.append(str(tmp_path / f"part-{f}.tfrecord"))
        with tg.io.TFRecordWriter(names[-1]) as w:
            for i in range(f + 2):
                w.write(b"file %d record %d" % (f, i))

    def forms(m):
        return [m.data.TFRecordDataset(names),
                m.data.TFRecordDataset(m.data.Dataset.from_tensor_slices(names)),
                m.data.TFRecordDataset(names, num_parallel_reads=2),
                m.data.TFRecordDataset(m.data.Dataset.list_files(str(tmp_path / "part-*"), shuffle=False),
                                       buffer_size=16)]
    for got, want in zip(forms(tg), forms(tf)):
        assert got.element_spec == tg.TensorSpec([], tg.string)
        assert list(got.as_numpy_iterator()) == list(want.as_numpy_iterator())


def test_corrupt_and_truncated_files_are_data_loss(tmp_path):
    path = tmp_path / "f.tfrecord"
    with tg.io.TFRecordWriter(str(path)) as w:
        w.write(b"a" * 100)
        w.write(b"b" * 100)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(tg.errors.DataLossError, match="truncated record at offset 116"):
        list(tg.data.TFRecordDataset(str(path)).as_numpy_iterator())
    broken = bytearray(data)
    broken[20] ^= 1
    path.write_bytes(bytes(broken))
    with pytest.raises(tg.errors.DataLossError, match="corrupted record at offset 0"):
        list(tf1.io.tf_record_iterator(str(path)))
    with pytest.raises(tg.errors.NotFoundError, match="No such file"):
        list(tg.data.TFRecordDataset(str(tmp_path / "missing")).as_numpy_iterator())
    with pytest.raises(tg.errors.InvalidArgumentError, match="Unsupported compression_type"):
        tg.data.TFRecordDataset(str(path), compression_type="BZIP2")


def test_parse_example_and_single_example_match_tf(tf):
    _same(_numpy(tg.io.parse_example(RECORDS, _features(tg))), _numpy(tf.io.parse_example(RECORDS, _features(tf))))
    for r in RECORDS[:3]:
        _same(_numpy(tg.io.parse_single_example(r, _features(tg))),
              _numpy(tf.io.parse_single_example(r, _features(tf))))
    batched = tg.data.Dataset.from_tensor_slices(RECORDS).batch(3).map(lambda s: tg.io.parse_example(s, _features(tg)))
    want = tf.data.Dataset.from_tensor_slices(RECORDS).batch(3).map(lambda s: tf.io.parse_example(s, _features(tf)))
    for g, w in zip(batched, want):
        _same(_numpy(g), _numpy(w))


def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.mark.parametrize("case", ["missing", "count", "kind", "garbage"])
def test_parse_example_errors_are_tfs(tf, case):
    records, spec = {
        "missing": (RECORDS, lambda m: {"nope": m.io.FixedLenFeature([1], m.float32)}),
        "count": (RECORDS, lambda m: {"x": m.io.FixedLenFeature([3], m.float32)}),
        "kind": (RECORDS, lambda m: {"id": m.io.FixedLenFeature([1], m.float32)}),
        "garbage": ([b"garbage"], lambda m: {"x": m.io.FixedLenFeature([2], m.float32)}),
    }[case]
    ours = _error(lambda: tg.io.parse_example(records, spec(tg)))
    theirs = _error(lambda: tf.io.parse_example(records, spec(tf)))
    assert isinstance(ours, tg.errors.InvalidArgumentError) and type(theirs).__name__ == "InvalidArgumentError"
    assert ours.message in theirs.message, (ours.message, theirs.message)
    with pytest.raises(ValueError, match="requires allow_missing to be True"):
        tg.io.parse_example(RECORDS, {"seq": tg.io.FixedLenSequenceFeature([2], tg.float32)})


def test_decode_raw_and_tensor_serialization_match_tf(tf):
    data = [b"abcdefgh", b"ijklmnop"]
    for dtype in ["uint8", "int16", "int32", "float32", "float64", "int64"]:
        for little in (True, False):
            np.testing.assert_array_equal(tg.io.decode_raw(data, getattr(tg, dtype), little_endian=little).numpy(),
                                          tf.io.decode_raw(data, getattr(tf, dtype), little_endian=little).numpy())
    np.testing.assert_array_equal(tg.io.decode_raw(b"abcde", tg.uint8, fixed_length=8).numpy(),
                                  tf.io.decode_raw(b"abcde", tf.uint8, fixed_length=8).numpy())
    np.testing.assert_array_equal(tf1.decode_raw(bytes=data, out_type=tf1.int32).numpy(),
                                  tf.io.decode_raw(data, tf.int32).numpy())
    ours = _error(lambda: tg.io.decode_raw([b"abcde"], tg.float32))
    assert ours.message in _error(lambda: tf.io.decode_raw([b"abcde"], tf.float32)).message
    values = [np.arange(6, dtype=np.float32).reshape(2, 3), np.int64(7), np.array([True, False]),
              np.array([[b"a", b""], [b"bc", b"d"]], dtype=object), np.zeros((0, 2), np.int32)]
    for v in values:
        dtype = tg.string if v.dtype == object else tg.as_dtype(v.dtype)
        mine = tg.io.serialize_tensor(tg.constant(v, dtype=dtype)).numpy()
        back = tf.io.parse_tensor(mine, tf.as_dtype(dtype.name)).numpy()
        np.testing.assert_array_equal(back, v)
        theirs = tf.io.serialize_tensor(tf.constant(v)).numpy()
        np.testing.assert_array_equal(tg.io.parse_tensor(theirs, dtype).numpy(), v)
    bad = _error(lambda: tg.io.parse_tensor(tg.io.serialize_tensor([1.0, 2.0]), tg.int32))
    assert bad.message in _error(lambda: tf.io.parse_tensor(tf.io.serialize_tensor([1.0, 2.0]), tf.int32)).message


def test_read_file_write_file_and_matching_files(tmp_path):
    path = str(tmp_path / "sub" / "a.bin")
    tg.io.write_file(path, b"\x00bytes\xff")
    assert tg.io.read_file(path).numpy() == b"\x00bytes\xff"
    assert [p.decode() for p in tg.io.matching_files(str(tmp_path / "sub" / "*.bin")).numpy()] == [path]
    with pytest.raises(tg.errors.NotFoundError, match="No such file"):
        tg.io.read_file(str(tmp_path / "missing"))
    tf1.disable_eager_execution()
    try:
        g = tf1.Graph()
        with g.as_default():
            name = tf1.placeholder(tf1.string, [])
            write = tf1.write_file(name, tf1.constant("graph mode"))
            read = tf1.read_file(name)
            with tf1.Session() as sess:
                sess.run(write, {name: str(tmp_path / "g.txt")})
                assert sess.run(read, {name: str(tmp_path / "g.txt")}) == b"graph mode"
    finally:
        tf1.enable_eager_execution()


def test_gfile_as_tf(tf, tmp_path):
    gf = tg.io.gfile
    root = str(tmp_path)
    gf.makedirs(f"{root}/a/b")
    gf.mkdir(f"{root}/a")      # exists: nothing, as TF's
    with gf.GFile(f"{root}/a/t.txt", "w") as f:
        f.write("one\ntwo\n")
    with gf.GFile(f"{root}/a/t.txt") as f:
        assert list(f) == ["one\n", "two\n"]
    assert gf.GFile(f"{root}/a/t.txt", "rb").read() == tf.io.gfile.GFile(f"{root}/a/t.txt", "rb").read()
    assert gf.exists(f"{root}/a/t.txt") and gf.isdir(f"{root}/a") and not gf.exists(f"{root}/zz")
    assert gf.listdir(f"{root}/a") == sorted(tf.io.gfile.listdir(f"{root}/a")) == ["b", "t.txt"]
    assert gf.glob(f"{root}/a/*.txt") == tf.io.gfile.glob(f"{root}/a/*.txt")
    assert gf.stat(f"{root}/a/t.txt").length == tf.io.gfile.stat(f"{root}/a/t.txt").length == 8
    gf.copy(f"{root}/a/t.txt", f"{root}/a/u.txt")
    with pytest.raises(tg.errors.AlreadyExistsError):
        gf.rename(f"{root}/a/t.txt", f"{root}/a/u.txt")
    gf.rename(f"{root}/a/t.txt", f"{root}/a/u.txt", overwrite=True)
    assert [w[0] for w in gf.walk(root)] == [w[0] for w in tf.io.gfile.walk(root)]
    gf.remove(f"{root}/a/u.txt")
    for fn in (lambda: gf.remove(f"{root}/a/u.txt"), lambda: gf.listdir(f"{root}/zz"),
               lambda: gf.GFile(f"{root}/zz"), lambda: gf.rmtree(f"{root}/zz")):
        with pytest.raises(tg.errors.NotFoundError):
            fn()
    gf.rmtree(f"{root}/a")
    assert not tf1.gfile.Exists(f"{root}/a")


def test_list_files_shuffles_a_permutation_and_refuses_no_match(tmp_path):
    for i in range(6):
        (tmp_path / f"f{i}.txt").write_bytes(b"")
    names = sorted(str(p).encode() for p in tmp_path.glob("*.txt"))
    assert list(tg.data.Dataset.list_files(str(tmp_path / "*.txt"), shuffle=False).as_numpy_iterator()) == names
    shuffled = tg.data.Dataset.list_files(str(tmp_path / "*.txt"), seed=3)
    first, second = list(shuffled.as_numpy_iterator()), list(shuffled.as_numpy_iterator())
    assert sorted(first) == sorted(second) == names
    assert list(tg.data.Dataset.list_files(str(tmp_path / "*.txt"), seed=3).as_numpy_iterator()) == first
    with pytest.raises(tg.errors.InvalidArgumentError, match="No files matched pattern: .*nothing"):
        tg.data.Dataset.list_files(str(tmp_path / "nothing*"))


def test_a_tfrecord_pipeline_on_a_cluster_worker(tmp_path):
    path = str(tmp_path / "train.tfrecord.gz")
    with tg.io.TFRecordWriter(path, "GZIP") as w:
        for r in RECORDS:
            w.write(r)
    target = _local_cluster().target
    tf1.disable_eager_execution()
    try:
        g = tf1.Graph()
        with g.as_default():
            with tf1.device("/job:worker/task:1"):
                ds = tf1.data.TFRecordDataset([path], compression_type="GZIP").batch(4).map(
                    lambda s: tf1.parse_example(s, {"x": tf1.FixedLenFeature([2], tf1.float32),
                                                    "id": tf1.FixedLenFeature([], tf1.int64)}))
                batch = tf1.data.make_one_shot_iterator(ds).get_next()
            with tf1.device("/job:worker/task:0"):
                total = tf1.reduce_sum(batch["x"], axis=1)
            with tf1.Session(target) as sess:
                got = []
                while True:
                    try:
                        got.append(sess.run([total, batch["id"]]))
                    except tf1.errors.OutOfRangeError:
                        break
        ids = np.concatenate([i for _, i in got])
        np.testing.assert_array_equal(ids, np.arange(7))
        np.testing.assert_allclose(np.concatenate([t for t, _ in got]), 2 * ids + 0.5)
    finally:
        tf1.enable_eager_execution()
        tg.Session.reset(target)
