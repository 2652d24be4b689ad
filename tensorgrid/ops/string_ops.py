"""String ops (tg.strings, TF's op names): a string tensor is a numpy object array of bytes.

Kernels are elementwise Python over the bytes objects (strings never live
on a GPU, so every op here is CPU-only, as in TF). Regular expressions are
Python's `re` on bytes, which agrees with RE2 (TF's engine) on the common
syntax; RE2-only constructs fail as an InvalidArgumentError naming the
pattern. Ops that make ragged results (StringSplitV2, UnicodeDecode) output
the flat values and row splits (or sparse indices) as TF's do.
"""

import re

import numpy as np

from tensorgrid.framework import dtypes, strings
from tensorgrid.ops.array_ops import _invalid
from tensorgrid.ops.misc_ops import format_tensor
from tensorgrid.ops.registry import broadcast_shapes, register

_WHITESPACE = b" \t\n\v\f\r"


def as_bytes(x):
    """One string element as bytes; InvalidArgumentError for an element that is not a string."""
    try:
        return strings.as_bytes(x)
    except TypeError as e:
        raise _invalid(str(e)) from None


def _elementwise(fn, *arrays, otype=object):
    """fn applied to the broadcast elements of `arrays`, as an array of dtype `otype`."""
    arrs = np.broadcast_arrays(*[np.asarray(a, dtype=object) if np.asarray(a).dtype == object else np.asarray(a)
                                 for a in arrays])
    out = np.empty(arrs[0].shape if arrs else (), dtype=otype)
    flat = out.reshape(-1)
    for k, items in enumerate(zip(*[a.reshape(-1).tolist() for a in arrs])):
        flat[k] = fn(*items)
    return out


def _require_string(ctx, i, what="input"):
    if ctx.input_dtypes[i] is not dtypes.string:
        raise TypeError(f"{ctx.op} '{ctx.name}': {what} must be a string tensor, not {ctx.input_dtypes[i].name}")


def _same_shape_string(ctx):
    _require_string(ctx, 0)
    return [(dtypes.string, ctx.input_shapes[0])]


def _register_unary(name, fn, otype=dtypes.string, doc=""):
    def infer(ctx):
        _require_string(ctx, 0)
        return [(dtypes.as_dtype(otype(ctx.attrs)) if callable(otype) else otype, ctx.input_shapes[0])]

    def factory(node):
        f = fn(node)
        out_np = (otype(node.attrs) if callable(otype) else otype).as_numpy_dtype

        def kernel(x):
            return _elementwise(lambda s: f(as_bytes(s)), x, otype=out_np)
        return kernel
    register(name, infer, factory, cpu_only=True, doc=doc)


# ---- join, length, case, strip -----------------------------------------------------------------------------


def _infer_join(ctx):
    shape = ()
    for i in range(len(ctx.input_dtypes)):
        _require_string(ctx, i, "every input")
        shape = broadcast_shapes(shape, ctx.input_shapes[i], ctx)
    return [(dtypes.string, shape)]


def _join_kernel(node):
    sep = as_bytes(node.attr("separator", ""))

    def string_join(*inputs):
        return _elementwise(lambda *parts: sep.join(as_bytes(p) for p in parts), *inputs)
    return string_join


register("StringJoin", _infer_join, _join_kernel, cpu_only=True,
         doc="The elementwise concatenation of its (broadcast) string inputs with attr separator between.")


def _utf8(s, where):
    try:
        return s.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"{where}: invalid UTF-8 in {s!r:.60}") from None


def _length(node):
    unit = node.attr("unit", "BYTE")
    if unit not in ("BYTE", "UTF8_CHAR"):
        raise _invalid(f"unit must be BYTE or UTF8_CHAR, got {unit!r}")
    return (lambda s: len(_utf8(s, "StringLength"))) if unit == "UTF8_CHAR" else len


_register_unary("StringLength", _length, dtypes.int32, doc="Each string's length in bytes or UTF-8 characters.")


def _case(method):
    def factory(node):
        encoding = node.attr("encoding", "")
        if encoding == "":   # ASCII letters only, as TF without an encoding
            return getattr(bytes, method)
        return lambda s: getattr(_utf8(s, method), method)().encode("utf-8")
    return factory


_register_unary("StringLower", _case("lower"), doc="Lowercased strings (ASCII, or Unicode with encoding utf-8).")
_register_unary("StringUpper", _case("upper"), doc="Uppercased strings (ASCII, or Unicode with encoding utf-8).")
_register_unary("StringStrip", lambda node: lambda s: s.strip(_WHITESPACE),
                doc="Strings without leading and trailing whitespace.")


