"""prefetch: a background thread runs the input pipeline ahead of its consumer.

The thread pulls blocks from the input and puts them in a queue of
`buffer_size` blocks (after a batch, one block is one batch, or several
batches' views of one in-memory block); the consumer takes them out. It
stops when the consumer is closed (its generator's finally clause sets the
stop and empties the queue) or the pipeline's context is stopped.
"""

import queue
import threading

from tensorgrid.worker.data.base import Dataset, autotune_parallelism, close_quietly

_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


class Prefetch(Dataset):
    """The input's blocks, produced ahead by a thread of its own into a bounded queue."""

    def __init__(self, input_dataset, buffer_size):
        self.input = input_dataset
        self.buffer_size = int(buffer_size) if buffer_size > 0 else max(2, autotune_parallelism())

    def blocks(self, ctx):
        q = queue.Queue(maxsize=self.buffer_size)
        stop = threading.Event()
        source = self.input.blocks(ctx)

        def put(item):
            # A full queue is rechecked for a stop now and then: the consumer may be gone for good.
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    pass
            return False

        def produce():
            try:
                for block in source:
                    if ctx.stopped or not put(block):
                        return
                put(_END)
            except BaseException as e:  # noqa: B902 - every failure goes to the consumer
                put(_Failure(e))
            finally:
                close_quietly(source)

        thread = threading.Thread(target=produce, name="tg-data-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if type(item) is _Failure:
                    raise item.error
                yield item
        finally:
            stop.set()
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break

    def cardinality(self):
        return self.input.cardinality()
