"""Image ops (tg.image), with TF's op names: resizing, colour adjustments, PNG and JPEG codecs.

Every resize is separable: output = Wy @ image @ Wx^T per channel, with
interpolation matrices Wy [out_h, in_h] and Wx [out_w, in_w] built from TF's
sampling rules (align_corners, half_pixel_centers; ScaleAndTranslate's
antialiased kernels), so a resize's gradient is Wy^T @ grad @ Wx, one rule
for every method. Images are NHWC. PNG encoding (uint8) uses the pure
NumPy + zlib writer the image summaries use; decoding, and JPEG both ways,
use Pillow (the `image` extra), which reads every PNG colour type and bit depth.
"""

import io
import math

import numpy as np

from tensorgrid.framework import dtypes
from tensorgrid.ops.array_ops import _host, _invalid
from tensorgrid.ops.registry import register

# ---- interpolation matrices --------------------------------------------------------------------------


def _scale(in_size, out_size, align_corners):
    if align_corners and out_size > 1:
        return (in_size - 1) / (out_size - 1)
    return in_size / out_size


def _bilinear_weights(in_size, out_size, align_corners, half_pixel):
    scale = _scale(in_size, out_size, align_corners)
    w = np.zeros((out_size, in_size))
    for i in range(out_size):
        pos = (i + 0.5) * scale - 0.5 if half_pixel else i * scale
        lo_f = math.floor(pos)
        lo, hi = max(lo_f, 0), min(math.ceil(pos), in_size - 1)
        frac = pos - lo_f
        w[i, min(lo, in_size - 1)] += 1 - frac
        w[i, hi] += frac
    return w


def _nearest_weights(in_size, out_size, align_corners, half_pixel):
    scale = _scale(in_size, out_size, align_corners)
    w = np.zeros((out_size, in_size))
    for i in range(out_size):
        if half_pixel:
            src = math.floor((i + 0.5) * scale)
        elif align_corners:
            src = math.floor(i * scale + 0.5)   # C's round: halves away from zero
        else:
            src = math.floor(i * scale)
        w[i, min(max(src, 0), in_size - 1)] = 1.0
    return w


def _area_weights(in_size, out_size, align_corners):
    scale = _scale(in_size, out_size, align_corners)
    w = np.zeros((out_size, in_size))
    for i in range(out_size):
        start, end = i * scale, (i + 1) * scale
        for j in range(int(math.floor(start)), int(math.ceil(end))):
            overlap = min(j + 1, end) - max(j, start)
            if overlap > 0:
                w[i, min(max(j, 0), in_size - 1)] += overlap / scale
    return w


def _keys_cubic(x, a=-0.5):
    x = abs(x)
    if x >= 2:
        return 0.0
    if x >= 1:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return ((a + 2) * x - (a + 3)) * x * x + 1


_KERNELS = {   # ScaleAndTranslate's kernels: (function, radius)
    "triangle": (lambda x: max(0.0, 1 - abs(x)), 1.0),
    "box": (lambda x: 1.0 if -0.5 <= x < 0.5 else 0.0, 0.5),
    "keyscubic": (_keys_cubic, 2.0),
    "lanczos3": (lambda x: float(np.sinc(x) * np.sinc(x / 3)) if abs(x) < 3 else 0.0, 3.0),
    "lanczos5": (lambda x: float(np.sinc(x) * np.sinc(x / 5)) if abs(x) < 5 else 0.0, 5.0),
}


def _scale_translate_weights(in_size, out_size, scale, translate, kernel_type, antialias):
    fn, radius = _KERNELS[kernel_type]
    inv = 1.0 / scale
    kernel_scale = max(inv, 1.0) if antialias else 1.0
    r = radius * kernel_scale
    w = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5 - translate) * inv           # in input coordinates; pixel j's centre is j + 0.5
        lo, hi = max(int(math.ceil(center - r - 0.5)), 0), min(int(math.floor(center + r - 0.5)), in_size - 1)
        row = np.array([fn((j + 0.5 - center) / kernel_scale) for j in range(lo, hi + 1)])
        total = row.sum()
        if row.size and abs(total) > 1000 * np.finfo(np.float32).tiny:
            w[i, lo:hi + 1] = row / total
    return w


