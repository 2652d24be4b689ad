"""tg.image (client/image_ops.py): resizes against TensorFlow (values and gradients), crops, pads, flips,
colour ops and dtype conversion against TF on the same inputs, PNG/JPEG round trips with TF's codecs."""

import numpy as np
import pytest

import tensorgrid as tg
import tensorgrid.compat.v1 as v1
from tests.conftest import run_with

RNG = np.random.RandomState(0)
IMAGE = RNG.rand(2, 5, 7, 3).astype(np.float32)
UINT8 = (RNG.rand(6, 5, 3) * 255).astype(np.uint8)


def _tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("method,antialias", [("bilinear", False), ("nearest", False), ("area", False),
                                              ("bilinear", True)])
@pytest.mark.parametrize("size", [(9, 4), (3, 11), (5, 7), (2, 3)])
def test_resize_matches_tensorflow(method, size, antialias):
    tf = _tf()
    got = tg.image.resize(IMAGE, size, method=method, antialias=antialias).numpy()
    want = tf.image.resize(IMAGE, size, method=method, antialias=antialias).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align_corners,half_pixel_centers", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("op", ["resize_bilinear", "resize_nearest_neighbor"])
def test_tf1_resizes_match_tensorflow(op, align_corners, half_pixel_centers):
    tf = _tf().compat.v1
    for size in ((9, 4), (3, 11)):
        got = getattr(v1.image, op)(IMAGE, size, align_corners, half_pixel_centers=half_pixel_centers).numpy()
        want = getattr(tf.image, op)(IMAGE, size, align_corners, half_pixel_centers=half_pixel_centers).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v1.image.resize_area(IMAGE, [4, 9], align_corners=True).numpy(),
                               tf.image.resize_area(IMAGE, [4, 9], align_corners=True).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v1.image.resize_images(IMAGE, [8, 3]).numpy(),
                               tf.image.resize_images(IMAGE, [8, 3]).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method,antialias", [("bilinear", False), ("nearest", False), ("bilinear", True)])
