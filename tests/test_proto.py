"""Tests for proto/: tensor, attr and graph conversion, and the generated modules' freshness."""

import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.internal import api_implementation

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.proto import config_pb2, convert, generate, types_pb2
from tensorgrid.runtime.ir import GraphIR, Node


def assert_same_bits(got, want):
    """Same dtype (native order), shape and bytes; object arrays compared element by element."""
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object
        assert got.ravel().tolist() == want.ravel().tolist()
        assert all(type(x) is bytes for x in got.ravel().tolist())
        return
    assert got.dtype == want.dtype.newbyteorder("=")
    assert got.tobytes() == np.ascontiguousarray(want, dtype=want.dtype.newbyteorder("=")).tobytes()


def wire_round_trip(arr, dtype=None):
    data = convert.ndarray_to_tensor_proto(arr, dtype).SerializeToString()
    return convert.tensor_proto_to_ndarray(types_pb2.TensorProto.FromString(data))


def _f32_bits(*bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def _f64_bits(*bits):
    return np.array(bits, dtype=np.uint64).view(np.float64)


def _f16_bits(*bits):
    return np.array(bits, dtype=np.uint16).view(np.float16)


SPECIAL = {
    "float32": _f32_bits(0x7FC00001, 0xFFC12345, 0x7F800001, 0x80000000, 0x7F800000, 0xFF800000,
                         0x00000001, 0x7F7FFFFF, 0x3DCCCCCD),
    "float64": _f64_bits(0x7FF8000000000123, 0xFFF0000000000001, 0x8000000000000000, 0x7FF0000000000000,
                         0x0000000000000001, 0x3FB999999999999A),
    "float16": _f16_bits(0x7E01, 0xFC01, 0x8000, 0x7C00, 0x0001, 0x7BFF),
    "int8": np.array([-128, -1, 0, 127], np.int8),
    "int16": np.array([-32768, -1, 0, 32767], np.int16),
    "int32": np.array([-2**31, -1, 0, 2**31 - 1], np.int32),
    "int64": np.array([-2**63, -1, 0, 2**63 - 1], np.int64),
    "uint8": np.array([0, 1, 254, 255], np.uint8),
    "bool": np.array([True, False, True], np.bool_),
    "string": np.array([b"", b"abc", b"\x00\xff\xfe", "h\u00e9".encode()], dtype=object),
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_every_dtype_round_trips_bit_exact(name):
    arr = SPECIAL[name]
    tp = convert.ndarray_to_tensor_proto(arr)
    assert tp.dtype == dtypes.as_dtype(name).as_datatype_enum
    assert_same_bits(wire_round_trip(arr), arr)


@pytest.mark.parametrize("name", sorted(SPECIAL))
@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3), (3, 4), (2, 3, 4)])
def test_shapes_round_trip(name, shape):
    count = int(np.prod(shape))
    base = SPECIAL[name]
    arr = np.resize(base, count).reshape(shape) if count else base[:0].reshape(shape)
    got = wire_round_trip(arr)
    assert got.shape == shape
    assert_same_bits(got, arr)


def test_tensor_content_is_raw_little_endian():
    tp = convert.ndarray_to_tensor_proto(np.array([[1.0, -0.0]], np.float32))
    assert tp.tensor_content == struct.pack("<ff", 1.0, -0.0)
    assert [d.size for d in tp.tensor_shape.dim] == [1, 2]
    assert not tp.string_val


@pytest.mark.parametrize("name", ["float16", "float32", "float64", "int16", "int32", "int64"])
def test_big_endian_input_goes_little_endian(name):
    native = SPECIAL[name]
    big = native.astype(native.dtype.newbyteorder(">"))
    tp = convert.ndarray_to_tensor_proto(big)
    assert tp.tensor_content == native.astype(native.dtype.newbyteorder("<")).tobytes()
    assert_same_bits(wire_round_trip(big), native)


def test_non_contiguous_input_is_sent_in_row_major_order():
    arr = np.arange(24, dtype=np.float64).reshape(4, 6)
    for view in (arr.T, arr[::2, 1::3], np.asfortranarray(arr)):
        assert_same_bits(wire_round_trip(view), np.ascontiguousarray(view))


