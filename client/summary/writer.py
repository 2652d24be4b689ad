"""TF1's tf.summary.FileWriter and FileWriterCache: summaries, graphs and session logs into event files."""

import threading
import time

from tensorgrid.client import context
from tensorgrid.client.summary import event_file

__all__ = ["FileWriter", "FileWriterCache"]


def _pb():
    from tensorgrid.proto import summary_pb2
    return summary_pb2


class FileWriter:
    """Writes Event protos for TensorBoard to a new event file in `logdir`.

    `add_summary` takes what a summary op's tensor holds when fetched (the
    serialized Summary bytes) or a `tf.Summary` proto. The first value of a
    tag keeps its SummaryMetadata and later ones drop it, as TF's writer
    does. `session=` is accepted for TF1 programs; the client writes the file
    either way.
    """

    def __init__(self, logdir, graph=None, max_queue=10, flush_secs=120, graph_def=None, filename_suffix=None,
                 session=None):
        if context.executing_eagerly():
            raise RuntimeError("tf.summary.FileWriter is not compatible with eager execution. "
                               "Use `tf.summary.create_file_writer`, or a `with tf.Graph().as_default():` context")
        self._writer = event_file.EventFileWriter(logdir, max_queue, flush_secs, filename_suffix or "")
        self._seen_tags = set()
        self._lock = threading.Lock()
        if graph is not None or graph_def is not None:
            self.add_graph(graph, graph_def=graph_def)

    def get_logdir(self):
        return self._writer.logdir

    def _event(self, global_step=None, **what):
        event = _pb().Event(wall_time=time.time(), **what)
        if global_step is not None:
            event.step = int(global_step)
        self.add_event(event)

    def add_event(self, event):
        """Writes an Event proto as it is."""
        self._writer.add_event(event)

    def add_summary(self, summary, global_step=None):
        """Writes a Summary (its serialized bytes, as a summary op gives them, or the proto) at global_step."""
        if isinstance(summary, (bytes, bytearray)):
            parsed = _pb().Summary()
            parsed.ParseFromString(bytes(summary))
            summary = parsed
        elif hasattr(summary, "numpy"):
            raise TypeError("add_summary takes the value of a summary op (run it in a session), not the op's tensor")
        else:
            copy = _pb().Summary()
            copy.ParseFromString(summary.SerializeToString())
            summary = copy
        with self._lock:
            for value in summary.value:
                if not value.HasField("metadata"):
                    continue
                if value.tag in self._seen_tags:
                    value.ClearField("metadata")
                else:
                    self._seen_tags.add(value.tag)
        self._event(global_step, summary=summary)

    def add_graph(self, graph, global_step=None, graph_def=None):
        """Writes the graph (a tg.Graph, or a GraphDef proto as `graph_def` or `graph`) for the Graphs tab."""
        if graph is not None and graph_def is not None:
            raise ValueError("Please pass only graph, or graph_def (deprecated), but not both.")
        source = graph if graph is not None else graph_def
        if hasattr(source, "as_graph_def"):
            source = source.as_graph_def()
        if not hasattr(source, "SerializeToString"):
            raise TypeError(f"add_graph expects a tf.Graph or a GraphDef, got {type(source).__name__}")
        self._event(global_step, graph_def=source.SerializeToString())

    def add_meta_graph(self, meta_graph_def, global_step=None):
        """Writes a MetaGraphDef proto."""
        self._event(global_step, meta_graph_def=meta_graph_def.SerializeToString())

    def add_session_log(self, session_log, global_step=None):
        """Writes a tf.SessionLog (START, STOP, CHECKPOINT)."""
        self._event(global_step, session_log=session_log)

    def add_run_metadata(self, run_metadata, tag, global_step=None):
        """Writes a step's RunMetadata under `tag`."""
        tagged = _pb().TaggedRunMetadata(tag=tag, run_metadata=run_metadata.SerializeToString())
        self._event(global_step, tagged_run_metadata=tagged)

    def flush(self):
        """Writes every pending event to disk."""
        self._writer.flush()

    def close(self):
        """Flushes and closes the event file."""
        self._writer.close()

    def reopen(self):
        """After close(), starts writing a new event file in the same logdir."""
        self._writer.reopen()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FileWriterCache:
    """One FileWriter per logdir, shared by everything in the process that asks for it."""

    _writers = {}
    _lock = threading.Lock()

    @staticmethod
    def get(logdir):
        """The FileWriter of `logdir` (made, with the default graph, on first use)."""
        from tensorgrid.client.graph import get_default_graph
        with FileWriterCache._lock:
            if logdir not in FileWriterCache._writers:
                FileWriterCache._writers[logdir] = FileWriter(logdir, graph=get_default_graph())
            return FileWriterCache._writers[logdir]

    @staticmethod
    def clear():
        """Closes and forgets every cached writer."""
        with FileWriterCache._lock:
            for writer in FileWriterCache._writers.values():
                writer.close()
            FileWriterCache._writers.clear()