def _apply(xp, images, wy, wx, dtype):
    """Wy @ image @ Wx^T for each NHWC image, computed in float64 then cast to dtype."""
    x = xp.asarray(images, dtype=np.float64)
    out = xp.einsum("ip,bpqc->biqc", xp.asarray(wy), x)
    out = xp.einsum("jq,biqc->bijc", xp.asarray(wx), out)
    return out.astype(dtype)


def _apply_transposed(xp, grads, wy, wx, dtype):
    """Wy^T @ grad @ Wx for each NHWC gradient: a resize's gradient with respect to its images."""
    x = xp.asarray(grads, dtype=np.float64)
    out = xp.einsum("ip,biqc->bpqc", xp.asarray(wy), x)
    out = xp.einsum("jq,bpjc->bpqc", xp.asarray(wx), out)
    return out.astype(dtype)


def _size_of(size):
    s = [int(v) for v in _host(size).reshape(-1)]
    if len(s) != 2 or min(s) <= 0:
        raise _invalid(f"size must be 2 positive integers [new_height, new_width], got {s}")
    return s


def _check_images(x, what="images"):
    if x.ndim != 4:
        raise _invalid(f"{what} must be 4-dimensional [batch, height, width, channels], got shape {list(x.shape)}")


def _infer_resize(out_dtype=None):
    def infer(ctx):
        images, size = ctx.input_shapes[0], ctx.const_values[1]
        if images is not None and len(images) != 4:
            raise ctx.error(f"images must be 4-dimensional, got shape {list(images)}")
        if not ctx.input_dtypes[1] is dtypes.int32:
            raise TypeError(f"{ctx.op} '{ctx.name}': size must be int32, not {ctx.input_dtypes[1].name}")
        hw = (None, None) if size is None else tuple(int(v) for v in np.asarray(size).reshape(-1))
        dt = out_dtype or ctx.input_dtypes[0]
        return [(dt, None if images is None else (images[0],) + hw + (images[3],))]
    return infer


def _resize_kernel(weights_fn, float_out):
    def factory(node):
        xp = node.xp
        align, half = node.attr("align_corners", False), node.attr("half_pixel_centers", False)
        if align and half:
            raise _invalid("If half_pixel_centers is True, align_corners must be False.")

        def resize(images, size):
            _check_images(images)
            h, w = _size_of(size)
            wy = weights_fn(images.shape[1], h, align, half)
            wx = weights_fn(images.shape[2], w, align, half)
            return _apply(xp, images, wy, wx, np.float32 if float_out else images.dtype)
        return resize
    return factory


def _grad_kernel(weights_fn, size_from_input):
    def factory(node):
        xp = node.xp
        align, half = node.attr("align_corners", False), node.attr("half_pixel_centers", False)

        def resize_grad(grads, original):
            _check_images(grads, "grads")
            h, w = _size_of(original) if size_from_input else original.shape[1:3]
            wy = weights_fn(h, grads.shape[1], align, half)
            wx = weights_fn(w, grads.shape[2], align, half)
            return _apply_transposed(xp, grads, wy, wx, grads.dtype if size_from_input else original.dtype)
        return resize_grad
    return factory


def _infer_bilinear_grad(ctx):
    return [(ctx.input_dtypes[1], ctx.input_shapes[1])]


def _infer_nearest_grad(ctx):
    g, size = ctx.input_shapes[0], ctx.const_values[1]
    hw = (None, None) if size is None else tuple(int(v) for v in np.asarray(size).reshape(-1))
    return [(ctx.input_dtypes[0], None if g is None else (g[0],) + hw + (g[3],))]


