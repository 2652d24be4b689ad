"""tg.strings: string ops with TF2's names and arguments (kernels in tensorgrid/ops/string_ops.py).

String tensors hold bytes, as TF's do: `tg.constant("a").numpy() == b"a"`.
split, unicode_decode, unicode_split and bytes_split return a RaggedTensor
for a vector input (a dense vector for a scalar), as TF2 does; TF1's
tf.string_split returns a SparseTensor.
"""

from tensorgrid.client import array_ops as ao
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.ragged import RaggedTensor
from tensorgrid.client.scopes import name_scope
from tensorgrid.client.sparse_tensor import SparseTensor
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["join", "split", "length", "substr", "to_number", "format", "regex_replace", "regex_full_match",
           "lower", "upper", "strip", "reduce_join", "as_string", "unicode_decode", "unicode_encode",
           "unicode_split", "bytes_split", "to_hash_bucket_fast"]


def _strings(x, what="input"):
    t = convert_to_tensor(x, dtype=dtypes.string) if not isinstance(x, graph_lib.TensorOps) else x
    if t.dtype is not dtypes.string:
        raise TypeError(f"{what} must be a string tensor, not {t.dtype.name}")
    return t


def join(inputs, separator="", name=None):
    """The elementwise concatenation of the (broadcast) string tensors `inputs`, `separator` between."""
    return apply_op("StringJoin", [_strings(x, "inputs") for x in inputs], {"separator": separator},
                    name=name or "StringJoin")


def length(input, unit="BYTE", name=None):  # noqa: A002 - TF's argument name
    """Each string's length in bytes (unit "BYTE") or UTF-8 characters ("UTF8_CHAR")."""
    if unit not in ("BYTE", "UTF8_CHAR"):
        raise ValueError(f"unit must be 'BYTE' or 'UTF8_CHAR', got {unit!r}")
    return apply_op("StringLength", [_strings(input)], {"unit": unit}, name=name or "StringLength")


def substr(input, pos, len, unit="BYTE", name=None):  # noqa: A002
    """The substrings of `len` units from `pos` (negative: counted from the end)."""
    if unit not in ("BYTE", "UTF8_CHAR"):
        raise ValueError(f"unit must be 'BYTE' or 'UTF8_CHAR', got {unit!r}")
    return apply_op("Substr", [_strings(input), ao._int_tensor(pos), ao._int_tensor(len)], {"unit": unit},
                    name=name or "Substr")


def to_number(input, out_type=dtypes.float32, name=None):  # noqa: A002
    """The numbers the strings spell (InvalidArgumentError for one that is not)."""
    return apply_op("StringToNumber", [_strings(input)], {"out_type": dtypes.as_dtype(out_type)},
                    name=name or "StringToNumber")


def format(template, inputs, placeholder="{}", summarize=3, name=None):  # noqa: A001 - TF's name
    """A scalar string: `template` with each `placeholder` replaced by the next tensor of `inputs`."""
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    return apply_op("StringFormat", [convert_to_tensor(x) for x in inputs],
                    {"template": template, "placeholder": placeholder, "summarize": int(summarize)},
                    name=name or "StringFormat")


def _is_static(x):
    return isinstance(x, (str, bytes))


def regex_replace(input, pattern, rewrite, replace_global=True, name=None):  # noqa: A002
    """Each string with the matches of `pattern` replaced by `rewrite` (\\1 names a group)."""
    if _is_static(pattern) and _is_static(rewrite):   # TF's StaticRegexReplace: the pattern is compiled once
        return apply_op("StaticRegexReplace", [_strings(input)],
                        {"pattern": pattern, "rewrite": rewrite, "replace_global": bool(replace_global)},
                        name=name or "StaticRegexReplace")
    return apply_op("RegexReplace", [_strings(input), _strings(pattern, "pattern"), _strings(rewrite, "rewrite")],
                    {"replace_global": bool(replace_global)}, name=name or "RegexReplace")


