"""Tests for MonitoredSession, MonitoredTrainingSession, Scaffold, SessionManager and the standard hooks."""

import logging
import os
import threading
import time

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors

tf = tg.compat.v1


@pytest.fixture(autouse=True)
def graph_mode():
    tf.disable_eager_execution()


def _regression(lr=0.1):
    """A linear regression with a global step: (x, y, w, loss, train_op, global_step, feed)."""
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    y = tf.placeholder(tf.float32, [None, 1], name="y")
    w = tf.Variable(tf.zeros([3, 1]), name="w")
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y), name="loss")
    step = tf.train.get_or_create_global_step()
    train = tf.train.GradientDescentOptimizer(lr).minimize(loss, global_step=step)
    rng = np.random.RandomState(0)
    xs = rng.rand(16, 3).astype(np.float32)
    feed = {x: xs, y: xs @ np.array([[1.0], [-2.0], [0.5]], np.float32)}
    return w, loss, train, step, feed


class Recorder(tg.train.SessionRunHook):
    """Records every call it gets."""

    def __init__(self, fetch=None, feed=None, stop_at=None):
        self.calls = []
        self.results = []
        self.fetch, self.feed, self.stop_at = fetch, feed, stop_at

    def begin(self):
        self.calls.append("begin")

    def after_create_session(self, session, coord):
        assert session.graph.finalized
        self.calls.append("after_create_session")

    def before_run(self, run_context):
        self.calls.append("before_run")
        if self.fetch is not None or self.feed is not None:
            return tf.train.SessionRunArgs(self.fetch, feed_dict=self.feed)
        return None

    def after_run(self, run_context, run_values):
        self.calls.append("after_run")
        self.results.append(run_values.results)
        if self.stop_at is not None and len(self.results) >= self.stop_at:
            run_context.request_stop()

    def end(self, session):
        self.calls.append("end")


def test_hooks_see_every_run_and_can_stop_it():
    w, loss, train, step, feed = _regression()
    hook = Recorder(fetch={"step": step}, stop_at=3)
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        runs = 0
        while not sess.should_stop():
            assert sess.run(train, feed) is None
            runs += 1
        with pytest.raises(RuntimeError, match="Run called even after should_stop requested"):
            sess.run(train, feed)
    assert runs == 3
    assert hook.calls == ["begin", "after_create_session"] + ["before_run", "after_run"] * 3 + ["end"]
    assert [r["step"] for r in hook.results] == [0, 1, 2]
    assert not tf.get_default_graph().finalized          # finalized while the session was open, not after


def test_a_hook_feeds_and_conflicting_feeds_are_errors():
    x = tf.placeholder(tf.float32, [], name="x")
    doubled = x * 2
    feeder = tf.train.FeedFnHook(lambda: {x: 4.0})
    with tf.train.MonitoredSession(hooks=[feeder]) as sess:
        assert sess.run(doubled) == 8.0
        with pytest.raises(RuntimeError, match="Same tensor is fed by a SessionRunHook and user"):
            sess.run(doubled, {x: 1.0})
    with tf.train.MonitoredSession(hooks=[feeder, tf.train.FeedFnHook(lambda: {x: 1.0})]) as sess:
        with pytest.raises(RuntimeError, match="Same tensor is fed by two hooks"):
            sess.run(doubled)


def test_stop_at_step_hook_num_steps_and_last_step():
    w, loss, train, step, feed = _regression()
    with pytest.raises(ValueError, match="One of num_steps or last_step"):
        tf.train.StopAtStepHook()
    runs = 0
    with tf.train.MonitoredSession(hooks=[tf.train.StopAtStepHook(last_step=5)]) as sess:
        while not sess.should_stop():
            sess.run(train, feed)
            runs += 1
    assert runs == 5
    with tf.train.SingularMonitoredSession(hooks=[tf.train.StopAtStepHook(num_steps=4)]) as sess:
        while not sess.should_stop():
            sess.run(train, feed)
        assert sess.raw_session().run(step) == 4


def test_stop_at_step_hook_needs_a_global_step():
    tf.constant(1.0)
    with pytest.raises(RuntimeError, match="Global step should be created to use StopAtStepHook"):
        tf.train.MonitoredSession(hooks=[tf.train.StopAtStepHook(num_steps=1)])


class Listener(tf.train.CheckpointSaverListener):
    def __init__(self, stop_after=None):
        self.events = []
        self.stop_after = stop_after

    def begin(self):
        self.events.append("begin")

    def before_save(self, session, step):
        self.events.append(("before", int(step)))

    def after_save(self, session, step):
        self.events.append(("after", int(step)))
        return self.stop_after is not None and step >= self.stop_after

    def end(self, session, step):
        self.events.append(("end", int(step)))


