"""tg.train.SessionManager: sessions whose model is ready, by initializing, restoring, or waiting for it.

The chief calls `prepare_session`: it restores the latest checkpoint of
`checkpoint_dir` when there is one and runs the init op otherwise, then the
local init op. Other workers call `wait_for_session`: the model lives on the
ps tasks, so they wait until the chief made it ready (`ready_op`, by default
the names of uninitialized variables, comes back empty), then run their
local init op. While waiting they say so in the log: at once, then every
LOG_EVERY_S, naming what is not ready yet and for how long so far.
"""

import logging
import time

import numpy as np

from tensorgrid.client import session as session_lib
from tensorgrid.client.graph import get_default_graph
from tensorgrid.client.train import saver as saver_lib
from tensorgrid.framework import errors

__all__ = ["SessionManager"]

log = logging.getLogger("tensorgrid.train")

LOG_EVERY_S = 10.0


def _names(value):
    return [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(value).reshape(-1)]


class SessionManager:
    """Creates sessions and makes their model ready (TF's tf.train.SessionManager)."""

    def __init__(self, local_init_op=None, ready_op=None, ready_for_local_init_op=None, graph=None,
                 recovery_wait_secs=30, local_init_run_options=None, local_init_feed_dict=None):
        self._local_init_op = local_init_op
        self._ready_op = ready_op
        self._ready_for_local_init_op = ready_for_local_init_op
        self._graph = graph or get_default_graph()
        self._recovery_wait_secs = recovery_wait_secs
        self._local_init_run_options = local_init_run_options
        self._local_init_feed_dict = local_init_feed_dict
        if ready_for_local_init_op is not None and local_init_op is None:
            raise ValueError(f"If you pass a ready_for_local_init_op you must also pass a local_init_op, "
                             f"ready_for_local_init_op [{ready_for_local_init_op}]")

    def _session(self, master, config):
        return session_lib.Session(master, graph=self._graph, config=config)

    def _restore_checkpoint(self, master, saver, checkpoint_dir, checkpoint_filename_with_path,
                            wait_for_checkpoint, max_wait_secs, config):
        """(session, whether it restored a checkpoint)."""
        if checkpoint_dir and checkpoint_filename_with_path:
            raise ValueError("Can not provide both checkpoint_dir and checkpoint_filename_with_path.")
        sess = self._session(master, config)
        try:
            if saver is None or not (checkpoint_dir or checkpoint_filename_with_path):
                return sess, False
            if checkpoint_filename_with_path:
                saver.restore(sess, checkpoint_filename_with_path)
                return sess, True
            state = saver_lib.get_checkpoint_state(checkpoint_dir)
            waited = 0.0
            while (state is None or not saver_lib.checkpoint_exists(state.model_checkpoint_path)) \
                    and wait_for_checkpoint and waited < max_wait_secs:
                log.info("waiting for a checkpoint to appear in %s (%.0f s so far)", checkpoint_dir, waited)
                time.sleep(self._recovery_wait_secs)
                waited += self._recovery_wait_secs
                state = saver_lib.get_checkpoint_state(checkpoint_dir)
            if state is None or not saver_lib.checkpoint_exists(state.model_checkpoint_path):
                return sess, False
            saver.restore(sess, state.model_checkpoint_path)
            saver.recover_last_checkpoints(state.all_model_checkpoint_paths)
            return sess, True
        except BaseException:
            sess.close()
            raise

    def prepare_session(self, master, init_op=None, saver=None, checkpoint_dir=None,
                        checkpoint_filename_with_path=None, wait_for_checkpoint=False, max_wait_secs=7200,
                        config=None, init_feed_dict=None, init_fn=None):
        """A session whose model is restored from the latest checkpoint, or initialized; then local-initialized.

        RuntimeError when the init op, init_fn and local init op still leave the model not ready.
        """
        sess, restored = self._restore_checkpoint(master, saver, checkpoint_dir, checkpoint_filename_with_path,
                                                  wait_for_checkpoint, max_wait_secs, config)
        try:
            if restored:
                log.warning("restored the model from %s", saver.last_checkpoints[-1] if saver.last_checkpoints
                            else checkpoint_filename_with_path)
            else:
                if init_op is None and not init_fn and self._local_init_op is None:
                    raise RuntimeError("Model is not initialized and no init_op or init_fn or local_init_op was "
                                       "given")
                if init_op is not None:
                    sess.run(init_op, feed_dict=init_feed_dict)
                if init_fn:
                    init_fn(sess)
            local_ok, local_msg = self._try_run_local_init_op(sess)
            if not local_ok:
                raise RuntimeError(f"Init operations did not make model ready for local_init. Init op: "
                                   f"{_op_name(init_op)}, init fn: {init_fn}, error: {local_msg}")
            ready, msg = self._model_ready(sess)
            if not ready:
                raise RuntimeError(f"Init operations did not make model ready. Init op: {_op_name(init_op)}, "
                                   f"init fn: {init_fn}, local_init_op: {_op_name(self._local_init_op)}, "
                                   f"error: {msg}")
        except BaseException:
            sess.close()
            raise
        return sess

    def recover_session(self, master, saver=None, checkpoint_dir=None, checkpoint_filename_with_path=None,
                        wait_for_checkpoint=False, max_wait_secs=7200, config=None):
        """(session, whether its model is ready): restored from a checkpoint when there is one."""
        sess, restored = self._restore_checkpoint(master, saver, checkpoint_dir, checkpoint_filename_with_path,
                                                  wait_for_checkpoint, max_wait_secs, config)
        local_ok, _ = self._try_run_local_init_op(sess)
        if not restored:
            return sess, False
        if not local_ok:
            return sess, False
        ready, msg = self._model_ready(sess)
        if not ready:
            log.info("restoring the model from %s did not make it ready: %s", checkpoint_dir, msg)
            return sess, False
        return sess, True

    def session_if_ready(self, master, config=None):
        """A session on `master` whose model is still ready (local init run), or None.

        For a chief re-creating its session after a task died: when the model's
        variables survived on their tasks (a worker died, or a ps was replaced
        by its replica), going on from them loses nothing, where restoring the
        checkpoint would throw away every step since it was written.
        """
        sess = self._session(master, config)
        try:
            local_ok, _ = self._try_run_local_init_op(sess)
            ready, _ = self._model_ready(sess) if local_ok else (False, None)
        except BaseException:
            sess.close()
            raise
        if ready:
            return sess
        sess.close()
        return None

    def wait_for_session(self, master, config=None, max_wait_secs=float("inf"), poll_secs=None):
        """A session on `master` once its model is ready (made so by the chief), local init run.

        Checks every `poll_secs` (default recovery_wait_secs); DeadlineExceededError after max_wait_secs.
        """
        poll = self._recovery_wait_secs if poll_secs is None else poll_secs
        start = time.monotonic()
        next_log = start + min(poll, 2.0)
        sess = self._session(master, config)
        try:
            while True:
                local_ok, local_msg = self._try_run_local_init_op(sess)
                ready, msg = self._model_ready(sess) if local_ok else (False, local_msg)
                if ready:
                    if time.monotonic() - start > 2.0:
                        log.warning("the model is ready after %.0f s of waiting", time.monotonic() - start)
                    return sess
                now = time.monotonic()
                if now - start >= max_wait_secs:
                    raise errors.DeadlineExceededError(
                        None, None, f"Session was not ready after waiting {max_wait_secs:g} secs: {msg}")
                if now >= next_log:
                    log.warning("waiting for the model to be ready (the chief initializes or restores it): %s "
                                "(%.0f s so far)", msg, now - start)
                    next_log = now + LOG_EVERY_S
                time.sleep(min(poll, max(0.0, max_wait_secs - (now - start))))
        except BaseException:
            sess.close()
            raise

    def _ready(self, op, sess):
        """(ready, message) from a report op: ready when it names nothing."""
        if op is None:
            return True, None
        try:
            names = _names(sess.run(op))
        except errors.FailedPreconditionError as e:
            return False, e.message
        if not names:
            return True, None
        return False, "Variables not initialized: " + ", ".join(names)

    def _model_ready(self, sess):
        return self._ready(self._ready_op, sess)

    def _try_run_local_init_op(self, sess):
        if self._local_init_op is None:
            return True, None
        ready, msg = self._ready(self._ready_for_local_init_op, sess)
        if not ready:
            return False, msg
        sess.run(self._local_init_op, feed_dict=self._local_init_feed_dict, options=self._local_init_run_options)
        return True, None


def _op_name(op):
    return getattr(op, "name", None) if op is not None else None
