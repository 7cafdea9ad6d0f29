"""The IDX format of the original MNIST files, and checksums of array content.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian int32 per dimension, then the raw values. A
data set is verified by hashing its arrays as the IDX files they came from, so
the same reference SHA-256 checks an npz, a cache or the original files.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_runner.datasets.catalog import DATASETS
from mnist_runner.errors import UserError

UBYTE = 0x08  # the only type code MNIST-style files use
# No original file holds more: the largest array of any known data set (MNIST's
# training images, 47 MB). A file that declares more is refused before it is
# decompressed or allocated (a 3.8 MB .gz can expand to gigabytes).
MAX_ARRAY_BYTES = max(info.train_size * math.prod(info.image_shape) for info in DATASETS.values())


class DataError(UserError, ValueError):
    """A data file or array is unusable; the message names it and the fix."""


def parse_idx(raw: bytes, origin: str) -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file of unsigned bytes."""
    if len(raw) < 4:
        raise DataError(f"{origin}: {len(raw)} bytes, too short to be an IDX file (truncated?)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code != UBYTE or not 1 <= ndim <= 3:
        raise DataError(
            f"{origin}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x00000801 (labels) "
            "or 0x00000803 (images). Is it an MNIST-style IDX file?"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{origin}: IDX header cut short (truncated file)")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    check_size(shape, origin)
    expected = int(np.prod(shape))
    actual = len(raw) - header_size
    if actual != expected:
        raise DataError(
            f"{origin}: header says shape {shape} ({expected} bytes of data) "
            f"but the file has {actual}: truncated or corrupt; fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def check_size(shape: tuple[int, ...], origin: str, itemsize: int = 1) -> None:
    """Refuse an array whose declared size no original data set has."""
    size = math.prod(shape) * itemsize
    if size > MAX_ARRAY_BYTES:
        raise DataError(
            f"{origin}: declares an array of shape {tuple(shape)} ({size / 1e6:,.0f} MB), larger than any "
            f"supported data set has ({MAX_ARRAY_BYTES / 1e6:.0f} MB at most); not an original file"
        )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed if its name ends in ``.gz``, reading
    no more than its header declares."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as stream:
            raw = read_declared(stream, str(path))
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read ({error}); fetch the file again") from error
    return parse_idx(raw, str(path))


def read_declared(stream: BinaryIO, origin: str) -> bytes:
    """The bytes of an IDX file from ``stream``: the header, then the data it
    declares and one byte more (so that ``parse_idx`` sees a file too long)."""
    head = stream.read(4)
    if len(head) < 4:
        return head
    ndim = head[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim or head[:2] != b"\0\0":
        return head + dims
    check_size(struct.unpack(f">{ndim}I", dims), origin)
    return head + dims + stream.read(math.prod(struct.unpack(f">{ndim}I", dims)) + 1)


def idx_header(array: np.ndarray) -> bytes:
    return struct.pack(f">HBB{array.ndim}I", 0, UBYTE, array.ndim, *array.shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed if the name ends in ``.gz``."""
    raw = idx_header(array) + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def idx_sha256(array: np.ndarray) -> str:
    """SHA-256 of ``array`` written as an uncompressed IDX file of unsigned bytes."""
    digest = hashlib.sha256(idx_header(array))
    digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return digest.hexdigest()