def test_resize_gradients_match_tensorflow_and_finite_differences(method, antialias):
    tf = _tf()
    weights = RNG.rand(2, 4, 10, 3).astype(np.float32)
    grads = []
    for m in (tg, tf):
        x = m.constant(IMAGE)
        with m.GradientTape() as tape:
            tape.watch(x)
            y = m.reduce_sum(m.image.resize(x, [4, 10], method=method, antialias=antialias) * weights)
        grads.append(tape.gradient(y, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    if method != "nearest":   # nearest is piecewise constant: finite differences say nothing
        # a resize is linear in the image, so a wide step is exact up to float32 rounding (its output dtype)
        x0 = IMAGE[:1, :, :4, :1].astype(np.float32)
        w = RNG.rand(1, 3, 5, 1).astype(np.float32)

        def loss(x):
            return float(np.sum(tg.image.resize(x, [3, 5], method=method, antialias=antialias).numpy() * w))
        x = tg.constant(x0)
        with tg.GradientTape() as tape:
            tape.watch(x)
            y = tg.reduce_sum(tg.image.resize(x, [3, 5], method=method, antialias=antialias) * w)
        symbolic = tape.gradient(y, x).numpy()
        for idx in np.ndindex(x0.shape):
            plus, minus = x0.copy(), x0.copy()
            plus[idx] += 0.5
            minus[idx] -= 0.5
            assert symbolic[idx] == pytest.approx(loss(plus) - loss(minus), abs=1e-5)


def test_resize_on_every_executor(executor):
    got = run_with(executor, lambda x: [tg.image.resize(x, [3, 4]), tg.image.flip_left_right(x),
                                        tg.image.resize_with_crop_or_pad(x, 4, 9)], IMAGE)
    want = tg.image.resize(IMAGE, [3, 4]).numpy()
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    np.testing.assert_array_equal(got[1], IMAGE[:, :, ::-1])
    assert got[2].shape == (2, 4, 9, 3)


GEOMETRY = {
    "flip_left_right": lambda m: m.image.flip_left_right(IMAGE[0]),
    "flip_up_down": lambda m: m.image.flip_up_down(IMAGE),
    "transpose": lambda m: m.image.transpose(IMAGE),
    "rot90": lambda m: m.image.rot90(IMAGE[0], k=3),
    "central_crop": lambda m: m.image.central_crop(IMAGE, 0.5),
    "crop_to_bounding_box": lambda m: m.image.crop_to_bounding_box(IMAGE, 1, 2, 3, 4),
    "pad_to_bounding_box": lambda m: m.image.pad_to_bounding_box(IMAGE[0], 1, 2, 8, 10),
    "crop_or_pad_crop": lambda m: m.image.resize_with_crop_or_pad(IMAGE, 3, 4),
    "crop_or_pad_pad": lambda m: m.image.resize_with_crop_or_pad(IMAGE[0], 8, 10),
    "crop_or_pad_mixed": lambda m: m.image.resize_with_crop_or_pad(IMAGE, 8, 3),
    "resize_with_pad": lambda m: m.image.resize_with_pad(IMAGE, 8, 8),
    "brightness": lambda m: m.image.adjust_brightness(IMAGE, 0.2),
    "brightness_uint8": lambda m: m.image.adjust_brightness(UINT8, 0.3),
    "contrast": lambda m: m.image.adjust_contrast(IMAGE, 1.7),
    "contrast_uint8": lambda m: m.image.adjust_contrast(UINT8, 0.5),
    "saturation": lambda m: m.image.adjust_saturation(IMAGE, 1.6),
    "hue": lambda m: m.image.adjust_hue(IMAGE, 0.3),
    "hue_uint8": lambda m: m.image.adjust_hue(UINT8, -0.4),
    "grayscale": lambda m: m.image.rgb_to_grayscale(IMAGE),
    "grayscale_uint8": lambda m: m.image.rgb_to_grayscale(UINT8),
    "grayscale_to_rgb": lambda m: m.image.grayscale_to_rgb(m.constant(IMAGE[..., :1])),
    "rgb_to_hsv": lambda m: m.image.rgb_to_hsv(IMAGE),
    "hsv_round_trip": lambda m: m.image.hsv_to_rgb(m.image.rgb_to_hsv(IMAGE)),
    "standardization": lambda m: m.image.per_image_standardization(IMAGE),
    "standardization_uint8": lambda m: m.image.per_image_standardization(UINT8),
    "to_float": lambda m: m.image.convert_image_dtype(UINT8, m.float32),
    "to_uint8": lambda m: m.image.convert_image_dtype(IMAGE * 1.2 - 0.1, m.uint8, saturate=True),
    "to_uint8_unsaturated": lambda m: m.image.convert_image_dtype(IMAGE, m.uint8),
    "uint8_to_int32": lambda m: m.image.convert_image_dtype(UINT8, m.int32),
    "int32_to_uint8": lambda m: m.image.convert_image_dtype(np.array([0, 1 << 24, 2 ** 31 - 1], np.int32), m.uint8),
    "to_int16": lambda m: m.image.convert_image_dtype(IMAGE, m.int16),
}


@pytest.mark.parametrize("case", sorted(GEOMETRY))
def test_image_ops_match_tensorflow(case):
    tf = _tf()
    got, want = GEOMETRY[case](tg).numpy(), GEOMETRY[case](tf).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    else:
        np.testing.assert_array_equal(got, want)


def test_random_ops_are_seeded_and_shaped():
    tg.random.set_seed(3)
    flipped = tg.image.random_flip_left_right(np.stack([IMAGE[0]] * 8)).numpy()
    kinds = {bool(np.array_equal(f, IMAGE[0])) for f in flipped} | \
        {not np.array_equal(f, IMAGE[0][:, ::-1]) for f in flipped}
    assert kinds == {True, False}     # some flipped, some not, and nothing else
    crop = tg.image.random_crop(IMAGE, [2, 3, 4, 3], seed=1).numpy()
    assert crop.shape == (2, 3, 4, 3)
    starts = [(i, j) for i in range(3) for j in range(4) if np.array_equal(IMAGE[:, i:i + 3, j:j + 4], crop)]
    assert len(starts) == 1
    with pytest.raises(tg.errors.InvalidArgumentError):
        tg.image.random_crop(IMAGE, [2, 9, 4, 3])
    b = tg.image.random_brightness(IMAGE, 0.1).numpy() - IMAGE
    assert np.allclose(b, b.flat[0], atol=1e-6) and abs(b.flat[0]) <= 0.1


def test_png_and_jpeg_round_trips_with_tensorflow():
    tf = _tf()
    for channels in (1, 3, 4):
        pixels = (RNG.rand(7, 9, channels) * 255).astype(np.uint8)
        ours = tg.image.encode_png(pixels).numpy()
        assert isinstance(ours, bytes)
        np.testing.assert_array_equal(tf.io.decode_png(ours).numpy(), pixels)
        theirs = tf.io.encode_png(pixels).numpy()
        np.testing.assert_array_equal(tg.image.decode_png(theirs).numpy(), pixels)
        np.testing.assert_array_equal(tg.image.decode_image(theirs).numpy(), pixels)
    yy, xx = np.mgrid[0:16, 0:24]    # smooth, so JPEG keeps it close
    rgb = np.stack([yy * 15, xx * 10, (yy + xx) * 6], axis=-1).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(rgb, quality=90).numpy()
    got, want = tg.image.decode_jpeg(jpeg).numpy(), tf.io.decode_jpeg(jpeg).numpy()
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))    # Pillow's and TF's libjpeg builds upsample chroma
    assert diff.max() <= 8 and diff.mean() < 1.5          # slightly differently
    ours = tg.image.encode_jpeg(rgb, quality=95).numpy()
    assert np.abs(tf.io.decode_jpeg(ours).numpy().astype(int) - rgb.astype(int)).mean() < 3
    gray = tg.image.decode_png(tf.io.encode_png(rgb).numpy(), channels=1).numpy()
    assert gray.shape == (16, 24, 1)
    as_float = tg.image.decode_image(tf.io.encode_png(rgb).numpy(), dtype=tg.float32).numpy()
    np.testing.assert_allclose(as_float, rgb / 255.0, rtol=1e-6)
    with pytest.raises(tg.errors.InvalidArgumentError, match="not a decodable image"):
        tg.image.decode_png(b"not an image")


