"""MonitoredSession and MonitoredTrainingSession: sessions that initialize, restore, run hooks, and recover.

    with tf.train.MonitoredTrainingSession(master=server.target, is_chief=task == 0,
                                           checkpoint_dir=ckpt, hooks=[tf.train.StopAtStepHook(1000)]) as sess:
        while not sess.should_stop():
            sess.run(train_op)

The layers, outside in, as in TensorFlow:
- `_RecoverableSession`: a run (or a session creation) that fails with
  UnavailableError or AbortedError (a task died or restarted) closes the
  session, creates a new one through the same creator, and runs again. The
  chief's creator restores the latest checkpoint, the others wait until the
  chief made the model ready, so training goes on from the last checkpoint.
  Each recovery says so in the log (WARNING), with the error and how long
  the new session took.
- `_CoordinatedSession`: starts the graph's queue runners under a
  Coordinator (the `coord` hooks get) and stops them on close.
- `_HookedSession`: calls every hook around every run; a hook's fetches
  and feeds join the caller's run.

Session creators: `ChiefSessionCreator` (SessionManager.prepare_session:
restore or initialize) and `WorkerSessionCreator` (wait_for_session, polling
every WORKER_POLL_S, not TF's 30 s). `Scaffold` holds the ops they use,
defaulting each to its graph collection or a new op, and finalizes the graph.
"""

import logging
import sys
import time

from tensorgrid.client import array_ops
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import get_default_graph
from tensorgrid.client.input import coordinator, queue_runner
from tensorgrid.client.train import basic_session_run_hooks as hooks_lib
from tensorgrid.client.train import saver as saver_lib
from tensorgrid.client.train.session_manager import SessionManager
from tensorgrid.client.train.session_run_hook import SessionRunArgs, SessionRunContext, SessionRunValues
from tensorgrid.framework import errors
from tensorgrid.proto import config_pb2

__all__ = ["Scaffold", "SessionCreator", "ChiefSessionCreator", "WorkerSessionCreator", "MonitoredSession",
           "SingularMonitoredSession", "MonitoredTrainingSession"]

log = logging.getLogger("tensorgrid.train")

GraphKeys = variables_lib.GraphKeys
# A task that died or restarted: the session is created again.
PREEMPTION_ERRORS = (errors.AbortedError, errors.UnavailableError)
# How often a non-chief checks whether the chief made the model ready.
WORKER_POLL_S = 0.5
# Pause between tries to create a session while a task is down.
RECREATE_PAUSE_S = 0.5
USE_DEFAULT = object()


def default_saver():
    """The graph's Saver (collection SAVERS), or a new one added to it."""
    savers = get_default_graph().get_collection(GraphKeys.SAVERS)
    if savers:
        if len(savers) > 1:
            raise RuntimeError(f"More than one item in collection {GraphKeys.SAVERS}. Please indicate which one "
                               "to use by passing it to the constructor.")
        return savers[0]
    saver = saver_lib.Saver(allow_empty=True)
    get_default_graph().add_to_collection(GraphKeys.SAVERS, saver)
    return saver


