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

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from mnist_runner import config, schema
from mnist_runner.errors import UserError

if TYPE_CHECKING:  # importing TensorFlow waits until a run starts
    from mnist_runner.experiment import RunResult


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python run.py <overrides>`` would run, validated.

    Raises ``UserError`` naming the override on an unknown key or option, a
    bad value, or sweep syntax (``a,b``), which only ``run.py -m`` expands.
    """
    config.register()
    try:
        with initialize_config_dir(config_dir=str(config.CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    except HydraException as error:
        # Hydra's own message is on the innermost error (e.g. "Value 'abc' ...
        # could not be converted to Integer, full_key: trainer.batch_size").
        reason = error
        while reason.__cause__ is not None:
            reason = reason.__cause__
        detail = str(error) if reason is error else f"{error}: {reason}"
        raise UserError(f"overrides {list(overrides)}: {detail}") from error
    if cfg.hydra.mode == RunMode.MULTIRUN or cfg.hydra.sweeper.get("params") or _has_sweep(overrides):
        raise UserError(
            f"overrides {list(overrides)} describe a sweep; train() runs one job. "
            "Run sweeps with `python run.py -m ...`, or call train() once per value."
        )
    # What run.py's jobs see: the config without Hydra's own node (the typed
    # schema nodes stay, so validate checks ranges as it does for run.py).
    with open_dict(cfg):
        del cfg["hydra"]
    schema.validate(cfg)
    return cfg


def _has_sweep(overrides: Sequence[str]) -> bool:
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return any(override.is_sweep_override() for override in parsed)


def train(overrides: Sequence[str] = ()) -> RunResult:
    """Train, test and track one run; returns its run id, final metrics and
    per-epoch history (``RunResult``). Errors are raised, not exited on:
    ``UserError`` for bad overrides or data (nothing recorded), anything else
    after the MLflow run was closed FAILED."""
    cfg = compose_config(overrides)
    from mnist_runner.experiment import run_experiment

    return run_experiment(cfg, overrides=list(overrides))