def test_strings():
    arr = np.array([["a", "\u00e9"], ["", "xyz"]])
    got = wire_round_trip(arr)
    assert got.tolist() == [[b"a", "\u00e9".encode()], [b"", b"xyz"]]
    assert wire_round_trip(np.array(b"one", dtype=object)).tolist() == b"one"
    assert wire_round_trip(np.array([], dtype=object)).shape == (0,)
    tp = convert.ndarray_to_tensor_proto(np.array([b"p", b"q"], dtype=object))
    assert tp.dtype == types_pb2.DT_STRING and list(tp.string_val) == [b"p", b"q"] and not tp.tensor_content
    with pytest.raises(TypeError, match="bytes or str"):
        convert.ndarray_to_tensor_proto(np.array([1, b"x"], dtype=object))


def test_explicit_dtype_casts():
    tp = convert.ndarray_to_tensor_proto([1, 2, 3], dtypes.float16)
    assert tp.dtype == types_pb2.DT_HALF
    assert_same_bits(convert.tensor_proto_to_ndarray(tp), np.array([1, 2, 3], np.float16))
    assert convert.ndarray_to_tensor_proto(3, "int64").dtype == types_pb2.DT_INT64
    assert wire_round_trip(["x", "y"], dtypes.string).tolist() == [b"x", b"y"]
    z = np.array([5 + 4j, 6 + 1j], np.complex128)   # the variable guide's complex variable travels bit for bit
    assert convert.ndarray_to_tensor_proto(z).dtype == 18    # DT_COMPLEX128
    assert_same_bits(convert.tensor_proto_to_ndarray(convert.ndarray_to_tensor_proto(z, dtypes.complex64)),
                     z.astype(np.complex64))
    with pytest.raises(TypeError):
        convert.ndarray_to_tensor_proto(np.zeros(2, np.uint16))


def test_arrays_are_read_only_views_unless_asked():
    tp = convert.ndarray_to_tensor_proto(np.arange(4, dtype=np.int32))
    assert not convert.tensor_proto_to_ndarray(tp).flags.writeable
    arr = convert.tensor_proto_to_ndarray(tp, writable=True)
    arr[0] = 7
    assert arr.tolist() == [7, 1, 2, 3]


def test_malformed_tensor_protos_are_invalid_argument():
    tp = convert.ndarray_to_tensor_proto(np.zeros((2, 2), np.float32))
    short = types_pb2.TensorProto()
    short.CopyFrom(tp)
    short.tensor_content = tp.tensor_content[:-1]
    with pytest.raises(errors.InvalidArgumentError, match="needs 16 bytes"):
        convert.tensor_proto_to_ndarray(short)
    unknown = types_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=types_pb2.TensorShapeProto(
        dim=[types_pb2.TensorShapeProto.Dim(size=-1)]))
    with pytest.raises(errors.InvalidArgumentError, match="fully known"):
        convert.tensor_proto_to_ndarray(unknown)
    strings = types_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a"], tensor_shape=types_pb2.TensorShapeProto(
        dim=[types_pb2.TensorShapeProto.Dim(size=2)]))
    with pytest.raises(errors.InvalidArgumentError, match="needs 2 string_val"):
        convert.tensor_proto_to_ndarray(strings)
    with pytest.raises(errors.InvalidArgumentError, match="DT_RESOURCE"):
        convert.tensor_proto_to_ndarray(types_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE))


# ---------------------------------------------------------------- attrs

def assert_attr_equal(got, want):
    assert type(got) is type(want), (got, want)
    if isinstance(want, np.ndarray):
        assert_same_bits(got, want)
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_attr_equal(g, w)
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want)
    elif isinstance(want, TensorShape):
        assert got.as_tuple() == want.as_tuple()
    elif isinstance(want, dtypes.DType):
        assert got is want
    else:
        assert got == want


def attr_round_trip(value):
    data = convert.attr_to_proto(value).SerializeToString()
    return convert.attr_from_proto(types_pb2.AttrValue.FromString(data))


ATTRS = [
    0, 1, -1, 2**63 - 1, -2**63, True, False,
    0.0, -0.0, 0.1, 1e300, float("inf"), float("-inf"), 5e-324,
    "", "SAME", "na\u00efve \u6f22\u5b57", b"\xff\xfe",
    *dtypes.ALL,
    TensorShape(None), TensorShape([]), TensorShape([None]), TensorShape([2, None, 3]), TensorShape([0]),
    SPECIAL["float32"], np.array(3, np.int64), SPECIAL["string"], np.zeros((0, 2), np.float16),
    [], [1, 2, 3], [1.5, -0.0], [True, False], ["a", "b\u00e9"], [b"\x80", "ok"], [dtypes.int32, dtypes.bool_],
    [TensorShape([1, None]), TensorShape(None), TensorShape([])], [np.arange(3), SPECIAL["float16"]],
]