class Scaffold:
    """The ops a MonitoredSession initializes, checks readiness and saves with; each defaults when None."""

    def __init__(self, init_op=None, init_feed_dict=None, init_fn=None, ready_op=None, ready_for_local_init_op=None,
                 local_init_op=None, summary_op=None, saver=None, copy_from_scaffold=None, local_init_feed_dict=None):
        if copy_from_scaffold is not None:
            if not isinstance(copy_from_scaffold, Scaffold):
                raise TypeError("copy_from_scaffold is not a Scaffold instance.")
            pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
            init_op = pick(init_op, copy_from_scaffold.init_op)
            init_feed_dict = pick(init_feed_dict, copy_from_scaffold._init_feed_dict)
            init_fn = pick(init_fn, copy_from_scaffold._user_init_fn)
            ready_op = pick(ready_op, copy_from_scaffold.ready_op)
            ready_for_local_init_op = pick(ready_for_local_init_op, copy_from_scaffold.ready_for_local_init_op)
            local_init_op = pick(local_init_op, copy_from_scaffold.local_init_op)
            local_init_feed_dict = pick(local_init_feed_dict, copy_from_scaffold._local_init_feed_dict)
            summary_op = pick(summary_op, copy_from_scaffold.summary_op)
            saver = pick(saver, copy_from_scaffold.saver)
        self._user_init_fn = init_fn
        self._init_fn = (lambda sess: init_fn(self, sess)) if init_fn else None
        self._init_op = init_op
        self._init_feed_dict = init_feed_dict
        self._ready_op = ready_op
        self._ready_for_local_init_op = ready_for_local_init_op
        self._local_init_op = local_init_op
        self._local_init_feed_dict = local_init_feed_dict
        self._summary_op = summary_op
        self._saver = saver

    def finalize(self):
        """Makes every op not given (from its collection, else a new one), then finalizes the graph.

        A second Scaffold of a finalized graph finds the first one's ops in their collections."""
        graph = get_default_graph()
        if self._init_op is None:
            self._init_op = _get_or_default("init_op", GraphKeys.INIT_OP,
                                            variables_lib.global_variables_initializer)
        if self._ready_op is None:
            self._ready_op = _get_or_default("ready_op", GraphKeys.READY_OP,
                                             variables_lib.report_uninitialized_variables)
        if self._ready_for_local_init_op is None:
            self._ready_for_local_init_op = _get_or_default(
                "ready_for_local_init_op", GraphKeys.READY_FOR_LOCAL_INIT_OP,
                lambda: variables_lib.report_uninitialized_variables(variables_lib.global_variables()))
        if self._local_init_op is None:
            self._local_init_op = _get_or_default("local_init_op", GraphKeys.LOCAL_INIT_OP,
                                                  Scaffold.default_local_init_op)
        if self._summary_op is None:
            from tensorgrid.client.summary import summary_v1
            self._summary_op = _get_or_default("summary_op", GraphKeys.SUMMARY_OP, summary_v1.merge_all)
        if self._saver is None:
            self._saver = default_saver()
        graph.finalize()
        return self

    @staticmethod
    def default_local_init_op():
        """The op that initializes the local variables."""
        return array_ops.group(variables_lib.local_variables_initializer())

    init_fn = property(lambda self: self._init_fn)
    init_op = property(lambda self: self._init_op)
    ready_op = property(lambda self: self._ready_op)
    ready_for_local_init_op = property(lambda self: self._ready_for_local_init_op)
    local_init_op = property(lambda self: self._local_init_op)
    summary_op = property(lambda self: self._summary_op)
    saver = property(lambda self: self._saver)
    init_feed_dict = property(lambda self: self._init_feed_dict)
    local_init_feed_dict = property(lambda self: self._local_init_feed_dict)


def _get_or_default(arg_name, collection_key, make):
    found = get_default_graph().get_collection(collection_key)
    if found:
        if len(found) > 1:
            raise RuntimeError(f"More than one item in the collection {collection_key}. Please indicate which one "
                               f"to use by passing it to the tf.Scaffold constructor as:  tf.Scaffold({arg_name}="
                               "item to use)")
        return found[0]
    op = make()
    if op is not None:
        get_default_graph().add_to_collection(collection_key, op)
    return op


class SessionCreator:
    """Makes a tg.Session whose model is ready."""

    def create_session(self):
        raise NotImplementedError(f"create_session is not implemented for {self}.")


def _session_manager(scaffold):
    """The SessionManager for a finalized `scaffold`'s ops."""
    return SessionManager(local_init_op=scaffold.local_init_op, local_init_feed_dict=scaffold.local_init_feed_dict,
                          ready_op=scaffold.ready_op, ready_for_local_init_op=scaffold.ready_for_local_init_op,
                          graph=get_default_graph())


