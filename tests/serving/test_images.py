"""Image files -> MNIST-style model inputs (``mnist_runner.images``), on
synthetic arrays and files, and on MNIST itself."""

import numpy as np
import pytest
from PIL import Image

from mnist_runner.serving.images import ImageError, mnist_style, prepare_image


def ink_box(field: np.ndarray, above: int = 0) -> tuple[int, int]:
    """Height and width of the bounding box of the pixels above ``above``."""
    strong = field > above
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def center_of_mass(field: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(field.shape)
    mass = field.astype(float).sum()
    return (rows * field).sum() / mass, (cols * field).sum() / mass


def l_shape(height=120, width=90) -> np.ndarray:
    """A light, lopsided 'L' (its mass is far from its box's center) placed off
    the center of a dark canvas, as light intensities."""
    gray = np.zeros((height, width), np.float32)
    gray[20:80, 10:22] = 1.0  # the stem, 60 tall
    gray[68:80, 10:50] = 1.0  # the foot, 40 wide
    return gray


def test_polarity_does_not_matter():
    light_on_dark = l_shape()
    out = mnist_style(light_on_dark)
    np.testing.assert_array_equal(mnist_style(1 - light_on_dark), out)
    # MNIST's look: a black background, the strongest ink at full value.
    assert out[0, 0] == 0 and out.max() == 255 and out.dtype == np.uint8


def test_resize_keeps_aspect_ratio_with_longer_side_20_of_28():
    out = mnist_style(l_shape())
    # The L's box is 60 x 40: 20 x 13.3 after scaling by 1/3.
    height, width = ink_box(out)
    assert height == 20
    assert 13 <= width <= 14  # Lanczos' anti-aliasing may add a faint column


def test_center_of_mass_at_the_center_as_in_mnist():
    out = mnist_style(l_shape())
    row, col = center_of_mass(out)
    # Shifted by whole pixels (as MNIST was): within half a pixel of (14, 14).
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    # The L's mass is not at its box's center, so box centering would differ.
    cols = np.flatnonzero(out.any(axis=0))
    assert abs((cols[0] + cols[-1]) / 2 - 14) >= 1.5


def test_other_sizes_and_pixel_ranges_keep_the_proportions():
    out = mnist_style(l_shape(), shape=(8, 8), pixel_max=16)
    assert out.shape == (8, 8) and out.max() == 16
    assert max(ink_box(out)) <= round(8 * 20 / 28) + 1


def test_border_noise_and_gray_background_are_background():
    rng = np.random.default_rng(0)
    clean = mnist_style(1 - l_shape())  # dark on white
    # Dark ink on gray paper with sensor noise, at lower contrast.
    noisy = 0.8 - 0.6 * l_shape() + rng.normal(0, 0.01, l_shape().shape).astype(np.float32)
    out = mnist_style(np.clip(noisy, 0, 1))
    assert ink_box(out) == pytest.approx(ink_box(clean), abs=1)
    assert np.abs(out.astype(int) - clean).mean() < 3


def test_mnist_images_come_back_unchanged():
    """An MNIST test image goes through as it is: its preprocessing is MNIST's."""
    from mnist_runner.datasets.loader import load_dataset

    x = load_dataset("mnist").x_test[:1000]
    out = np.stack([mnist_style(image / 255) for image in x])
    within_one_level = (np.abs(out.astype(int) - x).max(axis=(1, 2)) <= 1).mean()
    # Measured: 9,991 of all 10,000 test images within one gray level.
    assert within_one_level >= 0.99


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_a_uniform_image_is_blank(value):
    with pytest.raises(ImageError, match="is blank: no digit found"):
        mnist_style(np.full((28, 28), value, np.float32))


# ---- files: modes that are converted, and files that are refused --------------------


def save(path, image, **options):
    image.save(path, **options)
    return path


def digit_l_image() -> Image.Image:
    return Image.fromarray(np.uint8(255 - 255 * l_shape()))  # black L on white


def test_sensible_modes_give_the_same_digit(tmp_path):
    gray = digit_l_image()
    expected = prepare_image(save(tmp_path / "l.png", gray))
    alpha = Image.fromarray(np.uint8(255 * l_shape()))
    black_on_transparent = Image.merge("RGBA", [Image.new("L", gray.size, 0)] * 3 + [alpha])
    white_on_transparent = Image.merge("RGBA", [Image.new("L", gray.size, 255)] * 3 + [alpha])
    variants = {
        "rgb.png": gray.convert("RGB"),
        "palette.png": gray.convert("P"),
        "la.png": gray.convert("LA"),
        "bilevel.png": gray.convert("1", dither=Image.Dither.NONE),
        "sixteen_bit.png": Image.fromarray(np.uint16(np.asarray(gray)) * 257),
        "black_on_transparent.png": black_on_transparent,
        "white_on_transparent.png": white_on_transparent,
    }
    for name, image in variants.items():
        out = prepare_image(save(tmp_path / name, image))
        assert np.abs(out.astype(int) - expected).max() <= 1, name
    assert Image.open(tmp_path / "sixteen_bit.png").mode == "I;16"


def test_jpeg_is_read(tmp_path):
    expected = prepare_image(save(tmp_path / "l.png", digit_l_image()))
    out = prepare_image(save(tmp_path / "l.jpg", digit_l_image().convert("RGB"), quality=90))
    # JPEG's ringing leaves faint pixels around the strokes; the strokes stay.
    # Both are resampled, maybe half a pixel apart: compare size, place and ink.
    assert ink_box(out, above=64) == pytest.approx(ink_box(expected, above=64), abs=1)
    assert center_of_mass(out) == pytest.approx((14, 14), abs=0.5)
    assert int(out.sum()) == pytest.approx(int(expected.sum()), rel=0.1)


def png_bytes(tmp_path) -> bytes:
    return save(tmp_path / "good.png", digit_l_image()).read_bytes()


BAD_FILES = {
    # name: (how to make it from tmp_path, fragment of the message)
    "notes.png": (lambda p: p.write_text("not an image at all"), "not a PNG or JPEG image"),
    "empty.png": (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    "cut.png": (lambda p: p.write_bytes(png_bytes(p.parent)[:80]), "truncated or corrupt"),
    "white.png": (lambda p: save(p, Image.new("L", (40, 40), 255)), "is blank: no digit found"),
    "cmyk.jpg": (lambda p: save(p, digit_l_image().convert("CMYK")), "unsupported image mode 'CMYK'"),
    "digit.bmp": (lambda p: save(p, digit_l_image(), format="BMP"), "not a PNG or JPEG image"),
    "animated.png": (
        lambda p: save(p, digit_l_image(), save_all=True, append_images=[digit_l_image().rotate(90)]),
        "has 2 frames (an animation)",
    ),
    "missing.png": (lambda p: None, "no such file"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_are_refused_naming_the_file(tmp_path, name):
    make, problem = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageError) as raised:
        prepare_image(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