# ---- substr ---------------------------------------------------------------------------------------------


def _infer_substr(ctx):
    _require_string(ctx, 0)
    for i, what in ((1, "pos"), (2, "len")):
        if not ctx.input_dtypes[i].is_integer:
            raise TypeError(f"{ctx.op} '{ctx.name}': {what} must be an integer tensor")
    return [(dtypes.string, broadcast_shapes(broadcast_shapes(ctx.input_shapes[0], ctx.input_shapes[1], ctx),
                                             ctx.input_shapes[2], ctx))]


def _substr_kernel(node):
    unit = node.attr("unit", "BYTE")
    counter = [0]

    def one(s, pos, length):
        s = as_bytes(s)
        text = _utf8(s, "Substr") if unit == "UTF8_CHAR" else s
        k = counter[0]
        counter[0] += 1
        n = len(text)
        start = pos + n if pos < 0 else pos
        if not 0 <= start <= n or (pos < 0 and -pos > n):
            raise _invalid(f"pos {pos} out of range for string {s!r} at index {k}")
        piece = text[start:start + max(int(length), 0)]
        return piece.encode("utf-8") if unit == "UTF8_CHAR" else piece

    def substr(x, pos, length):
        counter[0] = 0
        return _elementwise(lambda s, p, n: one(s, int(p), int(n)), x, pos, length)
    return substr


register("Substr", _infer_substr, _substr_kernel, cpu_only=True,
         doc="Substrings from pos (negative: from the end) of len bytes or UTF-8 characters (attr unit).")


# ---- to_number, as_string, format --------------------------------------------------------------------------


def _infer_to_number(ctx):
    _require_string(ctx, 0)
    out = dtypes.as_dtype(ctx.attr("out_type", dtypes.float32))
    if out not in (dtypes.float32, dtypes.float64, dtypes.int32, dtypes.int64):
        raise ctx.error(f"out_type must be float32, float64, int32 or int64, got {out.name}")
    return [(out, ctx.input_shapes[0])]


def _to_number_kernel(node):
    out = dtypes.as_dtype(node.attr("out_type", dtypes.float32))
    parse = float if out.is_floating else int
    info = None if out.is_floating else np.iinfo(out.as_numpy_dtype)

    def one(s):
        text = as_bytes(s).decode("utf-8", "replace")
        try:
            value = parse(text.strip() if out.is_floating else text)
        except ValueError:
            raise _invalid(f"StringToNumberOp could not correctly convert string: {text}") from None
        if info is not None and not info.min <= value <= info.max:
            raise _invalid(f"StringToNumberOp could not correctly convert string: {text}")
        return value

    def string_to_number(x):
        return _elementwise(one, x).astype(out.as_numpy_dtype)
    return string_to_number


register("StringToNumber", _infer_to_number, _to_number_kernel, cpu_only=True,
         doc="The numbers strings spell, as attr out_type; InvalidArgumentError for one that is not a number.")


def _as_string_kernel(node):
    precision, scientific = node.attr("precision", -1), node.attr("scientific", False)
    shortest, width, fill = node.attr("shortest", False), node.attr("width", -1), node.attr("fill", "")
    if scientific and shortest:
        raise _invalid("Cannot select both scientific and shortest notation")
    fill = fill.decode() if isinstance(fill, bytes) else fill
    if len(fill) > 1:
        raise _invalid(f"Fill string must be one or fewer characters, got {fill!r}")

    def spec(kind):
        flags = "0" if fill == "0" else ""
        w = str(width) if width > -1 else ""
        if kind == "f":
            p = f".{precision}" if precision > -1 else ""
            letter = "e" if scientific else "g" if shortest else "f"
            return "{:" + flags + w + p + letter + "}"
        return "{:" + flags + w + "d}"

    def as_string(x):
        x = np.asarray(x)
        if x.dtype.kind == "b":
            fmt = lambda v: "true" if v else "false"  # noqa: E731
        elif x.dtype.kind == "f":
            s = spec("f")
            fmt = lambda v: s.format(v) if np.isfinite(v) else ("nan" if np.isnan(v) else "inf" if v > 0 else "-inf")  # noqa: E731,E501
        else:
            s = spec("d")
            fmt = s.format
        return _elementwise(lambda v: fmt(v).encode(), x)
    return as_string