def test_chief_saves_checkpoints_and_a_new_chief_restores_the_latest(tmp_path):
    ckpt = str(tmp_path)
    w, loss, train, step, feed = _regression()
    listener = Listener()
    saver_hook = tf.train.CheckpointSaverHook(ckpt, save_steps=4, listeners=[listener])
    final = tf.train.FinalOpsHook(w)
    with tf.train.MonitoredTrainingSession(checkpoint_dir=ckpt, hooks=[tf.train.StopAtStepHook(last_step=10), final],
                                           chief_only_hooks=[saver_hook], save_checkpoint_secs=None) as sess:
        while not sess.should_stop():
            sess.run(train, feed)
    trained = final.final_ops_values
    assert listener.events == ["begin", ("before", 0), ("after", 0), ("before", 4), ("after", 4), ("before", 8),
                               ("after", 8), ("before", 10), ("after", 10), ("end", 10)]
    assert tf.train.latest_checkpoint(ckpt) == os.path.join(ckpt, "model.ckpt-10")
    assert os.path.exists(os.path.join(ckpt, "graph.pbtxt"))
    tf.reset_default_graph()
    w, loss, train, step, feed = _regression()
    with tf.train.MonitoredTrainingSession(checkpoint_dir=ckpt, hooks=[tf.train.StopAtStepHook(last_step=12)]) as sess:
        assert sess.run(step) == 10
        np.testing.assert_array_equal(sess.run(w), trained)
        while not sess.should_stop():
            sess.run(train, feed)
    assert tf.train.latest_checkpoint(ckpt) == os.path.join(ckpt, "model.ckpt-12")


def test_a_listener_can_stop_training(tmp_path):
    w, loss, train, step, feed = _regression()
    hook = tf.train.CheckpointSaverHook(str(tmp_path), save_steps=3, listeners=[Listener(stop_after=3)])
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        while not sess.should_stop():
            sess.run(train, feed)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-3")


def test_checkpoint_saver_hook_arguments(tmp_path):
    with pytest.raises(ValueError, match="Either every_secs or every_steps"):
        tf.train.CheckpointSaverHook(str(tmp_path))
    with pytest.raises(ValueError, match="You cannot provide both saver and scaffold"):
        tf.train.CheckpointSaverHook(str(tmp_path), save_steps=1, saver=object(), scaffold=tf.train.Scaffold())


def test_logging_tensor_hook(caplog):
    caplog.set_level(logging.INFO, "tensorgrid.train")
    counter = tf.Variable(0, name="counter")
    bump = tf.assign_add(counter, 1)
    hook = tf.train.LoggingTensorHook({"c": counter}, every_n_iter=2, at_end=True)
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(5):
            sess.run(bump)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("c = ")]
    assert [line.split(" (")[0] for line in lines] == ["c = 0", "c = 2", "c = 4", "c = 5"]
    with pytest.raises(ValueError, match="exactly one of every_n_iter and every_n_secs"):
        tf.train.LoggingTensorHook([counter])


def test_nan_tensor_hook():
    bad = tf.placeholder(tf.float32, [], name="bad")
    with tf.train.MonitoredSession(hooks=[tf.train.NanTensorHook(bad)]) as sess:
        sess.run(bad, {bad: 1.0})
        with pytest.raises(tf.train.NanLossDuringTrainingError, match="NaN loss during training"):
            sess.run(bad, {bad: float("nan")})
    with tf.train.MonitoredSession(hooks=[tf.train.NanTensorHook(bad, fail_on_nan_loss=False)]) as sess:
        sess.run(bad, {bad: float("nan")})
        assert sess.should_stop()


def _events(logdir):
    out = []
    for name in sorted(os.listdir(logdir)):
        if name.startswith("events.out.tfevents"):
            out.extend(tf.train.summary_iterator(os.path.join(logdir, name)))
    return out


def test_step_counter_and_summary_saver_write_events(tmp_path):
    w, loss, train, step, feed = _regression()
    tf.summary.scalar("train_loss", loss)
    hooks = [tf.train.StepCounterHook(every_n_steps=2, output_dir=str(tmp_path)),
             tf.train.SummarySaverHook(save_steps=3, output_dir=str(tmp_path), summary_op=tf.summary.merge_all()),
             tf.train.StopAtStepHook(last_step=7)]
    with tf.train.MonitoredSession(hooks=hooks) as sess:
        while not sess.should_stop():
            sess.run(train, feed)
    tf.summary.FileWriterCache.get(str(tmp_path)).flush()
    values = [(e.step, v.tag) for e in _events(str(tmp_path)) for v in e.summary.value]
    assert [s for s, tag in values if tag == "train_loss"] == [1, 4, 7]
    assert [s for s, tag in values if tag == "global_step/sec"] == [3, 5, 7]


