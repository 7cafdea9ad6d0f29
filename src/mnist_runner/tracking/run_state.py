"""Changing a run's status so that no race makes it wrong.

Whoever ends a run on another's behalf (the reaper, a sweep closing its
children, a final state kept while the store was down) decided from a read
that is already old when it writes: the run may have ended FINISHED in
between. So the write itself carries the condition. On an SQL store
(SQLite, PostgreSQL, MySQL) it is one statement, ``UPDATE runs ... WHERE
status = 'RUNNING'``, on the store's own connection: MLflow has no
conditional update, and its ``set_terminated`` overwrites any status. A
tracking server offers nothing of the kind; there the status is read again
just before the write, which leaves the window of one request.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)
FAILURE_REASON = "failure_reason"


def sql_engine(client):
    """The SQLAlchemy engine of ``client``'s store, or None for a tracking server."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store.engine if isinstance(store, SqlAlchemyStore) else None


def end_if_running(client, run_id: str, status: str, end_time_ms: int | None = None, reason: str | None = None) -> bool:
    """End run ``run_id`` with ``status`` (and ``reason``) if, at the moment
    of writing, it is still RUNNING; whether it was ended here. A run that
    ended meanwhile keeps its own status and reason."""
    from sqlalchemy import text

    end_ms = int(time.time() * 1000) if end_time_ms is None else end_time_ms
    engine = sql_engine(client)
    if engine is not None:
        with engine.begin() as connection:
            changed = connection.execute(
                text("UPDATE runs SET status = :status, end_time = :end WHERE run_uuid = :run AND status = 'RUNNING'"),
                {"status": status, "end": end_ms, "run": run_id},
            ).rowcount
        if not changed:
            return False
    else:
        if client.get_run(run_id).info.status != "RUNNING":
            return False
        client.set_terminated(run_id, status, end_time=end_ms)
    if reason:
        client.set_tag(run_id, FAILURE_REASON, reason)
    return True


def revive_if_reaped(client, run_id: str) -> bool:
    """Set RUNNING again a run that the reaper ended KILLED while its process
    lives (called by that process's heartbeat); whether it did."""
    from mnist_runner.tracking.liveness import REAPED

    run = client.get_run(run_id)
    if run.info.status != "KILLED" or not run.data.tags.get(FAILURE_REASON, "").startswith(REAPED):
        return False
    engine = sql_engine(client)
    if engine is not None:
        from sqlalchemy import text

        with engine.begin() as connection:
            changed = connection.execute(
                text("UPDATE runs SET status = 'RUNNING', end_time = NULL WHERE run_uuid = :run AND status = 'KILLED'"),
                {"run": run_id},
            ).rowcount
        if not changed:
            return False
    else:
        client.update_run(run_id, status="RUNNING")
    client.delete_tag(run_id, FAILURE_REASON)
    return True


def drop_reaped_reason(client, run_id: str) -> None:
    """A run that ended FINISHED was not dead: remove a reaper's reason."""
    from mnist_runner.tracking.liveness import REAPED

    if client.get_run(run_id).data.tags.get(FAILURE_REASON, "").startswith(REAPED):
        client.delete_tag(run_id, FAILURE_REASON)