register("AsString", lambda ctx: [(dtypes.string, ctx.input_shapes[0])], _as_string_kernel, cpu_only=True,
         doc="Numbers and bools as strings (printf-style attrs precision, scientific, shortest, width, fill).")


def _infer_format(ctx):
    template, placeholder = ctx.attr("template", "%s"), ctx.attr("placeholder", "%s")
    if template.count(placeholder) != len(ctx.input_dtypes):
        raise ctx.error(f"{len(ctx.input_dtypes)} tensors to format but the template has "
                        f"{template.count(placeholder)} placeholders {placeholder!r}: {template!r}")
    return [(dtypes.string, ())]


def _format_kernel(node):
    template, placeholder = node.attr("template", "%s"), node.attr("placeholder", "%s")
    summarize = node.attr("summarize", 3)
    pieces = template.split(placeholder)

    def string_format(*inputs):
        out = pieces[0]
        for value, piece in zip(inputs, pieces[1:]):
            out += format_tensor(value, summarize) + piece
        return np.array(out.encode("utf-8"), dtype=object)
    return string_format


register("StringFormat", _infer_format, _format_kernel, cpu_only=True,
         doc="The template (attr) with each placeholder replaced by the next input tensor, formatted as TF prints it.")


# ---- regular expressions ----------------------------------------------------------------------------------


def _scalar(x):
    """A scalar string input's bytes."""
    return as_bytes(x[()] if isinstance(x, np.ndarray) else x)


def _compile(pattern):
    try:
        return re.compile(as_bytes(pattern))
    except re.error as e:
        raise _invalid(f"Invalid pattern: {as_bytes(pattern)!r}, error: {e}") from None


def _infer_regex(otype):
    def infer(ctx):
        _require_string(ctx, 0)
        for i in range(1, len(ctx.input_dtypes)):
            _require_string(ctx, i, "pattern and rewrite")
            if ctx.input_shapes[i] is not None and len(ctx.input_shapes[i]) != 0:
                raise ctx.error(f"pattern and rewrite must be scalars, got shape {list(ctx.input_shapes[i])}")
        return [(otype, ctx.input_shapes[0])]
    return infer


def _rewrite_template(rewrite):
    # RE2's rewrite: \0 .. \9 name groups (\0 the whole match); Python spells \0 as \g<0>
    return re.sub(rb"\\([0-9])", rb"\\g<\1>", as_bytes(rewrite))


def _regex_replace_kernel(node):
    count = 0 if node.attr("replace_global", True) else 1

    def regex_replace(x, pattern, rewrite):
        rx, tmpl = _compile(_scalar(pattern)), _rewrite_template(_scalar(rewrite))
        return _elementwise(lambda s: rx.sub(tmpl, as_bytes(s), count=count), x)
    return regex_replace


register("RegexReplace", _infer_regex(dtypes.string), _regex_replace_kernel, cpu_only=True,
         doc="Each string with the matches of pattern replaced by rewrite (all, or the first: replace_global).")


def _regex_full_match_kernel(node):
    def regex_full_match(x, pattern):
        rx = _compile(_scalar(pattern))
        return _elementwise(lambda s: rx.fullmatch(as_bytes(s)) is not None, x, otype=np.bool_)
    return regex_full_match


register("RegexFullMatch", _infer_regex(dtypes.bool_), _regex_full_match_kernel, cpu_only=True,
         doc="Whether each whole string matches pattern.")


def _static_replace_kernel(node):
    rx, tmpl = _compile(node.attr("pattern")), _rewrite_template(node.attr("rewrite"))
    count = 0 if node.attr("replace_global", True) else 1
    return lambda x: _elementwise(lambda s: rx.sub(tmpl, as_bytes(s), count=count), x)


def _static_full_match_kernel(node):
    rx = _compile(node.attr("pattern"))
    return lambda x: _elementwise(lambda s: rx.fullmatch(as_bytes(s)) is not None, x, otype=np.bool_)


register("StaticRegexReplace", _infer_regex(dtypes.string), _static_replace_kernel, cpu_only=True,
         doc="RegexReplace with attrs pattern and rewrite.")
register("StaticRegexFullMatch", _infer_regex(dtypes.bool_), _static_full_match_kernel, cpu_only=True,
         doc="RegexFullMatch with attr pattern.")


# ---- reduce_join ------------------------------------------------------------------------------------------


