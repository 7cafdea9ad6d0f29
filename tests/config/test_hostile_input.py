"""Input built to exhaust the machine is refused before it costs anything:
data files that declare more than any data set holds, images with too many
pixels, names longer than the store keeps."""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_runner.config import schema
from mnist_runner.config.schema import ConfigError
from mnist_runner.datasets import idx, sources
from mnist_runner.datasets.idx import DataError
from mnist_runner.serving import images
from mnist_runner.serving.images import MAX_PIXELS, MAX_SIDE, ImageError

# ---------------------------------------------------------------- data files

BOMB_IMAGES = 5_000_000  # 3.9 GB of 28x28 images declared
ZEROS_MB = 100


def write_idx_bomb(path: Path) -> None:
    """A gzip IDX file whose header declares BOMB_IMAGES images, followed by
    ZEROS_MB MB of zeros: about 100 KB on disk. Written as concatenated gzip
    members (valid gzip, as ``gzip -d`` and Python read it), so that the
    zeros are compressed once, not a hundred times."""
    megabyte = gzip.compress(bytes(1 << 20), compresslevel=9)
    header = gzip.compress(struct.pack(">HBB3I", 0, idx.UBYTE, 3, BOMB_IMAGES, 28, 28))
    path.write_bytes(header + megabyte * ZEROS_MB)


@pytest.fixture(scope="module")
def idx_bomb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bomb")
    path = folder / "train-images-idx3-ubyte.gz"
    write_idx_bomb(path)
    return path


class CountingReader:
    """A gzip stream that counts the bytes read from it, decompressed."""

    def __init__(self, stream):
        self.stream, self.read_bytes = stream, 0

    def read(self, size=-1):
        data = self.stream.read(size)
        self.read_bytes += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()


def test_the_bomb_is_what_it_claims(idx_bomb):
    assert idx_bomb.stat().st_size < 200_000
    with gzip.open(idx_bomb) as stream:
        assert stream.read(16) == struct.pack(">HBB3I", 0, 8, 3, BOMB_IMAGES, 28, 28)
        assert stream.read(1 << 20) == bytes(1 << 20)


def test_an_idx_file_declaring_too_much_is_refused_from_its_header(idx_bomb, monkeypatch):
    opened = []
    real_open = gzip.open
    monkeypatch.setattr(
        gzip, "open", lambda *args, **kwargs: opened.append(CountingReader(real_open(*args, **kwargs))) or opened[-1]
    )
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        idx.read_idx(idx_bomb)
    assert time.perf_counter() - started < 1
    assert [reader.read_bytes for reader in opened] == [16]  # the header only: nothing decompressed beyond it
    message = str(error.value)
    assert message.startswith(f"{idx_bomb}: declares an array of shape ({BOMB_IMAGES}, 28, 28)")
    assert "larger than any supported data set" in message


def test_a_folder_holding_the_bomb_is_refused(idx_bomb, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / idx_bomb.name).write_bytes(idx_bomb.read_bytes())
    for split in ("y_train", "x_test", "y_test"):
        idx.write_idx(folder / sources.IDX_FILES[split], np.zeros((2, 28, 28) if split[0] == "x" else 2, np.uint8))
    started = time.perf_counter()
    with pytest.raises(DataError, match="larger than any supported data set"):
        sources.read_path(folder)
    assert time.perf_counter() - started < 1


def test_the_largest_original_array_is_still_accepted():
    idx.check_size((60_000, 28, 28), "train-images")  # MNIST's training images
    with pytest.raises(DataError):
        idx.check_size((60_001, 28, 28), "train-images")


def npy_header(shape: tuple[int, ...], dtype: str, version: tuple[int, int]) -> bytes:
    stream = io.BytesIO()
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    writer = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
    writer(stream, header)
    return stream.getvalue()


