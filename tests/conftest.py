import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from mnist_runner.config import compose as config
from mnist_runner.paths import CONFIG_DIR, PROJECT_ROOT

config.register()


@pytest.fixture
def compose_cfg():
    """Compose the project's config as ``run.py`` would, with overrides."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def run_cli(tmp_path):
    """Run ``python run.py`` in a subprocess with a temporary MLflow store and
    Hydra dir; returns (completed process, tracking uri)."""

    def _run(*overrides: str, timeout: int = 600):
        defaults = {
            "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.artifact_location": str(tmp_path / "artifacts"),
            "hydra.run.dir": str(tmp_path / "hydra"),
            "trainer.checkpoint_dir": str(tmp_path / "checkpoints"),
        }
        given = dict(o.split("=", 1) for o in overrides if "=" in o)
        uri = given.get("tracking.uri", defaults["tracking.uri"])
        extra = [f"{key}={value}" for key, value in defaults.items() if key not in given]
        command = [sys.executable, str(PROJECT_ROOT / "run.py"), *overrides, *extra]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
        return done, uri

    return _run