def _infer_reduce_join(ctx):
    _require_string(ctx, 0)
    shape, axes = ctx.input_shapes[0], ctx.const_values[1]
    if shape is None or axes is None:
        return [(dtypes.string, None)]
    rank = len(shape)
    red = {int(a) % rank if rank else 0 for a in np.asarray(axes).reshape(-1)}
    keep = ctx.attr("keep_dims", False)
    return [(dtypes.string, tuple(1 if k in red else d for k, d in enumerate(shape) if keep or k not in red))]


def _reduce_join_kernel(node):
    keep, sep = node.attr("keep_dims", False), as_bytes(node.attr("separator", ""))

    def reduce_join(inputs, reduction_indices):
        x = np.asarray(inputs, dtype=object)
        rank = x.ndim
        axes = sorted({int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(reduction_indices).reshape(-1)})
        for a in axes:
            if not 0 <= a < rank:
                raise _invalid(f"Invalid reduction dimension {a} for input with {rank} dimensions")
        kept = [k for k in range(rank) if k not in axes]
        moved = np.transpose(x, kept + axes).reshape([x.shape[k] for k in kept] + [-1])
        out = np.empty(moved.shape[:-1], dtype=object)
        for idx in np.ndindex(out.shape):
            out[idx] = sep.join(as_bytes(s) for s in moved[idx])
        if keep:
            out = out.reshape([1 if k in axes else d for k, d in enumerate(x.shape)])
        return out
    return reduce_join


register("ReduceJoin", _infer_reduce_join, _reduce_join_kernel, cpu_only=True,
         doc="The strings joined (with attr separator) across reduction_indices, in row-major order.")


# ---- split ------------------------------------------------------------------------------------------------


def _sparse_split_result(pieces):
    """(indices [n, 2], values [n], shape [2]) of a list of lists of bytes, as the split ops output them."""
    rows = [(i, j) for i, p in enumerate(pieces) for j in range(len(p))]
    values = np.empty(len(rows), dtype=object)
    values[:] = [s for p in pieces for s in p]
    width = max((len(p) for p in pieces), default=0)
    return (np.asarray(rows, dtype=np.int64).reshape(-1, 2), values,
            np.asarray([len(pieces), width], dtype=np.int64))


def _infer_split(ctx):
    _require_string(ctx, 0)
    _require_string(ctx, 1, "the separator")
    shape = ctx.input_shapes[0]
    if shape is not None and len(shape) != 1:
        raise ctx.error(f"input must be a vector, got shape {list(shape)}")
    return [(dtypes.int64, (None, 2)), (dtypes.string, (None,)), (dtypes.int64, (2,))]


def _split_v2_kernel(node):
    maxsplit = node.attr("maxsplit", -1)

    def string_split_v2(input, sep):  # noqa: A002
        sep = _scalar(sep)
        pieces = [as_bytes(s).split(sep or None, maxsplit) for s in np.asarray(input).reshape(-1).tolist()]
        return _sparse_split_result(pieces)
    return string_split_v2


register("StringSplitV2", _infer_split, _split_v2_kernel, cpu_only=True, num_outputs=3,
         doc="Each string split at sep (whitespace runs when empty; attr maxsplit), as sparse indices and values.")


def _split_v1_kernel(node):
    skip_empty = node.attr("skip_empty", True)

    def string_split(input, delimiter):  # noqa: A002
        chars = _scalar(delimiter)
        pieces = []
        for s in np.asarray(input).reshape(-1).tolist():
            s = as_bytes(s)
            if not chars:
                parts = [s[k:k + 1] for k in range(len(s))]
            else:
                parts = re.split(b"[" + re.escape(chars) + b"]", s)
            pieces.append([p for p in parts if p or not skip_empty])
        return _sparse_split_result(pieces)
    return string_split


register("StringSplit", _infer_split, _split_v1_kernel, cpu_only=True, num_outputs=3,
         doc="TF1's split: at any of the delimiter's characters (into bytes when empty), as sparse parts.")


# ---- unicode ----------------------------------------------------------------------------------------------

_ENCODINGS = {"UTF-8": "utf-8", "UTF-16-BE": "utf-16-be", "UTF-32-BE": "utf-32-be"}


def _codec(name):
    try:
        return _ENCODINGS[name]
    except KeyError:
        raise _invalid(f"encoding must be one of {sorted(_ENCODINGS)}, got {name!r}") from None


def _infer_unicode_decode(ctx):
    _require_string(ctx, 0)
    return [(dtypes.as_dtype(ctx.attr("Tsplits", dtypes.int64)), (None,)), (dtypes.int32, (None,))]


