"""Summary ops: kernels that turn tensors into serialized TensorBoard `Summary` protos.

Each op outputs a scalar string tensor holding a serialized
`tensorgrid.v1.Summary` (proto/summary.proto, TF's field numbers), so a
summary is computed wherever its inputs are and fetched like any tensor.
The TF1 ops keep TF's op names and formats (ScalarSummary: simple_value,
HistogramSummary: TF's exponential buckets, ImageSummary: PNG images,
TensorSummaryV2: a tensor with its plugin metadata, MergeSummary); the
TF2 ones (HistogramSummaryV2, ImageSummaryV2) give the tensors that
TensorBoard's TF2 plugins read. WriteRawProtoSummary hands a Summary to a
TF2 file writer living in this process (see `WRITERS`).
"""

import functools
import struct
import sys
import weakref
import zlib

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.ops.registry import register

# TF2 file writers of this process by id: the WriteRawProtoSummary kernel looks its writer up here.
WRITERS = weakref.WeakValueDictionary()


def _pb():
    from tensorgrid.proto import summary_pb2
    return summary_pb2


def _text(b):
    return b.decode("utf-8") if isinstance(b, bytes) else str(b)


def _scalar_string(ctx):
    return [(dtypes.string, ())]


def _output(summary):
    out = np.empty((), dtype=object)
    out[()] = summary.SerializeToString()
    return out


def _summary_value(tag, **fields):
    s = _pb().Summary()
    s.value.add(tag=tag, **fields)
    return s


# ---- scalars -------------------------------------------------------------------------------

def _infer_scalar_summary(ctx):
    tags, values = ctx.input_shapes
    if tags is not None and values is not None and tuple(tags) != tuple(values):
        raise ctx.error(f"tags and values must have the same shape, got {list(tags)} and {list(values)}")
    return _scalar_string(ctx)


def _scalar_summary_kernel(node):
    def run(tags, values):
        tags, values = np.asarray(tags), np.asarray(values)
        if tags.shape != values.shape:
            raise errors.InvalidArgumentError(
                None, None, f"tags and values are not the same shape: {list(tags.shape)} != {list(values.shape)}")
        s = _pb().Summary()
        for tag, value in zip(tags.reshape(-1), values.reshape(-1)):
            s.value.add(tag=_text(tag), simple_value=float(value))
        return _output(s)
    return run


register("ScalarSummary", _infer_scalar_summary, _scalar_summary_kernel, cpu_only=True,
         doc="A Summary with one simple_value per element of `values`, tagged by the matching `tags` element.")


# ---- TF1 histograms --------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def default_bucket_limits():
    """TF's histogram bucket edges: +-1e-12 growing by 10% to +-1e20, then +-DBL_MAX, and 0."""
    positive = []
    v = 1.0e-12
    while v < 1.0e20:
        positive.append(v)
        v *= 1.1
    positive.append(sys.float_info.max)
    return np.array([-p for p in reversed(positive)] + [0.0] + positive)


def histogram_proto(values):
    """TF1's HistogramProto of `values`: counts per default bucket, runs of empty buckets collapsed."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    h = _pb().HistogramProto()
    limits = default_bucket_limits()
    counts = np.bincount(np.searchsorted(limits, values, side="right"), minlength=len(limits))[:len(limits)]
    if values.size:
        h.min, h.max = float(values.min()), float(values.max())
    else:
        h.min, h.max = sys.float_info.max, -sys.float_info.max
    h.num, h.sum, h.sum_squares = float(values.size), float(values.sum()), float(np.dot(values, values))
    i, n = 0, len(limits)
    while i < n:
        end, count = limits[i], counts[i]
        i += 1
        if count <= 0:
            while i < n and counts[i] <= 0:  # one bucket for a run of empty ones
                end, count = limits[i], counts[i]
                i += 1
        h.bucket_limit.append(float(end))
        h.bucket.append(float(count))
    return h


def _histogram_summary_kernel(node):
    def run(tag, values):
        values = np.asarray(values)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise errors.InvalidArgumentError(None, None, f"Nan in summary histogram for: {_text(tag[()])}")
        return _output(_summary_value(_text(np.asarray(tag)[()]), histo=histogram_proto(values)))
    return run


register("HistogramSummary", _scalar_string, _histogram_summary_kernel, cpu_only=True,
         doc="A Summary with TF1's histogram (HistogramProto) of every element of `values` under `tag`.")


def histogram_buckets_v2(values, bucket_count):
    """TensorBoard's TF2 histogram: a [bucket_count, 3] float64 array of (left, right, count) rows."""
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if bucket_count <= 0 or data.size == 0:
        return np.zeros((max(bucket_count, 0), 3))
    lo, hi = data.min(), data.max()
    if hi - lo == 0:
        counts = np.zeros(bucket_count)
        counts[-1] = data.size
        return np.stack([np.full(bucket_count, lo), np.full(bucket_count, lo), counts], axis=1)
    width = (hi - lo) / bucket_count
    index = np.minimum(np.floor((data - lo) / width).astype(np.int64), bucket_count - 1)
    counts = np.bincount(index, minlength=bucket_count).astype(np.float64)
    edges = np.linspace(lo, hi, bucket_count + 1)
    return np.stack([edges[:-1], edges[1:], counts], axis=1)


