"""A config as MLflow params, and as a summary for the console."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_runner.redaction import redact


def flatten(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Resolved config as ``{"trainer.epochs": 10, ...}``: the run's MLflow params.

    Lists stay one value (``model.hidden_units: [512, 256]``) so a param reads
    like the override that would set it.
    """
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):  # an empty one (no tracking.tags) gives no param
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
        if isinstance(node, DictConfig):
            values = " ".join(f"{k}={redact(v, k)}" for k, v in flatten(node).items())
        else:  # a top-level value such as ``resume``
            values = str(redact(node, str(group)))
        lines.append(f"  {group}: {values}")
    return "\n".join(lines)
