"""tf.train.QueueRunner, add_queue_runner and start_queue_runners: threads that keep a queue filled.

Each enqueue op gets a thread that runs it in a loop until the coordinator
stops, or the queue closes (OutOfRangeError from the op's inputs, such as an
input producer's epoch limit): the last thread of a session to end closes
the queue, so dequeues drain it and then raise OutOfRangeError. With a
coordinator, one more thread cancels the queue's pending enqueues once a
stop is requested, so no thread stays blocked on a full queue.
"""

import logging
import threading

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib
from tensorgrid.framework import errors

__all__ = ["QueueRunner", "add_queue_runner", "start_queue_runners"]

QUEUE_RUNNERS = "queue_runners"

log = logging.getLogger("tensorgrid.queue_runner")


class QueueRunner:
    """Holds the enqueue ops of one queue and the ops that close it."""

    def __init__(self, queue=None, enqueue_ops=None, close_op=None, cancel_op=None,
                 queue_closed_exception_types=None, queue_runner_def=None, import_scope=None):
        if context.executing_eagerly():
            raise RuntimeError("QueueRunners are not supported when eager execution is enabled. "
                               "Instead, please use tf.data to get data into your model.")
        if queue_runner_def is not None:
            raise NotImplementedError("QueueRunner(queue_runner_def=...) is not supported; build it from a queue")
        if queue is None or not enqueue_ops:
            raise ValueError("Queue and enqueue_ops are required to build a QueueRunner")
        self._queue = queue
        self._enqueue_ops = list(enqueue_ops)
        self._close_op = close_op if close_op is not None else queue.close()
        self._cancel_op = cancel_op if cancel_op is not None else queue.close(cancel_pending_enqueues=True)
        if queue_closed_exception_types is None:
            queue_closed_exception_types = (errors.OutOfRangeError,)
        self._queue_closed_exception_types = tuple(queue_closed_exception_types)
        self._lock = threading.Lock()
        self._runs_per_session = {}
        self._exceptions_raised = []

    @property
    def queue(self):
        return self._queue

    @property
    def enqueue_ops(self):
        return self._enqueue_ops

    @property
    def close_op(self):
        return self._close_op

    @property
    def cancel_op(self):
        return self._cancel_op

    @property
    def queue_closed_exception_types(self):
        return self._queue_closed_exception_types

    @property
    def exceptions_raised(self):
        """Exceptions the threads raised when there was no coordinator to report them to."""
        return self._exceptions_raised

    @property
    def name(self):
        return self._queue.name

    def _run(self, sess, enqueue_op, coord=None):
        """One thread's loop: runs enqueue_op until told to stop or the queue closes."""
        decremented = False
        try:
            while True:
                if coord is not None and coord.should_stop():
                    break
                try:
                    sess.run(enqueue_op)
                except self._queue_closed_exception_types:
                    with self._lock:
                        self._runs_per_session[sess] -= 1
                        decremented = True
                        last = self._runs_per_session[sess] == 0
                    if last:  # the last thread of this session closes the queue, so dequeues drain it
                        try:
                            sess.run(self._close_op)
                        except Exception as e:  # noqa: BLE001 - the session may be closing too
                            log.debug("ignored while closing %s: %s", self.name, e)
                    return
        except Exception as e:  # noqa: BLE001 - reported to the coordinator, or kept and raised
            if coord is not None:
                coord.request_stop(e)
            else:
                log.error("Exception in QueueRunner %s: %s", self.name, e)
                with self._lock:
                    self._exceptions_raised.append(e)
                raise
        finally:
            if not decremented:
                with self._lock:
                    self._runs_per_session[sess] -= 1

    def _close_on_stop(self, sess, cancel_op, coord):
        """Cancels the queue's pending enqueues once the coordinator stops."""
        coord.wait_for_stop()
        try:
            sess.run(cancel_op)
        except Exception as e:  # noqa: BLE001 - the session may already be closed
            log.debug("ignored while cancelling %s: %s", self.name, e)

    def create_threads(self, sess, coord=None, daemon=False, start=False):
        """One thread per enqueue op (plus a canceller when there is a coordinator); [] when this
        session's threads already run."""
        with self._lock:
            if self._runs_per_session.get(sess, 0) > 0:
                return []
            self._runs_per_session[sess] = len(self._enqueue_ops)
            self._exceptions_raised = []
        threads = [threading.Thread(target=self._run, args=(sess, op, coord), daemon=daemon,
                                    name=f"QueueRunnerThread-{self.name}-{getattr(op, 'name', op)}")
                   for op in self._enqueue_ops]
        if coord is not None:
            threads.append(threading.Thread(target=self._close_on_stop, args=(sess, self._cancel_op, coord),
                                            daemon=daemon, name=f"QueueRunnerCanceller-{self.name}"))
        for t in threads:
            if coord is not None:
                coord.register_thread(t)
            if start:
                t.start()
        return threads


def add_queue_runner(qr, collection=QUEUE_RUNNERS):
    """Adds `qr` to the default graph's collection of queue runners."""
    graph_lib.get_default_graph().add_to_collection(collection, qr)


def start_queue_runners(sess=None, coord=None, daemon=True, start=True, collection=QUEUE_RUNNERS):
    """Starts the threads of every queue runner in the graph's collection; returns them."""
    if context.executing_eagerly():
        raise RuntimeError("Queues are not compatible with eager execution.")
    if sess is None:
        from tensorgrid.client import session as session_lib
        sess = session_lib.get_default_session()
        if sess is None:
            raise ValueError("Cannot start queue runners: No default session is registered. Use `with "
                             "sess.as_default()` or pass an explicit session to tf.start_queue_runners(sess=sess)")
    with sess.graph.as_default():
        threads = []
        for qr in sess.graph.get_collection(collection):
            threads.extend(qr.create_threads(sess, coord=coord, daemon=daemon, start=start))
    return threads