def test_final_ops_hook():
    v = tf.Variable(3.0, name="v")
    hook = tf.train.FinalOpsHook(v * 2)
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        sess.run(v)
    assert hook.final_ops_values == 6.0


def test_global_step_waiter_hook_holds_the_first_run():
    server = tf.train.Server.create_local_server()
    try:
        step = tf.train.get_or_create_global_step()
        bump = tf.assign_add(step, 1)
        chief = tf.train.MonitoredSession(tf.train.ChiefSessionCreator(master=server.target))
        waited = tf.train.MonitoredSession(tf.train.WorkerSessionCreator(master=server.target),
                                           hooks=[tf.train.GlobalStepWaiterHook(3)])
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("step", waited.run(step)))
        thread.start()
        for _ in range(3):
            assert "step" not in result
            chief.run(bump)
        thread.join(10)
        assert result["step"] >= 3
        chief.close()
        waited.close()
    finally:
        server.stop()


def test_scaffold_defaults_come_from_collections():
    v = tf.Variable(1.0, name="v")
    mine = tf.no_op(name="my_init")
    tf.add_to_collection(tf.GraphKeys.INIT_OP, mine)
    scaffold = tf.train.Scaffold().finalize()
    assert scaffold.init_op is mine and scaffold.saver is tf.get_collection(tf.GraphKeys.SAVERS)[0]
    assert scaffold.ready_op is not None and tf.get_default_graph().finalized
    tf.get_default_graph()._unsafe_unfinalize()
    tf.add_to_collection(tf.GraphKeys.INIT_OP, tf.no_op())
    with pytest.raises(RuntimeError, match="More than one item in the collection init_op"):
        tf.train.Scaffold().finalize()
    del v


def test_init_fn_and_not_ready_errors():
    v = tf.Variable(1.0, name="v")
    called = []
    scaffold = tf.train.Scaffold(init_op=tf.no_op(), init_fn=lambda scaffold, sess: called.append(sess))
    with pytest.raises(RuntimeError, match="Init operations did not make model ready.*Variables not initialized: v"):
        tf.train.MonitoredSession(tf.train.ChiefSessionCreator(scaffold=scaffold))
    assert len(called) == 1
    del v


