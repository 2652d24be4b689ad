"""tg.summary / tf.summary: summary ops, FileWriter and TF2 writers, read back by TensorBoard's and TF's readers."""

import glob
import os

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as tf1
from tensorgrid.client.summary import event_file
from tensorgrid.ops import summary_ops


def _accumulator(logdir):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def _event_files(logdir):
    return sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))


def _tf1_graph_summaries():
    """A graph with one summary of each TF1 kind, fed by x [batch, 4, 4, 3]; returns (graph, x, merged)."""
    g = tf1.Graph()
    with g.as_default():
        x = tf1.placeholder(tf1.float32, [None, 4, 4, 3], name="x")
        tf1.summary.scalar("loss", tf1.reduce_mean(x))
        with tf1.name_scope("train"):
            tf1.summary.scalar("acc", tf1.reduce_max(x), family="metrics")
            tf1.summary.histogram("activations", x)
        tf1.summary.image("input", x, max_outputs=2)
        tf1.summary.text("note", tf1.constant("hello"))
        merged = tf1.summary.merge_all()
    return g, x, merged


def _batches():
    rng = np.random.RandomState(0)
    return [rng.uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32) for _ in range(3)]


def _write_tf1(logdir, target=""):
    g, x, merged = _tf1_graph_summaries()
    with g.as_default(), tf1.Session(target, graph=g) as sess:
        writer = tf1.summary.FileWriter(logdir, sess.graph)
        for step, batch in enumerate(_batches()):
            writer.add_summary(sess.run(merged, {x: batch}), global_step=10 * step)
        writer.close()


def test_tf1_summaries_read_back_by_tensorboard(tmp_path):
    _write_tf1(str(tmp_path))
    acc = _accumulator(str(tmp_path))
    tags = acc.Tags()
    assert set(tags["scalars"]) == {"loss", "metrics/train/metrics/acc"}
    assert tags["histograms"] == ["train/activations"]
    assert set(tags["images"]) == {"input/image/0", "input/image/1"}
    assert tags["tensors"] == ["note"] and tags["graph"]
    batches = _batches()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [0, 10, 20]
    np.testing.assert_allclose([e.value for e in loss], [b.mean() for b in batches], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in acc.Scalars("metrics/train/metrics/acc")],
                               [b.max() for b in batches], rtol=1e-6)
    histo = acc.Histograms("train/activations")[1].histogram_value
    assert histo.num == batches[1].size and sum(histo.bucket) == batches[1].size
    np.testing.assert_allclose([histo.min, histo.max, histo.sum], [batches[1].min(), batches[1].max(),
                                                                   batches[1].astype(np.float64).sum()], rtol=1e-6)
    image = acc.Images("input/image/1")[2]
    assert (image.width, image.height) == (4, 4) and image.encoded_image_string.startswith(b"\x89PNG")
    note = acc.Tensors("note")[0].tensor_proto
    assert note.string_val == [b"hello"]


def test_tf1_summaries_read_back_by_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    _write_tf1(str(tmp_path))
    (path,) = _event_files(str(tmp_path))
    events = list(tf.compat.v1.train.summary_iterator(path))
    assert events[0].file_version == "brain.Event:2"
    assert events[1].graph_def
    scalars = [(e.step, v.simple_value) for e in events for v in e.summary.value if v.tag == "loss"]
    np.testing.assert_allclose([s for _, s in scalars], [b.mean() for b in _batches()], rtol=1e-6)
    assert [step for step, _ in scalars] == [0, 10, 20]


def test_summary_ops_run_on_a_cluster(tmp_path):
    from conftest import _local_cluster
    target = _local_cluster().target
    try:
        _write_tf1(str(tmp_path), target)
    finally:
        tf1.Session.reset(target)
    acc = _accumulator(str(tmp_path))
    np.testing.assert_allclose([e.value for e in acc.Scalars("loss")], [b.mean() for b in _batches()], rtol=1e-6)


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def _both(tf, build, feed):
    """Serialized summaries from build(module) run with `feed` for x, on TensorFlow and on tensorgrid."""
    out = []
    for m, session in ((tf.compat.v1, tf.compat.v1.Session), (tf1, tf1.Session)):
        g = m.Graph()
        with g.as_default():
            x = m.placeholder(m.as_dtype(feed.dtype), feed.shape, name="x")
            summary = build(m, x)
            with session(graph=g) as sess:
                out.append(sess.run(summary, {x: feed}))
    parsed = []
    for data in out:
        s = tf1.Summary()
        s.ParseFromString(data)
        parsed.append(s)
    return parsed


