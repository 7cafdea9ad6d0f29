"""What a run's logging needs after training, readied while it trains.

The first run of a process, once trained, imports scikit-learn's
confusion-matrix display and matplotlib's renderer for its plots, and
MLflow maps every installed package to its modules (to check the logged
model's requirements against the environment): about a second together, in
Python. ``start`` does these in a thread while the backend trains, which
leaves Python's interpreter free most of the time. Nothing recorded
changes: whatever the thread has not done by then is done when needed.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_thread: threading.Thread | None = None


def start() -> None:
    """Start the warm-up, once per process."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=warm_up, name="logging-warm-up", daemon=True)
        _thread.start()


def warm_up() -> None:
    try:
        import mlflow.keras  # noqa: F401  the flavour that logs the model
        import mlflow.models.signature  # noqa: F401  its signature
        import PIL.Image  # noqa: F401  PNG files of the plots
        import sklearn.metrics  # noqa: F401  the confusion matrix
        from matplotlib.backends import backend_agg  # noqa: F401  PNG rendering
        from mlflow.utils import requirements_utils

        # Private to MLflow, so looked up: if it is gone, the check builds its map itself.
        build_map = getattr(requirements_utils, "_init_modules_to_packages_map", None)
        if build_map is not None:
            build_map()
    except Exception as error:  # a head start only; never worth failing a run over
        log.debug("warm-up stopped: %s", error)
