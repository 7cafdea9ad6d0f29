"""Which Keras backend a run trains on: TensorFlow, JAX or PyTorch.

Keras reads ``KERAS_BACKEND`` once per process, at its first import. So the
config's ``backend`` is checked with the rest of the config (``check``),
made concrete (``resolve``: ``auto`` picks per model and hardware) and set
before anything imports Keras (``activate``). A process whose Keras already
runs another backend is refused with a message saying what to do
(``BackendMismatch``): an in-process sweep over backends (``check_sweep``
refuses it before any job starts), or ``train()`` in a notebook that
imported Keras with another backend.

Nothing here imports Keras, TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from mnist_runner.errors import UserError
from mnist_runner.paths import RUNS_DIR

BACKENDS = ("tensorflow", "jax", "torch")
CHOICES = (*BACKENDS, "auto")
DEFAULT = "tensorflow"  # the course's
# How to get each backend (README, "Set-up").
INSTALL = {
    "tensorflow": "make install (tensorflow-cpu), or pip install 'tensorflow[and-cuda]' on an NVIDIA GPU",
    "jax": "make install (jax[cpu]), or pip install 'jax[cuda12]' on an NVIDIA GPU",
    "torch": "make install-torch",
}
# ``backend=auto``: the backend measured fastest per model type on each kind
# of hardware (docs/performance.md, "Backends"), then the others in order.
AUTO_ORDER = {
    ("cpu", "dense"): ("jax", "tensorflow", "torch"),
    ("cpu", "cnn"): ("tensorflow", "jax", "torch"),
    ("gpu", "dense"): ("jax", "tensorflow", "torch"),
    ("gpu", "cnn"): ("jax", "tensorflow", "torch"),
}
# JAX's persistent compilation cache: repeated runs and sweep jobs load the
# compiled train step instead of compiling it again.
JAX_CACHE_DIR = RUNS_DIR / "jax-cache"
# Launchers known to start every job in a process of its own (hydra-submitit-launcher's).
FRESH_PROCESS_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.",)


class BackendMismatch(UserError):
    """Keras in this process already runs another backend."""


def check(value: Any) -> None:
    """``backend`` is one of ``CHOICES`` and, unless ``auto``, installed."""
    if value not in CHOICES:
        raise UserError(f"backend={value!r} is not allowed: choose one of {', '.join(CHOICES)}")
    if value != "auto" and not installed(value):
        raise UserError(f"backend={value}: {value} is not installed here; install it with {INSTALL[value]}")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def has_nvidia_gpu() -> bool:
    """Whether the machine shows an NVIDIA GPU to this process (without
    importing a framework): the driver lists one and CUDA_VISIBLE_DEVICES
    does not hide them all."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def resolve(name: str | None, model_type: str = "dense") -> str:
    """The concrete backend of ``backend=name`` (``None``: a run logged
    before the key existed, which ran on TensorFlow) for a model of
    ``model_type`` on this machine."""
    if not name:
        return DEFAULT
    if name != "auto":
        return name
    hardware = "gpu" if has_nvidia_gpu() else "cpu"
    order = AUTO_ORDER.get((hardware, model_type), BACKENDS)
    for candidate in order:
        if installed(candidate):
            return candidate
    raise UserError(f"backend=auto: none of {', '.join(BACKENDS)} is installed; {INSTALL['tensorflow']}")


def of_config(cfg: Mapping[str, Any]) -> str:
    """The concrete backend of a composed config (``backend`` and ``model.type``)."""
    model = cfg.get("model") or {}
    return resolve(cfg.get("backend"), model.get("type", "dense"))


