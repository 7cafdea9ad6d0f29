"""One MLflow run per job, always closed with the status that says what happened."""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from mnist_runner import signals


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run, always closed: FINISHED; FAILED on an error, with its
    reason as the ``failure_reason`` tag; KILLED on Ctrl-C or SIGTERM (also
    where the signal's exception was dropped or surfaced as another error). In a
    sweep it is a child of the sweep's parent run; ``resume_run_id`` reopens an
    interrupted run."""
    if resume_run_id:
        MlflowClient().delete_tag(resume_run_id, "failure_reason")
        start = {"run_id": resume_run_id}
    else:
        start = {"experiment_id": experiment_id, "run_name": run_name, "parent_run_id": parent_run_id}
    with mlflow.start_run(**start, tags=dict(tags)) as run:
        try:
            yield run
            signals.raise_if_pending()  # a stop signal whose exception Python dropped
        except BaseException as error:
            # A stop signal is the reason, whatever error it surfaced as.
            reason = signals.take_pending_stop() or error
            end_run_on(reason)
            if reason is not error:
                raise reason from error
            raise


def end_run_on(error: BaseException) -> None:
    """Close the active run for ``error``: KILLED on Ctrl-C or SIGTERM, or with
    the error's own ``run_status`` (a cancelled cluster job, a pruned search
    trial); else ``mlflow.start_run`` ends it FAILED. Its reason becomes the
    ``failure_reason`` tag."""
    if isinstance(error, KeyboardInterrupt):
        mlflow.set_tag("failure_reason", "interrupted")
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
    elif isinstance(error, Exception):
        mlflow.set_tag("failure_reason", f"{type(error).__name__}: {error}"[:5000])
        if hasattr(error, "run_status"):
            mlflow.end_run(error.run_status)
