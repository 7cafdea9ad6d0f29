"""Train, evaluate and track one image classifier: ``python run.py model=cnn``.

Hydra composes the config from conf/ (and a preset from experiments/) and the
command line; ``mnist_runner.experiment.run_experiment`` does the work.
TensorFlow is imported only after the config is validated, so ``--help``,
``--cfg`` and config errors are fast. With ``-m`` (or a sweep preset) every
job is a child run of one MLflow parent run (``mnist_runner.sweep``).

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

from mnist_runner import config, errors, schema, sweep

config.register()
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
        from mnist_runner.experiment import run_experiment

        if cfg.resume:
            result = resume(cfg)
        else:
            sweep_info = sweep.read_sweep_info(Path(hydra_cfg.sweep.dir)) if in_sweep else None
            result = run_experiment(cfg, overrides=list(hydra_cfg.overrides.task), sweep=sweep_info)
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


def resume(cfg: DictConfig):
    """Continue an interrupted run with the config it logged (in the store of
    ``tracking.uri``), from its last checkpoint."""
    from omegaconf import OmegaConf

    from mnist_runner import tracking
    from mnist_runner.experiment import run_experiment

    stored = OmegaConf.create(tracking.load_run_config(cfg.tracking.uri, cfg.resume))
    stored.tracking.uri = cfg.tracking.uri
    return run_experiment(stored, resume_run_id=cfg.resume)


def cli() -> None:
    # Both raise errors.Interrupted (a KeyboardInterrupt) and note it, so the
    # run ends KILLED even where Python drops the exception (see errors.py).
    signal.signal(signal.SIGINT, errors.raise_interrupted)
    signal.signal(signal.SIGTERM, errors.raise_interrupted)
    try:
        main()
    except KeyboardInterrupt as interrupt:
        sweep.abort_active_sweep("KILLED")
        print(f"interrupted ({interrupt})", file=sys.stderr)
        sys.exit(getattr(interrupt, "exit_code", 128 + signal.SIGINT))
    except SystemExit as done:
        if done.code not in (0, None):
            sweep.abort_active_sweep("FAILED")
        # Hydra exits 1 after printing why it could not compose the config
        # (unknown option or key, wrong type): a usage error.
        if done.code == 1 and not task_started:
            sys.exit(errors.EXIT_USAGE)
        raise
    except BaseException:
        sweep.abort_active_sweep("FAILED")
        raise


if __name__ == "__main__":
    cli()
