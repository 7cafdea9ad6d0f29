"""Helpers shared by the tests, and by ``tests/ui_browser.py`` when it runs as
a script (``make ui-screenshot``): this module imports nothing heavy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

REQUIRE_E2E = "MNIST_RUNNER_REQUIRE_E2E"
REQUIRE_OPTIONAL = "MNIST_RUNNER_REQUIRE_OPTIONAL"
OPTIONAL_COMPONENTS = ("torch",)  # what a test may need that neither `make install` nor CI installs
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


def skip_or_fail(reason: str, optional: str | None = None) -> NoReturn:
    """Skip the calling test for ``reason``; fail it instead where what is
    missing is required, so a broken set-up cannot pass as skipped: what
    ``make install-e2e`` installs where MNIST_RUNNER_REQUIRE_E2E=1 (CI), an
    ``optional`` component (``torch``: ``make install-torch``) where
    MNIST_RUNNER_REQUIRE_OPTIONAL names it (``torch``; several names with
    commas or spaces between them). CI sets only MNIST_RUNNER_REQUIRE_E2E=1
    and installs no PyTorch: its PyTorch cases skip."""
    import pytest

    if optional is None:
        if os.environ.get(REQUIRE_E2E) == "1":
            pytest.fail(f"{reason} ({REQUIRE_E2E}=1)")
    else:
        setting = os.environ.get(REQUIRE_OPTIONAL, "")
        named = set(setting.replace(",", " ").split())
        if named - set(OPTIONAL_COMPONENTS):  # a misspelt name would require nothing
            pytest.fail(f"{REQUIRE_OPTIONAL}={setting}: the optional components are {', '.join(OPTIONAL_COMPONENTS)}")
        if optional in named:
            pytest.fail(f"{reason} ({REQUIRE_OPTIONAL}={setting})")
    pytest.skip(reason)


@dataclass(frozen=True)
class TempStore:
    """An MLflow store, its artifacts, the checkpoints and the Hydra output of
    test runs, all in the folder ``root``, so that no test writes to the
    project's runs/. ``server_uri``: log to that tracking server instead of
    the SQLite file ``root/mlflow.db``."""

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

    def client(self):
        """An ``MlflowClient`` on this store."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)
