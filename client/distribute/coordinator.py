"""tg.distribute.experimental.coordinator: TF2's ClusterCoordinator for ParameterServerStrategy.

One coordinator process (the cluster's `chief` task) drives the training: its variables live on
the ps tasks (placed round-robin by the strategy's scope), and `schedule(fn, args)` queues a call of
the tg.function `fn` that one worker task then runs, returning at once a RemoteValue.

- Each worker task has a thread here that takes the next closure from the queue, traces `fn` for
  that worker (once per worker and signature: its ops pinned to /job:worker/task:i, its variable
  ops on the variables' ps tasks) and runs it as a step of the coordinator's master. The workers
  thus run closures concurrently, each against the ps variables as they are (asynchronous training).
- `create_per_worker_dataset(dataset_fn)` builds the dataset on every worker (a graph of
  dataset_fn's ops pinned there, and a shared iterator resource on that worker); `iter()` of it
  gives a PerWorkerIterator, and a closure given one reads, with `next(iterator)` inside `fn`, the
  iterator of the worker it runs on. No element passes through the coordinator.
- A closure whose worker dies (UnavailableError or AbortedError naming that worker) is put back at
  the head of the queue for another worker, as TF does: a closure runs at least once, and a closure
  that had already updated variables before its worker died updates them again when re-run. The
  dead worker's thread probes it every 0.5 s; once it is back its per-worker datasets are created
  again (from their start) and it takes closures again.
- Any other error of a closure (OutOfRangeError at the end of a per-worker dataset, a ps that died)
  is the closure's: its RemoteValue raises it, and the next `join()` or `schedule()` raises it once
  and drops the closures still queued (their RemoteValues raise CancelledError).
"""

import collections
import itertools
import logging
import re
import threading
import time

import numpy as np

from tensorgrid.client import nest
from tensorgrid.framework import errors

__all__ = ["ClusterCoordinator", "RemoteValue", "PerWorkerValues"]

log = logging.getLogger("tensorgrid.distribute")

# How often the thread of a dead worker checks whether it is back.
PROBE_INTERVAL_S = 0.5
_iterator_ids = itertools.count(1)


