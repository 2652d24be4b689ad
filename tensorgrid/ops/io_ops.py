"""File and byte ops of tg.io: ReadFile, WriteFile, MatchingFiles, DecodeRaw, DecodePaddedRaw,
SerializeTensor, ParseTensor, and ParseExampleV2 (tf.train.Example protos to tensors).

TF's op names, inputs and attrs. Every kernel is CPU only. The ops that
touch the file system resolve their paths through `open_for(node, path,
mode)`, the one place a device's file-access rule applies.
"""

import contextlib
import glob
import os

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.registry import register
from tensorgrid.proto import convert
from tensorgrid.worker import file_access

# ---- files ---------------------------------------------------------------------------------


def _text(value):
    """A string scalar's value as a str path."""
    v = np.asarray(value, dtype=object)
    if v.ndim:
        raise errors.InvalidArgumentError(None, None, f"a file name must be a scalar, got shape {list(v.shape)}")
    v = v[()]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _where(node):
    return f"{node.op} '{node.name}' on {node.device}"


@contextlib.contextmanager
def os_errors(path, where=""):
    """OSErrors inside as TF's error classes, naming the path (after `where`, the node, when given)."""
    at = f"{where}: {path}" if where else path
    try:
        yield
    except FileNotFoundError:
        raise errors.NotFoundError(None, None, f"{at}; No such file or directory") from None
    except FileExistsError:
        raise errors.AlreadyExistsError(None, None, f"{at}; File exists") from None
    except IsADirectoryError:
        raise errors.FailedPreconditionError(None, None, f"{at}; Is a directory") from None
    except NotADirectoryError:
        raise errors.FailedPreconditionError(None, None, f"{at}; Not a directory") from None
    except PermissionError:
        raise errors.PermissionDeniedError(None, None, f"{at}; Permission denied") from None
    except OSError as e:
        raise errors.UnknownError(None, None, f"{at}; {e.strerror or e}") from None


def open_for(node, path, mode):
    """`open(path, mode)` for the kernel of `node`, errors as TF's file system gives them; the path must pass
    the process's file-access policy (worker/file_access.py: a worker's --allow-file-access)."""
    path = file_access.check_path(path, "r" if mode.strip("bt") == "r" else "w", _where(node))
    with os_errors(path, _where(node)):
        return open(path, mode)


def _read_file_kernel(node):
    def run(filename):
        with open_for(node, _text(filename), "rb") as f:
            return np.array(f.read(), dtype=object)
    return run


