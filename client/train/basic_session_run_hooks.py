"""The standard SessionRunHooks: stop at a step, save checkpoints and summaries, log tensors and the step
rate, stop on NaN loss, run final ops, wait for the global step, feed every run.

Each follows TensorFlow's hook of the same name (arguments, defaults,
errors). Log lines go to the "tensorgrid.train" logger: LoggingTensorHook
and StepCounterHook at INFO, as TF's, so they show once the program turns
INFO on (`logging.basicConfig(level=logging.INFO)`).
"""

import logging
import os
import time

import numpy as np

from tensorgrid.client import graph as graph_lib
from tensorgrid.client.summary.writer import FileWriterCache
from tensorgrid.client.train import saver as saver_lib
from tensorgrid.client.train import training_util
from tensorgrid.client.train.session_run_hook import SessionRunArgs, SessionRunHook
from tensorgrid.proto import summary_pb2

__all__ = ["SecondOrStepTimer", "StopAtStepHook", "CheckpointSaverListener", "CheckpointSaverHook",
           "LoggingTensorHook", "NanLossDuringTrainingError", "NanTensorHook", "StepCounterHook",
           "SummarySaverHook", "FinalOpsHook", "GlobalStepWaiterHook", "FeedFnHook"]

log = logging.getLogger("tensorgrid.train")


class SecondOrStepTimer:
    """Says when something should happen: every `every_secs` seconds or every `every_steps` steps."""

    def __init__(self, every_secs=None, every_steps=None):
        if (every_secs is None) == (every_steps is None):
            raise ValueError("Either every_secs or every_steps should be provided.")
        if every_secs is not None and every_secs <= 0 or every_steps is not None and every_steps <= 0:
            raise ValueError("every_secs and every_steps must be positive.")
        self._every_secs = every_secs
        self._every_steps = every_steps
        self.reset()

    def reset(self):
        self._last_time = None
        self._last_step = None

    def should_trigger_for_step(self, step):
        """Whether it is time at global step `step` (always the first time)."""
        if self._last_step is None:
            return True
        if self._last_step == step:
            return False
        if self._every_secs is not None:
            return time.time() >= self._last_time + self._every_secs
        return step >= self._last_step + self._every_steps

    def update_last_triggered_step(self, step):
        """Records a trigger at `step`; returns (seconds, steps) since the previous one, or (None, None)."""
        now = time.time()
        elapsed = (None, None) if self._last_time is None else (now - self._last_time, step - self._last_step)
        self._last_time, self._last_step = now, step
        return elapsed

    def last_triggered_step(self):
        return self._last_step


def _global_step_or_fail(hook):
    step = training_util.get_global_step()
    if step is None:
        raise RuntimeError(f"Global step should be created to use {hook}.")
    return step


def _step_to_act_at(timer, run_context, global_step, stale):
    """The global step, read again, when `timer` triggers at it; None otherwise. `stale` is the value the
    hook fetched, read before this run's increment (or not: the fetch races it)."""
    if timer.should_trigger_for_step(stale + 1):
        step = int(run_context.session.run(global_step))
        if timer.should_trigger_for_step(step):
            return step
    return None


def _as_graph_element(obj):
    return graph_lib.get_default_graph().as_graph_element(obj)


class StopAtStepHook(SessionRunHook):
    """Requests a stop once the global step reaches `last_step` (or `num_steps` past where it began)."""

    def __init__(self, num_steps=None, last_step=None):
        if num_steps is None and last_step is None:
            raise ValueError("One of num_steps or last_step must be specified.")
        if num_steps is not None and last_step is not None:
            raise ValueError("Only one of num_steps or last_step can be specified.")
        self._num_steps = num_steps
        self._last_step = last_step

    def begin(self):
        self._global_step = _global_step_or_fail("StopAtStepHook")

    def after_create_session(self, session, coord):
        if self._last_step is None:
            self._last_step = int(session.run(self._global_step)) + self._num_steps

    def before_run(self, run_context):
        return SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        # The value was read before the run; whether this run incremented it is checked when it matters.
        if run_values.results + 1 >= self._last_step:
            if run_context.session.run(self._global_step) >= self._last_step:
                run_context.request_stop()