class RemoteValue:
    """The result of a scheduled closure: `fetch()` waits for it and gives its NumPy values."""

    def __init__(self):
        self._done = threading.Event()
        self._value = None
        self._error = None

    def _set(self, value=None, error=None):
        self._value, self._error = value, error
        self._done.set()

    def fetch(self):
        """The closure's return value as NumPy values (waits for it); the closure's error if it failed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value

    def get(self):
        return self.fetch()

    def _is_done(self):
        return self._done.is_set()

    def __repr__(self):
        state = "done" if self._done.is_set() else "pending"
        return f"<RemoteValue {state}>"


class PerWorkerValues:
    """One value per worker: a closure given it as an argument gets the value of the worker it runs on."""

    def __init__(self, values):
        self._values = tuple(values)

    def __repr__(self):
        return f"PerWorkerValues({list(self._values)!r})"


class _Closure:
    def __init__(self, fn, args, kwargs):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.value = RemoteValue()
        self.attempts = 0


def _resolve(value, worker):
    """`value` with every PerWorkerValues / PerWorkerIterator in it replaced by the one of `worker`."""
    if isinstance(value, PerWorkerValues):
        return value._values[worker]
    if isinstance(value, PerWorkerIterator):
        return value._iterators[worker]
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_resolve(v, worker) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, worker) for k, v in value.items()}
    return value


def _numpy(value):
    leaves = []
    spec = nest.flatten(value, lambda x: x, leaves)
    return nest.rebuild(spec, [np.asarray(x.numpy()) if hasattr(x, "numpy") else x for x in leaves])


def _names_task(err, device):
    return f"{device}/" in err.message or err.message.rstrip().endswith(device) or f"{device} " in err.message


class _Worker:
    """The thread that runs closures on one worker task, and what it keeps per worker."""

    def __init__(self, coordinator, index):
        self.coordinator = coordinator
        self.index = index
        self.device = f"/job:worker/replica:0/task:{index}"
        self.short = f"/job:worker/task:{index}"
        self.functions = {}       # id(fn) -> (fn, this worker's Function of it)
        self.resources = []       # per-worker dataset iterators, created again when the worker comes back
        self.probe = None
        self.thread = threading.Thread(target=self._loop, name=f"tg-coordinator-worker{index}", daemon=True)

    def function(self, fn):
        from tensorgrid.client.function import Function
        entry = self.functions.get(id(fn))
        if entry is None:
            if isinstance(fn, Function):
                own = Function(fn._fn, fn._signature, fn._autograph)
            else:
                own = Function(fn)
            entry = self.functions[id(fn)] = (fn, own)
        return entry[1]

    def run(self, closure):
        from tensorgrid.client import scopes
        strategy = self.coordinator.strategy
        fn = self.function(closure.fn)
        args = _resolve(closure.args, self.index)
        kwargs = _resolve(closure.kwargs, self.index)
        with strategy.scope(), scopes.device(self.device):
            # one trace at a time over the workers: a first trace may make variables (an optimizer's
            # slots, lifted out and made once), which the other workers' traces must then find
            with self.coordinator._trace_lock:
                fn.get_concrete_function(*args, **kwargs)
            return _numpy(fn(*args, **kwargs))

    def _loop(self):
        queue = self.coordinator._queue
        while True:
            closure = queue.take()
            if closure is None:
                return
            try:
                result = self.run(closure)
            except (errors.UnavailableError, errors.AbortedError) as e:
                if not self._lost(e):
                    queue.finish(closure, error=e)
                    continue
                closure.attempts += 1
                log.warning("worker %s failed while running a closure (%s: %s); the closure goes to another "
                            "worker", self.short, type(e).__name__, e.message)
                queue.put_back(closure)
                self._wait_until_back()
                continue
            except errors.OpError as e:
                queue.finish(closure, error=e)
                continue
            except Exception as e:   # a Python error while tracing fn: the closure's, as in TF
                queue.finish(closure, error=e)
                continue
            queue.finish(closure, value=result)

    def _lost(self, err):
        """Whether `err` says this worker died or restarted (else it is the closure's, e.g. a ps died: an
        error about a ps task may name the worker that could not reach it, and is still the ps's)."""
        dead = re.search(r"worker (/job:\S+) \([^)]*\) is unavailable", err.message)   # the master's words
        if dead:
            return dead.group(1) in (self.short, self.device)
        if "/job:ps/" in err.message:
            return False
        return _names_task(err, self.short) or _names_task(err, self.device)

    def _probe_once(self):
        from tensorgrid.client import array_ops, scopes
        from tensorgrid.client.function import Function
        if self.probe is None:
            self.probe = Function(lambda: array_ops.identity(array_ops.zeros([], "int32")))
        with scopes.device(self.device):
            self.probe()

    def _wait_until_back(self):
        started = time.monotonic()
        while not self.coordinator._closed:
            try:
                self._probe_once()
            except (errors.UnavailableError, errors.AbortedError, errors.DeadlineExceededError):
                time.sleep(PROBE_INTERVAL_S)
                continue
            try:
                for resource in self.resources:
                    resource.create()
            except (errors.UnavailableError, errors.AbortedError):
                time.sleep(PROBE_INTERVAL_S)
                continue
            log.warning("worker %s is back after %.1f s; it takes closures again", self.short,
                        time.monotonic() - started)
            return


class _Queue:
    """The closures waiting for a worker, those in flight, and the first error not yet raised."""

    def __init__(self):
        self._cond = threading.Condition()
        self._waiting = collections.deque()
        self._in_flight = 0
        self._error = None
        self._closed = False

    def put(self, closure):
        with self._cond:
            self._raise_error()
            self._waiting.append(closure)
            self._cond.notify()

    def put_back(self, closure):
        with self._cond:
            self._in_flight -= 1
            self._waiting.appendleft(closure)
            self._cond.notify_all()

    def take(self):
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._in_flight += 1
            return self._waiting.popleft()

    def finish(self, closure, value=None, error=None):
        closure.value._set(value, error)
        with self._cond:
            self._in_flight -= 1
            if error is not None and self._error is None:
                self._error = error
                for dropped in self._waiting:
                    dropped.value._set(error=errors.CancelledError(
                        None, None, f"the closure was cancelled: an earlier closure failed ({error})"))
                self._waiting.clear()
            self._cond.notify_all()

    def _raise_error(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def join(self):
        with self._cond:
            while self._waiting or self._in_flight:
                self._cond.wait()
            self._raise_error()

    def done(self):
        with self._cond:
            if self._waiting or self._in_flight:
                return False
            self._raise_error()
            return True

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ClusterCoordinator:
    """Schedules tg.functions on the workers of a ParameterServerStrategy's cluster (TF2's API)."""

    def __init__(self, strategy):
        from tensorgrid.client.distribute.parameter_server_strategy import ParameterServerStrategy
        if not isinstance(strategy, ParameterServerStrategy):
            raise ValueError(f"ClusterCoordinator only supports tg.distribute.experimental.ParameterServerStrategy, "
                             f"not {strategy!r}")
        strategy._connect()
        self.strategy = strategy
        self._closed = False
        self._queue = _Queue()
        n = strategy._num_workers
        if not n:
            raise ValueError("ClusterCoordinator: the cluster has no 'worker' job to run closures on")
        self._workers = [_Worker(self, i) for i in range(n)]
        self._started = False
        self._start_lock = threading.Lock()
        self._trace_lock = threading.Lock()
        strategy._coordinator = self

    def _start(self):
        with self._start_lock:
            if not self._started:
                for w in self._workers:
                    w.thread.start()
                self._started = True

    def schedule(self, fn, args=None, kwargs=None):
        """Queues fn(*args, **kwargs) for the next free worker; returns its RemoteValue at once.

        Raises, once, the error of an earlier closure that failed (and drops the closures queued then)."""
        if not callable(fn):
            raise TypeError(f"ClusterCoordinator.schedule: fn must be callable (a tg.function), not {fn!r}")
        closure = _Closure(fn, tuple(args or ()), dict(kwargs or {}))
        self._start()
        self._queue.put(closure)
        return closure.value

    def join(self):
        """Waits until every scheduled closure has run; raises the first error of one that failed."""
        self._queue.join()

    def done(self):
        """Whether every scheduled closure has run (raises the first error of one that failed)."""
        return self._queue.done()

    def fetch(self, val):
        """The NumPy values of a RemoteValue, or of each one in a nest (PerWorkerValues included)."""
        if isinstance(val, RemoteValue):
            return val.fetch()
        if isinstance(val, PerWorkerValues):
            return tuple(self.fetch(v) for v in val._values)
        if isinstance(val, (list, tuple)) and not hasattr(val, "_fields"):
            return type(val)(self.fetch(v) for v in val)
        if isinstance(val, dict):
            return {k: self.fetch(v) for k, v in val.items()}
        return val

    def create_per_worker_dataset(self, dataset_fn):
        """The dataset dataset_fn() makes, built on every worker; `iter()` gives a PerWorkerIterator."""
        return PerWorkerDataset(self, dataset_fn)

    def close(self):
        """Stops the worker threads (closures still queued do not run)."""
        self._closed = True
        self._queue.close()


class PerWorkerDataset:
    """A dataset on every worker of a coordinator; each `iter()` makes a new iterator on each of them."""

    def __init__(self, coordinator, dataset_fn):
        if not callable(dataset_fn):
            raise TypeError(f"create_per_worker_dataset takes a function that returns a dataset, not {dataset_fn!r}")
        self._coordinator = coordinator
        self._dataset_fn = getattr(dataset_fn, "python_function", None) or getattr(dataset_fn, "_fn", dataset_fn)

    def __iter__(self):
        name = f"per_worker_iterator_{next(_iterator_ids)}"
        iterators = []
        for w in self._coordinator._workers:
            it = _WorkerIterator(self._coordinator, w, self._dataset_fn, f"{name}_w{w.index}")
            it.create()
            w.resources.append(it)
            iterators.append(it)
        return PerWorkerIterator(iterators)


class PerWorkerIterator:
    """Per-worker iterators: a closure given one advances the iterator of the worker it runs on."""

    def __init__(self, iterators):
        self._iterators = iterators

    def __next__(self):
        raise TypeError("a PerWorkerIterator is advanced inside a function scheduled with "
                        "ClusterCoordinator.schedule (pass it as an argument and call next() there)")

    def __iter__(self):
        return self


class _WorkerIterator:
    """One worker's iterator: a shared iterator resource on that worker, made by a step of a graph of
    dataset_fn's ops pinned there; `next()` of it inside a trace reads that resource."""

    def __init__(self, coordinator, worker, dataset_fn, shared_name):
        self._coordinator = coordinator
        self._worker = worker
        self._dataset_fn = dataset_fn
        self._shared_name = shared_name
        self._structure = None

    def create(self):
        """Builds the dataset and (re)initializes the iterator on the worker."""
        from tensorgrid.client import graph as graph_lib
        from tensorgrid.client.data import iterator_ops
        from tensorgrid.client.session import Session
        rc = self._coordinator.strategy._remote
        g = graph_lib.Graph()
        with g.as_default(), g.device(self._worker.device):
            dataset = self._dataset_fn()
            if not hasattr(dataset, "_variant_tensor"):
                raise TypeError(f"create_per_worker_dataset: dataset_fn must return a tg.data.Dataset, "
                                f"not {dataset!r}")
            iterator = iterator_ops.make_initializable_iterator(dataset, shared_name=self._shared_name)
        self._structure = iterator._structure
        with Session(rc.target, graph=g, config=rc.config) as sess:
            sess.run(iterator.initializer)

    def __next__(self):
        from tensorgrid.client.data import iterator_ops
        from tensorgrid.client import context
        if context.executing_eagerly():
            raise TypeError("a per-worker iterator is advanced inside a function scheduled with "
                            "ClusterCoordinator.schedule")
        resource = iterator_ops._iterator_op(self._structure, self._shared_name)
        return iterator_ops._get_next(resource, self._structure)

    next = __next__

    def get_next(self, name=None):
        return self.__next__()
