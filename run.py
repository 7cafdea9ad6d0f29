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

import atexit
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from mnist_runner import errors, redaction, signals
from mnist_runner.config import compose, runtime, schema
from mnist_runner.config.backend import activate, of_config
from mnist_runner.paths import DATA_CACHE_DIR, DEFAULT_TRACKING_URI
from mnist_runner.pipeline.places import open_run_places
from mnist_runner.sweeps import continuation, parent
from mnist_runner.tracking import sweep_records

compose.register()
if {"--help", "-h", "--hydra-help"} & set(sys.argv[1:]):
    compose.list_groups_once()
redaction.redact_logs()  # before Hydra logs anything (its launchers log each job's overrides)
log = logging.getLogger("run")
SHOW_TRACEBACKS = os.environ.get("HYDRA_FULL_ERROR") == "1"  # as the user set it
LAST_TRACKING_URI: str | None = None  # the store of the run under way, for the resume hint
SINGLE_RUN = False  # this process ran one run, no sweep: it may end fast (end_process)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    global SINGLE_RUN
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    SINGLE_RUN = not in_sweep
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
        if not isinstance(error, errors.UserError) or SHOW_TRACEBACKS:
            raise
        log.error("%s", error)
        sys.exit(error.exit_code)
    # What a search sweeper optimises (hydra/sweeper=optuna_search); None
    # for a grid job being finished in the background.
    return result.metrics


def train(cfg: DictConfig, overrides: list[str], sweep_dir: Path | None):
    """One run: a new one, or the interrupted run ``resume=<run id>`` continued
    with the config it logged (in the store of ``tracking.uri``). A job of a
    grid sweep does what the sweep's plan says for it (``continuation``):
    nothing for a job that has finished, its interrupted run continued, or a
    new run (superseding a failed one)."""
    sweep = parent.read_sweep_info(sweep_dir) if sweep_dir else None
    key = continuation.job_key(cfg) if sweep else None
    step = sweep.jobs.get(key, {}) if sweep else {}
    if step.get("action") == continuation.DONE:
        log.info("job finished already in run %s: not trained again", step["run_id"])
        return parent.finished_job(sweep, step["run_id"])
    resume_id = cfg.resume or (step["run_id"] if step.get("action") == continuation.RESUME else None)
    activate(run_backend(cfg, resume_id), deterministic=cfg.trainer.deterministic)  # before anything imports Keras
    global LAST_TRACKING_URI
    LAST_TRACKING_URI = cfg.tracking.uri
    # Loading what a run needs makes next to no garbage, and what it loads
    # lives as long as the process: see runtime.loading_for_good.
    with runtime.loading_for_good():
        if resume_id is None:  # read while MLflow and Keras load (a resumed run's data is in its logged config)
            from mnist_runner.datasets.loader import prefetch

            prefetch(cfg.data.name, cfg.data.path, DATA_CACHE_DIR)
        planned, step = plan(cfg, overrides, resume_id, step)
        # Its folders and store checked before Keras loads: one that cannot be
        # used is refused in a second or two, not after the import.
        # A job in the sweep's own process: the sweep has opened the store.
        opened = sweep.experiment_id if sweep and parent.active() is not None else None
        experiment_id = open_run_places(planned[0] if planned is not None else cfg, opened)
        runtime.import_keras(cfg.verbose)
        from mnist_runner.pipeline.experiment import run_experiment

    # A grid sweep's job in this process (not a search, whose sweeper needs
    # the metrics, nor a job in a worker process that nobody would wait for)
    # is tested and recorded while the next job trains.
    in_background = bool(sweep and sweep.jobs) and parent.active() is not None
    if planned is not None:
        stored, resume = planned
        return run_experiment(stored, resume=resume, experiment_id=experiment_id, finish_in_background=in_background)
    from mnist_runner.sweeps.pruning import trial_callbacks

    tags = {"sweep_id": sweep.sweep_id, sweep_records.TAG_JOB_KEY: key} if sweep else None
    if step.get("action") == continuation.RERUN:
        tags[sweep_records.TAG_SUPERSEDES] = step["run_id"]
        parent.mark_superseded(sweep, step["run_id"])
    return run_experiment(
        cfg,
        overrides=overrides,
        parent_run_id=sweep.parent_run_id if sweep else None,
        extra_tags=tags,
        callbacks=trial_callbacks(cfg),
        experiment_id=experiment_id,
        finish_in_background=in_background,
    )


def plan(cfg: DictConfig, overrides: list[str], resume_id: str | None, step: dict) -> tuple[tuple | None, dict]:
    """The resume to do, if any, and the job's step. Planned before Keras
    loads (it needs only the store and the checkpoint files): a resume that
    is refused is refused in a second, not after TensorFlow's import."""
    from mnist_runner.pipeline.resume import plan_resume

    if cfg.resume:
        return plan_resume(cfg, cfg.resume, overrides), step
    if resume_id:  # a sweep's interrupted job: its run's own config, as the job key says it is
        try:
            return plan_resume(cfg, resume_id), step
        except errors.UserError as cannot:  # e.g. its checkpoints are gone: the job runs again
            log.warning("run %s cannot be continued (%s); the job runs again in a new run", resume_id, cannot)
            return None, {"action": continuation.RERUN, "run_id": resume_id}
    return None, step


