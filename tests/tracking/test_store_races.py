"""Rows that parallel jobs of a sweep write at the same moment: the second
writer of a shared row must not fail (``store.written_once``). Each race is
forced: the other job's row is written between MLflow's look-up and its
insert, where a busy machine puts it now and then."""

from __future__ import annotations

import sqlite3
import uuid

import mlflow
import pytest
from helpers.store_copies import open_store
from mlflow.store.tracking.dbmodels.models import SqlDataset
from sqlalchemy.orm import Session

from mnist_runner.tracking import records, store


@pytest.fixture
def another_job_first(monkeypatch):
    """Make another process insert each data set the moment after this one
    looked it up and found nothing; returns the digests it raced on."""
    raced: list[str] = []
    add_all = Session.add_all

    def add_all_after_another_job(self, objects):
        objects = list(objects)
        for row in objects:
            if isinstance(row, SqlDataset) and row.digest not in raced:
                raced.append(row.digest)
                database = self.get_bind().url.database
                with sqlite3.connect(database) as other:  # its own connection: another job
                    other.execute(
                        "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, "
                        "dataset_source) VALUES (?, ?, ?, ?, ?, ?)",
                        (uuid.uuid4().hex, row.experiment_id, row.name, row.digest, row.dataset_source_type, "x"),
                    )
        return add_all(self, objects)

    monkeypatch.setattr(Session, "add_all", add_all_after_another_job)
    return raced


def test_a_data_set_another_job_inserted_meanwhile_is_linked_not_failed(tmp_path, monkeypatch, another_job_first):
    temp, experiment_id = open_store(tmp_path / "store", monkeypatch)
    mlflow.set_tracking_uri(temp.uri)
    inputs = records.dataset_inputs("digits", "checksum", "scikit-learn", {"train": "a", "test": "test"})
    with mlflow.start_run(experiment_id=experiment_id) as run:
        records.log_datasets(inputs)

    assert sorted(another_job_first) == sorted(dataset.digest for dataset in inputs.values())
    logged = temp.client().get_run(run.info.run_id).inputs.dataset_inputs
    assert sorted((d.dataset.digest, d.tags[0].value) for d in logged) == sorted(
        (dataset.digest, context) for context, dataset in inputs.items()
    )
    with sqlite3.connect(temp.db) as db:  # one row per data set: the other job's, linked to this run
        assert db.execute("SELECT COUNT(*) FROM datasets").fetchone()[0] == 2


def test_other_store_errors_are_not_retried():
    calls = []

    def write():
        calls.append(1)
        raise mlflow.exceptions.MlflowException("database is locked")

    with pytest.raises(mlflow.exceptions.MlflowException, match="locked"):
        store.written_once(write, "a row")
    assert len(calls) == 1
