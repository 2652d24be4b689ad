"""The wire format: .proto sources (package tensorgrid.v1) and the modules generated from them.

types_pb2 holds the graph and tensor types (GraphDef, NodeDef, AttrValue,
TensorProto, TensorShapeProto, DataType), config_pb2 the session and step
options and step statistics; convert.py turns them into the runtime's
Python values and back. The *_pb2*.py modules are generated: edit the .proto
and run proto/generate.py.
"""
