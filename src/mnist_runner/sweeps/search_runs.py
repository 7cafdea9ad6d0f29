"""What a hyperparameter search records in the sweep's parent run: its
parameter importances, and nothing at all when it has nothing to run.

The search sweeper runs in the process that opened the parent run
(``parent.active()``), so it can reach the run directly.
"""

from __future__ import annotations

import logging

import pandas as pd

from mnist_runner.sweeps import parent, report

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
    figure = report.importance_figure(importances, objective)
    client.log_figure(info.parent_run_id, figure, f"{IMPORTANCE_DIR}/param_importances.png")
    shown = ", ".join(f"{row.param} {row.importance:.2f}" for row in table.itertuples())
    log.info("parameter importances for %s (fANOVA), logged to the parent run: %s", objective, shown)


def discard_parent_run() -> str | None:
    """Remove the open parent run of a search that runs no trial (its study is
    complete, or refused); see ``parent.discard_active``."""
    return parent.discard_active()