class ChiefSessionCreator(SessionCreator):
    """Restores the latest checkpoint of `checkpoint_dir` when there is one, else initializes.

    Asked again (a MonitoredSession recovering from a dead task), it first
    checks whether the model is still ready and, if so, goes on from the
    variables as they are: TF restores the checkpoint here even when no
    variable was lost, dropping every step since the checkpoint.
    """

    def __init__(self, scaffold=None, master="", config=None, checkpoint_dir=None,
                 checkpoint_filename_with_path=None):
        self._checkpoint_dir = checkpoint_dir
        self._checkpoint_filename_with_path = checkpoint_filename_with_path
        self._scaffold = scaffold or Scaffold()
        self._master = master
        self._config = config
        self._created = False

    def create_session(self):
        s = self._scaffold.finalize()
        manager = _session_manager(s)
        if self._created:
            sess = manager.session_if_ready(self._master, config=self._config)
            if sess is not None:
                log.warning("the model is still ready on its tasks: going on from its variables, "
                            "without restoring the checkpoint")
                return sess
        sess = manager.prepare_session(self._master, saver=s.saver, checkpoint_dir=self._checkpoint_dir,
                                       checkpoint_filename_with_path=self._checkpoint_filename_with_path,
                                       config=self._config, init_op=s.init_op, init_feed_dict=s.init_feed_dict,
                                       init_fn=s.init_fn)
        self._created = True
        return sess


class WorkerSessionCreator(SessionCreator):
    """Waits (up to max_wait_secs) until the chief made the model ready."""

    def __init__(self, scaffold=None, master="", config=None, max_wait_secs=30 * 60):
        self._scaffold = scaffold or Scaffold()
        self._master = master
        self._config = config
        self._max_wait_secs = max_wait_secs

    def create_session(self):
        return _session_manager(self._scaffold.finalize()).wait_for_session(
            self._master, config=self._config, max_wait_secs=self._max_wait_secs, poll_secs=WORKER_POLL_S)


# ---- the wrapped sessions ----------------------------------------------------------------------

class _WrappedSession:
    """A session around another; should_stop() asks this layer's _check_stop, then the wrapped one."""

    def __init__(self, sess):
        self._sess = sess
        self._wraps_session = isinstance(sess, _WrappedSession)

    @property
    def graph(self):
        return self._sess.graph

    @property
    def sess_str(self):
        return self._sess.sess_str

    def _check_stop(self):
        return False

    def should_stop(self):
        if self._check_stop():
            return True
        if self._sess is not None:
            return self._wraps_session and self._sess.should_stop()
        return True

    def close(self):
        if self._sess is not None:
            try:
                self._sess.close()
            finally:
                self._sess = None

    def run(self, *args, **kwargs):
        return self._sess.run(*args, **kwargs)


class _HookedSession(_WrappedSession):
    """Calls the hooks around every run; their fetches and feeds join the caller's."""

    def __init__(self, sess, hooks):
        super().__init__(sess)
        self._hooks = hooks
        self._should_stop = False

    def _check_stop(self):
        return self._should_stop

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        if self.should_stop():
            raise RuntimeError("Run called even after should_stop requested.")
        run_context = SessionRunContext(original_args=SessionRunArgs(fetches, feed_dict), session=self._sess)
        options = _copy_options(options)
        feeds = dict(feed_dict or {})
        user_feeds = set(feeds)
        hook_feeds = set()
        hook_fetches = {}
        for index, hook in enumerate(self._hooks):
            request = hook.before_run(run_context)
            if request is None:
                continue
            if request.fetches is not None:
                hook_fetches[index] = request.fetches
            if request.feed_dict:
                for key in request.feed_dict:
                    if key in hook_feeds:
                        raise RuntimeError("Same tensor is fed by two hooks.")
                    if key in user_feeds:
                        raise RuntimeError("Same tensor is fed by a SessionRunHook and user.")
                hook_feeds.update(request.feed_dict)
                feeds.update(request.feed_dict)
            if request.options is not None:
                options.trace_level = max(options.trace_level, request.options.trace_level)
                options.timeout_in_ms = max(options.timeout_in_ms, request.options.timeout_in_ms)
        run_metadata = run_metadata if run_metadata is not None else config_pb2.RunMetadata()
        outputs = self._sess.run([fetches, hook_fetches], feed_dict=feeds or None, options=options,
                                 run_metadata=run_metadata)
        for index, hook in enumerate(self._hooks):
            hook.after_run(run_context, SessionRunValues(results=outputs[1].get(index), options=options,
                                                          run_metadata=run_metadata))
        self._should_stop = self._should_stop or run_context.stop_requested
        return outputs[0]


