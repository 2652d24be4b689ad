"""Regenerates proto/*_pb2.py and proto/*_pb2_grpc.py from proto/*.proto.

Run it, from anywhere, with the pinned grpcio-tools in a venv of its own:

    python3 -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.62.3
    /tmp/gen/bin/python proto/generate.py

Why grpcio-tools 1.62.3: the checked-in code must import, without errors or
warnings, under every protobuf and grpcio the project supports: protobuf
5.27 through 7.x (TensorFlow 2.21 asks for protobuf>=6.31.1,<8) and grpcio
1.60 through 1.84 and newer. Newer gencode refuses older runtimes:
  - _pb2 modules from newer protoc call ValidateProtobufRuntimeVersion,
    which refuses a runtime older than the gencode, and in protobuf 5.27
    refuses any other major version, in 5.28 to 6.31 warns one major back.
    So gencode for 5.x breaks or warns under 6.31 (TF's floor) and gencode
    for 6.x breaks under 5.x. grpcio-tools 1.62.3 bundles protoc 25
    (protobuf 4.25), whose gencode makes no version check and calls only
    descriptor-pool and builder functions that 5.x, 6.x and 7.x all keep.
  - _pb2_grpc modules from newer grpcio-tools check GRPC_GENERATED_VERSION
    and refuse any grpcio older than the tools (1.66.2's refuse grpcio
    1.62). 1.62.3's make no check and use only long-standing grpcio API.
Verified by importing the generated modules, and serving a unary and a
streaming RPC through them, under grpcio 1.84.0 + protobuf 7.36.2,
grpcio 1.84.0 + protobuf 6.31.1, grpcio 1.60.0 + protobuf 5.27.0,
grpcio 1.62.0 + protobuf 5.29.6 and grpcio 1.85.3 + protobuf 6.33.6, with
both the upb and the pure-Python protobuf backends and warnings as errors.
Moving to a newer grpcio-tools means raising the floors on grpcio and
protobuf to the versions it bundles. grpcio-tools 1.62.3 has wheels for
CPython 3.8 to 3.12 only, so the generator venv needs one of those.
tests/test_proto.py compares the checked-in files with a fresh run when this
version is installed.

Each .proto imports its siblings as "tensorgrid/proto/<name>.proto"; the
sources are copied into a temporary tensorgrid/proto/ tree so that protoc
writes imports as `from tensorgrid.proto import types_pb2`. Every generated
file records, in its second line, the sha256 of the .proto sources it came
from (the file and the sibling files it imports, transitively); the tests
fail when a .proto changes and this script has not been rerun. A _pb2_grpc
module is written only for a .proto that defines a service.

Adding a file (master.proto, worker.proto): put it in proto/ with
`package tensorgrid.v1;`, import siblings as above, rerun this script and
commit the .proto with the files it writes.
"""

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

GRPC_TOOLS_VERSION = "1.62.3"
PROTO_DIR = Path(__file__).resolve().parent
HEADER_PREFIX = "# proto-sources-sha256: "
_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"tensorgrid/proto/([^"/]+\.proto)"\s*;', re.M)


def proto_sources(proto_dir=PROTO_DIR):
    """The .proto file names in proto_dir, sorted."""
    return sorted(p.name for p in Path(proto_dir).glob("*.proto"))


def source_digest(name, proto_dir=PROTO_DIR):
    """sha256 hex of the .proto `name` and the sibling .protos it imports, transitively."""
    proto_dir = Path(proto_dir)
    seen, todo = {}, [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        path = proto_dir / current
        if not path.exists():
            raise FileNotFoundError(f"{path} (imported, directly or not, by {name}) does not exist")
        seen[current] = path.read_bytes()
        todo.extend(_IMPORT.findall(seen[current].decode("utf-8")))
    h = hashlib.sha256()
    for key in sorted(seen):
        h.update(key.encode() + b"\0" + seen[key] + b"\0")
    return h.hexdigest()


def recorded_digest(path):
    """The sha256 a generated file's header records, or None when it has none."""
    with open(path, encoding="utf-8") as f:
        for _ in range(3):
            line = f.readline()
            if line.startswith(HEADER_PREFIX):
                return line[len(HEADER_PREFIX):].split()[0]
    return None


def generated_modules(proto_dir=PROTO_DIR):
    """Paths of the generated modules (ours, by their header) in proto_dir."""
    out = []
    for path in sorted(Path(proto_dir).glob("*_pb2*.py")):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")) and recorded_digest(path) is not None:
            out.append(path)
    return out


def _with_header(text, digest, source):
    header = (f"{HEADER_PREFIX}{digest} ({source}; grpcio-tools {GRPC_TOOLS_VERSION}; "
              "regenerate with proto/generate.py, do not edit)\n")
    first, _, rest = text.partition("\n")
    if first.startswith("# -*- coding"):
        return first + "\n" + header + rest
    return header + text


def _run_protoc(src_root, out_root, names):
    """Runs grpc_tools' protoc on tensorgrid/proto/<names> under src_root; returns the descriptor set."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    descriptor_path = os.path.join(out_root, "descriptors.pb")
    args = ["grpc_tools.protoc", f"-I{src_root}", f"-I{include}",
            f"--python_out={out_root}", f"--grpc_python_out={out_root}",
            f"--descriptor_set_out={descriptor_path}"]
    args += [f"tensorgrid/proto/{n}" for n in names]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    descriptors = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_path, "rb") as f:
        descriptors.ParseFromString(f.read())
    return {fd.name.rpartition("/")[2]: fd for fd in descriptors.file}


def generate(out_dir=PROTO_DIR, proto_dir=PROTO_DIR):
    """Writes the generated modules for every .proto of proto_dir into out_dir.

    Generated modules in out_dir that no current .proto accounts for are
    removed. Returns the names of the files written.
    """
    out_dir, proto_dir = Path(out_dir), Path(proto_dir)
    names = proto_sources(proto_dir)
    if not names:
        raise SystemExit(f"no .proto files in {proto_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        src_root, out_root = Path(tmp, "src"), Path(tmp, "out")
        (src_root / "tensorgrid" / "proto").mkdir(parents=True)
        out_root.mkdir()
        for n in names:
            shutil.copyfile(proto_dir / n, src_root / "tensorgrid" / "proto" / n)
        files = _run_protoc(src_root, out_root, names)
        generated = {}
        for n in names:
            stem, digest = n[:-len(".proto")], source_digest(n, proto_dir)
            kinds = ["_pb2"] + (["_pb2_grpc"] if files[n].service else [])
            for kind in kinds:
                text = (out_root / "tensorgrid" / "proto" / f"{stem}{kind}.py").read_text(encoding="utf-8")
                generated[f"{stem}{kind}.py"] = _with_header(text, digest, n)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in generated_modules(out_dir):
        if stale.name not in generated:
            stale.unlink()
    for filename, text in generated.items():
        tmp_path = out_dir / f".{filename}.tmp"
        tmp_path.write_text(text, encoding="utf-8")
        os.replace(tmp_path, out_dir / filename)
    return sorted(generated)


def installed_grpc_tools_version():
    """The installed grpcio-tools version, or None when it is not installed."""
    from importlib import metadata
    try:
        return metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        return None


def main():
    found = installed_grpc_tools_version()
    if found != GRPC_TOOLS_VERSION:
        raise SystemExit(
            f"proto/generate.py needs grpcio-tools=={GRPC_TOOLS_VERSION} (found {found}); other versions "
            "write code that older grpcio/protobuf refuse. See this file's docstring for a venv recipe.")
    for filename in generate():
        print(f"wrote proto/{filename}")


if __name__ == "__main__":
    main()