class CheckpointSaverListener:
    """Called around each save of a CheckpointSaverHook; after_save returning True stops training."""

    def begin(self):
        pass

    def before_save(self, session, global_step_value):
        pass

    def after_save(self, session, global_step_value):
        pass

    def end(self, session, global_step_value):
        pass


class CheckpointSaverHook(SessionRunHook):
    """Saves a checkpoint every `save_secs` seconds or `save_steps` steps, when a session starts, and at the
    end."""

    def __init__(self, checkpoint_dir, save_secs=None, save_steps=None, saver=None, checkpoint_basename="model.ckpt",
                 scaffold=None, listeners=None, save_graph_def=True):
        if saver is not None and scaffold is not None:
            raise ValueError("You cannot provide both saver and scaffold.")
        self._saver = saver
        self._scaffold = scaffold
        self._checkpoint_dir = checkpoint_dir
        self._save_path = os.path.join(checkpoint_dir, checkpoint_basename)
        self._timer = SecondOrStepTimer(every_secs=save_secs, every_steps=save_steps)
        self._listeners = listeners or []
        self._save_graph_def = save_graph_def

    def begin(self):
        self._summary_writer = FileWriterCache.get(self._checkpoint_dir)
        self._global_step = _global_step_or_fail("CheckpointSaverHook")
        for listener in self._listeners:
            listener.begin()

    def after_create_session(self, session, coord):
        step = int(session.run(self._global_step))
        if self._save_graph_def:
            self._write_graph(session.graph)
        self._save(session, step)
        self._timer.update_last_triggered_step(step)

    def _write_graph(self, graph):
        text = str(graph.as_graph_def()).encode()
        saver_lib.atomic_write(os.path.join(self._checkpoint_dir, "graph.pbtxt"), [text])
        self._summary_writer.add_graph(graph)

    def before_run(self, run_context):
        return SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        step = _step_to_act_at(self._timer, run_context, self._global_step, run_values.results)
        if step is not None:
            self._timer.update_last_triggered_step(step)
            if self._save(run_context.session, step):
                run_context.request_stop()

    def end(self, session):
        last = int(session.run(self._global_step))
        if last != self._timer.last_triggered_step():
            self._save(session, last)
        for listener in self._listeners:
            listener.end(session, last)

    def _get_saver(self):
        if self._saver is not None:
            return self._saver
        if self._scaffold is not None:
            return self._scaffold.saver
        from tensorgrid.client.train.monitored_session import default_saver
        return default_saver()

    def _save(self, session, step):
        """Saves at `step`; True when a listener asks to stop."""
        for listener in self._listeners:
            listener.before_save(session, step)
        log.info("Saving checkpoints for %d into %s.", step, self._save_path)
        path = self._get_saver().save(session, self._save_path, global_step=step)
        self._summary_writer.add_session_log(
            summary_pb2.SessionLog(status=summary_pb2.SessionLog.CHECKPOINT, checkpoint_path=path), step)
        stop = False
        for listener in self._listeners:
            if listener.after_save(session, step):
                log.info("A CheckpointSaverListener requested that training be stopped. listener: %s", listener)
                stop = True
        return stop