def test_a_non_chief_waits_for_the_chief_and_says_so(caplog):
    caplog.set_level(logging.WARNING, "tensorgrid.train")
    server = tf.train.Server.create_local_server()
    try:
        w, loss, train, step, feed = _regression()
        result = {}

        def worker():
            with tf.train.MonitoredTrainingSession(master=server.target, is_chief=False) as sess:
                result["w"] = sess.run(w)
        thread = threading.Thread(target=worker)
        thread.start()
        deadline = time.monotonic() + 30
        while not any("waiting for the model to be ready" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        line = next(r.getMessage() for r in caplog.records if "waiting for the model" in r.getMessage())
        assert "Variables not initialized: w, global_step" in line, line
        with tf.train.MonitoredTrainingSession(master=server.target, is_chief=True) as chief:
            chief.run(train, feed)
            thread.join(30)
        assert not thread.is_alive()
        assert result["w"].shape == (3, 1)
    finally:
        server.stop()


class FlakyCreator(tf.train.SessionCreator):
    """Makes in-process sessions whose runs fail with `error` while `failures` says so."""

    def __init__(self, error, failures):
        self.error, self.failures, self.created = error, failures, 0

    def create_session(self):
        self.created += 1
        creator = self
        inner = tf.train.ChiefSessionCreator().create_session()

        class Flaky:
            graph = inner.graph

            def run(self, *args, **kwargs):
                if creator.failures:
                    creator.failures -= 1
                    raise creator.error
                return inner.run(*args, **kwargs)

            def close(self):
                inner.close()
        return Flaky()


@pytest.mark.parametrize("error", [errors.UnavailableError(None, None, "worker /job:ps/task:0 is unavailable"),
                                   errors.AbortedError(None, None, "/job:ps/task:0 restarted")])
def test_a_preempted_run_recreates_the_session_and_runs_again(error, caplog):
    caplog.set_level(logging.WARNING, "tensorgrid.train")
    tripled = tf.Variable(2.0, name="v") * 3
    creator = FlakyCreator(error, failures=2)
    hook = Recorder()
    with tf.train.MonitoredSession(creator, hooks=[hook]) as sess:
        assert sess.run(tripled) == 6.0
    assert creator.created == 3
    assert hook.calls.count("after_create_session") == 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("a run failed with " + type(error).__name__ in line and "creating the session again" in line
               for line in lines) == 2, lines


def test_other_errors_and_singular_sessions_do_not_recover():
    v = tf.Variable(2.0, name="v")
    creator = FlakyCreator(errors.InvalidArgumentError(None, None, "bad"), failures=1)
    with pytest.raises(errors.InvalidArgumentError):
        with tf.train.MonitoredSession(creator) as sess:
            sess.run(v)
    assert creator.created == 1
    del v


def test_out_of_range_ends_the_with_block_cleanly():
    v = tf.Variable(2.0, name="v")
    hook = Recorder()
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        sess.run(v)
        raise errors.OutOfRangeError(None, None, "input exhausted")
    assert hook.calls[-1] == "end"


def test_run_step_fn():
    v = tf.Variable(1.0, name="v")
    hook = Recorder()
    with tf.train.MonitoredSession(hooks=[hook]) as sess:
        assert sess.run_step_fn(lambda ctx: ctx.session.run(v)) == 1.0
        assert hook.calls.count("before_run") == 0
        assert sess.run_step_fn(lambda ctx: ctx.run_with_hooks(v)) == 1.0
        assert hook.calls.count("before_run") == 1


def _mts_program(tf_mod, logdir):
    """The same MonitoredTrainingSession program for TensorFlow and tensorgrid; what its hooks saw."""
    x = tf_mod.placeholder(tf_mod.float32, [None, 3], name="x")
    w = tf_mod.Variable(tf_mod.constant([[0.1], [0.2], [0.3]]), name="w")
    loss = tf_mod.reduce_mean(tf_mod.square(tf_mod.matmul(x, w) - 1.0), name="loss")
    step = tf_mod.train.get_or_create_global_step()
    train = tf_mod.train.GradientDescentOptimizer(0.05).minimize(loss, global_step=step)
    tf_mod.summary.scalar("train_loss", loss)

    class Saves(tf_mod.train.CheckpointSaverListener):
        def __init__(self):
            self.steps = []

        def after_save(self, session, global_step_value):
            self.steps.append(int(global_step_value))

    class Calls(tf_mod.train.SessionRunHook):
        def __init__(self):
            self.seen = []

        def before_run(self, run_context):
            return tf_mod.train.SessionRunArgs({"step": step})

        def after_run(self, run_context, run_values):
            self.seen.append(int(run_values.results["step"]))

    saves, calls = Saves(), Calls()
    final = tf_mod.train.FinalOpsHook([w, step])
    feed = {x: np.arange(12, dtype=np.float32).reshape(4, 3) / 10}
    saver_hook = tf_mod.train.CheckpointSaverHook(logdir, save_steps=3, listeners=[saves])
    with tf_mod.train.MonitoredTrainingSession(checkpoint_dir=logdir, save_checkpoint_secs=None,
                                               save_summaries_steps=4, log_step_count_steps=5,
                                               chief_only_hooks=[saver_hook],
                                               hooks=[tf_mod.train.StopAtStepHook(last_step=11), calls, final]) as sess:
        while not sess.should_stop():
            sess.run(train, feed)
    tf_mod.summary.FileWriterCache.get(logdir).flush()
    events = []
    for name in sorted(os.listdir(logdir)):
        if name.startswith("events.out.tfevents"):
            events.extend(tf_mod.train.summary_iterator(os.path.join(logdir, name)))
    tags = sorted((e.step, v.tag) for e in events for v in e.summary.value)
    return {"saves": saves.steps, "seen": calls.seen, "w": final.final_ops_values[0], "step": final.final_ops_values[1],
            "summaries": tags, "checkpoint": os.path.basename(tf_mod.train.latest_checkpoint(logdir))}


def test_monitored_training_session_matches_tensorflow(tmp_path):
    tfm = pytest.importorskip("tensorflow")
    with tfm.Graph().as_default():
        want = _mts_program(tfm.compat.v1, str(tmp_path / "tf"))
    got = _mts_program(tf, str(tmp_path / "tg"))
    np.testing.assert_allclose(got.pop("w"), want.pop("w"), rtol=1e-5)
    # A hook's read of the global step races the step's own increment in TF (no dependency orders them), so
    # the steps it sees, and the summary steps derived from them, are compared only where TF's are certain.
    seen, tf_seen = got.pop("seen"), want.pop("seen")
    assert seen == list(range(11)) and len(tf_seen) == 11
    assert all(t in (s, s + 1) for s, t in zip(seen, tf_seen)), tf_seen
    got_tags, want_tags = got.pop("summaries"), want.pop("summaries")
    assert [t for t in got_tags if t[1] != "train_loss"] == [t for t in want_tags if t[1] != "train_loss"]
    loss_steps = [s for s, tag in got_tags if tag == "train_loss"]
    tf_loss_steps = [s for s, tag in want_tags if tag == "train_loss"]
    assert loss_steps == [1, 5, 9] and tf_loss_steps[0] == 1     # TF's later ones drift with its racy reads
    assert got == want
