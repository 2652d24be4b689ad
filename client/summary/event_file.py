"""TensorBoard event files: writing Event records to `events.out.tfevents.*` and reading them back.

An event file is TFRecord-framed serialized `Event` protos
(tensorgrid/framework/tfrecord.py), the first one saying its file_version.
Files are named as TF names them, `events.out.tfevents.<seconds>.<host><suffix>`,
so TensorBoard and TF's `summary_iterator` find and read them. Writes go to
a buffered file; it is flushed when `max_queue` events are pending, every
`flush_secs` by a background thread, on flush() and close(), and at exit.
"""

import atexit
import itertools
import os
import socket
import threading
import time
import weakref

from tensorgrid.framework import tfrecord

FILE_VERSION = "brain.Event:2"

_open_writers = weakref.WeakSet()
_file_ids = itertools.count(1)


def _event_pb2():
    from tensorgrid.proto import summary_pb2
    return summary_pb2


def _file_path(logdir, suffix):
    """A new event file name in logdir: TF's, with pid and a counter added only if that name is taken."""
    base = os.path.join(logdir, f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}")
    path = base + suffix
    while os.path.exists(path):
        path = f"{base}.{os.getpid()}.{next(_file_ids)}{suffix}"
    return path


class EventFileWriter:
    """Appends Event protos to a new event file in `logdir` (made if missing)."""

    def __init__(self, logdir, max_queue=10, flush_secs=120, filename_suffix=""):
        self._logdir = str(logdir)
        self._max_queue = max(1, int(max_queue or 10))
        self._flush_secs = float(flush_secs or 120)
        self._suffix = filename_suffix or ""
        self._lock = threading.Lock()
        self._file = None
        self._pending = 0
        self._stop = None
        self.reopen()

    @property
    def logdir(self):
        return self._logdir

    @property
    def path(self):
        """The file now being written (None while closed)."""
        return self._file.name if self._file is not None else None

    @property
    def closed(self):
        return self._file is None

    def reopen(self):
        """Starts a new event file after close(); does nothing while open."""
        with self._lock:
            if self._file is not None:
                return
            os.makedirs(self._logdir, exist_ok=True)
            self._file = open(_file_path(self._logdir, self._suffix), "xb")
            first = _event_pb2().Event(wall_time=time.time(), file_version=FILE_VERSION)
            self._file.write(tfrecord.encode_record(first.SerializeToString()))
            self._file.flush()
            self._stop = threading.Event()
            threading.Thread(target=self._flush_every, args=(self._stop,), daemon=True,
                             name=f"event-file-flush {self._logdir}").start()
        _open_writers.add(self)

    def add_event(self, event):
        """Writes one Event proto (or its serialized bytes)."""
        data = event if isinstance(event, bytes) else event.SerializeToString()
        with self._lock:
            if self._file is None:
                raise RuntimeError(f"the event file writer for {self._logdir} is closed; reopen() it first")
            self._file.write(tfrecord.encode_record(data))
            self._pending += 1
            if self._pending >= self._max_queue:
                self._flush_locked()

    def _flush_locked(self):
        if self._file is not None:
            self._file.flush()
            self._pending = 0

    def flush(self):
        """Makes every event written so far visible to readers of the file."""
        with self._lock:
            self._flush_locked()

    def _flush_every(self, stop):
        while not stop.wait(self._flush_secs):
            self.flush()

    def close(self):
        """Flushes and closes the file; add_event then fails until reopen()."""
        with self._lock:
            if self._file is None:
                return
            self._file.close()
            self._file = None
            self._stop.set()
        _open_writers.discard(self)


@atexit.register
def _flush_open_writers():
    for writer in list(_open_writers):
        writer.flush()


def summary_iterator(path):
    """Yields the Event protos of event file `path` in order (TF1's tf.train.summary_iterator)."""
    pb = _event_pb2()
    with open(path, "rb") as f:
        for record in tfrecord.read_records(f, path):
            event = pb.Event()
            event.ParseFromString(record)
            yield event
