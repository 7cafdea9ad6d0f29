import gzip
import hashlib

import numpy as np
import pytest

from mnist_runner.datasets.idx import DataError, idx_header, idx_sha256, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_write_then_read_round_trips(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    np.testing.assert_array_equal(read_idx(tmp_path / name), images)


def test_header_is_the_mnist_layout(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    write_idx(tmp_path / "labels", labels)
    raw = (tmp_path / "labels").read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_idx_sha256_is_the_checksum_of_the_file(tmp_path):
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    write_idx(tmp_path / "f", images)
    assert idx_sha256(images) == hashlib.sha256((tmp_path / "f").read_bytes()).hexdigest()


def test_wrong_magic_number_is_named(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x50\x4b\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=r"bad.*magic number 0x504b0304"):
        read_idx(tmp_path / "bad")


def test_truncated_file_is_reported(tmp_path):
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "images", images)
    raw = (tmp_path / "images").read_bytes()
    (tmp_path / "images").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "images")


def test_corrupt_gzip_is_reported(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    data = gzip.compress(idx_header(images) + images.tobytes())
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"x\.gz: cannot read"):
        read_idx(tmp_path / "x.gz")


def test_too_short_is_reported():
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "tiny")