register("ResizeBilinear", _infer_resize(dtypes.float32), _resize_kernel(_bilinear_weights, True), cpu_only=True,
         doc="Bilinear resize of NHWC images to size (float32 out); attrs align_corners, half_pixel_centers.")
register("ResizeBilinearGrad", _infer_bilinear_grad, _grad_kernel(_bilinear_weights, False), cpu_only=True,
         doc="The gradient of ResizeBilinear with respect to its images (shaped like original_image).")
register("ResizeNearestNeighbor", _infer_resize(), _resize_kernel(_nearest_weights, False), cpu_only=True,
         doc="Nearest-neighbour resize of NHWC images to size; attrs align_corners, half_pixel_centers.")
register("ResizeNearestNeighborGrad", _infer_nearest_grad, _grad_kernel(_nearest_weights, True), cpu_only=True,
         doc="The gradient of ResizeNearestNeighbor: each output pixel's gradient added to its source pixel.")
register("ResizeArea", _infer_resize(dtypes.float32),
         _resize_kernel(lambda n, m, align, half: _area_weights(n, m, align), True),
         doc="Area (box-average) resize of NHWC images to size (float32 out); attr align_corners.", cpu_only=True)


def _infer_scale_and_translate(ctx):
    return _infer_resize(dtypes.float32)(ctx)


def _scale_and_translate_kernel(node):
    xp = node.xp
    kernel_type, antialias = node.attr("kernel_type", "lanczos3"), node.attr("antialias", True)
    if kernel_type not in _KERNELS:
        raise _invalid(f"kernel_type must be one of {sorted(_KERNELS)}, got {kernel_type!r}")

    def weights(images_hw, size, scale, translation):
        sy, sx = (float(v) for v in _host(scale).reshape(-1))
        ty, tx = (float(v) for v in _host(translation).reshape(-1))
        return (_scale_translate_weights(images_hw[0], size[0], sy, ty, kernel_type, antialias),
                _scale_translate_weights(images_hw[1], size[1], sx, tx, kernel_type, antialias))

    def scale_and_translate(images, size, scale, translation):
        _check_images(images)
        wy, wx = weights(images.shape[1:3], _size_of(size), scale, translation)
        return _apply(xp, images, wy, wx, np.float32)
    scale_and_translate.weights = weights
    return scale_and_translate


def _scale_and_translate_grad_kernel(node):
    xp = node.xp
    weights = _scale_and_translate_kernel(node).weights

    def scale_and_translate_grad(grads, original_image, scale, translation):
        wy, wx = weights(original_image.shape[1:3], grads.shape[1:3], scale, translation)
        return _apply_transposed(xp, grads, wy, wx, grads.dtype)
    return scale_and_translate_grad


register("ScaleAndTranslate", _infer_scale_and_translate, _scale_and_translate_kernel, cpu_only=True,
         doc="Resize with a kernel (attr kernel_type) widened when downscaling (attr antialias), scale and "
             "translation per spatial dim.")
register("ScaleAndTranslateGrad", lambda ctx: [(ctx.input_dtypes[0], ctx.input_shapes[1])],
         _scale_and_translate_grad_kernel, cpu_only=True,
         doc="The gradient of ScaleAndTranslate with respect to its images.")


# ---- colour ----------------------------------------------------------------------------------------------


def _same_as_images(ctx):
    if not ctx.input_dtypes[0].is_floating:
        raise TypeError(f"{ctx.op} '{ctx.name}': images must be floating point, not {ctx.input_dtypes[0].name}")
    shape = ctx.input_shapes[0]
    if shape is not None and len(shape) < 3:
        raise ctx.error(f"images must be at least 3-D [..., height, width, channels], got shape {list(shape)}")
    return [(ctx.input_dtypes[0], shape)]


def _adjust_contrast_kernel(node):
    xp = node.xp

    def adjust_contrast(images, contrast_factor):
        mean = images.mean(axis=(-3, -2), keepdims=True, dtype=np.float64)
        return ((images - mean) * float(contrast_factor) + mean).astype(images.dtype)
    return adjust_contrast