# ---- tensors with plugin metadata (TF1 text, every TF2 summary) ---------------------------------

def tensor_proto(value):
    from tensorgrid.proto import convert
    return convert.ndarray_to_tensor_proto(np.asarray(value))


def plugin_metadata(plugin_name, display_name="", description=""):
    """The SummaryMetadata of TensorBoard plugin `plugin_name` ("scalars", "histograms", "images", "text")."""
    m = _pb().SummaryMetadata(display_name=display_name, summary_description=description)
    m.plugin_data.plugin_name = plugin_name
    return m


def _tensor_summary_kernel(node):
    def run(tag, tensor, serialized_metadata):
        metadata = _pb().SummaryMetadata()
        metadata.ParseFromString(bytes(np.asarray(serialized_metadata)[()]))
        return _output(_summary_value(_text(np.asarray(tag)[()]), metadata=metadata,
                                      tensor=tensor_proto(tensor)))
    return run


register("TensorSummaryV2", _scalar_string, _tensor_summary_kernel, cpu_only=True,
         doc="A Summary holding `tensor` as a TensorProto under `tag`, with the SummaryMetadata serialized "
             "in `serialized_summary_metadata`.")


def _histogram_v2_kernel(node):
    buckets = int(node.attr("buckets", 30))
    metadata = plugin_metadata("histograms", description=node.attr("description", ""))

    def run(tag, values):
        return _output(_summary_value(_text(np.asarray(tag)[()]), metadata=metadata,
                                      tensor=tensor_proto(histogram_buckets_v2(values, buckets))))
    return run


register("HistogramSummaryV2", _scalar_string, _histogram_v2_kernel, cpu_only=True,
         doc="TF2's histogram summary: TensorBoard's [buckets, 3] (left, right, count) tensor of `values`; "
             "attrs buckets, description.")


# ---- images ------------------------------------------------------------------------------------