@pytest.mark.parametrize("value", ATTRS, ids=lambda v: f"{type(v).__name__}:{v!r}"[:60])
def test_attr_round_trip(value):
    assert_attr_equal(attr_round_trip(value), value)


def test_attr_nan_float_keeps_bits():
    nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000ABC))[0]
    got = attr_round_trip(nan)
    if api_implementation.Type() == "python":
        assert got != got  # the pure-Python backend writes every NaN double as the canonical NaN
    else:
        assert struct.pack("<d", got) == struct.pack("<d", nan)


def test_attr_kinds_on_the_wire():
    assert convert.attr_to_proto(True).WhichOneof("value") == "b"
    assert convert.attr_to_proto(np.bool_(True)).WhichOneof("value") == "b"
    assert convert.attr_to_proto(np.int32(4)).i == 4
    assert convert.attr_to_proto(np.float32(0.5)).f == 0.5
    assert convert.attr_to_proto("VALID").s == b"VALID"
    assert convert.attr_to_proto(dtypes.float16).type == types_pb2.DT_HALF
    assert convert.attr_to_proto(TensorShape([2, None])).shape.dim[1].size == -1
    assert convert.attr_to_proto(TensorShape(None)).shape.unknown_rank
    assert list(convert.attr_to_proto((1, 2)).list.i) == [1, 2]
    assert list(convert.attr_to_proto([1, 2.5]).list.f) == [1.0, 2.5]
    assert convert.attr_to_proto([]).WhichOneof("value") == "list"


def test_attr_text_and_bytes():
    assert attr_round_trip(b"abc") == "abc"  # valid UTF-8 comes back as str
    assert attr_round_trip(b"\xc3") == b"\xc3"
    assert attr_round_trip(("x", "y")) == ["x", "y"]


@pytest.mark.parametrize("bad", [None, object(), {"a": 1}, [1, "a"], [None], [[1, 2]], 2**64])
def test_bad_attrs_are_rejected(bad):
    with pytest.raises((TypeError, ValueError)):
        convert.attr_to_proto(bad)


def test_empty_attr_value_is_rejected():
    with pytest.raises(TypeError, match="no value"):
        convert.attr_from_proto(types_pb2.AttrValue())


# ---------------------------------------------------------------- nodes and graphs

def assert_nodes_equal(got, want):
    assert (got.name, got.op, got.inputs, got.control_inputs, got.device, got.source) == (
        want.name, want.op, want.inputs, want.control_inputs, want.device, want.source)
    assert sorted(got.attrs) == sorted(want.attrs)
    for key, value in want.attrs.items():
        assert_attr_equal(got.attrs[key], value)


def sample_graph():
    dev = "/job:worker/replica:0/task:1/device:CPU:0"
    return GraphIR([
        Node("x", "Placeholder", attrs={"dtype": dtypes.float32, "shape": TensorShape([None, 3])},
             source=("model.py", 12)),
        Node("w", "Const", device="/job:ps/task:0", attrs={"dtype": dtypes.float32, "value": SPECIAL["float32"]}),
        Node("init", "NoOp"),
        Node("scope/mm", "MatMul", ["x:0", "w:0"], ["init"], dev,
             {"T": dtypes.float32, "transpose_a": False, "transpose_b": True}, ("model.py", 40)),
        Node("split", "Split", ["scope/mm:0"], attrs={"num_split": 2, "axis": -1}),
        Node("out", "AddN", ["split:0", "split:1"], ["init", "x"],
             attrs={"N": 2, "names": ["a", b"\xff"], "ratios": [0.5, -0.0], "padding": "SAME",
                    "shapes": [TensorShape([1]), TensorShape(None)], "label": "",
                    "types": [dtypes.int8, dtypes.string], "empty": []}),
    ])


