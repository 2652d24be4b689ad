"""TF2's summaries: tg.summary.create_file_writer, writer.as_default(), scalar / histogram / image / text.

A summary function writes to the default writer (the innermost
`writer.as_default()`) at `step` (or `experimental.set_step`'s). Eagerly it
computes the Summary with the summary op's kernel and writes it at once,
returning True (False when there is no default writer or recording is off).
In a graph, that of a `@tg.function` included, it adds the summary op and a
WriteRawProtoSummary op that hands the result to the writer when the graph
runs (a stateful op, so a tg.function runs it though nothing consumes it),
and returns a bool tensor. The writer lives in the process that made it: a
graph that writes to it runs in that process (in-process sessions and
tg.function), not on a remote worker. Tags are the name scope plus `name`,
and values are the tensors TensorBoard's TF2 plugins read (scalars as
float32, histograms as [buckets, 3] float64, images as [width, height,
png...] strings, text as strings).
"""

import contextlib
import itertools
import threading
import time
import types

from tensorgrid.client import array_ops, context, scopes
from tensorgrid.client.graph import apply_op, convert_to_tensor, get_default_graph
from tensorgrid.client.summary import event_file
from tensorgrid.framework import dtypes
from tensorgrid.ops import summary_ops

__all__ = ["SummaryWriter", "create_file_writer", "create_noop_writer", "write", "scalar", "histogram", "image",
           "text", "flush", "record_if", "should_record_summaries"]


class _State(threading.local):
    def __init__(self):
        self.writers = []        # the default writer stack, innermost last
        self.record = []         # record_if conditions, innermost last


_state = _State()
_step = [None]                   # experimental.set_step's value, shared by every thread as in TF
_writer_ids = itertools.count(1)


def _pb():
    from tensorgrid.proto import summary_pb2
    return summary_pb2


class SummaryWriter:
    """A TF2 summary writer: summaries written while it is the default go to its event file."""

    def __init__(self, logdir, max_queue=10, flush_millis=120000, filename_suffix=".v2"):
        self._file = event_file.EventFileWriter(logdir, max_queue, flush_millis / 1000.0, filename_suffix)
        self._id = f"summary_writer_{next(_writer_ids)}"
        summary_ops.WRITERS[self._id] = self

    @property
    def logdir(self):
        return self._file.logdir

    def write_serialized_summary(self, serialized, step):
        """Writes a serialized Summary at `step` (what the WriteRawProtoSummary kernel calls)."""
        event = _pb().Event(wall_time=time.time(), step=int(step))
        event.summary.ParseFromString(serialized)
        self._file.add_event(event)

    @contextlib.contextmanager
    def as_default(self, step=None):
        """Makes this the default writer inside the block (and `step` the default step, if given)."""
        _state.writers.append(self)
        old_step = _step[0]
        if step is not None:
            _step[0] = step
        try:
            yield self
        finally:
            _state.writers.pop()
            if step is not None:
                _step[0] = old_step
            self.flush()

    def set_as_default(self, step=None):
        """Makes this the default writer from now on (under any as_default blocks)."""
        _state.writers.insert(0, self)
        if step is not None:
            _step[0] = step

    def init(self):
        """Nothing to do: the event file is open from creation (TF1 graph-mode API)."""

    def flush(self):
        if not self._file.closed:
            self._file.flush()

    def close(self):
        """Flushes and closes the event file; writing to it after that fails."""
        self._file.close()
        summary_ops.WRITERS.pop(self._id, None)


class _NoopWriter:
    """A writer that writes nothing (create_noop_writer)."""

    @contextlib.contextmanager
    def as_default(self, step=None):
        _state.writers.append(self)
        try:
            yield self
        finally:
            _state.writers.pop()

    def set_as_default(self, step=None):
        _state.writers.insert(0, self)

    def init(self):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def create_file_writer(logdir, max_queue=None, flush_millis=None, filename_suffix=None, name=None,
                       experimental_trackable=False, experimental_mesh=None):
    """A SummaryWriter writing a new event file in `logdir` (flushed every flush_millis, default 2 minutes)."""
    if logdir is None:
        raise ValueError("Expected logdir to be a string, got None")
    return SummaryWriter(logdir, 10 if max_queue is None else max_queue,
                         120000 if flush_millis is None else flush_millis,
                         ".v2" if filename_suffix is None else filename_suffix)


def create_noop_writer():
    return _NoopWriter()


def _default_writer():
    return _state.writers[-1] if _state.writers else None


def flush(writer=None, name=None):
    """Flushes `writer` (default: the default writer)."""
    writer = writer or _default_writer()
    if writer is not None:
        writer.flush()


@contextlib.contextmanager
def record_if(condition):
    """Summaries inside write only while `condition` (a bool, or a callable returning one) holds."""
    _state.record.append(condition)
    try:
        yield
    finally:
        _state.record.pop()


