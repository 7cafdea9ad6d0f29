"""Where to look at a sweep in the MLflow UI: its child runs side by side.

Two views of the same runs:

- ``sweep_chart_url``: the experiment's runs page filtered to the sweep's
  child runs, in chart mode (one chart per metric, a line per run). Short
  enough to print.
- ``compare_runs_url``: MLflow's compare page for the listed runs, which
  opens on a parallel-coordinates plot of their params and metrics. Its
  address holds every run id, so it goes into the report file.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.tracking.links import MODEL_TRAINING_VIEW, base_url
from mnist_runner.tracking.store import is_server


def ui_base(uri: str) -> tuple[str, str | None]:
    """The UI's address for a store, and the command that serves it (None: a
    tracking server serves its own UI)."""
    if is_server(uri):
        return redact(uri).rstrip("/") + "/", None
    command = "make ui" if uri == DEFAULT_TRACKING_URI else f"mnist-ui --uri {redact(uri)}"
    return base_url(), command


def children_filter(parent_run_id: str) -> str:
    """The runs-page search that lists a sweep's child runs (not the parent)."""
    return f"tags.mlflow.parentRunId = '{parent_run_id}'"


def sweep_chart_url(base: str, experiment_id: str, parent_run_id: str) -> str:
    """The experiment's runs page showing only the sweep's child runs, as charts."""
    query = urlencode({"searchFilter": children_filter(parent_run_id), "compareRunsMode": "CHART"}, quote_via=quote)
    return f"{base}#/experiments/{experiment_id}/runs?{query}&{MODEL_TRAINING_VIEW}"


def compare_runs_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page for ``run_ids``: parallel coordinates, then a table per run."""
    query = urlencode(
        {"runs": json.dumps(list(run_ids)), "experiments": json.dumps([experiment_id])},
        quote_via=quote,
    )
    return f"{base}#/compare-runs?{query}"


def sweep_hint(uri: str, experiment_id: str, parent_run_id: str, parent_name: str) -> str:
    """The lines printed at the end of a sweep: how to open its runs side by
    side, and which run holds the report."""
    base, command = ui_base(uri)
    url = sweep_chart_url(base, experiment_id, parent_run_id)
    how = f"{command}, then open" if command else "open"
    return (
        f"the sweep's runs side by side in the MLflow UI ({how}):\n  {url}\n"
        f"the report is logged to the parent run {parent_name} ({parent_run_id}), under report/"
    )


def report_links(uri: str, experiment_id: str, parent_run_id: str, run_ids: list[str]) -> str:
    """The report file's section on where to see the runs."""
    base, command = ui_base(uri)
    served = f" (served by `{command}`)" if command else ""
    return "\n".join(
        [
            "## In the MLflow UI",
            "",
            f"With the UI running{served}:",
            "",
            f"- [the runs as charts, a line per run]({sweep_chart_url(base, experiment_id, parent_run_id)})",
            f"- [the runs compared: parallel coordinates of params and metrics]"
            f"({compare_runs_url(base, experiment_id, run_ids)})",
        ]
    )
