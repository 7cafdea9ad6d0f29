"""Addresses of runs and experiments in the MLflow UI."""

from __future__ import annotations

from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.tracking.store import is_server

UI_HOST = "127.0.0.1"
UI_PORT = 5000  # `make ui`'s default port
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
RUN_CHARTS_TAB = "model-metrics"  # the run page's tab of per-epoch charts


def base_url(port: int = UI_PORT, host: str = UI_HOST) -> str:
    return f"http://{host}:{port}/"


def chart_url(experiment_id: str, port: int = UI_PORT, host: str = UI_HOST) -> str:
    """The UI page listing an experiment's runs with a chart per metric over epochs.

    The plain ``#/experiments/<id>`` opens an overview page without the runs,
    and ``#/experiments/<id>/runs`` lists them without metrics. The UI's
    side bar starts in its GenAI mode (traces, judges, prompts) unless the
    address asks for the model-training one.
    """
    return f"{base_url(port, host)}#/experiments/{experiment_id}/runs?compareRunsMode=CHART&{MODEL_TRAINING_VIEW}"


def run_charts_page(experiment_id: str, run_id: str) -> str:
    """The run's page on its "Model metrics" tab: a chart per metric over
    epochs. Without the tab, the page opens on the run's overview (params,
    final values), the charts a click away."""
    return f"#/experiments/{experiment_id}/runs/{run_id}/{RUN_CHARTS_TAB}?{MODEL_TRAINING_VIEW}"


def ui_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """How to open this run's charts in the MLflow UI."""
    page = run_charts_page(experiment_id, run_id)
    if is_server(uri):
        return f"{redact(uri).rstrip('/')}/{page}"
    command = "make ui" if uri == DEFAULT_TRACKING_URI else f"mnist-ui --uri {redact(uri)}"
    return f"{command}, then {base_url()}{page}"