def regex_full_match(input, pattern, name=None):  # noqa: A002
    """Whether each whole string matches `pattern`."""
    if _is_static(pattern):
        return apply_op("StaticRegexFullMatch", [_strings(input)], {"pattern": pattern},
                        name=name or "StaticRegexFullMatch")
    return apply_op("RegexFullMatch", [_strings(input), _strings(pattern, "pattern")], name=name or "RegexFullMatch")


def lower(input, encoding="", name=None):  # noqa: A002
    """Lowercased strings: ASCII letters, or all of Unicode with encoding "utf-8"."""
    return apply_op("StringLower", [_strings(input)], {"encoding": encoding}, name=name or "StringLower")


def upper(input, encoding="", name=None):  # noqa: A002
    """Uppercased strings: ASCII letters, or all of Unicode with encoding "utf-8"."""
    return apply_op("StringUpper", [_strings(input)], {"encoding": encoding}, name=name or "StringUpper")


def strip(input, name=None):  # noqa: A002
    """Strings without their leading and trailing whitespace."""
    return apply_op("StringStrip", [_strings(input)], name=name or "StringStrip")


def reduce_join(inputs, axis=None, keepdims=False, separator="", name=None, *, keep_dims=None,
                reduction_indices=None):
    """The strings joined across `axis` (all axes when None), `separator` between."""
    x = _strings(inputs, "inputs")
    axis = reduction_indices if axis is None else axis
    if axis is None:
        axis = list(range(x.shape.ndims)) if x.shape.ndims is not None else ao.range(ao.rank(x))
    keep = bool(keepdims if keep_dims is None else keep_dims)
    return apply_op("ReduceJoin", [x, ao._int_tensor(axis)], {"keep_dims": keep, "separator": separator},
                    name=name or "ReduceJoin")


def as_string(input, precision=-1, scientific=False, shortest=False, width=-1, fill="", name=None):  # noqa: A002
    """Numbers (or bools) as strings, printf-style: floats "%f" (6 decimals) unless told otherwise."""
    return apply_op("AsString", [convert_to_tensor(input)],
                    {"precision": int(precision), "scientific": bool(scientific), "shortest": bool(shortest),
                     "width": int(width), "fill": fill}, name=name or "AsString")


def to_hash_bucket_fast(input, num_buckets, name=None):  # noqa: A002
    """Each string's bucket in [0, num_buckets): TF's Fingerprint64 (FarmHash) of it, modulo num_buckets."""
    if int(num_buckets) < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    return apply_op("StringToHashBucketFast", [_strings(input)], {"num_buckets": int(num_buckets)},
                    name=name or "StringToHashBucketFast")


def _ragged_from_sparse(indices, values, dense_shape):
    rows = ao.reshape(ao.gather(indices, [0], axis=1), [-1])
    return RaggedTensor.from_value_rowids(values, rows, nrows=dense_shape[0])


def split(input, sep=None, maxsplit=-1, name=None):  # noqa: A002
    """The pieces of each string split at `sep` (runs of whitespace when None): a RaggedTensor for a vector
    input, a vector for a scalar one."""
    with name_scope(name, "StringSplit"):
        x = _strings(input)
        rank = x.shape.ndims
        if rank not in (0, 1):
            raise ValueError(f"tg.strings.split takes a scalar or a vector, got shape {x.shape}")
        vector = ao.reshape(x, [1]) if rank == 0 else x
        indices, values, shape = apply_op("StringSplitV2", [vector, _strings(sep or "", "sep")],
                                          {"maxsplit": int(maxsplit)})
        return values if rank == 0 else _ragged_from_sparse(indices, values, shape)


def string_split(source, sep=None, skip_empty=True, delimiter=None, result_type="SparseTensor", name=None):
    """TF1's tf.string_split: a SparseTensor of the pieces between any characters of `delimiter` (alias `sep`,
    default " "; an empty one splits into bytes)."""
    with name_scope(name, "StringSplit"):
        chars = delimiter if sep is None else sep
        indices, values, shape = apply_op("StringSplit", [_strings(source, "source"),
                                                          _strings(" " if chars is None else chars, "delimiter")],
                                          {"skip_empty": bool(skip_empty)})
        if result_type == "RaggedTensor":
            return _ragged_from_sparse(indices, values, shape)
        return SparseTensor(indices, values, shape)


