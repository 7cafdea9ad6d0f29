"""Train from Python (a notebook, a script) the way ``python run.py`` does.

    from mnist_runner import train
    result = train(["model=cnn", "trainer.epochs=3"])
    result.metrics["test_accuracy"], result.history  # a pandas DataFrame, one row per epoch

The overrides are the command line's: Hydra composes the same config from
``conf/`` and ``experiments/``, it is validated the same way, and
``run_experiment`` trains and records the same MLflow run. Sweeps stay with
``python run.py -m``; one call is one run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from mnist_runner.config import runtime
from mnist_runner.config.backend import activate, of_config
from mnist_runner.config.compose import compose_config
from mnist_runner.pipeline.places import open_run_places

if TYPE_CHECKING:  # importing TensorFlow waits until a run starts
    from mnist_runner.pipeline.experiment import RunResult


def train(overrides: Sequence[str] = ()) -> RunResult:
    """Train, test and track one run; returns its run id, final metrics and
    per-epoch history (``RunResult``). Errors are raised, not exited on:
    ``UserError`` for bad overrides or data (nothing recorded), anything else
    after the MLflow run was closed FAILED."""
    cfg = compose_config(overrides)
    activate(of_config(cfg), deterministic=cfg.trainer.deterministic)  # or BackendMismatch: Keras runs another
    experiment_id = open_run_places(cfg)  # a store that cannot be used fails before Keras loads
    runtime.import_keras(cfg.verbose)
    from mnist_runner.pipeline.experiment import run_experiment, summary_line

    result = run_experiment(cfg, overrides=list(overrides), experiment_id=experiment_id)
    print(summary_line(result, cfg.tracking))  # what run.py prints at the end
    return result
