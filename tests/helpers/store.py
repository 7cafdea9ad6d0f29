"""A test's own MLflow store, and the one way tests start ``run.py`` on it and
read its runs back.

Every subprocess test builds its command with ``TempStore.command`` (through
``run_py``, or ``start_py`` for a process the test signals), so that each run
logs into the test's folder and never into the project's runs/; every test
that reads runs uses ``TempStore.runs`` (or ``only_run``)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnist_runner.paths import PROJECT_ROOT

# What every launched process gets on top of the test's environment: no
# TensorFlow banner in the output a test reads, and lines as they are written
# (a test that waits for a line to signal the process would wait for a buffer).
LAUNCH_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
# What a sweep's gap report writes, and logs under the parent run's report/.
REPORT_FILES = {
    "gap_report.csv",
    "gap_summary.csv",
    "gap_effects.csv",
    "gap_effect_pairs.csv",
    "gap_report.md",
    "gap_per_epoch.png",
    "final_gap_by_config.png",
    "test_accuracy_vs_gap.png",
}
# Overrides that place a run's records; one given by the test wins over the store's.
PLACES = ("tracking.uri", "tracking.artifact_location", "trainer.checkpoint_dir", "hydra.run.dir", "hydra.sweep.dir")


def environment(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """The test's environment with ``LAUNCH_ENV`` and then ``env`` on top; a
    name given as None is removed (as a user's shell would not have it)."""
    merged: dict[str, str | None] = {**os.environ, **LAUNCH_ENV, **(env or {})}
    return {name: value for name, value in merged.items() if value is not None}


@dataclass(frozen=True)
class TempStore:
    """An MLflow store, its artifacts, the checkpoints and the Hydra output of
    test runs, all in the folder ``root``. ``server_uri``: log to that
    tracking server instead of the SQLite file ``root/mlflow.db``."""

    root: Path
    server_uri: str | None = None

    @property
    def db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def uri(self) -> str:
        return self.server_uri or f"sqlite:///{self.db}"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def overrides(self, *, run_dir: str | None = None, sweep_dir: str | None = None) -> list[str]:
        """The overrides that send a run to this store; ``run_dir`` and
        ``sweep_dir`` name Hydra's run or sweep output folder under ``root``."""
        overrides = [
            f"tracking.uri={self.uri}",
            f"tracking.artifact_location={self.artifacts}",
            f"trainer.checkpoint_dir={self.checkpoints}",
        ]
        if run_dir is not None:
            overrides.append(f"hydra.run.dir={self.root / run_dir}")
        if sweep_dir is not None:
            overrides.append(f"hydra.sweep.dir={self.root / sweep_dir}")
        return overrides

    # --- starting run.py ---------------------------------------------------------

    def command(
        self,
        *overrides: str,
        multirun: bool = False,
        run_dir: str = "hydra",
        sweep_dir: str = "sweep",
        wrapper: tuple[str, ...] = (),
    ) -> list[str]:
        """``python run.py [-m] <overrides>`` logging into this store: Hydra's
        output in ``root/run_dir`` (a run) or ``root/sweep_dir`` (a sweep).
        Both are always given, as Hydra reads only the one of its mode, and a
        command can be a sweep without ``-m`` (``resume=<parent run id>``, a
        search preset). A place the overrides name themselves (another
        ``tracking.uri``, say) is left as they name it. ``wrapper``: a command that runs it (as
        ``unshare ...`` runs it as on another host)."""
        given = {override.split("=", 1)[0].lstrip("+~") for override in overrides if "=" in override}
        places = self.overrides(run_dir=run_dir, sweep_dir=sweep_dir)
        own = [place for place in places if place.split("=", 1)[0] not in given]
        return [*wrapper, sys.executable, str(PROJECT_ROOT / "run.py"), *(["-m"] if multirun else []), *overrides, *own]

    def run_py(
        self,
        *overrides: str,
        multirun: bool = False,
        env: dict[str, str | None] | None = None,
        timeout: float = 600,
        run_dir: str = "hydra",
        sweep_dir: str = "sweep",
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``command(...)`` to its end in ``root`` (or ``cwd``); its output captured as text."""
        command = self.command(*overrides, multirun=multirun, run_dir=run_dir, sweep_dir=sweep_dir)
        return self.run_process(command, env=env, timeout=timeout, cwd=cwd)

    def start_py(
        self,
        *overrides: str,
        multirun: bool = False,
        env: dict[str, str | None] | None = None,
        run_dir: str = "hydra",
        sweep_dir: str = "sweep",
        wrapper: tuple[str, ...] = (),
        **popen,
    ) -> subprocess.Popen:
        """Start ``command(...)`` in ``root`` for a test that watches or signals
        it: stdout and stderr as one text stream (``popen`` may change that or
        the folder it runs in, or ask for ``start_new_session=True`` to signal
        its process group)."""
        command = self.command(*overrides, multirun=multirun, run_dir=run_dir, sweep_dir=sweep_dir, wrapper=wrapper)
        defaults = {"cwd": self.root, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        return subprocess.Popen(command, env=environment(env), **{**defaults, **popen})

    def run_process(
        self,
        command: list[str],
        env: dict[str, str | None] | None = None,
        timeout: float = 600,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess:
        """Any other command of the project (``predict.py``, ``mnist-runs``) run
        in ``root`` (or ``cwd``) with the same environment; output captured as text."""
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=cwd or self.root, env=environment(env)
        )

    # --- reading the store -------------------------------------------------------

    def client(self):
        """An ``MlflowClient`` on this store."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def runs(
        self,
        experiment: str | None = None,
        *,
        parent: str | None = None,
        role: str | None = None,
        reap: bool = False,
    ) -> list:
        """The store's runs (not deleted), oldest first: of the experiment
        named ``experiment`` (None: of every experiment, as a run's
        experiment follows its data set); only the children of the run
        ``parent``; only sweep parents (``role="parent"``) or every other run
        (``role="child"``). ``reap``: open the store as every command of the
        project does, which first ends the runs whose process died."""
        if self.server_uri is None and not self.db.exists():
            return []  # MlflowClient would create the file, with a schema of its own
        if reap:
            from mnist_runner.tracking import store as tracking_store

            client = tracking_store.open_existing(self.uri)
        else:
            client = self.client()
        if experiment is None:
            ids = [found.experiment_id for found in client.search_experiments()]
        else:
            found = client.get_experiment_by_name(experiment)
            ids = [found.experiment_id] if found else []
        if not ids:
            return []
        runs = client.search_runs(ids, max_results=10_000, order_by=["attributes.start_time ASC"])
        if parent is not None:
            runs = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent]
        if role is not None:
            if role not in ("parent", "child"):
                raise ValueError(f"role={role!r}: 'parent' or 'child'")
            runs = [run for run in runs if (run.data.tags.get("sweep_role") == "parent") == (role == "parent")]
        return runs

    def only_run(self, experiment: str | None = None, **filters):
        """The one run that ``runs(experiment, **filters)`` finds; fails the test otherwise."""
        found = self.runs(experiment, **filters)
        assert len(found) == 1, f"expected one run, found {len(found)}: {[run.info.run_name for run in found]}"
        return found[0]