def test_decode_in_a_dataset_and_in_a_graph():
    pngs = [tg.image.encode_png((RNG.rand(4 + i, 5, 3) * 255).astype(np.uint8)).numpy() for i in range(3)]
    ds = tg.data.Dataset.from_tensor_slices(pngs).map(
        lambda s: tg.image.resize_with_crop_or_pad(tg.image.decode_png(s, channels=3), 6, 6))
    shapes = [x.numpy().shape for x in ds]
    assert shapes == [(6, 6, 3)] * 3
    g = tg.Graph()
    with g.as_default():
        p = v1.placeholder(tg.string, [])
        img = tg.image.decode_png(p, channels=3)
        assert img.shape.as_list() == [None, None, 3]
        with tg.Session(graph=g) as sess:
            assert sess.run(img, {p: pngs[1]}).shape == (5, 5, 3)


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        tg.image.resize(np.zeros((4, 4), np.float32), [2, 2])
    with pytest.raises(ValueError, match="not supported"):
        tg.image.resize(IMAGE, [2, 2], method="bicubic")
    with pytest.raises(ValueError, match="width must be >= target \\+ offset"):
        tg.image.crop_to_bounding_box(IMAGE, 0, 5, 2, 4)
    with pytest.raises(ValueError, match="central_fraction"):
        tg.image.central_crop(IMAGE, 1.5)
