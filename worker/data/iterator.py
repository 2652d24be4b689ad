"""The iterator resource: where an iterator's position lives between steps, on its device.

A TF1 iterator op's kernel keeps one `IteratorState` in its device's
resource store (so it lives across steps and graph registrations, until its
session ends or the store is reset); an eager iterator keeps one there too. `initialize(dataset)`
starts a pass over a runtime dataset (ending any pass before it);
`get_next()` returns the next element's components, raises
OutOfRangeError at the end and on every call after it until the next
initialize, and FailedPreconditionError before the first.
"""

import threading

from tensorgrid.framework import errors
from tensorgrid.worker.data.base import Context, close_quietly, length

END_OF_SEQUENCE = "End of sequence"


class IteratorState:
    """One iterator's pass over a dataset: its block stream and its place in the current block."""

    def __init__(self, key=("", "", "")):
        self.key = key  # (container, shared name, node name): where the resource store keeps it
        self.name = key[1] or key[2]
        self.lock = threading.Lock()
        self.initialized = False
        self._ctx = None
        self._blocks = None
        self._block = None
        self._row = 0
        self._rows = 0
        self._done = True

    def initialize(self, dataset):
        """Starts a new pass over `dataset` (a worker.data.base.Dataset), ending the one before."""
        with self.lock:
            self._end_pass()
            self._start(dataset)

    def initialize_once(self, make):
        """Starts the one pass of a one-shot iterator: make() gives its dataset, the first time only."""
        with self.lock:
            if not self.initialized:
                self._start(make())

    def _start(self, dataset):
        self._ctx = Context()
        self._blocks = dataset.blocks(self._ctx)
        self._block, self._row, self._rows = None, 0, 0
        self._done = False
        self.initialized = True

    def get_next(self):
        """The next element as a list of component arrays."""
        with self.lock:
            while self._row >= self._rows:
                if self._done:
                    if not self.initialized:
                        raise errors.FailedPreconditionError(
                            None, None, "GetNext() failed because the iterator has not been initialized. Ensure that "
                            "you have run the initializer operation for this iterator before getting the next element.")
                    raise errors.OutOfRangeError(None, None, END_OF_SEQUENCE)
                try:
                    block = next(self._blocks)
                except StopIteration:
                    self._finish()
                    continue
                except BaseException:
                    self._finish()  # a pipeline that failed does not resume
                    raise
                self._block, self._row, self._rows = block, 0, length(block)
            r = self._row
            self._row = r + 1
            return [c[r, ...] for c in self._block]

    def _finish(self):
        self._done = True
        self._block, self._row, self._rows = None, 0, 0
        self._blocks = None

    def _end_pass(self):
        if self._ctx is not None:
            self._ctx.stop()
        if self._blocks is not None:
            close_quietly(self._blocks)
        self._finish()

    def close(self):
        """Ends the current pass: stops its background threads."""
        with self.lock:
            self._end_pass()

    def __del__(self):
        if self._ctx is not None:
            self._ctx.stop()

    def __repr__(self):
        state = "uninitialized" if not self.initialized else "ended" if self._done else "running"
        return f"<IteratorState {self.name!r} {state}>"
