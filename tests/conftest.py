import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mnist_runner import config
from mnist_runner.paths import PROJECT_ROOT

config.register()


@pytest.fixture
def compose_cfg():
    """Compose the project's config as ``run.py`` would, with overrides."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(config.CONFIG_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def run_cli(tmp_path):
    """Run ``python run.py`` in a subprocess with a temporary MLflow store and
    Hydra dir; returns (completed process, tracking uri)."""

    def _run(*overrides: str, timeout: int = 600):
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        command = [
            sys.executable, str(PROJECT_ROOT / "run.py"), *overrides,
            f"tracking.uri={uri}",
            f"tracking.artifact_location={tmp_path / 'artifacts'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
        return done, uri

    return _run
