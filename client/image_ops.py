"""tg.image: TF2's tf.image (and TF1's names under compat.v1), kernels in tensorgrid/ops/image_ops.py.

Images are [height, width, channels] or a batch [batch, height, width,
channels]. resize follows TF2: bilinear and nearest sample at half-pixel
centres (ResizeBilinear / ResizeNearestNeighbor with half_pixel_centers),
area averages boxes (ResizeArea), antialias=True widens the bilinear kernel
when shrinking (ScaleAndTranslate, kernel "triangle"); TF1's resize_images
keeps TF1's corner-aligned sampling. Colour ops convert integer images to
float32 in [0, 1] and back with convert_image_dtype, as TF does.
"""

from tensorgrid.client import array_ops as ao
from tensorgrid.client import context
from tensorgrid.client import math_ops, random_ops
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework import dtypes
from tensorgrid.ops import registry

__all__ = ["ResizeMethod", "resize", "resize_with_pad", "resize_with_crop_or_pad", "flip_left_right",
           "flip_up_down", "random_flip_left_right", "random_flip_up_down", "transpose", "rot90", "central_crop",
           "crop_to_bounding_box", "pad_to_bounding_box", "random_crop", "adjust_brightness", "adjust_contrast",
           "adjust_saturation", "adjust_hue", "random_brightness", "random_contrast", "random_saturation",
           "random_hue", "rgb_to_grayscale", "grayscale_to_rgb", "rgb_to_hsv", "hsv_to_rgb",
           "per_image_standardization", "convert_image_dtype", "decode_png", "encode_png", "decode_jpeg",
           "encode_jpeg", "decode_image"]


class ResizeMethod:
    BILINEAR = "bilinear"
    NEAREST_NEIGHBOR = "nearest"
    AREA = "area"


_V1_METHODS = {0: "bilinear", 1: "nearest", 3: "area"}   # TF1's ResizeMethodV1 numbers


def _batched(image, fn):
    """fn(4-D images) for a 3-D image (as a batch of one) or a 4-D batch."""
    image = convert_to_tensor(image)
    rank = image.shape.ndims
    if rank not in (3, 4):
        raise ValueError(f"'image' must have either 3 or 4 dimensions, got shape {image.shape}")
    if rank == 3:
        return ao.squeeze(fn(ao.expand_dims(image, 0)), [0])
    return fn(image)


def _size_tensor(size):
    size = ao._int_tensor(size)
    if size.shape.ndims != 1 or size.shape[0] != 2:
        raise ValueError(f"'size' must be a 1-D Tensor of 2 elements: new_height, new_width, got {size.shape}")
    return ao.cast(size, dtypes.int32) if size.dtype is not dtypes.int32 else size


def _resize_nhwc(images, size, method, antialias, align_corners=False, half_pixel_centers=True):
    if method == "bilinear" and antialias:
        floats = ao.cast(images, dtypes.float32)
        hw = ao.cast(ao.shape(images)[1:3], dtypes.float32)
        scale = ao.cast(size, dtypes.float32) / hw
        return apply_op("ScaleAndTranslate", [floats, size, scale, ao.zeros([2], dtypes.float32)],
                        {"kernel_type": "triangle", "antialias": True})
    attrs = {"align_corners": bool(align_corners)}
    if method == "bilinear":
        return apply_op("ResizeBilinear", [images, size], dict(attrs, half_pixel_centers=half_pixel_centers))
    if method == "nearest":
        return apply_op("ResizeNearestNeighbor", [images, size], dict(attrs, half_pixel_centers=half_pixel_centers))
    if method == "area":
        return apply_op("ResizeArea", [images, size], attrs)
    raise ValueError(f"Resize method {method!r} is not supported; use one of 'bilinear', 'nearest', 'area'")