def loaded() -> str | None:
    """The backend Keras runs on in this process; None while Keras is not imported."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return keras.backend.backend()
    except AttributeError:  # Keras half-imported (an import that failed)
        return None


def activate(name: str, *, deterministic: bool = False) -> None:
    """Make ``name`` (a concrete backend) the one Keras loads in this process.

    Sets ``KERAS_BACKEND`` before Keras' first import, and what the backend
    reads at its own import: JAX's persistent compilation cache (under
    ``runs/``; the user's own JAX_COMPILATION_CACHE_DIR wins) and, with
    ``deterministic``, XLA's deterministic GPU kernels; keeps the other
    frameworks out of the process (``SkipUnusedImports``). If Keras is
    already imported, it must run ``name``: raises ``BackendMismatch`` otherwise.
    """
    current = loaded()
    if current is None:
        os.environ["KERAS_BACKEND"] = name
        if name == "jax":
            configure_jax(deterministic)
        if not any(isinstance(finder, SkipUnusedImports) for finder in sys.meta_path):
            sys.meta_path.insert(0, SkipUnusedImports(name))
        return
    check_loaded(name)


class SkipUnusedImports(importlib.abc.MetaPathFinder):
    """Keeps the frameworks a run does not train with out of its process.

    With JAX installed, importing Keras (on any backend) and TensorFlow also
    imports JAX, about a second of start-up, for two things a run on another
    backend never uses: Keras' Orbax checkpoint callback (a fix-up for old
    JAX versions) and TFLite's converter of JAX functions. On JAX and
    PyTorch, ``keras.utils.set_random_seed`` imports TensorFlow (seconds) to
    seed it too, for ``tf.data`` pipelines that these runs do not have. This
    declines those imports from those modules only, which then do without,
    as when the framework is not installed; every other import works.
    """

    DECLINED = {
        "jax": ("keras.src.callbacks.orbax_checkpoint", "tensorflow.lite.python.util"),
        "tensorflow": ("keras.src.utils.module_utils",),
    }

    def __init__(self, backend_name: str):
        self.declined = {module: importers for module, importers in self.DECLINED.items() if module != backend_name}

    def find_spec(self, fullname, path=None, target=None):
        importers = self.declined.get(fullname)
        if importers:
            frame = sys._getframe(1)
            while frame is not None:
                importer = frame.f_globals.get("__name__")
                if importer in importers:
                    raise ModuleNotFoundError(f"{fullname} is not loaded for {importer}", name=fullname)
                frame = frame.f_back
        return None


def check_loaded(name: str) -> None:
    """Raise ``BackendMismatch`` if Keras in this process runs another backend than ``name``."""
    current = loaded()
    if current is not None and current != name:
        raise BackendMismatch(
            f"backend={name}: Keras in this process already runs on {current} (Keras picks its backend once, "
            f"when it is first imported). Train on {name} in a new process: `python run.py backend={name} ...`, "
            f"or set KERAS_BACKEND={name} before anything imports Keras (restart a notebook's kernel)"
        )


def configure_jax(deterministic: bool) -> None:
    """Settings JAX reads from the environment when it starts."""
    # "Unable to initialize backend 'tpu'" at INFO, on every machine without one.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        JAX_CACHE_DIR.mkdir(parents=True, exist_ok=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(JAX_CACHE_DIR)
    # JAX caches only compilations over 1 s by default; Keras' steps of the
    # course's models compile in less.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    if deterministic:
        flag = "--xla_gpu_deterministic_ops=true"
        flags = os.environ.get("XLA_FLAGS", "")
        if flag not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def check_sweep(job_backends: Iterable[str], launcher_target: str) -> None:
    """Refuse, before any job runs, a sweep whose jobs need different
    backends unless its launcher starts every job in a process of its own."""
    needed = sorted(set(job_backends))
    if len(needed) <= 1 or launcher_target.startswith(FRESH_PROCESS_LAUNCHERS):
        return
    raise UserError(
        f"this sweep trains on {' and '.join(needed)}, but Keras runs one backend per process and the launcher "
        f"({launcher_target.rsplit('.', 1)[-1]}) runs several jobs in one process. Run it with a launcher that "
        "starts every job in its own process: hydra/launcher=submitit_local (or hydra/launcher=slurm), "
        "or sweep one backend at a time"
    )


def sweep_backends(job_configs: Iterable[Mapping]) -> list[str]:
    """The concrete backend of every job of a sweep, from the jobs' composed configs."""
    return [of_config(cfg) for cfg in job_configs]