def _unicode_decode_kernel(node):
    codec, errors_mode = _codec(node.attr("input_encoding", "UTF-8")), node.attr("errors", "replace")
    replacement = node.attr("replacement_char", 0xFFFD)
    splits_type = dtypes.as_dtype(node.attr("Tsplits", dtypes.int64)).as_numpy_dtype

    def decode(s):
        s = as_bytes(s)
        try:
            return [ord(c) for c in s.decode(codec)]
        except UnicodeDecodeError:
            if errors_mode == "strict":
                raise _invalid(f"Invalid formatting on input string {s!r:.60}") from None
        # a bad byte sequence decodes to U+FFFD: dropped ("ignore") or replaced by replacement_char
        points = [ord(ch) for ch in s.decode(codec, "replace")]
        if errors_mode == "ignore":
            return [c for c in points if c != 0xFFFD]
        return [replacement if c == 0xFFFD else c for c in points]

    def unicode_decode(input):  # noqa: A002
        chars = [decode(s) for s in np.asarray(input).reshape(-1).tolist()]
        splits = np.cumsum([0] + [len(c) for c in chars]).astype(splits_type)
        return splits, np.asarray([c for cs in chars for c in cs], dtype=np.int32)
    return unicode_decode


register("UnicodeDecode", _infer_unicode_decode, _unicode_decode_kernel, cpu_only=True, num_outputs=2,
         doc="(row_splits, char_values): the code points of each string of a vector (attr input_encoding).")


def _infer_unicode_encode(ctx):
    if ctx.input_dtypes[0] is not dtypes.int32:
        raise TypeError(f"{ctx.op} '{ctx.name}': input_values must be int32 code points")
    n = ctx.input_shapes[1]
    return [(dtypes.string, (None if n is None or n[0] is None else n[0] - 1,))]


def _unicode_encode_kernel(node):
    codec, errors_mode = _codec(node.attr("output_encoding", "UTF-8")), node.attr("errors", "replace")
    replacement = node.attr("replacement_char", 0xFFFD)

    def char(c):
        if 0 <= c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF:
            return chr(c)
        if errors_mode == "strict":
            raise _invalid(f"Invalid code point {c}")
        return "" if errors_mode == "ignore" else chr(replacement)

    def unicode_encode(input_values, input_splits):
        values = np.asarray(input_values).tolist()
        splits = [int(s) for s in np.asarray(input_splits).tolist()]
        out = np.empty(max(len(splits) - 1, 0), dtype=object)
        out[:] = ["".join(char(c) for c in values[a:b]).encode(codec) for a, b in zip(splits, splits[1:])]
        return out
    return unicode_encode


register("UnicodeEncode", _infer_unicode_encode, _unicode_encode_kernel, cpu_only=True,
         doc="Strings encoded (attr output_encoding) from rows of code points given as values and row splits.")


# ---- hashing: Fingerprint64, FarmHash's farmhashna::Hash64, so buckets are TF's ----------------------------

_M64 = (1 << 64) - 1
_K0, _K1, _K2 = 0xc3a5c85c97cb3127, 0xb492b66fbe98f273, 0x9ae16a3b2f90404f


def _f64(s, i):
    return int.from_bytes(s[i:i + 8], "little")


def _f32(s, i):
    return int.from_bytes(s[i:i + 4], "little")


def _rot(v, shift):
    return ((v >> shift) | (v << (64 - shift))) & _M64 if shift else v


def _shift_mix(v):
    return v ^ (v >> 47)


def _hash16(u, v, mul):
    a = ((u ^ v) * mul) & _M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M64
    b ^= b >> 47
    return (b * mul) & _M64


def _hash_0_to_16(s, n):
    if n >= 8:
        mul = _K2 + n * 2
        a = (_f64(s, 0) + _K2) & _M64
        b = _f64(s, n - 8)
        c = (_rot(b, 37) * mul + a) & _M64
        d = ((_rot(a, 25) + b) * mul) & _M64
        return _hash16(c, d, mul)
    if n >= 4:
        mul = _K2 + n * 2
        return _hash16(n + (_f32(s, 0) << 3), _f32(s, n - 4), mul)
    if n > 0:
        y = (s[0] + (s[n >> 1] << 8)) & 0xFFFFFFFF
        z = (n + (s[n - 1] << 2)) & 0xFFFFFFFF
        return (_shift_mix(((y * _K2) ^ (z * _K0)) & _M64) * _K2) & _M64
    return _K2


