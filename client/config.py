"""Session configuration and run options: the protobuf messages of proto/config.proto."""

from tensorgrid.proto.config_pb2 import ConfigProto, GraphOptions, RewriterConfig, RunMetadata, RunOptions  # noqa: F401
from tensorgrid.proto.types_pb2 import GraphDef  # noqa: F401
