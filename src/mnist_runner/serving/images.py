"""An image file of a digit -> the array a model of this project takes, made
the way MNIST's images were made.

MNIST's recipe (LeCun et al.): the digit, light on a dark background, is
scaled to fit a 20x20 box keeping its aspect ratio, anti-aliased, and placed
in the 28x28 field so that its center of mass sits at the center. Measured on
the MNIST test set: the bounding box of the non-zero pixels has a longer side
of exactly 20 (all of the 2,000 images checked), and the center of mass lies at row/column
14.0 on average (spread 0.29, i.e. an integer shift), not at 13.5. Other image
sizes (``digits`` is 8x8) keep the proportions: a box of 20/28 of the field,
the center of mass at half its size.

The steps are pure functions on arrays; ``read_grayscale`` and
``prepare_image`` are the only ones that touch files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_runner.errors import UserError

# The digit's longer side, as a fraction of the field (MNIST: 20 of 28).
BOX_FRACTION = 20 / 28
# Noise on the border (JPEG artefacts, paper texture) up to this share of the
# pixel range is taken for background; more is a digit touching the edge.
MAX_NOISE = 0.25
# The digit's size is the bounding box of its pixels with at least this much
# ink (of the strongest): MNIST fitted the box of each (binary) NIST digit to
# 20 pixels, its anti-aliased edge around it. A soft halo (upscaling, JPEG
# ringing) therefore does not shrink the digit, and an MNIST image itself
# keeps its size (9,991 of the 10,000 test images come back within one gray level).
BOX_THRESHOLD = 0.2
# Less contrast than this (share of the full pixel range) between the
# background and the ink is no digit at all.
MIN_CONTRAST = 0.1

FORMATS = ("PNG", "JPEG")
# Larger images are refused before they are decoded: a PNG near Pillow's own
# limit (89 million pixels) took 6.3 GB to read. At most 64 million pixels
# decode to at most 256 MB (RGBA); anything with a side over MAX_SIDE is then
# reduced before it is turned into floats. A digit needs far fewer pixels.
MAX_PIXELS = 64_000_000
MAX_SIDE = 1024
# Pillow modes whose values are light intensities (with transparency for
# some), so a grayscale image follows from them. CMYK holds ink amounts and
# LAB/HSV other colour spaces: converted without colour management they
# would give wrong grays, so they are refused.
GRAY_MODES = {"1": 1, "L": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}
COLOR_MODES = ("RGB", "RGBX", "YCbCr", "P")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
SUPPORTED_MODES = (*GRAY_MODES, *COLOR_MODES, *ALPHA_MODES)


class ImageError(UserError):
    """An image that cannot be read as a digit; the message names the file."""


def read_grayscale(path: str | Path) -> np.ndarray:
    """The image at ``path`` as light intensities in [0, 1] (float32, 2-D).

    Transparent images are composited on white when their opaque part is dark
    and on black when it is light, so the digit keeps its contrast.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes); expected a PNG or JPEG image")
    try:
        with Image.open(path, formats=FORMATS) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ImageError(f"{path}: has {frames} frames (an animation); give one still image")
            if image.mode not in SUPPORTED_MODES:
                raise ImageError(
                    f"{path}: unsupported image mode {image.mode!r}; allowed: grayscale, RGB, palette, "
                    f"with or without transparency ({', '.join(SUPPORTED_MODES)}); "
                    "convert it to RGB or grayscale first"
                )
            pixels = image.width * image.height
            if pixels > MAX_PIXELS:
                raise ImageError(
                    f"{path}: {image.width}x{image.height} pixels is too large to read safely "
                    f"(at most {MAX_PIXELS // 1_000_000} million); scale it down first"
                )
            if image.format == "JPEG":  # decoded at a reduced size, cheaply
                image.draft(image.mode, (MAX_SIDE, MAX_SIDE))
            image.load()
            # Before any float copy: a large image as float32 RGBA takes 16 bytes a pixel.
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
            return _to_gray(image)
    except UnidentifiedImageError as error:
        raise ImageError(f"{path}: not a PNG or JPEG image (Pillow cannot identify it)") from error
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: too large to open safely ({error})") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow's messages for cut-off or corrupt data ("image file is
        # truncated", "broken PNG file", CRC errors).
        raise ImageError(f"{path}: the image data is truncated or corrupt ({error})") from error


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha = rgba[..., 3]
        gray = np.asarray(image.convert("RGBA").convert("RGB").convert("L"), dtype=np.float32) / 255
        if alpha.min() == 1:
            return gray
        # The colour of what is drawn decides the backdrop that shows it.
        ink = float((gray * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0
        backdrop = 1.0 if ink < 0.5 else 0.0
        return (gray * alpha + backdrop * (1 - alpha)).astype(np.float32)
    if image.mode in GRAY_MODES:
        gray = np.asarray(image, dtype=np.float32)
        # 32-bit "I" holds 8- or 16-bit data depending on the writer.
        full = 255 if image.mode == "I" and gray.max() <= 255 else GRAY_MODES[image.mode]
        return gray / full
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def light_on_dark(gray: np.ndarray, border_noise: bool = True) -> np.ndarray:
    """The digit as ink in [0, 1] on a zero background, like MNIST.

    The background is the median of the border pixels; when it is lighter than
    the middle of the image's range the digit is dark on light and the image
    is inverted. Everything up to the border's noise (none in a clean PNG)
    becomes 0 and the strongest ink 1, so a clean MNIST image stays as it is.
    Without ``border_noise`` (a digit that fills its field touches the
    border, whose pixels then are ink, not noise) only the background goes.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ImageError(f"an image of shape {gray.shape}; expected a 2-D image of at least 2x2 pixels")
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    # Three times the 90th percentile: above the largest of thousands of
    # Gaussian noise values (about 4 sigma); a few strokes touching the border
    # do not count.
    noise = min(3 * float(np.percentile(np.abs(border - background), 90)), MAX_NOISE) if border_noise else 0.0
    if background > (float(gray.min()) + float(gray.max())) / 2:
        gray, background = 1 - gray, 1 - background
    peak = float(gray.max())
    floor = background + noise
    if peak - floor < MIN_CONTRAST:
        raise ImageError(
            f"is blank: no digit found (ink contrast {peak - background:.1%} of the pixel range, border "
            f"noise {noise:.1%}; a digit needs {MIN_CONTRAST:.0%} above the noise)"
        )
    return np.clip((gray - floor) / (peak - floor), 0, 1)


def digit_scale(ink: np.ndarray, side: int, threshold: float = BOX_THRESHOLD) -> float:
    """The factor that makes the longer side of the digit's box ``side`` pixels."""
    strong = ink >= threshold
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    if rows.size == 0:
        raise ImageError(f"is blank: no digit found (no pixel with {threshold:.0%} ink)")
    return side / max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """``ink`` cut to the bounding box of its non-zero pixels."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise ImageError("is blank: no digit found (no pixel differs from the background)")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def rescale(digit: np.ndarray, factor: float) -> np.ndarray:
    """``digit`` resized by ``factor`` in both directions, so the aspect ratio
    stays (Lanczos: anti-aliased when shrinking, as MNIST's digits were)."""
    height, width = digit.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return digit.astype(np.float32)
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0, 1)


def center_by_mass(digit: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``digit`` pasted into a zero field of ``shape`` with its center of mass
    at (height / 2, width / 2), shifted by whole pixels as MNIST was; what
    would fall outside the field is cut off."""
    field = np.zeros(tuple(shape), dtype=np.float32)
    rows, cols = np.indices(digit.shape)
    mass = float(digit.sum())
    center = ((rows * digit).sum() / mass, (cols * digit).sum() / mass)
    top, left = (int(np.floor(size / 2 - c + 0.5)) for size, c in zip(shape, center))
    # The part of the digit that lands inside the field.
    r0, c0 = max(0, -top), max(0, -left)
    r1, c1 = min(digit.shape[0], shape[0] - top), min(digit.shape[1], shape[1] - left)
    field[top + r0 : top + r1, left + c0 : left + c1] = digit[r0:r1, c0:c1]
    return field


def mnist_style(
    gray: np.ndarray, shape: Sequence[int] = (28, 28), pixel_max: int = 255, box: float = BOX_FRACTION
) -> np.ndarray:
    """A grayscale image (light intensities) -> a uint8 ``shape`` array of
    values 0..``pixel_max``, light digit on black, its longer side ``box`` of
    the field: centred by mass as MNIST was, or, where the digit fills the
    field (``box`` 1, scikit-learn's digits), centred in it."""
    if box < 1:
        ink = light_on_dark(gray)
        digit = rescale(crop_to_ink(ink), digit_scale(ink, side=max(1, round(max(shape) * box))))
        field = center_by_mass(digit, shape)
    elif tuple(gray.shape) == tuple(shape):  # already the field, as scikit-learn's digits are: taken as it is
        field = light_on_dark(gray, border_noise=False)
    else:
        digit = crop_to_ink(light_on_dark(gray, border_noise=False))
        field = center_by_box(rescale(digit, max(shape) / max(digit.shape)), shape)
    return np.rint(field * pixel_max).astype(np.uint8)


def center_by_box(digit: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``digit`` pasted in the middle of a zero field of ``shape``; what would
    fall outside is cut off."""
    field = np.zeros(tuple(shape), dtype=np.float32)
    height, width = min(digit.shape[0], shape[0]), min(digit.shape[1], shape[1])
    top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
    field[top : top + height, left : left + width] = digit[:height, :width]
    return field


def prepare_image(
    path: str | Path, shape: Sequence[int] = (28, 28), pixel_max: int = 255, box: float = BOX_FRACTION
) -> np.ndarray:
    """The image file at ``path`` as a model input (see ``mnist_style``)."""
    try:
        return mnist_style(read_grayscale(path), shape, pixel_max, box)
    except ImageError as error:
        message = str(error)
        raise ImageError(message if message.startswith(f"{path}:") else f"{path}: {message}") from error
