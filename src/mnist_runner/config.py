"""Hydra wiring: the ``${project_root:}`` resolver, the config schemas, and
helpers to turn a config into MLflow params.

Nothing here imports TensorFlow, so ``run.py --help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_runner.paths import PROJECT_ROOT
from mnist_runner.redaction import redact
from mnist_runner.schema import register_schemas

CONFIG_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"


def register() -> None:
    """Make the project's config pieces known to Hydra; safe to call twice.

    The ``experiment`` group needs nothing here: ``conf/experiment`` is a link
    to the top-level ``experiments/``, so Hydra reads the presets as files.
    Files cost less than ConfigStore entries, which Hydra deep-copies for
    every group that ``--help`` lists.
    """
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    register_schemas()


def flatten(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Resolved config as ``{"trainer.epochs": 10, ...}``: the run's MLflow params.

    Lists stay one value (``model.hidden_units: [512, 256]``) so a param reads
    like the override that would set it.
    """
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(container, "")
    return flat


def summary(cfg: DictConfig) -> str:
    """One line per config group, for the console at the start of a run."""
    lines = []
    for group, node in cfg.items():
        values = " ".join(f"{k}={redact(v, k)}" for k, v in flatten(node).items())
        lines.append(f"  {group}: {values}")
    return "\n".join(lines)
