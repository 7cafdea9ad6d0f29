"""Train, evaluate and track one image classifier: ``python run.py model=cnn``.

Hydra composes the config from conf/ (and a preset from experiments/) and the
command line; ``mnist_runner.pipeline.experiment.run_experiment`` does the
work. TensorFlow is imported only after the config is validated, so
``--help``, ``--cfg`` and config errors are fast. With ``-m`` (or a sweep
preset) every job is a child run of one MLflow parent run
(``mnist_runner.sweeps``); this entry point hands the parent run and a
search's pruning to the run.

Exit codes: 0 done, 1 the run failed, 2 bad command line, config or data
(nothing was run), 130 / 143 interrupted by Ctrl-C / SIGTERM.
"""

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_runner import errors, signals
from mnist_runner.config import compose, schema
from mnist_runner.sweeps import parent

compose.register()
log = logging.getLogger("run")
task_started = False


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    global task_started
    task_started = True
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        schema.validate(cfg)
        result = train(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.sweep.dir) if in_sweep else None)
    except errors.RunPruned as pruned:
        log.info("%s", pruned)
        return {"pruned": True}
    except Exception as error:
        if in_sweep:
            # The run is recorded FAILED with its reason; the other jobs go on
            # and the sweep's report shows it.
            log.error("job failed: %s", error, exc_info=not isinstance(error, errors.UserError))
            return None
        if not isinstance(error, errors.UserError) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", error)
        sys.exit(error.exit_code)
    # What a search sweeper optimises (hydra/sweeper=optuna_search).
    return result.metrics


def train(cfg: DictConfig, overrides: list[str], sweep_dir: Path | None):
    """One run: a new one, or the interrupted run ``resume=<run id>`` continued
    with the config it logged (in the store of ``tracking.uri``)."""
    from mnist_runner.pipeline.experiment import run_experiment

    if cfg.resume:
        from mnist_runner.pipeline.resume import plan_resume

        stored, resume = plan_resume(cfg.tracking.uri, cfg.resume)
        return run_experiment(stored, resume=resume)
    from mnist_runner.sweeps.pruning import trial_callbacks

    sweep = parent.read_sweep_info(sweep_dir) if sweep_dir else None
    return run_experiment(
        cfg,
        overrides=overrides,
        parent_run_id=sweep.parent_run_id if sweep else None,
        extra_tags={"sweep_id": sweep.sweep_id} if sweep else None,
        callbacks=trial_callbacks(cfg),
    )


def cli() -> None:
    signals.install_handlers()
    try:
        main()
    except KeyboardInterrupt as interrupt:
        parent.abort_active_sweep("KILLED")
        print(f"interrupted ({interrupt})", file=sys.stderr)
        sys.exit(getattr(interrupt, "exit_code", 128 + signal.SIGINT))
    except SystemExit as done:
        if done.code not in (0, None):
            parent.abort_active_sweep("FAILED")
        # Hydra exits 1 after printing why it could not compose the config
        # (unknown option or key, wrong type): a usage error.
        if done.code == 1 and not task_started:
            sys.exit(errors.EXIT_USAGE)
        raise
    except BaseException:
        parent.abort_active_sweep("FAILED")
        raise


if __name__ == "__main__":
    cli()