def _copy_options(options):
    copy = config_pb2.RunOptions()
    if options is not None:
        copy.CopyFrom(options)
    return copy


class _CoordinatedSession(_WrappedSession):
    """Asks the coordinator whether to stop, and stops its threads on close."""

    def __init__(self, sess, coord, stop_grace_period_secs=120):
        super().__init__(sess)
        self._coord = coord
        self._stop_grace_period_secs = stop_grace_period_secs

    def _check_stop(self):
        return self._coord.should_stop()

    def close(self):
        self._coord.request_stop()
        # The session closes before the threads are joined (TF joins first): closing cancels the steps they
        # are blocked in (a queue runner's enqueue, a SyncReplicas chief's take of gradients that will never
        # come), so they end now instead of at the end of the grace period.
        try:
            super().close()
        except Exception:  # noqa: BLE001 - closing after a failure must not hide it
            pass
        finally:
            self._coord.join(stop_grace_period_secs=self._stop_grace_period_secs, ignore_live_threads=True)

    def run(self, *args, **kwargs):
        try:
            return self._sess.run(*args, **kwargs)
        except PREEMPTION_ERRORS:
            raise
        except Exception:
            # A thread's error (a queue runner's) explains the run's failure better than the run's own.
            original = sys.exc_info()
            try:
                self._coord.raise_requested_exception()
            except PREEMPTION_ERRORS:
                pass
            raise original[1].with_traceback(original[2])


class _CoordinatedSessionCreator(SessionCreator):
    """Creates the hooked, coordinated session, and calls the hooks' after_create_session."""

    def __init__(self, session_creator, hooks, stop_grace_period_secs):
        self._session_creator = session_creator
        self._hooks = hooks
        self._stop_grace_period_secs = stop_grace_period_secs
        self.tf_sess = None
        self.coord = None

    def create_session(self):
        self.tf_sess = self._session_creator.create_session()
        self.coord = _start_queue_runners(self.tf_sess)
        for hook in self._hooks:
            hook.after_create_session(self.tf_sess, self.coord)
        return _CoordinatedSession(_HookedSession(self.tf_sess, self._hooks), self.coord,
                                   self._stop_grace_period_secs)


def _start_queue_runners(sess):
    """A new Coordinator, with the threads of the graph's queue runners started under it."""
    coord = coordinator.Coordinator(clean_stop_exception_types=[])
    if sess.graph.get_collection(GraphKeys.QUEUE_RUNNERS):
        queue_runner.start_queue_runners(sess=sess, coord=coord)
    return coord