def _aspect_size(images, size):
    """size shrunk so the images keep their aspect ratio inside it (preserve_aspect_ratio)."""
    hw = ao.cast(ao.shape(images)[1:3], dtypes.float32)
    target = ao.cast(size, dtypes.float32)
    scale = math_ops.reduce_min(target / hw)
    return ao.cast(math_ops.round(hw * scale), dtypes.int32)


def resize(images, size, method=ResizeMethod.BILINEAR, preserve_aspect_ratio=False, antialias=False, name=None):
    """images resized to `size` [height, width] (see the module docstring for the methods)."""
    with name_scope(name, "resize"):
        size = _size_tensor(size)

        def run(x):
            target = _aspect_size(x, size) if preserve_aspect_ratio else size
            out = _resize_nhwc(x, target, method, antialias)
            if method == "nearest" and out.dtype is not x.dtype:
                out = ao.cast(out, x.dtype)
            return out
        return _batched(images, run)


def resize_images_v1(images, size, method=0, align_corners=False, preserve_aspect_ratio=False, name=None):
    """TF1's tf.image.resize_images: corner-aligned or TF1's legacy sampling, no half-pixel centres."""
    method = _V1_METHODS.get(method, method)
    with name_scope(name, "resize"):
        size = _size_tensor(size)
        return _batched(images, lambda x: _resize_nhwc(
            x, _aspect_size(x, size) if preserve_aspect_ratio else size, method, False, align_corners, False))


def _v1_resize(method):
    def fn(images, size, align_corners=False, name=None, half_pixel_centers=False):
        with name_scope(name, f"resize_{method}"):
            return _resize_nhwc(convert_to_tensor(images), _size_tensor(size), method, False, align_corners,
                                half_pixel_centers)
    return fn


resize_bilinear, resize_nearest_neighbor = _v1_resize("bilinear"), _v1_resize("nearest")


def resize_area(images, size, align_corners=False, name=None):
    """TF1's tf.image.resize_area."""
    return _resize_nhwc(convert_to_tensor(images), _size_tensor(size), "area", False, align_corners)


# ---- crops, pads, flips ------------------------------------------------------------------------------------


def _static_hw(image):
    dims = image.shape.as_list()
    return dims[-3], dims[-2]


def crop_to_bounding_box(image, offset_height, offset_width, target_height, target_width):
    """The [target_height, target_width] window of `image` whose top-left corner is (offset_height, offset_width)."""
    def run(x):
        h, w = _static_hw(x)
        for what, v in (("offset_height", offset_height), ("offset_width", offset_width)):
            if isinstance(v, int) and v < 0:
                raise ValueError(f"{what} must be >= 0.")
        for what, v in (("target_height", target_height), ("target_width", target_width)):
            if isinstance(v, int) and v <= 0:
                raise ValueError(f"{what} must be > 0.")
        if isinstance(target_width, int) and isinstance(offset_width, int) and w is not None \
                and w < target_width + offset_width:
            raise ValueError("width must be >= target + offset.")
        if isinstance(target_height, int) and isinstance(offset_height, int) and h is not None \
                and h < target_height + offset_height:
            raise ValueError("height must be >= target + offset.")
        begin = ao.stack([0, ao._int_tensor(offset_height), ao._int_tensor(offset_width), 0])
        size = ao.stack([-1, ao._int_tensor(target_height), ao._int_tensor(target_width), -1])
        out = ao.slice(x, begin, size)
        if isinstance(target_height, int) and isinstance(target_width, int) and not context.executing_eagerly():
            out.set_shape([x.shape[0], target_height, target_width, x.shape[3]])
        return out
    return _batched(image, run)