register("AdjustContrastv2", _same_as_images, _adjust_contrast_kernel, cpu_only=True,
         doc="(image - mean) * contrast_factor + mean, the mean of each channel of each image.")


def rgb_to_hsv(rgb):
    """HSV (each in [0, 1]) of RGB floats in [0, 1], last dim 3."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = np.max(rgb, axis=-1)
    rng = v - np.min(rgb, axis=-1)
    s = np.where(v > 0, rng / np.where(v > 0, v, 1), 0)
    safe = np.where(rng > 0, rng, 1)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = np.where(rng > 0, h, 0)
    return np.stack([h % 1.0, s, v], axis=-1)


def hsv_to_rgb(hsv):
    """RGB floats of HSV ones (each in [0, 1]), last dim 3."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    dh = (h % 1.0) * 6
    r = np.clip(np.abs(dh - 3) - 1, 0, 1)
    g = np.clip(2 - np.abs(dh - 2), 0, 1)
    b = np.clip(2 - np.abs(dh - 4), 0, 1)
    return np.stack([(((r - 1) * s) + 1) * v, (((g - 1) * s) + 1) * v, (((b - 1) * s) + 1) * v], axis=-1)


def _hsv_kernel(adjust):
    def factory(node):
        xp = node.xp

        def kernel(images, delta):
            x = _host(images).astype(np.float64)
            if x.shape[-1] != 3:
                raise _invalid(f"images must have 3 channels (RGB), got shape {list(x.shape)}")
            hsv = rgb_to_hsv(x)
            adjust(hsv, float(_host(delta)))
            return xp.asarray(hsv_to_rgb(hsv).astype(images.dtype))
        return kernel
    return factory


def _hue(hsv, delta):
    hsv[..., 0] = (hsv[..., 0] + delta) % 1.0


def _saturation(hsv, scale):
    hsv[..., 1] = np.clip(hsv[..., 1] * scale, 0, 1)


register("AdjustHue", _same_as_images, _hsv_kernel(_hue), cpu_only=True,
         doc="RGB images with delta added to their hue (in HSV, turning around 1).")
register("AdjustSaturation", _same_as_images, _hsv_kernel(_saturation), cpu_only=True,
         doc="RGB images with their saturation (in HSV) scaled by scale and clipped to [0, 1].")
register("RGBToHSV", _same_as_images, lambda node: lambda x: node.xp.asarray(
    rgb_to_hsv(_host(x).astype(np.float64)).astype(x.dtype)), cpu_only=True, doc="HSV of RGB images.")
register("HSVToRGB", _same_as_images, lambda node: lambda x: node.xp.asarray(
    hsv_to_rgb(_host(x).astype(np.float64)).astype(x.dtype)), cpu_only=True, doc="RGB of HSV images.")


# ---- codecs ----------------------------------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise _invalid("decoding and JPEG encoding need Pillow: pip install 'tensorgrid[image]'") from None
    return Image


_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def decode(contents, channels, what):
    """A uint8 [h, w, c] array of image bytes (PNG, JPEG, GIF's first frame, BMP), c = channels or the file's."""
    image_mod = _pillow()
    data = bytes(contents)
    try:
        img = image_mod.open(io.BytesIO(data))
        img.load()
    except Exception as e:
        raise _invalid(f"{what}: the contents are not a decodable image ({type(e).__name__}: {e}); "
                       f"first bytes {data[:8]!r}") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):    # 16-bit grey: TF's uint8 output keeps the high byte
        img = image_mod.fromarray((np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8))
    want = _MODES.get(channels) or (img.mode if img.mode in _MODES.values() else
                                    "RGBA" if "A" in img.getbands() or "transparency" in img.info else
                                    "L" if img.mode in ("1", "L", "F") else "RGB")
    arr = np.asarray(img.convert(want))
    return np.ascontiguousarray(arr[..., None] if arr.ndim == 2 else arr)


