"""``mnist-runs`` (``tracking.runs_cli``) on a store of hand-made runs
(``helpers.fake_runs``): ``list`` within 100 columns, its limit and an
unknown experiment; ``delete`` to the trash, refused for a run whose process
is alive, asking first, and ``--purge``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from mnist_runner.tracking import liveness, runs_cli, store

# --- mnist-runs list ------------------------------------------------------------


def list_runs(fake_store, capsys, experiment: str, runs: list[tuple[str, dict]]) -> list[str]:
    """``mnist-runs list`` of a new experiment holding ``runs`` (name, params), as lines."""
    import mlflow

    experiment_id = store.connect(fake_store.uri, experiment, str(fake_store.artifacts))
    for name, params in runs:
        with mlflow.start_run(experiment_id=experiment_id, run_name=name):
            mlflow.log_params({"data.name": name.partition("-")[2], "trainer.seed": "42", **params})
            mlflow.log_metrics({"test_accuracy": 0.987654, "final_overfit_gap": -0.012345})
    assert runs_cli.main(["--uri", fake_store.uri, "list", "--experiment", experiment]) == 0
    before = capsys.readouterr().out
    # The store option after the command too, as `mnist-runs list --uri ...` is typed.
    assert runs_cli.main(["list", "--uri", fake_store.uri, "--experiment", experiment]) == 0
    assert capsys.readouterr().out == before
    return before.splitlines()


def test_runs_list_shows_the_runs_within_100_columns(fake_store, capsys):
    lines = list_runs(
        fake_store,
        capsys,
        "listing",
        [
            ("convnet-mnist", {"model.name": "convnet", "data.train_samples": "60000", "trainer.epochs": "15"}),
            ("dense-mnist", {"model.name": "dense", "model.dropout": "0.25", "trainer.epochs": "10"}),
        ],
    )
    assert len(lines) == 3  # header and two runs, newest first
    assert lines[0].split() == [
        "run_id", "name", "status", "started", "model", "samples", "epochs", "dropout", "seed", "test_acc", "gap"
    ]  # fmt: skip
    assert lines[1].split()[1:3] == ["dense-mnist", "FINISHED"] and " all " in lines[1]  # no train_samples: all
    assert "convnet" in lines[2] and "60000" in lines[2] and "0.9877" in lines[2] and "-0.0123" in lines[2]
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)


def test_runs_list_of_fashion_mnist_runs_fits_100_columns(fake_store, capsys):
    lines = list_runs(
        fake_store,
        capsys,
        "listing_fashion",
        [("dense-fashion_mnist", {"model.name": "dense", "data.train_samples": "10000", "trainer.epochs": "10"})],
    )
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)


def test_runs_list_cuts_run_ids_and_names():
    import pandas as pd

    table = pd.DataFrame(
        {"run_id": ["0123456789abcdef0123456789abcdef"], "name": ["a-run-name-of-thirty-characters"], "test_acc": [0.5]}
    )
    shown = runs_cli.show(table).splitlines()[1].split()
    assert shown[:2] == ["01234567", "a-run-name-of-"]
    assert runs_cli.show(table.iloc[0:0]) == "no runs"


def test_runs_list_limit_and_unknown_experiment(fake_store, capsys):
    assert runs_cli.main(["--uri", fake_store.uri, "list", "--experiment", "digits", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert runs_cli.main(["--uri", fake_store.uri, "list", "--experiment", "nope"]) == 2
    assert "no such experiment" in capsys.readouterr().err


# --- mnist-runs delete ----------------------------------------------------------


def trash_run(fake_store, tags=None) -> str:
    experiment_id = store.connect(fake_store.uri, "trash", str(fake_store.artifacts))
    client = fake_store.client()
    run = client.create_run(experiment_id, tags=tags or {}, run_name="to-delete")
    client.log_text(run.info.run_id, "kept until purged", "note.txt")
    return run.info.run_id


def test_delete_moves_runs_to_the_trash(fake_store, capsys):
    client = fake_store.client()
    run_ids = [trash_run(fake_store), trash_run(fake_store)]
    for run_id in run_ids:
        client.set_terminated(run_id, "FINISHED")

    assert runs_cli.main(["--uri", fake_store.uri, "delete", *run_ids, "--yes"]) == 0
    assert "2 run(s) moved to the trash" in capsys.readouterr().out
    for run_id in run_ids:
        run = client.get_run(run_id)  # still there, restorable
        assert run.info.lifecycle_stage == "deleted"
        assert client.download_artifacts(run_id, "note.txt")
    client.restore_run(run_ids[0])
    assert client.get_run(run_ids[0]).info.lifecycle_stage == "active"


def test_delete_refuses_a_run_whose_process_is_alive(fake_store, capsys):
    client = fake_store.client()
    run_id = trash_run(fake_store, tags=liveness.process_tags())  # RUNNING, by this very process
    try:
        assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id, "--yes"]) == 2
        assert "still training" in capsys.readouterr().err
        assert client.get_run(run_id).info.lifecycle_stage == "active"
    finally:
        client.set_terminated(run_id, "KILLED")
    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id, "--yes"]) == 0  # ended: it may go


def test_delete_asks_first_and_wants_yes_without_a_terminal(fake_store, capsys, monkeypatch):
    client = fake_store.client()
    run_id = trash_run(fake_store)
    client.set_terminated(run_id, "FINISHED")

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id]) == 2
    assert "--yes" in capsys.readouterr().err

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id]) == 0
    assert "nothing deleted" in capsys.readouterr().out
    assert client.get_run(run_id).info.lifecycle_stage == "active"


@pytest.mark.slow  # `mlflow gc` runs as a subprocess
def test_delete_purge_removes_the_run_and_its_artifacts(fake_store, capsys):
    from mlflow.exceptions import MlflowException

    client = fake_store.client()
    run_id = trash_run(fake_store)
    client.set_terminated(run_id, "FINISHED")
    artifact_dir = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    assert (Path(artifact_dir) / "note.txt").is_file()

    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id, "--purge", "--yes"]) == 0
    assert "1 run(s) deleted for good" in capsys.readouterr().out
    with pytest.raises(MlflowException):
        client.get_run(run_id)
    assert not (Path(artifact_dir) / "note.txt").exists()