def pad_to_bounding_box(image, offset_height, offset_width, target_height, target_width):
    """`image` placed at (offset_height, offset_width) in zeros of [target_height, target_width]."""
    def run(x):
        h, w = _static_hw(x)
        if isinstance(target_width, int) and isinstance(offset_width, int) and w is not None \
                and target_width - offset_width - w < 0:
            raise ValueError("width must be <= target - offset")
        if isinstance(target_height, int) and isinstance(offset_height, int) and h is not None \
                and target_height - offset_height - h < 0:
            raise ValueError("height must be <= target - offset")
        shape = ao.shape(x)
        after_h = ao._int_tensor(target_height) - ao._int_tensor(offset_height) - shape[1]
        after_w = ao._int_tensor(target_width) - ao._int_tensor(offset_width) - shape[2]
        paddings = ao.reshape(ao.stack([0, 0, ao._int_tensor(offset_height), after_h,
                                        ao._int_tensor(offset_width), after_w, 0, 0]), [4, 2])
        out = ao.pad(x, paddings)
        if isinstance(target_height, int) and isinstance(target_width, int) and not context.executing_eagerly():
            out.set_shape([x.shape[0], target_height, target_width, x.shape[3]])
        return out
    return _batched(image, run)


def resize_with_crop_or_pad(image, target_height, target_width):
    """`image` centre-cropped and/or zero-padded (evenly on both sides) to [target_height, target_width]."""
    def run(x):
        shape = ao.shape(x)
        th, tw = ao._int_tensor(target_height), ao._int_tensor(target_width)
        dh, dw = th - shape[1], tw - shape[2]
        zero = ao.zeros([], dtypes.int32)
        crop_h, crop_w = math_ops.maximum(-dh // 2, zero), math_ops.maximum(-dw // 2, zero)
        pad_h, pad_w = math_ops.maximum(dh // 2, zero), math_ops.maximum(dw // 2, zero)
        cropped = crop_to_bounding_box(x, crop_h, crop_w, math_ops.minimum(th, shape[1]),
                                       math_ops.minimum(tw, shape[2]))
        out = pad_to_bounding_box(cropped, pad_h, pad_w, th, tw)
        if isinstance(target_height, int) and isinstance(target_width, int) and not context.executing_eagerly():
            out.set_shape([x.shape[0], target_height, target_width, x.shape[3]])
        return out
    return _batched(image, run)


def resize_with_pad(image, target_height, target_width, method=ResizeMethod.BILINEAR, antialias=False):
    """`image` resized to fit [target_height, target_width] keeping its aspect ratio, then zero-padded."""
    def run(x):
        hw = ao.cast(ao.shape(x)[1:3], dtypes.float32)
        th, tw = float(target_height), float(target_width)
        ratio = math_ops.maximum(hw[1] / tw, hw[0] / th)
        new_h = ao.cast(math_ops.floor(hw[0] / ratio), dtypes.int32)
        new_w = ao.cast(math_ops.floor(hw[1] / ratio), dtypes.int32)
        pad_h = math_ops.maximum(ao.cast((th - ao.cast(new_h, dtypes.float32)) / 2, dtypes.int32), 0)
        pad_w = math_ops.maximum(ao.cast((tw - ao.cast(new_w, dtypes.float32)) / 2, dtypes.int32), 0)
        resized = _resize_nhwc(x, ao.stack([new_h, new_w]), method, antialias)
        return pad_to_bounding_box(resized, pad_h, pad_w, int(target_height), int(target_width))
    return _batched(image, run)


def flip_left_right(image):
    """`image` mirrored horizontally (its width axis reversed)."""
    return _batched(image, lambda x: ao.reverse(x, [2]))


def flip_up_down(image):
    """`image` upside down (its height axis reversed)."""
    return _batched(image, lambda x: ao.reverse(x, [1]))


def transpose(image, name=None):
    """`image` with height and width swapped."""
    with name_scope(name, "transpose_image"):
        return _batched(image, lambda x: ao.transpose(x, [0, 2, 1, 3]))


def rot90(image, k=1, name=None):
    """`image` rotated k quarter turns counter-clockwise (k a Python int)."""
    with name_scope(name, "rot90"):
        k = int(k) % 4

        def run(x):
            for _ in range(k):
                x = ao.reverse(ao.transpose(x, [0, 2, 1, 3]), [1])
            return x
        return _batched(image, run)


def _random_flip(image, axis, seed):
    def run(x):
        flips = math_ops.less(random_ops.uniform(ao.shape(x)[:1], 0, 1.0, seed=seed), 0.5)
        return math_ops.where(ao.reshape(flips, [-1, 1, 1, 1]), ao.reverse(x, [axis]), x)
    return _batched(image, run)


def random_flip_left_right(image, seed=None):
    """Each image mirrored horizontally with probability 1/2."""
    return _random_flip(image, 2, seed)


def random_flip_up_down(image, seed=None):
    """Each image flipped upside down with probability 1/2."""
    return _random_flip(image, 1, seed)


def central_crop(image, central_fraction):
    """The central `central_fraction` (0, 1] of `image` along height and width."""
    if not 0.0 < central_fraction <= 1.0:
        raise ValueError("central_fraction must be within (0, 1]")
    if central_fraction == 1.0:
        return convert_to_tensor(image)

    def run(x):
        hw = ao.cast(ao.shape(x)[1:3], dtypes.float64)
        start = ao.cast((hw - hw * central_fraction) / 2, dtypes.int32)
        size = ao.shape(x)[1:3] - start * 2
        return crop_to_bounding_box(x, start[0], start[1], size[0], size[1])
    return _batched(image, run)


def random_crop(value, size, seed=None, name=None):
    """A window of shape `size` of `value` at a uniformly random offset."""
    with name_scope(name, "random_crop"):
        value = convert_to_tensor(value)
        size = ao._int_tensor(size)
        shape = ao.shape(value)
        from tensorgrid.client import misc_ops
        check = misc_ops.assert_equal(math_ops.reduce_all(math_ops.greater_equal(shape, size)), True,
                                      message="Need value.shape >= size, got ")
        from tensorgrid.client.scopes import control_dependencies
        with control_dependencies([check]):
            limit = shape - size + 1
        offset = random_ops.uniform(ao.shape(shape), dtype=dtypes.int32, maxval=dtypes.int32.max,
                                    seed=seed) % limit
        return ao.slice(value, offset, size)


# ---- dtype conversion and colour -----------------------------------------------------------------------


def convert_image_dtype(image, dtype, saturate=False, name=None):
    """`image` in `dtype`, rescaled as TF does: floats span [0, 1], integers [0, dtype.max]."""
    dtype = dtypes.as_dtype(dtype)
    if not dtype.is_floating and not dtype.is_integer:
        raise AttributeError(f"dtype must be either floating point or integer, got {dtype.name}")
    with name_scope(name, "convert_image"):
        image = convert_to_tensor(image)
        src = image.dtype
        if src is dtype:
            return ao.identity(image)
        if src.is_integer and dtype.is_integer:
            if src.max > dtype.max:
                return ao.cast(math_ops.floordiv(image, ao.constant((int(src.max) + 1) // (int(dtype.max) + 1),
                                                                    src)), dtype)
            return ao.cast(image, dtype) * ao.constant((int(dtype.max) + 1) // (int(src.max) + 1), dtype)
        if src.is_floating and dtype.is_floating:
            return ao.cast(image, dtype)
        if src.is_integer:
            return ao.cast(image, dtype) * ao.constant(1.0 / float(src.max), dtype)
        scaled = image * ao.constant(float(dtype.max) + 0.5, src)
        if saturate:
            scaled = ao.clip_by_value(scaled, float(dtype.min), float(dtype.max))
        return ao.cast(scaled, dtype)


def _in_float(image, fn):
    """fn(image as float32 in [0, 1]) converted back to the image's dtype (saturating)."""
    image = convert_to_tensor(image)
    if image.dtype.is_floating:
        return fn(image)
    return convert_image_dtype(fn(convert_image_dtype(image, dtypes.float32)), image.dtype, saturate=True)


def adjust_brightness(image, delta):
    """`image` plus delta (in [0, 1] float units)."""
    with name_scope(None, "adjust_brightness"):
        return _in_float(image, lambda x: x + ao.cast(delta, x.dtype))


def adjust_contrast(images, contrast_factor):
    """(x - mean) * contrast_factor + mean, per channel of each image."""
    with name_scope(None, "adjust_contrast"):
        return _in_float(images, lambda x: apply_op("AdjustContrastv2", [x, ao.cast(contrast_factor, dtypes.float32)]))


def adjust_saturation(image, saturation_factor, name=None):
    """RGB `image` with its saturation scaled by saturation_factor."""
    with name_scope(name, "adjust_saturation"):
        return _in_float(image, lambda x: apply_op("AdjustSaturation",
                                                   [x, ao.cast(saturation_factor, dtypes.float32)]))


def adjust_hue(image, delta, name=None):
    """RGB `image` with delta in [-1, 1] added to its hue."""
    if isinstance(delta, (int, float)) and not -1 <= delta <= 1:
        raise ValueError(f"delta must be in the interval [-1, 1], got {delta}")
    with name_scope(name, "adjust_hue"):
        return _in_float(image, lambda x: apply_op("AdjustHue", [x, ao.cast(delta, dtypes.float32)]))


def random_brightness(image, max_delta, seed=None):
    """adjust_brightness by a delta uniform in [-max_delta, max_delta)."""
    if max_delta < 0:
        raise ValueError("max_delta must be non-negative.")
    return adjust_brightness(image, random_ops.uniform([], -max_delta, max_delta, seed=seed))


def random_contrast(image, lower, upper, seed=None):
    """adjust_contrast by a factor uniform in [lower, upper)."""
    if upper <= lower:
        raise ValueError("upper must be > lower.")
    if lower < 0:
        raise ValueError("lower must be non-negative.")
    return adjust_contrast(image, random_ops.uniform([], lower, upper, seed=seed))


def random_saturation(image, lower, upper, seed=None):
    """adjust_saturation by a factor uniform in [lower, upper)."""
    if upper <= lower:
        raise ValueError("upper must be > lower.")
    if lower < 0:
        raise ValueError("lower must be non-negative.")
    return adjust_saturation(image, random_ops.uniform([], lower, upper, seed=seed))


def random_hue(image, max_delta, seed=None):
    """adjust_hue by a delta uniform in [-max_delta, max_delta), max_delta in [0, 0.5]."""
    if not 0 <= max_delta <= 0.5:
        raise ValueError("max_delta must be in [0, 0.5].")
    return adjust_hue(image, random_ops.uniform([], -max_delta, max_delta, seed=seed))


def rgb_to_grayscale(images, name=None):
    """One channel: 0.2989 R + 0.5870 G + 0.1140 B."""
    with name_scope(name, "rgb_to_grayscale"):
        weights = ao.constant([0.2989, 0.5870, 0.1140], dtypes.float32)
        return _in_float(images, lambda x: ao.expand_dims(
            math_ops.reduce_sum(x * ao.cast(weights, x.dtype), axis=-1), -1))


def grayscale_to_rgb(images, name=None):
    """The one channel repeated three times."""
    with name_scope(name, "grayscale_to_rgb"):
        images = convert_to_tensor(images)
        return ao.concat([images, images, images], -1)


def rgb_to_hsv(images, name=None):
    """HSV of float RGB images."""
    return apply_op("RGBToHSV", [images], name=name or "RGBToHSV")


def hsv_to_rgb(images, name=None):
    """RGB of float HSV images."""
    return apply_op("HSVToRGB", [images], name=name or "HSVToRGB")


def per_image_standardization(image):
    """Each image scaled to mean 0 and variance 1 (stddev at least 1/sqrt(pixels)); float32 out."""
    with name_scope(None, "per_image_standardization"):
        x = convert_to_tensor(image)
        if not x.dtype.is_floating:
            x = ao.cast(x, dtypes.float32)
        axes = [-1, -2, -3]
        pixels = ao.cast(math_ops.reduce_prod(ao.shape(x)[-3:]), x.dtype)
        mean = math_ops.reduce_mean(x, axis=axes, keepdims=True)
        std = math_ops.sqrt(math_ops.reduce_mean(math_ops.square(x - mean), axis=axes, keepdims=True))
        return (x - mean) / math_ops.maximum(std, math_ops.rsqrt(pixels))


# ---- codecs ----------------------------------------------------------------------------------------------


def _decode(op, contents, channels, dtype, name):
    return apply_op(op, [convert_to_tensor(contents, dtype=dtypes.string)],
                    {"channels": int(channels or 0), "dtype": dtypes.as_dtype(dtype)}, name=name or op)


def decode_png(contents, channels=0, dtype=dtypes.uint8, name=None):
    """The [height, width, channels] uint8 pixels of a PNG (channels 0: the file's)."""
    return _decode("DecodePng", contents, channels, dtype, name)


def decode_jpeg(contents, channels=0, ratio=1, fancy_upscaling=True, try_recover_truncated=False,
                acceptable_fraction=1, dct_method="", name=None):
    """The [height, width, channels] uint8 pixels of a JPEG (decoded by Pillow's libjpeg)."""
    if ratio != 1:
        raise ValueError(f"decode_jpeg: only ratio=1 is supported, got {ratio}")
    return _decode("DecodeJpeg", contents, channels, dtypes.uint8, name)


def decode_image(contents, channels=None, dtype=dtypes.uint8, name=None, expand_animations=True):
    """The pixels of a PNG, JPEG, GIF (first frame) or BMP, as `dtype` (uint8, or float32 in [0, 1])."""
    return _decode("DecodeImage", contents, channels, dtype, name)


def encode_png(image, compression=-1, name=None):
    """PNG bytes of a uint8 [height, width, channels] image."""
    return apply_op("EncodePng", [convert_to_tensor(image)], {"compression": int(compression)},
                    name=name or "EncodePng")


def encode_jpeg(image, format="", quality=95, progressive=False, optimize_size=False,  # noqa: A002
                chroma_downsampling=True, density_unit="in", x_density=300, y_density=300, xmp_metadata="",
                name=None):
    """JPEG bytes of a uint8 [height, width, 1 or 3] image."""
    return apply_op("EncodeJpeg", [convert_to_tensor(image)],
                    {"format": format, "quality": int(quality), "progressive": bool(progressive),
                     "optimize_size": bool(optimize_size), "chroma_downsampling": bool(chroma_downsampling)},
                    name=name or "EncodeJpeg")


# ---- gradients -------------------------------------------------------------------------------------------


@registry.register_gradient("ResizeBilinear")
def _resize_bilinear_grad(op, grad):
    return [apply_op("ResizeBilinearGrad", [grad, op.inputs[0]],
                     {"align_corners": op.get_attr("align_corners"),
                      "half_pixel_centers": op.get_attr("half_pixel_centers")}), None]


@registry.register_gradient("ResizeNearestNeighbor")
def _resize_nearest_grad(op, grad):
    return [apply_op("ResizeNearestNeighborGrad", [grad, ao.shape(op.inputs[0])[1:3]],
                     {"align_corners": op.get_attr("align_corners"),
                      "half_pixel_centers": op.get_attr("half_pixel_centers")}), None]


@registry.register_gradient("ScaleAndTranslate")
def _scale_and_translate_grad(op, grad):
    return [apply_op("ScaleAndTranslateGrad", [grad, op.inputs[0], op.inputs[2], op.inputs[3]],
                     {"kernel_type": op.get_attr("kernel_type"), "antialias": op.get_attr("antialias")}),
            None, None, None]


registry.not_differentiable("DecodePng", "DecodeJpeg", "DecodeImage", "EncodePng", "EncodeJpeg",
                            "ResizeBilinearGrad", "ResizeNearestNeighborGrad", "ScaleAndTranslateGrad")