def test_histogram_is_tensorflows(tf):
    feed = np.concatenate([np.random.RandomState(1).standard_normal(500) * 3, [0.0, 0.0, 1e-13, -2.5]])
    theirs, ours = _both(tf, lambda m, x: m.summary.histogram("h", x), feed.astype(np.float32))
    a, b = theirs.value[0].histo, ours.value[0].histo
    assert ours.value[0].tag == theirs.value[0].tag == "h"
    np.testing.assert_array_equal(b.bucket_limit, a.bucket_limit)
    np.testing.assert_array_equal(b.bucket, a.bucket)
    np.testing.assert_allclose([b.min, b.max, b.num, b.sum, b.sum_squares],
                               [a.min, a.max, a.num, a.sum, a.sum_squares], rtol=1e-12)


@pytest.mark.parametrize("kind", ["positive", "signed", "uint8", "nonfinite", "gray"])
def test_image_is_tensorflows(tf, kind):
    rng = np.random.RandomState(2)
    feed = {"positive": rng.uniform(0, 3, (2, 5, 3, 3)), "signed": rng.uniform(-2, 1, (3, 5, 3, 3)),
            "uint8": rng.randint(0, 256, (2, 5, 3, 4)), "gray": rng.uniform(0, 1, (1, 5, 3, 1)),
            "nonfinite": np.where(rng.uniform(size=(1, 5, 3, 3)) < 0.2, np.nan, rng.uniform(size=(1, 5, 3, 3)))}[kind]
    feed = feed.astype(np.uint8 if kind == "uint8" else np.float32)
    theirs, ours = _both(tf, lambda m, x: m.summary.image("img", x, max_outputs=2), feed)
    assert [v.tag for v in ours.value] == [v.tag for v in theirs.value]
    for a, b in zip(theirs.value, ours.value):
        assert (b.image.height, b.image.width, b.image.colorspace) == (a.image.height, a.image.width,
                                                                        a.image.colorspace)
        decode = lambda png: tf.io.decode_png(png).numpy()  # noqa: E731
        np.testing.assert_array_equal(decode(b.image.encoded_image_string), decode(a.image.encoded_image_string))


def test_scalar_text_and_merge_are_tensorflows(tf):
    def build(m, x):
        return m.summary.merge([m.summary.scalar("average", m.reduce_mean(x)),
                                m.summary.text("words", m.constant(["a", "bc"]))])
    theirs, ours = _both(tf, build, np.arange(6, dtype=np.float32))
    assert [v.tag for v in ours.value] == [v.tag for v in theirs.value] == ["average", "words"]
    assert ours.value[0].simple_value == theirs.value[0].simple_value == 2.5
    assert ours.value[1].metadata.plugin_data.plugin_name == theirs.value[1].metadata.plugin_data.plugin_name
    assert list(ours.value[1].tensor.string_val) == list(theirs.value[1].tensor.string_val) == [b"a", b"bc"]


def test_tf1_names_collections_and_merge_all():
    g = tf1.Graph()
    with g.as_default():
        x = tf1.constant(1.0)
        a = tf1.summary.scalar("loss", x)
        b = tf1.summary.scalar("loss", x)
        c = tf1.summary.scalar("other", x, collections=["mine"])
        assert (a.name, b.name) == ("loss:0", "loss_1:0")
        assert tf1.get_collection(tf1.GraphKeys.SUMMARIES) == [a, b]
        assert tf1.get_collection("mine") == [c]
        assert tf1.summary.merge_all().name == "Merge/MergeSummary:0"
        assert tf1.summary.merge([a, c], name="mm").name == "mm/mm:0"
        assert tf1.summary.merge_all(key="nothing") is None
        with tf1.Session(graph=g) as sess:
            with pytest.raises(tg.errors.InvalidArgumentError, match="Duplicate tag loss"):
                sess.run(tf1.summary.merge([a, a]))
        with pytest.raises(ValueError, match="scalar"):
            tf1.summary.scalar("bad", tf1.constant([1.0, 2.0]))
        with pytest.raises(ValueError, match="string"):
            tf1.summary.text("bad", x)