def _hash_17_to_32(s, n):
    mul = _K2 + n * 2
    a = (_f64(s, 0) * _K1) & _M64
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & _M64
    d = (_f64(s, n - 16) * _K2) & _M64
    return _hash16((_rot((a + b) & _M64, 43) + _rot(c, 30) + d) & _M64,
                   (a + _rot((b + _K2) & _M64, 18) + c) & _M64, mul)


def _hash_33_to_64(s, n):
    mul = _K2 + n * 2
    a = (_f64(s, 0) * _K2) & _M64
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & _M64
    d = (_f64(s, n - 16) * _K2) & _M64
    y = (_rot((a + b) & _M64, 43) + _rot(c, 30) + d) & _M64
    z = _hash16(y, (a + _rot((b + _K2) & _M64, 18) + c) & _M64, mul)
    e = (_f64(s, 16) * mul) & _M64
    f = _f64(s, 24)
    g = ((y + _f64(s, n - 32)) * mul) & _M64
    h = ((z + _f64(s, n - 24)) * mul) & _M64
    return _hash16((_rot((e + f) & _M64, 43) + _rot(g, 30) + h) & _M64,
                   (e + _rot((f + a) & _M64, 18) + g) & _M64, mul)


def _weak32(s, i, a, b):
    w, x, y, z = _f64(s, i), _f64(s, i + 8), _f64(s, i + 16), _f64(s, i + 24)
    a = (a + w) & _M64
    b = _rot((b + a + z) & _M64, 21)
    c = a
    a = (a + x + y) & _M64
    b = (b + _rot(a, 44)) & _M64
    return (a + z) & _M64, (b + c) & _M64


def fingerprint64(s):
    """FarmHash Fingerprint64 of bytes `s` (what TF's StringToHashBucketFast buckets by)."""
    n = len(s)
    if n <= 16:
        return _hash_0_to_16(s, n)
    if n <= 32:
        return _hash_17_to_32(s, n)
    if n <= 64:
        return _hash_33_to_64(s, n)
    seed = 81
    x, y = seed, (seed * _K1 + 113) & _M64
    z = (_shift_mix((y * _K2 + 113) & _M64) * _K2) & _M64
    v, w = (0, 0), (0, 0)
    x = (x * _K2 + _f64(s, 0)) & _M64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        x = (_rot((x + y + v[0] + _f64(s, i + 8)) & _M64, 37) * _K1) & _M64
        y = (_rot((y + v[1] + _f64(s, i + 48)) & _M64, 42) * _K1) & _M64
        x ^= w[1]
        y = (y + v[0] + _f64(s, i + 40)) & _M64
        z = (_rot((z + w[0]) & _M64, 33) * _K1) & _M64
        v = _weak32(s, i, (v[1] * _K1) & _M64, (x + w[0]) & _M64)
        w = _weak32(s, i + 32, (z + w[1]) & _M64, (y + _f64(s, i + 16)) & _M64)
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = _K1 + ((z & 0xff) << 1)
    i = last64
    w = ((w[0] + ((n - 1) & 63)) & _M64, w[1])
    v = ((v[0] + w[0]) & _M64, v[1])
    w = ((w[0] + v[0]) & _M64, w[1])
    x = (_rot((x + y + v[0] + _f64(s, i + 8)) & _M64, 37) * mul) & _M64
    y = (_rot((y + v[1] + _f64(s, i + 48)) & _M64, 42) * mul) & _M64
    x ^= (w[1] * 9) & _M64
    y = (y + v[0] * 9 + _f64(s, i + 40)) & _M64
    z = (_rot((z + w[0]) & _M64, 33) * mul) & _M64
    v = _weak32(s, i, (v[1] * mul) & _M64, (x + w[0]) & _M64)
    w = _weak32(s, i + 32, (z + w[1]) & _M64, (y + _f64(s, i + 16)) & _M64)
    z, x = x, z
    return _hash16((_hash16(v[0], w[0], mul) + _shift_mix(y) * _K0 + z) & _M64,
                   (_hash16(v[1], w[1], mul) + x) & _M64, mul)


def _hash_bucket(node):
    buckets = int(node.attr("num_buckets"))
    if buckets < 1:
        raise _invalid(f"num_buckets must be at least 1, got {buckets}")
    return lambda s: fingerprint64(s) % buckets


_register_unary("StringToHashBucketFast", _hash_bucket, dtypes.int64,
                doc="Each string's Fingerprint64 modulo attr num_buckets.")
