"""Where the project lives and where its outputs go.

Every entry point (``run.py``, tests, ``make ui``) derives the same absolute
paths from the project root, so the MLflow store does not depend on the cwd.
"""

from pathlib import Path

# src/mnist_runner/paths.py -> the repository root (the package is installed editable).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
RUNS_DIR = PROJECT_ROOT / "runs"
DATA_CACHE_DIR = RUNS_DIR / "data"
# The store of conf/tracking/default.yaml (``${project_root:}`` resolved), which `make ui` opens.
DEFAULT_TRACKING_URI = f"sqlite:///{RUNS_DIR / 'mlflow.db'}"