class LoggingTensorHook(SessionRunHook):
    """Logs the values of `tensors` every N steps or seconds (and at the end when `at_end`)."""

    def __init__(self, tensors, every_n_iter=None, every_n_secs=None, at_end=False, formatter=None):
        only_log_at_end = at_end and every_n_iter is None and every_n_secs is None
        if not only_log_at_end and (every_n_iter is None) == (every_n_secs is None):
            raise ValueError("either at_end and/or exactly one of every_n_iter and every_n_secs must be provided.")
        if every_n_iter is not None and every_n_iter <= 0:
            raise ValueError(f"invalid every_n_iter={every_n_iter}.")
        if not isinstance(tensors, dict):
            self._tag_order = list(tensors)
            tensors = {item: item for item in tensors}
        else:
            self._tag_order = sorted(tensors)
        self._tensors = tensors
        self._formatter = formatter
        self._timer = None if only_log_at_end else SecondOrStepTimer(every_secs=every_n_secs,
                                                                     every_steps=every_n_iter)
        self._log_at_end = at_end

    def begin(self):
        if self._timer is not None:
            self._timer.reset()
        self._iter_count = 0
        self._current = {tag: _as_graph_element(t) for tag, t in self._tensors.items()}

    def before_run(self, run_context):
        self._should_trigger = self._timer is not None and self._timer.should_trigger_for_step(self._iter_count)
        return SessionRunArgs(self._current) if self._should_trigger else None

    def _log(self, values):
        original = np.get_printoptions()
        np.set_printoptions(suppress=True)
        try:
            elapsed = self._timer.update_last_triggered_step(self._iter_count)[0] if self._timer else None
            if self._formatter:
                log.info("%s", self._formatter(values))
            else:
                line = ", ".join(f"{tag} = {values[tag]}" for tag in self._tag_order)
                log.info("%s (%.3f sec)", line, elapsed) if elapsed is not None else log.info("%s", line)
        finally:
            np.set_printoptions(**original)

    def after_run(self, run_context, run_values):
        if self._should_trigger:
            self._log(run_values.results)
        self._iter_count += 1

    def end(self, session):
        if self._log_at_end:
            self._log(session.run(self._current))


class NanLossDuringTrainingError(RuntimeError):
    """The loss became NaN."""

    def __str__(self):
        return "NaN loss during training."


class NanTensorHook(SessionRunHook):
    """Stops training (or fails with NanLossDuringTrainingError) when `loss_tensor` is NaN."""

    def __init__(self, loss_tensor, fail_on_nan_loss=True):
        self._loss_tensor = loss_tensor
        self._fail_on_nan_loss = fail_on_nan_loss

    def before_run(self, run_context):
        return SessionRunArgs(self._loss_tensor)

    def after_run(self, run_context, run_values):
        if np.isnan(run_values.results):
            message = "Model diverged with loss = NaN."
            if self._fail_on_nan_loss:
                log.error("%s", message)
                raise NanLossDuringTrainingError
            log.warning("%s", message)
            run_context.request_stop()


class StepCounterHook(SessionRunHook):
    """Logs the global steps per second and writes it as summary "global_step/sec"."""

    def __init__(self, every_n_steps=100, every_n_secs=None, output_dir=None, summary_writer=None):
        if (every_n_steps is None) == (every_n_secs is None):
            raise ValueError("exactly one of every_n_steps and every_n_secs should be provided.")
        self._timer = SecondOrStepTimer(every_steps=every_n_steps, every_secs=every_n_secs)
        self._summary_writer = summary_writer
        self._output_dir = output_dir

    def begin(self):
        if self._summary_writer is None and self._output_dir:
            self._summary_writer = FileWriterCache.get(self._output_dir)
        self._global_step = _global_step_or_fail("StepCounterHook")
        self._summary_tag = training_util.get_global_step().op.name + "/sec"

    def after_create_session(self, session, coord):
        self._timer.reset()     # a recovered session must not count the time it took to come back

    def before_run(self, run_context):
        return SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        step = _step_to_act_at(self._timer, run_context, self._global_step, run_values.results)
        if step is None:
            return
        secs, steps = self._timer.update_last_triggered_step(step)
        if secs is not None and secs > 0:
            rate = steps / secs
            if self._summary_writer is not None:
                value = summary_pb2.Summary.Value(tag=self._summary_tag, simple_value=rate)
                self._summary_writer.add_summary(summary_pb2.Summary(value=[value]), step)
            log.info("%s: %g", self._summary_tag, rate)