def run_backend(cfg: DictConfig, resume_id: str | None) -> str:
    """The Keras backend of the run: a resumed run goes on with the one it used."""
    if not resume_id:
        return of_config(cfg)
    from mnist_runner.tracking.run_history import interrupted_run

    run = interrupted_run(cfg.tracking.uri, resume_id)
    return run.data.tags.get("backend") or of_config({"backend": run.data.params.get("backend")})


def cli() -> None:
    signals.install_handlers()
    try:
        continued = continuation.continued_argv(sys.argv[1:])  # resume=<a sweep's parent run id>
    except errors.UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    if continued is not None:
        sys.argv[1:], os.environ[continuation.CONTINUES_ENV] = continued
    # Hydra prints an exception that escapes it and exits 1; set, this lets it
    # through, so that a sweep whose launcher failed (a worker killed) is
    # closed here with its report, and a config error gets exit code 2. The
    # user's own setting still decides whether tracebacks are shown.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except KeyboardInterrupt as interrupt:
        ended = parent.end_early(
            "KILLED", f"interrupted ({interrupt})", f"interrupted ({interrupt}): the sweep was stopped"
        )
        print(f"interrupted ({interrupt}){sweep_summary(ended) or resume_hint(interrupt)}", file=sys.stderr)
        sys.exit(getattr(interrupt, "exit_code", 128 + signal.SIGINT))
    except SystemExit as done:
        if done.code not in (0, None):
            parent.end_early("FAILED", f"the sweep exited with code {done.code}", "the sweep ended before this job")
        raise
    except (HydraException, OmegaConfBaseException) as error:  # composing the config failed: nothing ran
        if SHOW_TRACEBACKS:
            raise
        print(hydra_message(error), file=sys.stderr)
        sys.exit(errors.EXIT_USAGE)
    except Exception as error:
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        ended = parent.end_early(
            "FAILED", f"the sweep failed: {reason}", f"process died: its job ended without closing the run ({reason})"
        )
        if ended is not None:
            print(f"error: sweep {ended.info.sweep_id} failed: {reason}{sweep_summary(ended)}", file=sys.stderr)
            sys.exit(errors.EXIT_FAILED)
        if SHOW_TRACEBACKS or not isinstance(error, OSError):
            raise
        # The environment failed (a full disk, a folder that cannot be written): one line.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(errors.EXIT_FAILED)


def resume_hint(interrupt: BaseException) -> str:
    """The command that continues the interrupted run, when one was under way."""
    run_id = getattr(interrupt, "run_id", None)
    if run_id is None:
        return ""
    store = (
        ""
        if LAST_TRACKING_URI in (None, DEFAULT_TRACKING_URI)
        else f" tracking.uri={redaction.redact(LAST_TRACKING_URI)}"
    )
    return f"; run {run_id} can be resumed: python run.py resume={run_id}{store}"


def sweep_summary(ended: parent.SweepEnd | None) -> str:
    if ended is None:
        return ""
    report = f"; the report of what finished is in {ended.report_dir}" if ended.report_dir else ""
    # A search continues with its own command (its study resumes); a grid sweep with this one.
    command = continuation.continue_command(ended.info.parent_run_id, ended.info.tracking_uri)
    how = f"\ncontinue it (finished jobs are kept): {command}" if ended.info.jobs else ""
    return (
        f"; {ended.finished} job(s) finished, {ended.closed} run(s) left RUNNING were closed{report}; "
        f"parent run {ended.info.parent_run_id}{how}"
    )


def hydra_message(error: Exception) -> str:
    """What Hydra itself prints for a config it cannot compose, with a hint
    where Hydra's own one does not work."""
    cause = error.__cause__
    message = str(error) + (f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else "")
    if "tracking.tags" in message:
        message += "\nSet tags with ++tracking.tags={team: vision} or +tracking.tags.team=vision"
    return message


def end_process(code: int | str | None) -> None:
    """End the process of a single run without Python's teardown of every
    module: TensorFlow's and MLflow's take seconds (5 s after a run on a busy
    2-core machine) and do nothing for the run. What the teardown does that
    matters is done first: other threads finished, exit handlers run (MLflow,
    logging), output flushed. Sweeps, whose launchers clean up at exit, and
    other commands exit as usual.

    Both steps are the interpreter's own private functions: no public API
    does either. ``Thread.join`` on every other thread waits forever on an
    idle ``ThreadPoolExecutor``'s workers, which only the hooks that
    ``threading._shutdown`` runs first tell to stop. And ``atexit`` has no
    public call that runs its handlers: a handler calling ``os._exit``,
    registered before the script's own, would still run before those
    registered at start-up (a ``sitecustomize``, coverage's), and they would
    never run. Where either function is missing, the process exits as usual."""
    shutdown = getattr(threading, "_shutdown", None)  # what Python runs first at exit: joins threads
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # what it runs next: every atexit handler
    if not SINGLE_RUN or not isinstance(code, (int, type(None))) or shutdown is None or run_exit_handlers is None:
        return
    shutdown()
    run_exit_handlers()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    try:
        cli()
    except SystemExit as done:
        end_process(done.code)
        raise
    end_process(0)