def encode_png(image):
    """PNG bytes of a [height, width, channels] uint8 array (1 to 4 channels)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width, channels = image.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * channels)], axis=1)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


_BAD_COLOR = np.array([255, 0, 0, 255], np.uint8)  # TF's default for non-finite pixels: red, opaque


def _uint8_images_v1(images):
    """TF1's ImageSummary scaling of each image, in float32 as TF does: uint8 as is; all >= 0 scaled so the
    largest is 255; else centred at 128 and scaled by 127 / max |value|; non-finite pixels red."""
    if images.dtype == np.uint8:
        return images
    out = []
    for image in images.astype(np.float32):
        finite = np.isfinite(image)
        lo, hi = (image[finite].min(), image[finite].max()) if finite.any() else (np.inf, -np.inf)
        if lo < 0:
            top = max(abs(lo), abs(hi))
            scale, offset = (np.float32(0) if top < 1e-6 else np.float32(127) / np.float32(top)), np.float32(128)
        else:
            scale, offset = (np.float32(0) if hi < 1e-6 else np.float32(255) / np.float32(hi)), np.float32(0)
        with np.errstate(invalid="ignore"):
            pixels = np.where(finite, image * scale + offset, 0).astype(np.uint8)
        bad = ~finite.all(axis=-1)
        pixels[bad] = _BAD_COLOR[:image.shape[-1]]
        out.append(pixels)
    return np.stack(out) if out else np.zeros(images.shape, np.uint8)


def _check_images(images, name):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise errors.InvalidArgumentError(
            None, None, f"{name}: images must be 4-D [batch, height, width, channels] with 1, 3 or 4 channels, "
                        f"got shape {list(images.shape)}")
    return images


def _image_summary_kernel(node):
    max_images = int(node.attr("max_images", 3))

    def run(tag, images):
        base = _text(np.asarray(tag)[()])
        images = _uint8_images_v1(_check_images(images, node.name)[:max_images])
        s = _pb().Summary()
        for i, image in enumerate(images):
            encoded = _pb().Summary.Image(height=image.shape[0], width=image.shape[1], colorspace=image.shape[2],
                                          encoded_image_string=encode_png(image))
            s.value.add(tag=f"{base}/image" if max_images == 1 else f"{base}/image/{i}", image=encoded)
        return _output(s)
    return run


register("ImageSummary", _scalar_string, _image_summary_kernel, cpu_only=True,
         doc="TF1's image summary: up to attr max_images PNG images of `tensor` [batch, h, w, c], tagged "
             "tag/image/i (tag/image when max_images is 1).")


def _uint8_images_v2(images):
    """tf.image.convert_image_dtype(images, uint8, saturate=True): floats in [0, 1] times 255.5, truncated."""
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind == "f":
        return np.clip(images.astype(np.float64) * 255.5, 0, 255).astype(np.uint8)
    raise errors.InvalidArgumentError(None, None, f"images must be uint8 or float, got {images.dtype}")


def _image_v2_kernel(node):
    max_outputs = int(node.attr("max_outputs", 3))
    metadata = plugin_metadata("images", description=node.attr("description", ""))

    def run(tag, images):
        images = _uint8_images_v2(_check_images(images, node.name))
        blobs = [str(images.shape[2]).encode(), str(images.shape[1]).encode()]
        blobs += [encode_png(image) for image in images[:max_outputs]]
        tensor = np.empty(len(blobs), dtype=object)
        tensor[:] = blobs
        return _output(_summary_value(_text(np.asarray(tag)[()]), metadata=metadata,
                                      tensor=tensor_proto(tensor)))
    return run


register("ImageSummaryV2", _scalar_string, _image_v2_kernel, cpu_only=True,
         doc="TF2's image summary: a string tensor [width, height, png...] of up to attr max_outputs images.")


# ---- merging and writing -------------------------------------------------------------------------

def _merge_summary_kernel(node):
    def run(*inputs):
        merged, seen = _pb().Summary(), set()
        for serialized in inputs:
            for blob in np.asarray(serialized).reshape(-1):
                part = _pb().Summary()
                try:
                    part.ParseFromString(bytes(blob))
                except Exception:
                    raise errors.InvalidArgumentError(None, None, "Could not parse one of the summary inputs") \
                        from None
                for value in part.value:
                    if value.tag in seen:
                        raise errors.InvalidArgumentError(
                            None, None, f"Duplicate tag {value.tag} found in summary inputs")
                    seen.add(value.tag)
                    merged.value.add().CopyFrom(value)
        return _output(merged)
    return run


register("MergeSummary", _scalar_string, _merge_summary_kernel, cpu_only=True,
         doc="The values of every input Summary in one Summary; a tag seen twice is an InvalidArgumentError.")


def _write_summary_kernel(node):
    writer_id = node.attr("writer")

    def run(step, serialized):
        writer = WRITERS.get(writer_id)
        if writer is None:
            raise errors.FailedPreconditionError(
                None, None, f"summary writer {writer_id} is not open in this process (a tg.summary file writer "
                            "lives in the process that created it; it may have been closed)")
        writer.write_serialized_summary(bytes(np.asarray(serialized)[()]), int(np.asarray(step)))
        return np.array(True)
    return run


register("WriteRawProtoSummary", lambda ctx: [(dtypes.bool_, ())], _write_summary_kernel, stateful=True,
         cpu_only=True,
         doc="Writes the serialized Summary input at `step` with the TF2 file writer named by attr writer; "
             "outputs True.")