class _RecoverableSession(_WrappedSession):
    """Creates the session again, and runs again, when a task died or restarted."""

    def __init__(self, sess_creator):
        self._sess_creator = sess_creator
        super().__init__(self._create_session())

    def _create_session(self, after=None):
        start = time.monotonic()
        next_log = start
        while True:
            try:
                sess = self._sess_creator.create_session()
            except PREEMPTION_ERRORS as e:
                now = time.monotonic()
                if now >= next_log:
                    log.warning("creating the session failed, %s so far, trying again every %g s: %s: %s",
                                _seconds(now - start), RECREATE_PAUSE_S, type(e).__name__, _first_line(e))
                    next_log = now + 10.0
                time.sleep(RECREATE_PAUSE_S)
                continue
            if after is not None:
                log.warning("the session is back after %s; training goes on", _seconds(time.monotonic() - start))
            return sess

    def _recover(self, err):
        log.warning("a run failed with %s (%s): a task died or restarted; creating the session again",
                    type(err).__name__, _first_line(err))
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the session being replaced may fail to close; it is gone anyway
            self._sess = None
        self._sess = None

    def _check_stop(self):
        try:
            if self._sess is not None:
                return self._sess._check_stop()
            return True
        except PREEMPTION_ERRORS as e:
            self._recover(e)
            self._sess = self._create_session(after=e)
            return False

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        while True:
            try:
                if self._sess is None:
                    self._sess = self._create_session(after=True)
                return self._sess.run(fetches, feed_dict=feed_dict, options=options, run_metadata=run_metadata)
            except PREEMPTION_ERRORS as e:
                self._recover(e)


def _first_line(err):
    message = getattr(err, "message", None) or str(err)
    return message.splitlines()[0] if message else ""


def _seconds(s):
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


# ---- the monitored sessions ----------------------------------------------------------------------------