def bytes_split(input, name=None):  # noqa: A002
    """Each string split into its bytes: a RaggedTensor for a vector, a vector for a scalar."""
    with name_scope(name, "BytesSplit"):
        x = _strings(input)
        rank = x.shape.ndims
        vector = ao.reshape(x, [1]) if rank == 0 else x
        indices, values, shape = apply_op("StringSplit", [vector, _strings("", "delimiter")], {"skip_empty": False})
        return values if rank == 0 else _ragged_from_sparse(indices, values, shape)


def _decode(input, input_encoding, errors, replacement_char):  # noqa: A002
    x = _strings(input)
    rank = x.shape.ndims
    if rank not in (0, 1):
        raise ValueError(f"unicode ops take a scalar or a vector of strings here, got shape {x.shape}")
    splits, chars = apply_op("UnicodeDecode", [ao.reshape(x, [1]) if rank == 0 else x],
                             {"input_encoding": input_encoding, "errors": errors,
                              "replacement_char": int(replacement_char), "Tsplits": dtypes.int64})
    return rank, splits, chars


def unicode_decode(input, input_encoding, errors="replace", replacement_char=65533,  # noqa: A002
                   replace_control_characters=False, name=None):
    """The code points of each string (int32): a RaggedTensor for a vector, a vector for a scalar."""
    with name_scope(name, "UnicodeDecode"):
        rank, splits, chars = _decode(input, input_encoding, errors, replacement_char)
        return chars if rank == 0 else RaggedTensor.from_row_splits(chars, splits, validate=False)


def unicode_encode(input, output_encoding, errors="replace", replacement_char=65533, name=None):  # noqa: A002
    """Strings encoded from code points: a RaggedTensor or matrix gives a vector, a vector a scalar."""
    attrs = {"output_encoding": output_encoding, "errors": errors, "replacement_char": int(replacement_char)}
    with name_scope(name, "UnicodeEncode"):
        if isinstance(input, RaggedTensor):
            return apply_op("UnicodeEncode", [ao.cast(input.values, dtypes.int32), input.row_splits], attrs)
        x = ao.cast(convert_to_tensor(input), dtypes.int32)
        if x.shape.ndims == 1:
            n = ao.cast(ao.shape(x)[0:1], dtypes.int64)
            out = apply_op("UnicodeEncode", [x, ao.concat([ao.zeros([1], dtypes.int64), n], 0)], attrs)
            return ao.reshape(out, [])
        if x.shape.ndims != 2:
            raise ValueError(f"unicode_encode takes a vector, matrix or RaggedTensor of code points, got {x.shape}")
        rows, width = ao.shape(x, out_type=dtypes.int64)[0], ao.shape(x, out_type=dtypes.int64)[1]
        splits = ao.range(rows + 1, dtype=dtypes.int64) * width
        return apply_op("UnicodeEncode", [ao.reshape(x, [-1]), splits], attrs)


def unicode_split(input, input_encoding, errors="replace", replacement_char=65533, name=None):  # noqa: A002
    """Each string split into its characters (as strings): a RaggedTensor for a vector, a vector for a scalar."""
    attrs = {"output_encoding": input_encoding, "errors": errors, "replacement_char": int(replacement_char)}
    with name_scope(name, "UnicodeSplit"):
        rank, splits, chars = _decode(input, input_encoding, errors, replacement_char)
        each = ao.range(ao.shape(chars, out_type=dtypes.int64)[0] + 1, dtype=dtypes.int64)
        pieces = apply_op("UnicodeEncode", [chars, each], attrs)
        return pieces if rank == 0 else RaggedTensor.from_row_splits(pieces, splits, validate=False)


registry.not_differentiable("StringJoin", "StringLength", "Substr", "StringToNumber", "StringFormat",
                            "RegexReplace", "RegexFullMatch", "StaticRegexReplace", "StaticRegexFullMatch", "StringLower", "StringUpper", "StringStrip",
                            "ReduceJoin", "AsString", "StringSplitV2", "StringSplit", "UnicodeDecode",
                            "UnicodeEncode", "StringToHashBucketFast")