def _infer_decode(ctx):
    if ctx.input_dtypes[0] is not dtypes.string:
        raise TypeError(f"{ctx.op} '{ctx.name}': contents must be a string tensor, not {ctx.input_dtypes[0].name}")
    shape = ctx.input_shapes[0]
    if shape is not None and len(shape) != 0:
        raise ctx.error(f"contents must be a scalar, got shape {list(shape)}")
    channels = ctx.attr("channels", 0)
    if channels not in (0, 1, 2, 3, 4):
        raise ctx.error(f"channels must be 0, 1, 2, 3 or 4, got {channels}")
    dt = dtypes.as_dtype(ctx.attr("dtype", dtypes.uint8))
    return [(dt, (None, None, channels or None))]


def _decode_kernel(node):
    channels = node.attr("channels", 0)
    dt = dtypes.as_dtype(node.attr("dtype", dtypes.uint8))
    if dt not in (dtypes.uint8, dtypes.float32):
        raise _invalid(f"dtype must be uint8 or float32, got {dt.name}")

    def decode_kernel(contents):
        data = contents[()] if np.ndim(contents) == 0 else contents
        raw = decode(data if isinstance(data, bytes) else bytes(data), channels, f"{node.op} '{node.name}'")
        if node.op == "DecodeJpeg" and raw.shape[-1] in (2, 4):
            raise _invalid(f"{node.op} '{node.name}': JPEG images have 1 or 3 channels, not {raw.shape[-1]}")
        if dt is dtypes.float32:
            return node.xp.asarray(raw.astype(np.float32) / 255.0)
        return node.xp.asarray(raw)
    return decode_kernel


for _op in ("DecodePng", "DecodeJpeg", "DecodeImage"):
    register(_op, _infer_decode, _decode_kernel, cpu_only=True,
             doc="The [height, width, channels] pixels of an encoded image (attrs channels, dtype).")


def _infer_encode(ctx):
    shape = ctx.input_shapes[0]
    if shape is not None and len(shape) != 3:
        raise ctx.error(f"image must be 3-dimensional [height, width, channels], got shape {list(shape)}")
    if ctx.input_dtypes[0] is not dtypes.uint8:
        raise TypeError(f"{ctx.op} '{ctx.name}': image must be uint8, not {ctx.input_dtypes[0].name}")
    return [(dtypes.string, ())]


def _encode_png_kernel(node):
    from tensorgrid.ops.summary_ops import encode_png

    def encode(image):
        image = _host(image)
        if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
            raise _invalid(f"image must be [height, width, 1..4 channels], got shape {list(image.shape)}")
        return np.array(encode_png(image), dtype=object)
    return encode


def _encode_jpeg_kernel(node):
    quality = int(node.attr("quality", 95))
    fmt = node.attr("format", "")
    progressive, optimize = bool(node.attr("progressive", False)), bool(node.attr("optimize_size", False))
    subsampling = 2 if node.attr("chroma_downsampling", True) else 0

    def encode(image):
        image = _host(image)
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise _invalid(f"image must be [height, width, 1 or 3 channels], got shape {list(image.shape)}")
        mode = {"grayscale": "L", "rgb": "RGB"}.get(fmt) or ("L" if image.shape[-1] == 1 else "RGB")
        img = _pillow().fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert(mode)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=quality, progressive=progressive, optimize=optimize,
                 subsampling=subsampling)
        return np.array(out.getvalue(), dtype=object)
    return encode


register("EncodePng", _infer_encode, _encode_png_kernel, cpu_only=True,
         doc="PNG bytes of a uint8 [height, width, channels] image.")
register("EncodeJpeg", _infer_encode, _encode_jpeg_kernel, cpu_only=True,
         doc="JPEG bytes of a uint8 [height, width, 1 or 3] image (attrs quality, progressive, ...).")
