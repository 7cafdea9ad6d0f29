"""What the search sweeper does to the sweep's parent run, on a temporary
store: importances logged to it; an empty one removed without a trace."""

import io
import warnings
from types import SimpleNamespace

import pytest

from mnist_runner.sweeps import parent, search_runs


@pytest.fixture
def open_parent(tmp_store):
    """A sweep's parent run, opened as the sweep callback opens it; closed at the end if still open."""
    tracking = SimpleNamespace(uri=tmp_store.uri, experiment="mnist", artifact_location=str(tmp_store.artifacts))
    sweep_dir = tmp_store.root / "sweep"
    info = parent.start_parent_run(tracking, ["trainer.learning_rate=interval(0.0001, 0.01)"], [], 3, sweep_dir)
    parent.write_sweep_info(sweep_dir, info)
    yield info
    if parent.active() is not None:
        parent.finish_parent_run(info, sweep_dir / "report", status="KILLED")


def test_importances_are_logged_to_the_parent_run(open_parent, tmp_store):
    search_runs.log_importances({"trainer.learning_rate": 0.7, "model.dropout": 0.3}, "best_val_accuracy")
    client = tmp_store.client()
    run = client.get_run(open_parent.parent_run_id)
    assert run.data.metrics == {"param_importance.trainer.learning_rate": 0.7, "param_importance.model.dropout": 0.3}
    logged = {artifact.path for artifact in client.list_artifacts(open_parent.parent_run_id, "search")}
    assert logged == {"search/param_importances.csv", "search/param_importances.png"}


def test_an_empty_parent_run_is_removed(open_parent, tmp_store):
    removed = search_runs.discard_parent_run()
    assert removed == open_parent.parent_run_id
    client = tmp_store.client()
    assert client.get_run(removed).info.lifecycle_stage == "deleted"
    assert client.search_runs([open_parent.experiment_id]) == []  # nothing left to see
    # The sweep's end then finds no sweep to report on, and nothing is open.
    assert parent.read_sweep_info(tmp_store.root / "sweep") is None
    assert parent.active() is None
    assert search_runs.discard_parent_run() is None


def test_importance_figure_draws_without_warnings():
    figure = search_runs.importance_figure({"trainer.learning_rate": 0.62, "model.dropout": 0.38}, "best_val_accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure.savefig(io.BytesIO(), format="png")
    ax = figure.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["model.dropout", "trainer.learning_rate"]
    assert [round(bar.get_width(), 2) for bar in ax.patches] == [0.38, 0.62]
