"""Where to look at a sweep in the MLflow UI: its child runs side by side.

Two views of the same runs:

- ``sweep_chart_url``: the experiment's runs page opened on a view saved for
  the sweep (``sweep_view_state``, written as an experiment tag by
  ``sweeps.collect``): the sweep's child runs listed flat, each run a line
  on the ``overfit_gap``, ``val_accuracy`` and ``accuracy`` charts, which
  come first. Short enough to print.
- ``compare_runs_url``: MLflow's compare page for the listed runs, which
  opens on a parallel-coordinates plot of their params and metrics. Its
  address holds every run id, so it goes into the report file.

The view is stored as the UI's own "share" action stores one: a JSON
object of the runs page's search settings and UI state, in the experiment
tag ``mlflow.sharedViewState.<key>``, opened by ``?viewStateShareKey=<key>``.
Only the key goes in the address, so it stays short however much the view
holds, and nothing in it has to be typed into the page. The UI's named
"saved views" (3.17) wrap the same object with a name and list each one
in a menu that allows 40 per experiment; a sweep's view is the bare object,
which the UI reads as well, so sweeps neither fill that menu nor use up
the user's 40.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.tracking.links import MODEL_TRAINING_VIEW, base_url
from mnist_runner.tracking.store import is_server

# The names the MLflow UI (3.17) reads a shared view by.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY_PARAM = "viewStateShareKey"
# Per-epoch metrics of every child run, charted first in this order.
SWEEP_CHARTS = ("overfit_gap", "val_accuracy", "accuracy")
SECTION_NAME = "Overfitting per epoch"
# The UI's sort key for the run name. Sorted by anything but the start time,
# the UI lists the runs that match the filter as rows of their own; sorted by
# start time it also fetches their parent and folds them under it.
RUN_NAME_ORDER = "tags.`mlflow.runName`"


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


def sweep_view_key(parent_run_id: str) -> str:
    """The share key of a sweep's view: one per sweep, so building the report
    again (``mnist-compare``, a continued sweep) rewrites the same tag."""
    return f"sweep-{parent_run_id}"


def sweep_view_tag(parent_run_id: str) -> str:
    """The experiment tag that holds the sweep's view."""
    return VIEW_TAG_PREFIX + sweep_view_key(parent_run_id)


def line_chart(metric: str, section_id: str, runs: int) -> dict:
    """A chart card of ``metric`` per epoch (step), one line per run of ``runs``."""
    return {
        "uuid": f"sweep-chart-{metric}",
        "type": "LINE",
        "metricSectionId": section_id,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "deleted": False,
        # Placed by hand, not generated from the runs' metrics: the UI keeps it as it is.
        "isGenerated": False,
        # The UI fetches the per-epoch values of this many runs (10 by default).
        "runsCountToCompare": max(10, runs),
        "xAxisKey": "step",
        "useGlobalXaxisKey": True,
        "selectedXAxisMetricKey": "",
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "lineSmoothness": 0,
        "useGlobalLineSmoothing": True,
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "range": {},
    }


def sweep_view_state(parent_run_id: str, runs: int) -> dict:
    """The runs page's state for a sweep of ``runs`` child runs: what the UI
    stores when its view is shared.

    The search settings list the child runs and no other, as rows of their
    own (sorted by name) rather than folded under the parent, which is not
    fetched, so its own metrics make no charts. The charts start with one
    section holding ``SWEEP_CHARTS``; marked as reordered, it keeps them
    first: the UI appends the charts of the runs' other metrics after them,
    and their sections after it. Every run is drawn (the UI's default draws
    the first 10). The remaining fields hold the UI's defaults,
    given in full since a UI that reads a shared view takes each field from
    it.
    """
    section_id = "sweep-section-per-epoch"
    search = {
        "searchFilter": children_filter(parent_run_id),
        "orderByKey": RUN_NAME_ORDER,
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
    }
    ui = {
        "selectedColumns": ["attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`"],
        "columnOrder": [],
        "columnWidths": {},
        "runsExpanded": {},
        "runsPinned": [],
        "runsHidden": [],
        "runsVisibilityMap": {},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": [line_chart(metric, section_id, runs) for metric in SWEEP_CHARTS],
        "compareRunSections": [
            {
                "uuid": section_id,
                "name": SECTION_NAME,
                "display": True,
                "isReordered": True,
                "deleted": False,
                "isGenerated": False,
            }
        ],
        # The sections keep this order; new ones go after it.
        "isAccordionReordered": True,
        "viewMaximized": False,
        "runListHidden": False,
        "groupBy": None,
        "groupsExpanded": {},
        "autoRefreshEnabled": True,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
        "chartsSearchFilter": "",
    }
    return search | ui