def test_histogram_of_nan_fails_the_step():
    g = tf1.Graph()
    with g.as_default():
        h = tf1.summary.histogram("h", tf1.constant([1.0, np.nan]))
        with tf1.Session(graph=g) as sess, pytest.raises(tg.errors.InvalidArgumentError, match="Nan in summary"):
            sess.run(h)


def test_file_writer_events_flush_close_reopen(tmp_path):
    logdir = str(tmp_path)
    with tf1.Graph().as_default():
        writer = tf1.summary.FileWriter(logdir, flush_secs=3600)
        summary = tf1.Summary(value=[tf1.Summary.Value(tag="handmade", simple_value=3.5)])
        writer.add_summary(summary, 7)
        writer.add_session_log(tf1.SessionLog(status=tf1.SessionLog.START), 7)
        writer.flush()
        (first,) = _event_files(logdir)
        events = list(event_file.summary_iterator(first))
        assert [e.WhichOneof("what") for e in events] == ["file_version", "summary", "session_log"]
        assert events[1].step == 7 and events[1].summary.value[0].simple_value == 3.5
        writer.close()
        with pytest.raises(RuntimeError, match="closed"):
            writer.add_summary(summary, 8)
        writer.reopen()
        writer.add_summary(summary, 8)
        writer.close()
        assert writer.get_logdir() == logdir
    files = _event_files(logdir)
    assert len(files) == 2
    assert [e.step for e in event_file.summary_iterator(files[1]) if e.HasField("summary")] == [8]


def test_file_writer_keeps_a_tags_metadata_once(tmp_path):
    with tf1.Graph().as_default():
        text = tf1.summary.text("t", tf1.constant("x"))
        with tf1.Session() as sess, tf1.summary.FileWriter(str(tmp_path)) as writer:
            for step in range(2):
                writer.add_summary(sess.run(text), step)
    (path,) = _event_files(str(tmp_path))
    values = [e.summary.value[0] for e in event_file.summary_iterator(path) if e.HasField("summary")]
    assert [v.HasField("metadata") for v in values] == [True, False]


def test_file_writer_cache_and_eager_refusal(tmp_path):
    with tf1.Graph().as_default():
        try:
            assert tf1.summary.FileWriterCache.get(str(tmp_path)) is tf1.summary.FileWriterCache.get(str(tmp_path))
        finally:
            tf1.summary.FileWriterCache.clear()
    with pytest.raises(RuntimeError, match="not compatible with eager execution"):
        tf1.summary.FileWriter(str(tmp_path))


# ---- TF2 ----------------------------------------------------------------------------------------

def _tf2_values():
    rng = np.random.RandomState(3)
    return rng.standard_normal(200).astype(np.float32), rng.uniform(0, 1, (2, 6, 5, 3)).astype(np.float32)


def _write_tf2(m, logdir, use_function):
    """The same TF2 summaries with module m (tensorflow or tensorgrid), eagerly or in a function."""
    values, images = _tf2_values()

    def summaries(step):
        with m.name_scope("train"):
            m.summary.scalar("loss", m.reduce_mean(values) + m.cast(step, m.float32), step=step)
        m.summary.histogram("weights", values, step=step)
        m.summary.image("pictures", images, step=step, max_outputs=1)
        m.summary.text("note", "step text", step=step)

    run = m.function(summaries) if use_function else summaries
    writer = m.summary.create_file_writer(logdir)
    with writer.as_default():
        for step in range(3):
            run(m.constant(step, dtype=m.int64))
    writer.close()