def test_graph_round_trip_through_bytes():
    graph = sample_graph()
    graph_def = convert.graph_ir_to_proto(graph, version=5)
    data = graph_def.SerializeToString()
    parsed = types_pb2.GraphDef.FromString(data)
    assert parsed.version == 5
    back = convert.graph_def_to_ir(parsed)
    assert list(back.nodes) == list(graph.nodes)
    for name in graph.nodes:
        assert_nodes_equal(back[name], graph[name])


def test_node_def_layout():
    nd = convert.node_to_proto(sample_graph()["out"])
    assert list(nd.input) == ["split:0", "split:1", "^init", "^x"]
    assert nd.attr["padding"].s == b"SAME" and nd.attr["N"].i == 2
    mm = convert.node_to_proto(sample_graph()["scope/mm"])
    assert (mm.source_file, mm.source_line) == ("model.py", 40)
    assert mm.device == "/job:worker/replica:0/task:1/device:CPU:0"
    assert convert.node_to_proto(sample_graph()["init"]).source_file == ""


def test_node_from_proto_normalises_inputs():
    nd = types_pb2.NodeDef(name="n", op="Add", input=["a", "b:2", "scope/c:10", "^d", "weird:x"])
    node = convert.node_from_proto(nd)
    assert node.inputs == ["a:0", "b:2", "scope/c:10", "weird:x:0"]
    assert node.control_inputs == ["d"]
    assert node.source is None and node.attrs == {} and node.device == ""


def test_duplicate_node_names_are_invalid_argument():
    graph_def = types_pb2.GraphDef(node=[types_pb2.NodeDef(name="a", op="NoOp")] * 2)
    with pytest.raises(errors.InvalidArgumentError, match="duplicate node name 'a'"):
        convert.graph_def_to_ir(graph_def)


def test_config_protos_use_tf_field_names():
    options = config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE, timeout_in_ms=500)
    stats = config_pb2.NodeExecStats(node_name="n", all_start_micros=10, all_end_rel_micros=3, output=[
        config_pb2.NodeOutput(slot=0, tensor_description=config_pb2.TensorDescription(
            dtype=types_pb2.DT_FLOAT, allocation_description=config_pb2.AllocationDescription(requested_bytes=4)))])
    meta = config_pb2.RunMetadata(
        step_stats=config_pb2.StepStats(dev_stats=[config_pb2.DeviceStepStats(device="/cpu:0", node_stats=[stats])]),
        partition_graphs=[convert.graph_ir_to_proto(sample_graph())])
    meta = config_pb2.RunMetadata.FromString(meta.SerializeToString())
    out = meta.step_stats.dev_stats[0].node_stats[0].output[0]
    assert out.tensor_description.allocation_description.requested_bytes == 4
    assert options.trace_level == 3
    config = config_pb2.ConfigProto(device_count={"GPU": 0}, allow_soft_placement=True, token="t")
    assert config_pb2.ConfigProto.FromString(config.SerializeToString()) == config


# ---------------------------------------------------------------- generated code

def test_every_proto_has_fresh_generated_code():
    sources = generate.proto_sources()
    assert "types.proto" in sources and "config.proto" in sources
    modules = {p.name: p for p in generate.generated_modules()}
    for name in sources:
        assert f"{name[:-6]}_pb2.py" in modules, f"proto/{name} has no generated module; run proto/generate.py"
    for filename, path in modules.items():
        source = filename.rsplit("_pb2", 1)[0] + ".proto"
        assert source in sources, f"proto/{filename} is left over from a removed {source}; run proto/generate.py"
        assert generate.recorded_digest(path) == generate.source_digest(source), (
            f"proto/{filename} was generated from an older proto/{source} (or a file it imports); "
            "run proto/generate.py")
        importlib.import_module(f"tensorgrid.proto.{filename[:-3]}")


def test_digest_covers_imported_protos(tmp_path):
    for name in generate.proto_sources():
        shutil.copyfile(generate.PROTO_DIR / name, tmp_path / name)
    before = generate.source_digest("config.proto", tmp_path)
    types_text = (tmp_path / "types.proto").read_text()
    (tmp_path / "types.proto").write_text(types_text + "\n// edited\n")
    assert generate.source_digest("config.proto", tmp_path) != before


