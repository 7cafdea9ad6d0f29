"""What a hyperparameter search records in the sweep's parent run: its
parameter importances, and nothing at all when it has nothing to run.

The search sweeper runs in the process that opened the parent run
(``parent.active()``), so it can reach the run directly.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mnist_runner.sweeps import parent
from mnist_runner.sweeps.gap_figures import colours

log = logging.getLogger(__name__)

IMPORTANCE_DIR = "search"


def log_importances(importances: dict[str, float], objective: str) -> None:
    """Log the importances to the open parent run: one metric per key
    (``param_importance.<key>``), a CSV and a bar chart under ``search/``."""
    info = parent.active()
    if info is None:
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=info.tracking_uri)
    for key, value in importances.items():
        client.log_metric(info.parent_run_id, f"param_importance.{key}", value)
    table = pd.DataFrame({"param": list(importances), "importance": list(importances.values())})
    table = table.sort_values("importance", ascending=False)
    client.log_text(info.parent_run_id, table.to_csv(index=False), f"{IMPORTANCE_DIR}/param_importances.csv")
    figure = importance_figure(importances, objective)
    client.log_figure(info.parent_run_id, figure, f"{IMPORTANCE_DIR}/param_importances.png")
    shown = ", ".join(f"{row.param} {row.importance:.2f}" for row in table.itertuples())
    log.info("parameter importances for %s (fANOVA), logged to the parent run: %s", objective, shown)


def discard_parent_run() -> str | None:
    """Remove the open parent run of a search that runs no trial (its study is
    complete, or refused); see ``parent.discard_active``."""
    return parent.discard_active()


def importance_figure(importances: dict[str, float], objective: str) -> Figure:
    """A search's parameter importances as horizontal bars, the largest on top."""
    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = Figure(figsize=(8, max(2.5, 0.5 * len(ordered) + 1.5)), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(ordered))
    ax.barh(positions, [value for _, value in ordered], color=colours(1)[0], height=0.6)
    for position, (_, value) in zip(positions, ordered):
        ax.annotate(f"{value:.2f}", (value, position), xytext=(4, 0), textcoords="offset points", va="center")
    ax.set_yticks(positions, [key for key, _ in ordered])
    ax.set_xlim(0, max(1.0, max((value for _, value in ordered), default=0) * 1.15))
    ax.set_xlabel(f"importance for {objective} (fANOVA; the importances add up to 1)")
    ax.set_title("which searched parameter mattered")
    ax.grid(axis="x", alpha=0.3)
    return figure