class _MonitoredSession:
    """The part MonitoredSession and SingularMonitoredSession share."""

    def __init__(self, session_creator, hooks, should_recover, stop_grace_period_secs=120):
        self._graph_was_finalized = get_default_graph().finalized
        self._hooks = list(hooks or [])
        for hook in self._hooks:
            hook.begin()
        self._coordinated_creator = _CoordinatedSessionCreator(session_creator or ChiefSessionCreator(),
                                                               self._hooks, stop_grace_period_secs)
        if should_recover:
            self._sess = _RecoverableSession(self._coordinated_creator)
        else:
            self._sess = self._coordinated_creator.create_session()

    @property
    def graph(self):
        """The graph the session runs."""
        return get_default_graph() if self._sess is None else self._sess.graph

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Runs `fetches` (with the hooks'), as Session.run."""
        return self._sess.run(fetches, feed_dict=feed_dict, options=options, run_metadata=run_metadata)

    def run_step_fn(self, step_fn):
        """Calls step_fn(step_context), where step_context.session.run runs without the hooks and
        step_context.run_with_hooks with them; returns step_fn's value."""
        return step_fn(_StepContext(self._coordinated_creator.tf_sess, self.run))

    def should_stop(self):
        """Whether a hook, the coordinator or a closed session asks the loop to stop."""
        return self._sess is None or self._sess.should_stop()

    def close(self):
        self._close_internal()

    def __enter__(self):
        return self

    def __exit__(self, exception_type, exception_value, traceback):
        if exception_type in (errors.OutOfRangeError, StopIteration):
            exception_type = None
        self._close_internal(exception_type)
        return exception_type is None

    def _close_internal(self, exception_type=None):
        try:
            if not exception_type:
                for hook in self._hooks:
                    hook.end(self._coordinated_creator.tf_sess)
        finally:
            try:
                if self._sess is None:
                    raise RuntimeError("Session is already closed.")
                self._sess.close()
            finally:
                self._sess = None
                self._coordinated_creator.tf_sess = None
                self._coordinated_creator.coord = None
                if not self._graph_was_finalized:
                    get_default_graph()._unsafe_unfinalize()


class _StepContext:
    """What run_step_fn's step_fn gets: the raw session, run_with_hooks, and request_stop."""

    def __init__(self, session, run_with_hooks):
        self._session = session
        self._run_with_hooks = run_with_hooks

    @property
    def session(self):
        return self._session

    def run_with_hooks(self, *args, **kwargs):
        return self._run_with_hooks(*args, **kwargs)

    def request_stop(self):
        raise StopIteration("step_fn has requested the iterations to stop.")


class MonitoredSession(_MonitoredSession):
    """A session that creates itself through `session_creator`, runs `hooks`, and recovers from a task's
    death (UnavailableError, AbortedError) by creating itself again."""

    def __init__(self, session_creator=None, hooks=None, stop_grace_period_secs=120):
        super().__init__(session_creator, hooks, should_recover=True, stop_grace_period_secs=stop_grace_period_secs)


class SingularMonitoredSession(_MonitoredSession):
    """A chief's MonitoredSession without recovery, with access to the raw session."""

    def __init__(self, hooks=None, scaffold=None, master="", config=None, checkpoint_dir=None,
                 stop_grace_period_secs=120, checkpoint_filename_with_path=None):
        creator = ChiefSessionCreator(scaffold=scaffold, master=master, config=config, checkpoint_dir=checkpoint_dir,
                                      checkpoint_filename_with_path=checkpoint_filename_with_path)
        super().__init__(creator, hooks, should_recover=False, stop_grace_period_secs=stop_grace_period_secs)

    def raw_session(self):
        """The tg.Session inside."""
        return self._coordinated_creator.tf_sess


def MonitoredTrainingSession(master="", is_chief=True, checkpoint_dir=None, scaffold=None, hooks=None,  # noqa: N802
                             chief_only_hooks=None, save_checkpoint_secs=USE_DEFAULT, save_summaries_steps=USE_DEFAULT,
                             save_summaries_secs=USE_DEFAULT, config=None, stop_grace_period_secs=120,
                             log_step_count_steps=100, max_wait_secs=7200, save_checkpoint_steps=USE_DEFAULT,
                             summary_dir=None, save_graph_def=True):
    """A MonitoredSession for training: the chief initializes or restores, saves checkpoints (every 600 s by
    default) and summaries (every 100 steps), and counts steps; the others wait for the chief's model."""
    if save_summaries_steps is USE_DEFAULT and save_summaries_secs is USE_DEFAULT:
        save_summaries_steps, save_summaries_secs = 100, None
    elif save_summaries_secs is USE_DEFAULT:
        save_summaries_secs = None
    elif save_summaries_steps is USE_DEFAULT:
        save_summaries_steps = None
    if save_checkpoint_steps is USE_DEFAULT and save_checkpoint_secs is USE_DEFAULT:
        save_checkpoint_steps, save_checkpoint_secs = None, 600
    elif save_checkpoint_secs is USE_DEFAULT:
        save_checkpoint_secs = None
    elif save_checkpoint_steps is USE_DEFAULT:
        save_checkpoint_steps = None
    scaffold = scaffold or Scaffold()
    if not is_chief:
        creator = WorkerSessionCreator(scaffold=scaffold, master=master, config=config, max_wait_secs=max_wait_secs)
        return MonitoredSession(session_creator=creator, hooks=hooks or [],
                                stop_grace_period_secs=stop_grace_period_secs)
    all_hooks = list(chief_only_hooks or [])
    creator = ChiefSessionCreator(scaffold=scaffold, checkpoint_dir=checkpoint_dir, master=master, config=config)
    summary_dir = summary_dir or checkpoint_dir
    if summary_dir:
        if log_step_count_steps and log_step_count_steps > 0:
            all_hooks.append(hooks_lib.StepCounterHook(output_dir=summary_dir, every_n_steps=log_step_count_steps))
        if (save_summaries_steps and save_summaries_steps > 0) or (save_summaries_secs and save_summaries_secs > 0):
            all_hooks.append(hooks_lib.SummarySaverHook(scaffold=scaffold, save_steps=save_summaries_steps,
                                                        save_secs=save_summaries_secs, output_dir=summary_dir))
    if checkpoint_dir and ((save_checkpoint_secs and save_checkpoint_secs > 0)
                           or (save_checkpoint_steps and save_checkpoint_steps > 0)):
        all_hooks.append(hooks_lib.CheckpointSaverHook(checkpoint_dir, save_steps=save_checkpoint_steps,
                                                       save_secs=save_checkpoint_secs, scaffold=scaffold,
                                                       save_graph_def=save_graph_def))
    all_hooks.extend(hooks or [])
    return MonitoredSession(session_creator=creator, hooks=all_hooks, stop_grace_period_secs=stop_grace_period_secs)