@pytest.mark.parametrize("use_function", [False, True], ids=["eager", "function"])
def test_tf2_summaries_read_back_by_tensorboard(tmp_path, use_function):
    _write_tf2(tg, str(tmp_path), use_function)
    acc = _accumulator(str(tmp_path))
    assert set(acc.Tags()["tensors"]) == {"train/loss", "weights", "pictures", "note"}
    values, images = _tf2_values()
    loss = acc.Tensors("train/loss")
    assert [e.step for e in loss] == [0, 1, 2]
    from tensorboard.util import tensor_util
    np.testing.assert_allclose([tensor_util.make_ndarray(e.tensor_proto) for e in loss],
                               [values.mean() + s for s in range(3)], rtol=1e-6)
    buckets = tensor_util.make_ndarray(acc.Tensors("weights")[0].tensor_proto)
    assert buckets.shape == (30, 3) and buckets[:, 2].sum() == values.size
    blobs = tensor_util.make_ndarray(acc.Tensors("pictures")[0].tensor_proto)
    assert list(blobs[:2]) == [b"5", b"6"] and len(blobs) == 3
    assert tensor_util.make_ndarray(acc.Tensors("note")[2].tensor_proto) == b"step text"


def test_tf2_summaries_are_tensorflows(tmp_path, tf):
    _write_tf2(tf, str(tmp_path / "tf"), use_function=False)
    _write_tf2(tg, str(tmp_path / "tg"), use_function=False)
    from tensorboard.util import tensor_util
    theirs, ours = _accumulator(str(tmp_path / "tf")), _accumulator(str(tmp_path / "tg"))
    assert sorted(ours.Tags()["tensors"]) == sorted(theirs.Tags()["tensors"])
    for tag in theirs.Tags()["tensors"]:
        a, b = theirs.Tensors(tag), ours.Tensors(tag)
        assert [e.step for e in a] == [e.step for e in b]
        assert ours.SummaryMetadata(tag).plugin_data.plugin_name == theirs.SummaryMetadata(tag).plugin_data.plugin_name
        for x, y in zip(a, b):
            want, got = tensor_util.make_ndarray(x.tensor_proto), tensor_util.make_ndarray(y.tensor_proto)
            if tag == "pictures":
                decode = lambda png: tf.io.decode_png(png).numpy()  # noqa: E731
                assert list(got[:2]) == list(want[:2])
                np.testing.assert_array_equal(decode(got[2]), decode(want[2]))
            elif want.dtype.kind in "fc":
                assert got.dtype == want.dtype
                np.testing.assert_allclose(got, want, rtol=1e-6)
            else:
                np.testing.assert_array_equal(got, want)


def test_tf2_default_writer_step_and_record_if(tmp_path):
    assert tg.summary.scalar("nothing", 1.0, step=0) is False
    writer = tg.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        with pytest.raises(ValueError, match="No step set"):
            tg.summary.scalar("x", 1.0)
        tg.summary.experimental.set_step(5)
        try:
            assert tg.summary.scalar("x", 1.0) is True
            with tg.summary.record_if(False):
                assert tg.summary.scalar("x", 2.0) is False
            step = tg.Variable(9, dtype=tg.int64)
            tg.summary.experimental.set_step(step)
            assert tg.summary.scalar("x", 3.0) is True
        finally:
            tg.summary.experimental.set_step(None)
    writer.close()
    acc = _accumulator(str(tmp_path))
    assert [e.step for e in acc.Tensors("x")] == [5, 9]


def test_write_after_the_writer_closed_fails_in_a_function(tmp_path):
    writer = tg.summary.create_file_writer(str(tmp_path))

    @tg.function
    def log(step):
        tg.summary.scalar("x", 1.0, step=step)

    with writer.as_default():
        log(tg.constant(0, dtype=tg.int64))
        writer.close()
        with pytest.raises(tg.errors.FailedPreconditionError, match="not open in this process"):
            log(tg.constant(1, dtype=tg.int64))


def test_v2_histogram_buckets_edge_cases():
    assert summary_ops.histogram_buckets_v2([], 30).shape == (30, 3)
    same = summary_ops.histogram_buckets_v2([2.0, 2.0, 2.0], 4)
    np.testing.assert_array_equal(same, [[2, 2, 0], [2, 2, 0], [2, 2, 0], [2, 2, 3]])