def write_npz(path: Path, x_train: bytes) -> None:
    """A keras-style npz whose x_train.npy is ``x_train`` (a header and a few bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", x_train)
        for name, shape in (("y_train", (2,)), ("x_test", (2, 28, 28)), ("y_test", (2,))):
            stream = io.BytesIO()
            np.save(stream, np.zeros(shape, np.uint8))
            archive.writestr(f"{name}.npy", stream.getvalue())


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_an_npz_declaring_too_much_is_refused_from_its_header(tmp_path, version):
    path = tmp_path / "mnist.npz"
    write_npz(path, npy_header((10**9, 28, 28), "u1", version) + bytes(1000))
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        sources.read_npz(path)
    assert time.perf_counter() - started < 1
    message = str(error.value)
    assert message.startswith(f"{path}:x_train.npy: declares an array of shape (1000000000, 28, 28)")
    assert "larger than any supported data set" in message


def test_the_size_of_an_npz_array_counts_its_item_size(tmp_path):
    path = tmp_path / "mnist.npz"
    write_npz(path, npy_header((60_000, 28, 28), "<f8", (1, 0)))  # MNIST's shape, 8 bytes a pixel: 376 MB
    with pytest.raises(DataError, match=r"x_train.npy: declares an array of shape \(60000, 28, 28\) \(376 MB\)"):
        sources.read_npz(path)


# ---------------------------------------------------------------- images


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, bit_depth: int, color_type: int, row) -> None:
    """A PNG written row by row (``row(y)``: the bytes of row y), never whole in memory."""
    compressor = zlib.compressobj(1)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)))
        for y in range(height):
            data = compressor.compress(b"\0" + row(y))  # filter type 0
            if data:
                out.write(png_chunk(b"IDAT", data))
        out.write(png_chunk(b"IDAT", compressor.flush()))
        out.write(png_chunk(b"IEND", b""))


def test_an_image_with_too_many_pixels_is_refused_before_it_is_decoded(tmp_path):
    path = tmp_path / "huge.png"
    black_row = bytes(9000 // 8 + 1)
    write_png(path, 9000, 9000, 1, 0, lambda y: black_row)  # 81 million 1-bit pixels: 1.3 MB
    with Image.open(path) as image:
        assert image.size == (9000, 9000) and image.mode == "1"  # a valid PNG
    for read in (images.read_grayscale, images.prepare_image):
        started = time.perf_counter()
        with pytest.raises(ImageError) as error:
            read(path)
        assert time.perf_counter() - started < 1
        assert str(error.value) == (
            f"{path}: 9000x9000 pixels is too large to read safely (at most {MAX_PIXELS // 1_000_000} million); "
            "scale it down first"
        )


def test_a_large_photo_is_reduced_before_it_becomes_floats(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    image = Image.new("L", (4000, 3000))
    ImageDraw.Draw(image).line([(1500, 500), (2500, 1500), (1800, 2600)], fill=255, width=220)  # a "7"
    image.save(path, compress_level=1)
    converted = []
    to_gray = images._to_gray
    monkeypatch.setattr(images, "_to_gray", lambda image: converted.append(image.size) or to_gray(image))
    digit = images.prepare_image(path)
    assert len(converted) == 1 and max(converted[0]) <= MAX_SIDE
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit.max() == 255 and digit[0].max() == 0 and digit[:, 0].max() == 0
    strong = digit > 0.2 * 255
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20  # sized as MNIST's digits


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("key, limit", [("tracking.experiment", 256), ("tracking.run_name", 250)])
def test_names_longer_than_the_store_keeps_are_refused(compose_cfg, key, limit):
    length = 5000 if key == "tracking.experiment" else 300
    with pytest.raises(ConfigError) as error:
        schema.validate(compose_cfg(f"{key}={'n' * length}"))
    message = str(error.value)
    assert message == f"{key}={'n' * 37 + '...'!r} is not allowed: {length} characters; MLflow keeps at most {limit}"


def test_names_as_long_as_the_store_keeps_are_accepted(compose_cfg):
    cfg = compose_cfg(f"tracking.experiment={'e' * 256}", f"tracking.run_name={'r' * 250}")
    assert schema.validate(cfg)["tracking"].run_name == "r" * 250


# ---------------------------------------------------------------- memory, in a process of its own

PEAK_MEMORY = """
import json, sys
from pathlib import Path
kind, path = sys.argv[1:]
if kind == "idx":
    from mnist_runner.datasets.idx import DataError, read_idx
    try:
        read_idx(Path(path))
        outcome = "read"
    except DataError as error:
        outcome = str(error)
else:
    from mnist_runner.serving.images import read_grayscale
    outcome = list(read_grayscale(path).shape)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"outcome": outcome, "peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


def peak_memory(kind: str, path: Path) -> tuple[object, float]:
    """What reading ``path`` in a new process gave, and that process's peak
    resident memory in MB: its VmHWM, the high-water mark of its own memory.
    (Not ``getrusage``: on Linux a child's ru_maxrss, and so the parent's
    RUSAGE_CHILDREN, starts from the parent's size at the fork, which here,
    after Keras was imported by other tests, is over 1 GB.)"""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, kind, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["outcome"], report["peak_mb"]


@pytest.mark.slow
def test_refusing_the_idx_bomb_takes_no_memory(idx_bomb):
    outcome, peak_mb = peak_memory("idx", idx_bomb)
    assert "larger than any supported data set" in outcome
    assert peak_mb < 150, f"peak {peak_mb:.0f} MB: the {ZEROS_MB} MB of zeros were decompressed"


@pytest.mark.slow
def test_an_image_of_the_largest_size_allowed_is_read_in_little_memory(tmp_path):
    side = 8000
    assert side * side == MAX_PIXELS
    path = tmp_path / "large.png"
    transparent = bytes(4 * side)
    stroke = transparent[: 4 * 3000] + b"\xff" * (4 * 2000) + transparent[: 4 * 3000]  # opaque white
    write_png(path, side, side, 8, 6, lambda y: stroke if 2000 <= y < 6000 else transparent)
    outcome, peak_mb = peak_memory("image", path)
    assert outcome == [MAX_SIDE, MAX_SIDE]
    assert peak_mb < 2048, f"peak {peak_mb:.0f} MB reading {side}x{side} RGBA"