def should_record_summaries():
    """Whether a summary written now would be recorded: a default writer exists and every record_if holds."""
    writer = _default_writer()
    if writer is None or isinstance(writer, _NoopWriter):
        return False
    for condition in _state.record:
        value = condition() if callable(condition) else condition
        if hasattr(value, "numpy"):
            value = value.numpy()
        if not bool(value):
            return False
    return True


def set_step(step):
    """The step summaries use when none is given (an int, a tensor or an int64 variable)."""
    _step[0] = step


def get_step():
    return _step[0]


@contextlib.contextmanager
def summary_scope(name, default_name=None, values=None):
    """Yields (tag, scope): the tag is the current name scope plus `name`, not made unique."""
    name = name or default_name
    current = context.eager_name_scope() if context.executing_eagerly() else get_default_graph().get_name_scope()
    tag = f"{current}/{name}" if current else name
    with scopes.name_scope(_op_name(name), default_name) as scope:
        yield tag, scope


def _op_name(name):
    """`name` as an op name: characters an op name cannot hold dropped (None if nothing is left)."""
    cleaned = "".join(c for c in name if c.isalnum() or c in "-_./")
    return cleaned.lstrip("/") or None


def _result(value):
    return value if context.executing_eagerly() else array_ops.constant(value)


def _emit(summary, step):
    """Hands the Summary tensor to the default writer at `step`; returns True (a tensor in a graph)."""
    writer = _default_writer()
    if step is None:
        step = _step[0]
    if step is None:
        raise ValueError("No step set. Please specify one either through the `step` argument or through "
                         "tf.summary.experimental.set_step()")
    if context.executing_eagerly():
        step = step.numpy() if hasattr(step, "numpy") else step
        writer.write_serialized_summary(bytes(summary.numpy()), int(step))
        return True
    step = convert_to_tensor(step)
    if step.dtype != dtypes.int64:
        step = array_ops.cast(step, dtypes.int64)
    # the write's own output is the result, so a tg.function that drops it still runs it (an unconsumed
    # stateful op)
    return apply_op("WriteRawProtoSummary", [step, summary], {"writer": writer._id}, name="write_summary")


def _string(value, name):
    return array_ops.constant(value, dtype=dtypes.string, name=name)


def write(tag, tensor, step=None, metadata=None, name=None):
    """Writes `tensor` under `tag` with SummaryMetadata `metadata` (a proto or its bytes) at `step`."""
    if not should_record_summaries():
        return _result(False)
    if metadata is None:
        metadata = _pb().SummaryMetadata()
    serialized = metadata if isinstance(metadata, bytes) else metadata.SerializeToString()
    with scopes.name_scope(name, "write_summary"):
        summary = apply_op("TensorSummaryV2", [_string(tag, "tag"), convert_to_tensor(tensor),
                                               _string(serialized, "metadata")], name="summary")
        return _emit(summary, step)


def scalar(name, data, step=None, description=None):
    """Writes one real number under name-scope/name at `step` (TensorBoard's Scalars tab)."""
    if not should_record_summaries():
        return _result(False)
    with summary_scope(name, "scalar_summary") as (tag, _):
        data = convert_to_tensor(data)
        if data.shape.ndims not in (None, 0):
            raise ValueError(f"tg.summary.scalar '{tag}': data must be a scalar, got shape {data.shape}")
        if data.dtype != dtypes.float32:
            data = array_ops.cast(data, dtypes.float32)
        return write(tag, data, step, summary_ops.plugin_metadata("scalars", description=description or ""))


def histogram(name, data, step=None, buckets=None, description=None):
    """Writes the distribution of data's elements over `buckets` (default 30) equal-width buckets."""
    if not should_record_summaries():
        return _result(False)
    with summary_scope(name, "histogram_summary") as (tag, _):
        attrs = {"buckets": 30 if buckets is None else int(buckets), "description": description or ""}
        summary = apply_op("HistogramSummaryV2", [_string(tag, "tag"), convert_to_tensor(data)], attrs,
                           name="summary")
        return _emit(summary, step)


def image(name, data, step=None, max_outputs=3, description=None):
    """Writes up to max_outputs images of data [k, h, w, 1|3|4] (uint8, or floats in [0, 1]) as PNGs."""
    if not should_record_summaries():
        return _result(False)
    with summary_scope(name, "image_summary") as (tag, _):
        data = convert_to_tensor(data)
        if data.shape.ndims not in (None, 4):
            raise ValueError(f"tg.summary.image '{tag}': data must be [k, h, w, c], got shape {data.shape}")
        attrs = {"max_outputs": int(max_outputs), "description": description or ""}
        summary = apply_op("ImageSummaryV2", [_string(tag, "tag"), data], attrs, name="summary")
        return _emit(summary, step)


def text(name, data, step=None, description=None):
    """Writes a string tensor (TensorBoard's Text tab)."""
    if not should_record_summaries():
        return _result(False)
    with summary_scope(name, "text_summary") as (tag, _):
        data = convert_to_tensor(data, dtype=dtypes.string)
        return write(tag, data, step, summary_ops.plugin_metadata("text", description=description or ""))


experimental = types.SimpleNamespace(set_step=set_step, get_step=get_step, summary_scope=summary_scope)
