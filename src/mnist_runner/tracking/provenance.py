"""Where a run came from: the project's commit, the software versions, the
Keras backend and the device it trained on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

from mnist_runner.paths import PROJECT_ROOT
from mnist_runner.tracking.machine import cpu_model

# The packages whose versions every run records, and those of each backend.
COMMON_PACKAGES = ("keras", "mlflow", "hydra-core", "numpy")
BACKEND_PACKAGES = {
    "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "jax": ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin"),
    "torch": ("torch",),
}


def git_tags() -> dict[str, str]:
    """The project's commit and whether the work tree had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"git_commit": commit or "unknown", "git_dirty": str(bool(git("status", "--porcelain"))).lower()}


def installed_versions(packages) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # e.g. tensorflow when tensorflow-cpu is installed
            continue
    return found


def keras_backend() -> str | None:
    """The backend of the Keras this process imported (None if not imported)."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def environment_tags() -> dict[str, str]:
    """What software and hardware produced the run, to repeat it: the
    versions, ``backend`` and ``device`` (what the backend computes on)."""
    tags = {"python_version": platform.python_version()}
    name = keras_backend()
    packages = COMMON_PACKAGES + (BACKEND_PACKAGES.get(name, ()) if name else BACKEND_PACKAGES["tensorflow"])
    tags.update({f"version.{package}": found for package, found in installed_versions(packages).items()})
    if name:
        tags["backend"] = name
        tags["device"] = device_name(name)
    return tags


def device_name(name: str) -> str:
    """``GPU: <name>`` (``xN`` for several) when the backend computes on
    GPUs, else ``CPU: <model> (<n> cores)``."""
    gpus = gpu_names(name)
    if gpus:
        return f"GPU: {gpus[0]}" + (f" x{len(gpus)}" if len(gpus) > 1 else "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU: {cpu_model()} ({cores} cores)"


def gpu_names(name: str) -> list[str]:
    """The GPUs the backend ``name`` uses (its framework is imported already)."""
    try:
        if name == "jax":
            import jax

            return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
        if name == "tensorflow":
            import tensorflow as tf

            return [
                tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                for gpu in tf.config.list_physical_devices("GPU")
            ]
        if name == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a tag is not worth failing a run over
        return []
    return []


def model_requirements() -> list[str]:
    """The pip requirements of a model logged from this process: Keras and
    the backend it was trained on (any backend loads it: a ``.keras`` file)."""
    name = keras_backend() or "tensorflow"
    keras = installed_versions(["keras"])
    requirements = [f"keras=={keras['keras']}"] if keras else ["keras"]
    if name == "tensorflow":
        import tensorflow as tf  # tensorflow-cpu and tensorflow both report tensorflow's version

        return requirements + [f"tensorflow=={tf.__version__}"]
    found = installed_versions(BACKEND_PACKAGES[name])
    return requirements + [f"{package}=={found[package]}" for package in BACKEND_PACKAGES[name] if package in found]