def _write_file_kernel(node):
    def run(filename, contents):
        path = _text(filename)
        parent = os.path.dirname(path)
        if parent:
            parent = file_access.check_path(parent, "w", _where(node))
            with os_errors(parent, _where(node)):
                os.makedirs(parent, exist_ok=True)
        data = np.asarray(contents, dtype=object)[()]
        with open_for(node, path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return run


def _matching_files_kernel(node):
    def run(pattern):
        names = []
        for p in np.ravel(np.asarray(pattern, dtype=object)).tolist():
            p = p.decode("utf-8") if isinstance(p, bytes) else p
            # the directory the pattern lists must be allowed, and so must each name it matches
            literal = p[:min([p.index(c) for c in "*?[" if c in p] or [len(p)])]
            file_access.check_path(os.path.dirname(literal) or ".", "r", _where(node))
            names.extend(sorted(n for n in glob.glob(p) if file_access.allows(n)))
        out = np.empty(len(names), dtype=object)
        out[:] = [n.encode("utf-8") for n in names]
        return out
    return run


register("ReadFile", lambda ctx: [(dtypes.string, ())], _read_file_kernel, cpu_only=True,
         doc="The bytes of the file input filename names (a string scalar).")
register("WriteFile", lambda ctx: [], _write_file_kernel, cpu_only=True, stateful=True, num_outputs=0,
         doc="Writes contents (a string scalar) to the file filename names, making its directory.")
register("MatchingFiles", lambda ctx: [(dtypes.string, (None,))], _matching_files_kernel, cpu_only=True,
         doc="The sorted file names a glob pattern (a scalar or vector of them) matches.")

# ---- bytes ---------------------------------------------------------------------------------


def _raw_dtype(node, attr="out_type", little_endian=True):
    dt = np.dtype(dtypes.as_dtype(node.attr(attr)).as_numpy_dtype)
    return dt.newbyteorder("<" if little_endian else ">") if dt.itemsize > 1 else dt


def _decode_raw_kernel(node):
    out_type = dtypes.as_dtype(node.attr("out_type"))
    dt = _raw_dtype(node, little_endian=node.attr("little_endian", True))

    def run(data):
        arr = np.asarray(data, dtype=object)
        flat = [x.encode("utf-8") if isinstance(x, str) else x for x in arr.ravel().tolist()]
        if not flat:
            return np.zeros(arr.shape + (0,), dt.newbyteorder("="))
        first = len(flat[0])
        if first % dt.itemsize:
            raise errors.InvalidArgumentError(
                None, None, f"Input to DecodeRaw has length {first} that is not a multiple of {dt.itemsize}, the "
                f"size of {_tf_name(out_type)}")
        for i, x in enumerate(flat):
            if len(x) != first:
                raise errors.InvalidArgumentError(
                    None, None, f"DecodeRaw requires input strings to all be the same size, but element {i} has "
                    f"size {first} != {len(x)}")
        values = np.frombuffer(b"".join(flat), dtype=dt).astype(dt.newbyteorder("="), copy=False)
        return values.reshape(arr.shape + (first // dt.itemsize,))
    return run


def _decode_padded_raw_kernel(node):
    dt = _raw_dtype(node, little_endian=node.attr("little_endian", True))

    def run(data, fixed_length):
        n = int(np.asarray(fixed_length))
        if n % dt.itemsize:
            raise errors.InvalidArgumentError(
                None, None, f"fixed_length ({n}) must be a multiple of the size of out_type ({dt.itemsize})")
        arr = np.asarray(data, dtype=object)
        flat = [(x.encode("utf-8") if isinstance(x, str) else x)[:n].ljust(n, b"\0") for x in arr.ravel().tolist()]
        values = np.frombuffer(b"".join(flat), dtype=dt).astype(dt.newbyteorder("="), copy=False)
        return values.reshape(arr.shape + (n // dt.itemsize,))
    return run


def _infer_decode_raw(ctx):
    shape = ctx.input_shapes[0]
    return [(dtypes.as_dtype(ctx.attr("out_type")), None if shape is None else tuple(shape) + (None,))]


register("DecodeRaw", _infer_decode_raw, _decode_raw_kernel, cpu_only=True,
         doc="The bytes of each string reinterpreted as a vector of out_type (attr little_endian).")
register("DecodePaddedRaw", _infer_decode_raw, _decode_padded_raw_kernel, cpu_only=True,
         doc="DecodeRaw of each string cut or zero-padded to fixed_length bytes (the second input).")


def _serialize_kernel(node):
    dtype = dtypes.as_dtype(node.attr("T"))
    return lambda tensor: np.array(convert.ndarray_to_tensor_proto(np.asarray(tensor), dtype).SerializeToString(),
                                   dtype=object)


def _parse_tensor_kernel(node):
    out_type = dtypes.as_dtype(node.attr("out_type"))
    where = _where(node)

    def run(serialized):
        tp = convert.TensorProto()
        data = np.asarray(serialized, dtype=object)[()]
        try:
            tp.ParseFromString(data)
            value = convert.tensor_proto_to_ndarray(tp)
        except errors.OpError as e:
            raise errors.InvalidArgumentError(None, None, f"{where}: Could not parse `serialized` as TensorProto: "
                                              f"{e.message}") from None
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise errors.InvalidArgumentError(None, None, f"{where}: Could not parse `serialized` as TensorProto: "
                                              f"{data[:60]!r}") from None
        got = dtypes.from_enum(tp.dtype)
        if got is not out_type:
            raise errors.InvalidArgumentError(
                None, None, f"Type mismatch between parsed tensor ({_tf_name(got)}) and dtype ({_tf_name(out_type)})")
        return value
    return run


def _tf_name(dtype):
    return {"float32": "float", "float64": "double", "float16": "half"}.get(dtype.name, dtype.name)


register("SerializeTensor", lambda ctx: [(dtypes.string, ())], _serialize_kernel, cpu_only=True,
         doc="The TensorProto of its input, serialized (TF's bytes: tensor_content, or string_val for strings).")
register("ParseTensor", lambda ctx: [(dtypes.as_dtype(ctx.attr("out_type")), None)], _parse_tensor_kernel,
         cpu_only=True, doc="The tensor a serialized TensorProto holds; its dtype must be attr out_type.")

# ---- tf.train.Example ----------------------------------------------------------------------

_KIND = {dtypes.float32: "float_list", dtypes.int64: "int64_list", dtypes.string: "bytes_list"}
_KIND_NAME = {"float_list": "float", "int64_list": "int64", "bytes_list": "string"}


def _parse_example_outputs(attrs):
    return 3 * attrs["num_sparse"] + len(attrs["Tdense"])


def _infer_parse_example(ctx):
    serialized = ctx.input_shapes[0]
    batch = None if serialized is None else tuple(serialized)
    n = ctx.attr("num_sparse")
    rank = None if batch is None else len(batch) + 1
    out = [(dtypes.int64, (None, rank)) for _ in range(n)]
    out += [(dtypes.as_dtype(t), (None,)) for t in ctx.attr("sparse_types")]
    out += [(dtypes.int64, (rank,)) for _ in range(n)]
    for t, s in zip(ctx.attr("Tdense"), ctx.attr("dense_shapes")):
        dims = TensorShape(s).as_tuple()
        if dims and dims[0] is None:  # a FixedLenSequenceFeature: as long as the batch's longest
            dims = (None,) + dims[1:]
        out.append((dtypes.as_dtype(t), None if batch is None else batch + dims))
    return out


def _strings(value):
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.ravel(np.asarray(value, object))]


def _values(feature, kind, key, name, index, batched):
    """The values of one Feature as a list, checking their kind; [] for an empty Feature."""
    which = feature.WhichOneof("kind")
    if which is None:
        return []
    if which != kind:
        where = f"Name: {name}, Key: {key}, Index: {index}.  " if batched else f"Key: {key}.  "
        raise errors.InvalidArgumentError(None, None, f"{where}Data types don't match. Data type: "
                                          f"{_KIND_NAME[which]} but expected type: {_KIND_NAME[kind]}")
    return getattr(feature, which).value


def _parse_example_kernel(node):
    from tensorgrid.proto import example_pb2
    num_sparse = node.attr("num_sparse")
    sparse_types = [dtypes.as_dtype(t) for t in node.attr("sparse_types")]
    dense_types = [dtypes.as_dtype(t) for t in node.attr("Tdense")]
    dense_shapes = [TensorShape(s).as_tuple() for s in node.attr("dense_shapes")]
    where = _where(node)

    def run(serialized, names, sparse_keys, dense_keys, ragged_keys, *dense_defaults):
        if np.size(ragged_keys):
            raise errors.UnimplementedError(None, None, f"{where}: ragged features are not supported")
        batch = np.asarray(serialized, dtype=object)
        batched = batch.ndim == 1
        records = batch.ravel().tolist()
        labels = _strings(names) if np.size(names) else ["<unknown>"] * len(records)
        parsed = []
        for i, data in enumerate(records):
            example = example_pb2.Example()
            try:
                example.ParseFromString(data)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError
                raise errors.InvalidArgumentError(None, None, f"Could not parse example input, value: "
                                                  f"'{data[:200].decode('latin-1')}'") from None
            parsed.append(example.features.feature)
        outputs = _sparse_outputs(parsed, _strings(sparse_keys), sparse_types, labels, batched)
        for key, dtype, shape, default in zip(_strings(dense_keys), dense_types, dense_shapes, dense_defaults):
            outputs.append(_dense_output(parsed, key, dtype, shape, np.asarray(default), labels, batched, batch.shape))
        return tuple(outputs) if len(outputs) != 1 else outputs[0]

    def _sparse_outputs(parsed, keys, types, labels, batched):
        indices, values, shapes = [], [], []
        for key, dtype in zip(keys, types):
            kind, rows, vals, longest = _KIND[dtype], [], [], 0
            for i, features in enumerate(parsed):
                got = list(_values(features[key], kind, key, labels[i], i, batched)) if key in features else []
                rows.append(len(got))
                vals.extend(got)
                longest = max(longest, len(got))
            counts = np.asarray(rows, np.int64)
            within = np.arange(len(vals), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            if batched:
                indices.append(np.stack([np.repeat(np.arange(len(parsed), dtype=np.int64), counts), within], 1))
                shapes.append(np.array([len(parsed), longest], np.int64))
            else:
                indices.append(within[:, None])
                shapes.append(np.array([longest], np.int64))
            values.append(_array(vals, dtype))
        assert len(indices) == num_sparse
        return indices + values + shapes

    def _dense_output(parsed, key, dtype, shape, default, labels, batched, batch_shape):
        kind = _KIND[dtype]
        np_dtype = object if dtype is dtypes.string else dtype.as_numpy_dtype
        sequence = bool(shape) and shape[0] is None
        inner = shape[1:] if sequence else shape
        size = int(np.prod(inner, dtype=np.int64))
        if sequence:
            rows = []
            for i, features in enumerate(parsed):
                got = _values(features[key], kind, key, labels[i], i, batched) if key in features else []
                if size and len(got) % size:
                    raise errors.InvalidArgumentError(
                        None, None, f"Name: {labels[i]}, Key: {key}, Index: {i}.  Number of {_KIND_NAME[kind]} "
                        f"values is not a multiple of {size} (the size of an element of shape {list(inner)}).")
                rows.append(_array(got, dtype).reshape((-1,) + inner))
            longest = max((r.shape[0] for r in rows), default=0)
            pad = default.reshape(()) if default.size else np.zeros((), np_dtype) if np_dtype is not object else b""
            out = np.full((len(rows), longest) + inner, pad, dtype=np_dtype)
            for i, r in enumerate(rows):
                out[i, :r.shape[0]] = r
            return out.reshape(tuple(batch_shape) + out.shape[1:])
        if kind == "float_list":
            fast = _packed_floats(parsed, key, size)
            if fast is not None:
                return fast.reshape(tuple(batch_shape) + inner)
        out = np.empty((len(parsed), size), dtype=np_dtype)   # row i: Example i's values, flat
        for i, features in enumerate(parsed):
            got = _values(features[key], kind, key, labels[i], i, batched) if key in features else None
            if got is None:
                if default.size == 0:
                    prefix = f"Name: {labels[i]}, " if batched else ""
                    raise errors.InvalidArgumentError(
                        None, None, f"{prefix}Feature: {key} (data type: {_KIND_NAME[kind]}) is required but could "
                        "not be found.")
                out[i] = np.asarray(default, np_dtype).ravel()
            elif len(got) != size:
                raise errors.InvalidArgumentError(
                    None, None, f"Name: {labels[i]}, Key: {key}, Index: {i}.  Number of {_KIND_NAME[kind]} values "
                    f"!= expected.  Values size: {len(got)} but output shape: {list(inner)}")
            else:
                out[i] = got   # straight from the proto's repeated field, no list in between
        out = out.reshape((len(parsed),) + inner)
        return out.reshape(tuple(batch_shape) + out.shape[1:])

    return run


def _packed_header(n):
    """The bytes a FloatList of n values serializes to before its values: field 1's tag, then the length."""
    length, out = 4 * n, bytearray([0x0A])
    while True:
        out.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            return bytes(out)


def _packed_floats(parsed, key, size):
    """The [batch, size] float32 values of FloatList feature `key` of every Example, from the lists' packed
    bytes (one copy, no Python float per value); None unless every Example has exactly `size` of them in a
    plain FloatList (then the checks of the general path give TF's errors)."""
    header = _packed_header(size)
    pieces = []
    for features in parsed:
        if key not in features:
            return None
        feature = features[key]
        if feature.WhichOneof("kind") != "float_list":
            return None
        data = feature.float_list.SerializeToString()
        if len(data) != len(header) + 4 * size or not data.startswith(header):
            return None   # another size, or fields a newer writer added
        pieces.append(data[len(header):])
    return np.frombuffer(b"".join(pieces), "<f4").astype(np.float32, copy=False).reshape(len(parsed), size)


def _array(values, dtype):
    if dtype is dtypes.string:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    return np.asarray(values, dtype=dtype.as_numpy_dtype)


register("ParseExampleV2", _infer_parse_example, _parse_example_kernel, cpu_only=True,
         num_outputs=_parse_example_outputs,
         doc="Serialized tf.train.Example protos (a scalar or a vector) to tensors; inputs: serialized, names, "
             "sparse_keys, dense_keys, ragged_keys, dense_defaults (one per dense key; empty: required); attrs "
             "num_sparse, sparse_types, Tdense, dense_shapes (a first dim of -1: a sequence feature, padded); "
             "outputs: sparse indices, values and shapes per sparse key, then the dense values.")