def sweep_view_value(parent_run_id: str, runs: int) -> str:
    """The tag's value: the view state as JSON."""
    return json.dumps(sweep_view_state(parent_run_id, runs), separators=(",", ":"))


def sweep_chart_url(base: str, experiment_id: str, parent_run_id: str) -> str:
    """The experiment's runs page on the sweep's saved view, as charts. The
    address has no search settings of its own: with any, the UI would ignore
    the view. ``compareRunsMode`` comes first: the runner's log masks what
    follows the first ``=`` of a word whose name part looks like a secret
    (``...ShareKey``), which would print the address cut short."""
    query = urlencode({"compareRunsMode": "CHART", VIEW_KEY_PARAM: sweep_view_key(parent_run_id)}, quote_via=quote)
    return f"{base}#/experiments/{experiment_id}/runs?{query}&{MODEL_TRAINING_VIEW}"


def sweep_filter_url(base: str, experiment_id: str, parent_run_id: str) -> str:
    """The runs page searching for the sweep's child runs: what to open when
    the view could not be saved. The UI folds them under the parent run."""
    query = urlencode({"searchFilter": children_filter(parent_run_id), "compareRunsMode": "CHART"}, quote_via=quote)
    return f"{base}#/experiments/{experiment_id}/runs?{query}&{MODEL_TRAINING_VIEW}"


def compare_runs_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page for ``run_ids``: parallel coordinates, then a table per run."""
    query = urlencode(
        {"runs": json.dumps(list(run_ids)), "experiments": json.dumps([experiment_id])},
        quote_via=quote,
    )
    return f"{base}#/compare-runs?{query}"


def charts_url(base: str, experiment_id: str, parent_run_id: str, view_saved: bool) -> str:
    return (sweep_chart_url if view_saved else sweep_filter_url)(base, experiment_id, parent_run_id)


def sweep_hint(uri: str, experiment_id: str, parent_run_id: str, parent_name: str, view_saved: bool = True) -> str:
    """The lines printed at the end of a sweep: how to open its runs side by
    side, and which run holds the report. ``view_saved``: whether the
    sweep's view is in the store (else the address searches for its runs)."""
    base, command = ui_base(uri)
    url = charts_url(base, experiment_id, parent_run_id, view_saved)
    how = f"{command}, then open" if command else "open"
    return (
        f"the sweep's runs side by side in the MLflow UI ({how}):\n  {url}\n"
        f"the report is logged to the parent run {parent_name} ({parent_run_id}), under report/"
    )


def report_links(uri: str, experiment_id: str, parent_run_id: str, run_ids: list[str], view_saved: bool = True) -> str:
    """The report file's section on where to see the runs."""
    base, command = ui_base(uri)
    served = f" (served by `{command}`)" if command else ""
    return "\n".join(
        [
            "## In the MLflow UI",
            "",
            f"With the UI running{served}:",
            "",
            f"- [the runs as charts, a line per run]({charts_url(base, experiment_id, parent_run_id, view_saved)})",
            f"- [the runs compared: parallel coordinates of params and metrics]"
            f"({compare_runs_url(base, experiment_id, run_ids)})",
        ]
    )
