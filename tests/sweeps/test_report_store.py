"""``build_report`` on a temporary MLflow store holding a synthetic 2-configuration x
3-seed sweep (runs logged directly, nothing trained): the files, the logged
table and the link to the runs in the MLflow UI."""

import json
import logging
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pytest

from mnist_runner.sweeps import collect, links
from mnist_runner.tracking.links import base_url

GAPS = {("dense", "1"): 0.020, ("dense", "2"): 0.024, ("dense", "3"): 0.022}
GAPS |= {("cnn", "1"): 0.010, ("cnn", "2"): 0.011, ("cnn", "3"): 0.012}


@pytest.fixture
def sweep(tmp_store):
    """A parent run and its six children, as a sweep leaves them; (client, experiment id, parent id, children)."""
    client = tmp_store.client()
    experiment_id = client.create_experiment("mnist", artifact_location=tmp_store.artifacts.as_uri())
    tags = {"sweep_id": "20260101-000000-abcdef", "sweep_role": "parent", "sweep_keys": '["model", "trainer.seed"]'}
    parent = client.create_run(experiment_id, run_name="sweep-20260101-000000-abcdef", tags=tags)
    children = []
    for (model, seed), gap in GAPS.items():
        run = client.create_run(
            experiment_id, run_name=f"{model}-mnist", tags={"mlflow.parentRunId": parent.info.run_id}
        )
        run_id = run.info.run_id
        client.log_param(run_id, "model.name", model)
        client.log_param(run_id, "trainer.seed", seed)
        for epoch in (1, 2):
            client.log_metric(run_id, "overfit_gap", gap * epoch / 2, step=epoch)
        for name, value in {
            "train_eval_accuracy": 0.99,
            "val_accuracy": 0.99 - gap,
            "test_accuracy": 0.985 - gap,
            "final_overfit_gap": gap,
            "best_epoch_overfit_gap": gap,
            "best_epoch": 2,
            "overfit_epoch": 2,
        }.items():
            client.log_metric(run_id, name, value)
        client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))
        children.append(run_id)
    return client, experiment_id, parent.info.run_id, children


def test_report_of_two_configurations_times_three_seeds(sweep, tmp_path, caplog):
    client, experiment_id, parent_id, children = sweep
    out = tmp_path / "report"
    with caplog.at_level(logging.INFO, logger="mnist_runner.sweeps.collect"):
        table = collect.build_report(
            client, experiment_id, out, parent_run_id=parent_id, swept=["model", "trainer.seed"]
        )
    assert len(table) == 6
    summary = pd.read_csv(out / "gap_summary.csv")
    assert summary["config"].tolist() == ["dense", "cnn"]
    assert summary["n"].tolist() == [3, 3]
    assert summary["gap_final_sd"].tolist() == pytest.approx([0.002, 0.001])
    assert summary["gap_final_ci_low"].notna().all() and summary["gap_final_ci_high"].notna().all()
    assert summary["gap_vs_smallest"].tolist() == ["yes", "smallest"]
    per_run = pd.read_csv(out / "gap_report.csv")
    assert sorted(per_run["run_id"]) == sorted(children)
    markdown = (out / "gap_report.md").read_text()
    assert all(run_id in markdown for run_id in children)
    assert {"gap_per_epoch.png", "final_gap_by_config.png", "test_accuracy_vs_gap.png"} <= {
        p.name for p in out.iterdir()
    }

    logged = caplog.text
    table_lines = logged.split("largest mean final gap first):\n", 1)[1].split("\nper run,", 1)[0].splitlines()
    # headers, rule, the 2 configurations and the line on the method
    assert len(table_lines) == 2 + 2 + 1 and max(map(len, table_lines)) <= 100
    assert table_lines[-1] == "vs smallest: Welch's t-test, p Holm-adjusted over 1 comparison"
    assert "dense" in table_lines[2] and "0.0220 ± 0.0050" in table_lines[2] and "yes (p=0.004)" in table_lines[2]
    # The end of the sweep says where to see its runs side by side, and which run holds the report.
    assert "the report is logged to the parent run sweep-20260101-000000-abcdef" in logged
    url = next(word for word in logged.split() if word.startswith("http://"))
    assert url == links.sweep_chart_url(base_url(), experiment_id, parent_id)
    # The view that link opens is in the experiment (what it holds: test_ui_links.py).
    assert client.get_experiment(experiment_id).tags[links.sweep_view_tag(parent_id)] == links.sweep_view_value(
        parent_id, len(children)
    )


def test_compare_url_lists_every_run():
    url = links.compare_runs_url("http://127.0.0.1:5000/", "3", ["a1", "b2"])
    route, _, query = urlsplit(url).fragment.partition("?")
    assert route == "/compare-runs"
    params = {key: json.loads(unquote(values[0])) for key, values in parse_qs(query).items()}
    assert params == {"runs": ["a1", "b2"], "experiments": ["3"]}


def test_hint_for_a_tracking_server_masks_the_password():
    hint = links.sweep_hint("http://user:secret@tracking.example:5001", "1", "abc", "sweep-x")
    assert "secret" not in hint and "tracking.example:5001/#/experiments/1/runs?" in hint
    assert "make ui" not in hint
