"""tg.summary (TF2) and tf.summary (TF1): TensorBoard summaries and the event files they go to.

`event_file` writes and reads the files, `writer` is TF1's FileWriter,
`summary_v1` TF1's graph summary ops, `summary_v2` TF2's writers and
summary functions. The ops' kernels are in tensorgrid/ops/summary_ops.py.
"""

import types as _types

from tensorgrid.client.summary.summary_v2 import *  # noqa: F401,F403
from tensorgrid.client.summary.summary_v2 import __all__, experimental  # noqa: F401
from tensorgrid.client.summary import event_file, summary_v1, writer
from tensorgrid.client.summary.event_file import summary_iterator  # noqa: F401


def protos():
    """The generated summary_pb2 module (Summary, Event, HistogramProto, ...)."""
    from tensorgrid.proto import summary_pb2
    return summary_pb2


def v1_namespace():
    """TF1's tf.summary: the graph summary ops, FileWriter, FileWriterCache and the Summary/Event protos."""
    pb = protos()
    names = {name: getattr(summary_v1, name) for name in summary_v1.__all__}
    names.update(FileWriter=writer.FileWriter, FileWriterCache=writer.FileWriterCache, Summary=pb.Summary,
                 Event=pb.Event, SessionLog=pb.SessionLog, TaggedRunMetadata=pb.TaggedRunMetadata,
                 SummaryMetadata=pb.SummaryMetadata)
    return _types.SimpleNamespace(**names)


__all__ = list(__all__) + ["experimental", "summary_iterator", "event_file", "summary_v1", "writer", "v1_namespace", "protos"]
