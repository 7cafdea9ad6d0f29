"""The MLflow UI addresses the runner prints and the view a sweep's address
opens, checked without a browser (``test_sweep_link_browser.py`` opens them
in one)."""

import json
import logging
from urllib.parse import parse_qs, urlsplit

from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_EXPERIMENT_TAG_VAL_LENGTH

from mnist_runner import redaction
from mnist_runner.sweeps import collect, links
from mnist_runner.tracking import store
from mnist_runner.tracking.links import ui_hint

BASE = "http://127.0.0.1:5000/"
# What the MLflow UI (3.17) takes from a shared view: its search settings and
# the fields of its UI state. A name it does not know would be dropped unseen.
SEARCH_FIELDS = {
    "searchFilter",
    "orderByKey",
    "orderByAsc",
    "startTime",
    "lifecycleFilter",
    "datasetsFilter",
    "modelVersionFilter",
}
UI_FIELDS = {
    "selectedColumns",
    "columnOrder",
    "columnWidths",
    "runsExpanded",
    "runsPinned",
    "runsHidden",
    "runsVisibilityMap",
    "runsHiddenMode",
    "compareRunCharts",
    "compareRunSections",
    "viewMaximized",
    "runListHidden",
    "isAccordionReordered",
    "groupBy",
    "groupsExpanded",
    "autoRefreshEnabled",
    "useGroupedValuesInCharts",
    "hideEmptyCharts",
    "globalLineChartConfig",
    "chartsSearchFilter",
}


def fragment(url: str) -> tuple[str, dict[str, str]]:
    """The UI route of ``url`` and its query, one value per name."""
    route, _, query = urlsplit(url).fragment.partition("?")
    return route, {key: values[0] for key, values in parse_qs(query).items()}


def test_the_sweep_link_names_the_view_and_nothing_to_search():
    route, params = fragment(links.sweep_chart_url(BASE, "3", "abc123"))
    assert route == "/experiments/3/runs"
    # A search setting in the address would make the UI ignore the view.
    assert params == {
        "viewStateShareKey": "sweep-abc123",
        "compareRunsMode": "CHART",
        "workflowType": "machine_learning",  # the UI's model-training view
    }
    assert links.sweep_view_tag("abc123") == "mlflow.sharedViewState." + params["viewStateShareKey"]


def test_the_links_survive_the_runners_log_masking(caplog):
    """run.py masks credentials in every log message; the printed links hold
    a name that looks like one (``viewStateShareKey``) and must come out whole."""
    sweep = links.sweep_hint("sqlite:////tmp/other/mlflow.db", "3", "abc123", "sweep-x")
    run = ui_hint("sqlite:////tmp/other/mlflow.db", "3", "r1")
    factory = logging.getLogRecordFactory()
    redaction.redact_logs()
    try:
        with caplog.at_level(logging.INFO, logger="mnist_runner.sweeps.collect"):
            logging.getLogger("mnist_runner.sweeps.collect").info("%s\n%s", sweep, run)
    finally:
        logging.setLogRecordFactory(factory)
    assert links.sweep_chart_url(BASE, "3", "abc123") in caplog.text.split()
    assert "***" not in caplog.text
    assert run.split(", then ", 1)[1] in caplog.text.split()


def test_the_view_lists_the_children_as_rows_and_charts_the_gap_first():
    value = links.sweep_view_value("abc123", 3)
    state = json.loads(value)
    assert set(state) == SEARCH_FIELDS | UI_FIELDS
    assert len(value) <= MAX_EXPERIMENT_TAG_VAL_LENGTH
    assert state["searchFilter"] == "tags.mlflow.parentRunId = 'abc123'"
    # Sorted by start time, the UI would fetch the parent and fold the children under it.
    assert state["orderByKey"] == "tags.`mlflow.runName`" and state["orderByAsc"] is True
    assert state["runsHiddenMode"] == "SHOW_ALL"  # not only the first 10 runs
    assert state["runListHidden"] is False and state["viewMaximized"] is False
    charts = state["compareRunCharts"]
    assert [chart["metricKey"] for chart in charts] == ["overfit_gap", "val_accuracy", "accuracy"]
    for chart in charts:
        assert chart["type"] == "LINE" and chart["xAxisKey"] == "step"  # per epoch
        assert chart["selectedMetricKeys"] == [chart["metricKey"]] and chart["deleted"] is False
        assert chart["runsCountToCompare"] == 10  # the UI's least: every run of the 3
    assert len({chart["uuid"] for chart in charts}) == len(charts)
    # One section holds them, first; reordered, it keeps them first as the UI adds the other metrics' charts.
    [section] = state["compareRunSections"]
    assert {chart["metricSectionId"] for chart in charts} == {section["uuid"]}
    assert section["display"] is True and section["isReordered"] is True and state["isAccordionReordered"] is True


def test_the_sweeps_end_saves_the_view_in_the_experiment(tmp_store):
    store.ensure_sqlite_store(tmp_store.db, "tracking.uri")
    client = tmp_store.client()
    experiment_id = client.create_experiment("mnist", artifact_location=tmp_store.artifacts.as_uri())
    parent_id = client.create_run(experiment_id, run_name="sweep-x").info.run_id

    assert collect.save_sweep_view(client, experiment_id, parent_id, 12)
    assert collect.save_sweep_view(client, experiment_id, parent_id, 40)  # the sweep extended: the same tag

    tags = client.get_experiment(experiment_id).tags
    views = {key: value for key, value in tags.items() if key.startswith("mlflow.sharedViewState.")}
    _, params = fragment(links.sweep_chart_url(BASE, experiment_id, parent_id))
    assert list(views) == ["mlflow.sharedViewState." + params["viewStateShareKey"]]
    state = json.loads(views[links.sweep_view_tag(parent_id)])
    assert state == links.sweep_view_state(parent_id, 40)
    # Each line chart fetches the per-epoch values of every run.
    assert {chart["runsCountToCompare"] for chart in state["compareRunCharts"]} == {40}


class RefusingClient:
    def set_experiment_tag(self, experiment_id, key, value):
        raise MlflowException("permission denied")


def test_a_view_the_store_refuses_leaves_the_link_searching_for_the_runs(caplog):
    with caplog.at_level(logging.WARNING, logger="mnist_runner.sweeps.collect"):
        saved = collect.save_sweep_view(RefusingClient(), "3", "abc123", 3)
    assert saved is False
    assert "could not save the sweep's view" in caplog.text and "permission denied" in caplog.text
    hint = links.sweep_hint("http://tracking.example:5001", "3", "abc123", "sweep-x", view_saved=saved)
    url = next(word for word in hint.split() if word.startswith("http://"))
    route, params = fragment(url)
    assert route == "/experiments/3/runs" and "viewStateShareKey" not in params
    assert params["searchFilter"] == "tags.mlflow.parentRunId = 'abc123'"


def test_a_runs_link_opens_its_charts():
    hint = ui_hint("sqlite:////tmp/other/mlflow.db", "3", "r1")
    assert hint.startswith("mnist-ui --uri sqlite:////tmp/other/mlflow.db, then http://127.0.0.1:5000/#")
    route, params = fragment(hint.split(", then ", 1)[1])
    assert route == "/experiments/3/runs/r1/model-metrics"  # the run page's tab of charts over epochs
    assert params == {"workflowType": "machine_learning"}
    assert ui_hint("http://tracking.example:5001/", "3", "r1") == (
        "http://tracking.example:5001/#/experiments/3/runs/r1/model-metrics?workflowType=machine_learning"
    )
