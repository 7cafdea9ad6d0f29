"""Where a run came from: the project's commit and the software versions."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from mnist_runner.paths import PROJECT_ROOT


def git_tags() -> dict[str, str]:
    """The project's commit and whether the work tree had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"git_commit": commit or "unknown", "git_dirty": str(bool(git("status", "--porcelain"))).lower()}


def environment_tags() -> dict[str, str]:
    """What software produced the run, to repeat it."""
    tags = {"python_version": platform.python_version()}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "mlflow", "hydra-core", "numpy"):
        try:
            tags[f"version.{package}"] = version(package)
        except PackageNotFoundError:  # e.g. tensorflow when tensorflow-cpu is installed
            continue
    return tags