class SummarySaverHook(SessionRunHook):
    """Writes the summary op's output every N steps or seconds."""

    def __init__(self, save_steps=None, save_secs=None, output_dir=None, summary_writer=None, scaffold=None,
                 summary_op=None):
        if (scaffold is None) == (summary_op is None):
            raise ValueError("Exactly one of scaffold or summary_op must be provided.")
        self._summary_op = summary_op
        self._summary_writer = summary_writer
        self._output_dir = output_dir
        self._scaffold = scaffold
        self._timer = SecondOrStepTimer(every_secs=save_secs, every_steps=save_steps)

    def begin(self):
        if self._summary_writer is None and self._output_dir:
            self._summary_writer = FileWriterCache.get(self._output_dir)
        self._next_step = None
        self._global_step = _global_step_or_fail("SummarySaverHook")

    def _ops(self):
        op = self._summary_op if self._summary_op is not None else self._scaffold.summary_op
        if op is None:
            return None
        return list(op) if isinstance(op, (list, tuple)) else [op]

    def before_run(self, run_context):
        self._request_summary = self._next_step is None or self._timer.should_trigger_for_step(self._next_step)
        requests = {"global_step": self._global_step}
        ops = self._ops()
        if self._request_summary and ops:
            requests["summary"] = ops
        return SessionRunArgs(requests)

    def after_run(self, run_context, run_values):
        if self._summary_writer is None:
            return
        stale = run_values.results["global_step"]
        step = stale + 1
        if self._next_step is None or self._request_summary:
            step = int(run_context.session.run(self._global_step))
        if self._next_step is None:
            self._summary_writer.add_session_log(summary_pb2.SessionLog(status=summary_pb2.SessionLog.START), step)
        if self._request_summary:
            self._timer.update_last_triggered_step(step)
            for value in run_values.results.get("summary", ()):
                self._summary_writer.add_summary(value, step)
        self._next_step = step + 1

    def end(self, session=None):
        if self._summary_writer is not None:
            self._summary_writer.flush()


class FinalOpsHook(SessionRunHook):
    """Runs `final_ops` when the session ends; their values are `final_ops_values`."""

    def __init__(self, final_ops, final_ops_feed_dict=None):
        self._final_ops = final_ops
        self._final_ops_feed_dict = final_ops_feed_dict
        self._final_ops_values = None

    @property
    def final_ops_values(self):
        return self._final_ops_values

    def end(self, session):
        if self._final_ops is not None:
            self._final_ops_values = session.run(self._final_ops, feed_dict=self._final_ops_feed_dict)


class GlobalStepWaiterHook(SessionRunHook):
    """Holds back the first run until the global step reaches `wait_until_step` (staggered worker starts)."""

    def __init__(self, wait_until_step):
        self._wait_until_step = wait_until_step

    def begin(self):
        self._worker_is_started = False
        self._global_step = _global_step_or_fail("GlobalStepWaiterHook")

    def before_run(self, run_context):
        if self._worker_is_started or self._wait_until_step <= 0:
            self._worker_is_started = True
            return None
        last_logged = None
        while True:
            current = int(run_context.session.run(self._global_step))
            if current >= self._wait_until_step:
                self._worker_is_started = True
                return None
            if last_logged is None or time.monotonic() - last_logged > 10.0:
                log.info("Waiting for global step %d before starting training (now %d).", self._wait_until_step,
                         current)
                last_logged = time.monotonic()
            time.sleep(0.5)


class FeedFnHook(SessionRunHook):
    """Feeds every run with `feed_fn()`."""

    def __init__(self, feed_fn):
        self.feed_fn = feed_fn

    def before_run(self, run_context):
        return SessionRunArgs(fetches=None, feed_dict=self.feed_fn())
