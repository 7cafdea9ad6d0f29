"""Final states that could not be written to the store, kept until it can be.

When the store stops accepting writes (a full disk, a lock held too long, a
server that went away), a run cannot record that it ended. Its final status
and reason are then kept in a small JSON file here, and whatever opens the
same store next writes them (``tracking.store``), so the run does not stay
RUNNING. The files go under ``runs/pending/``, or the system's temporary
folder when that cannot be written (the store's disk may be the full one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from mnist_runner.paths import RUNS_DIR
from mnist_runner.redaction import redact
from mnist_runner.tracking import run_state
from mnist_runner.tracking.liveness import TAG_PID

log = logging.getLogger(__name__)


def folders() -> list[Path]:
    return [RUNS_DIR / "pending", Path(tempfile.gettempdir()) / "mnist-runner-pending"]


def _store_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def keep(uri: str, run_id: str, status: str, reason: str | None) -> Path | None:
    """Keep run ``run_id``'s final state for the store at ``uri``; where it
    was kept, or None if no folder could be written."""
    record = {
        "uri": redact(uri),
        "store": _store_key(uri),
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "end_time_ms": int(time.time() * 1000),
        "pid": str(os.getpid()),
    }
    for folder in folders():
        path = folder / f"{_store_key(uri)}-{run_id}.json"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".part")
            partial.write_text(json.dumps(record))
            os.replace(partial, path)
            return path
        except OSError:
            continue
    return None


def flush(client, uri: str) -> list[str]:
    """Write the final states kept for the store at ``uri``; the run ids written."""
    written = []
    for folder in folders():
        for path in sorted(folder.glob(f"{_store_key(uri)}-*.json")):
            try:
                record = json.loads(path.read_text())
                run = client.get_run(record["run_id"])
                # Not if a resume has reopened the run since (another process owns it now).
                if (
                    run.info.status == "RUNNING"
                    and run.data.tags.get(TAG_PID) == record["pid"]
                    and run_state.end_if_running(
                        client, record["run_id"], record["status"], record["end_time_ms"], record.get("reason")
                    )
                ):
                    log.info(
                        "run %s: wrote its final state %s, kept while the store could not be written",
                        record["run_id"],
                        record["status"],
                    )
                    written.append(record["run_id"])
                path.unlink()
            except Exception as error:  # try again next time
                if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":  # the run was deleted
                    path.unlink(missing_ok=True)
                log.debug("pending state %s not written yet: %s", path, error)
    return written
