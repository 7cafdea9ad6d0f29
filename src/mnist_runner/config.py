"""Hydra wiring: the ``${project_root:}`` resolver, the ``experiment`` group
read from ``experiments/``, and helpers to turn a config into MLflow params.

Nothing here imports TensorFlow, so ``run.py --help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mnist_runner.paths import PROJECT_ROOT
from mnist_runner.schema import register_schemas

CONFIG_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"


def register() -> None:
    """Make the project's config pieces known to Hydra; safe to call twice."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    register_schemas()
    register_experiments(EXPERIMENTS_DIR)


def register_experiments(folder: Path) -> None:
    """Register each ``folder/*.yaml`` as an option of the ``experiment`` group.

    The presets live at the top of the repository (``experiments/``), not under
    ``conf/``, so Hydra would not find them as a group by itself. Stored in the
    ConfigStore with package ``_global_``, ``experiment=<name>`` selects one,
    its defaults list (``override /model: cnn``) applies, and an unknown name
    fails with the list of known ones.
    """
    store = ConfigStore.instance()
    for path in sorted(folder.glob("*.yaml")):
        store.store(group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_")


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
        values = " ".join(f"{k}={v}" for k, v in flatten(node).items())
        lines.append(f"  {group}: {values}")
    return "\n".join(lines)