@pytest.fixture(scope="module")
def generator_python():
    """A Python with the pinned grpcio-tools, which cannot share an environment with protobuf 7.

    $TENSORGRID_GRPC_TOOLS_PYTHON when set, else a venv of its own, made once (from PyPI) under
    ~/.cache/tensorgrid and kept: the recipe proto/generate.py gives, run by the test.
    """
    given = os.environ.get("TENSORGRID_GRPC_TOOLS_PYTHON")
    if given:
        return given
    pinned = generate.GRPC_TOOLS_VERSION
    # grpcio-tools 1.62.3 has wheels for CPython 3.8 to 3.12 only.
    base = sys.executable if sys.version_info < (3, 13) else shutil.which("python3.12")
    assert base, f"grpcio-tools=={pinned} needs a Python 3.8-3.12 to run in; none is on PATH"
    version = subprocess.run([base, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tensorgrid"
    venv = cache / f"grpcio-tools-{pinned}-py{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f"{venv.name}.", dir=cache))
        try:
            subprocess.run([base, "-m", "venv", str(fresh)], check=True, capture_output=True)
            pip = subprocess.run([str(fresh / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                  "--disable-pip-version-check", f"grpcio-tools=={pinned}"],
                                 capture_output=True, text=True, timeout=600)
            assert pip.returncode == 0, f"cannot install grpcio-tools=={pinned} into a venv:\n{pip.stderr[-2000:]}"
            # A venv's scripts name its folder, so it is made where it stays; a concurrent run's wins.
            try:
                fresh.rename(venv)
            except OSError:
                pass
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    return str(python)


def _generate(python, out_dir, proto_dir=generate.PROTO_DIR):
    """proto/generate.py's generate(out_dir, proto_dir), run by `python`; the file names it wrote."""
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import generate; "
              "print(json.dumps(generate.generate(sys.argv[2], sys.argv[3])))")
    result = subprocess.run([python, "-c", script, str(generate.PROTO_DIR), str(out_dir), str(proto_dir)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_generator_python_has_the_pinned_grpcio_tools(generator_python):
    found = subprocess.run([generator_python, "-c", "from importlib import metadata; "
                            "print(metadata.version('grpcio-tools'))"], capture_output=True, text=True)
    assert found.stdout.strip() == generate.GRPC_TOOLS_VERSION, found


def test_regeneration_matches_checked_in_code(tmp_path, generator_python):
    written = _generate(generator_python, tmp_path)
    checked_in = sorted(p.name for p in generate.generated_modules())
    assert written == checked_in
    for filename in written:
        assert (tmp_path / filename).read_text() == (generate.PROTO_DIR / filename).read_text(), (
            f"proto/{filename} differs from a fresh generation; run proto/generate.py")


def test_generator_handles_services_and_stale_files(tmp_path, generator_python):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("config.proto", "types.proto"):  # what echo.proto imports
        shutil.copyfile(generate.PROTO_DIR / name, src / name)
    (src / "echo.proto").write_text(
        'syntax = "proto3";\npackage tensorgrid.v1;\nimport "tensorgrid/proto/config.proto";\n'
        'import "tensorgrid/proto/types.proto";\n'
        "message EchoRequest { GraphDef graph_def = 1; ConfigProto config = 2; }\n"
        "message EchoResponse { TensorProto tensor = 1; }\n"
        "service EchoService { rpc Echo(EchoRequest) returns (stream EchoResponse); }\n")
    shutil.copyfile(generate.PROTO_DIR / "types_pb2.py", out / "gone_pb2.py")
    written = _generate(generator_python, out, src)
    assert written == ["config_pb2.py", "echo_pb2.py", "echo_pb2_grpc.py", "types_pb2.py"]
    assert sorted(p.name for p in out.iterdir()) == written
    grpc_text = (out / "echo_pb2_grpc.py").read_text()
    assert "from tensorgrid.proto import echo_pb2" in grpc_text and "EchoServiceStub" in grpc_text
    assert "from tensorgrid.proto import types_pb2" in (out / "echo_pb2.py").read_text()
    assert generate.recorded_digest(out / "echo_pb2_grpc.py") == generate.source_digest("echo.proto", src)


def test_variant_tensors_stay_on_their_device():
    with pytest.raises(TypeError, match="variant tensors live on one device"):
        convert.ndarray_to_tensor_proto(np.array([object()], dtype=object), dtypes.variant)
    assert dtypes.as_dtype("variant") is dtypes.variant and dtypes.variant.as_datatype_enum == 21
