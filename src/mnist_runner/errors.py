"""Errors meant for people, and the exit codes of ``run.py``.

A ``UserError`` carries a message that names the key or file, what was wrong
and what is allowed; ``run.py`` prints it without a traceback (unless
HYDRA_FULL_ERROR=1) and exits with its ``exit_code``.
"""

from __future__ import annotations

import signal

EXIT_FAILED = 1  # the run started and failed
EXIT_USAGE = 2  # bad command line, config or data: nothing was run


class UserError(Exception):
    exit_code = EXIT_USAGE


class RunFailed(UserError):
    """Training itself failed (e.g. the loss diverged); the MLflow run is FAILED."""

    exit_code = EXIT_FAILED


class RunPruned(Exception):
    """A hyperparameter search stopped this trial early; its run ends KILLED."""

    run_status = "KILLED"


class JobCancelled(UserError):
    """A sweep job on a cluster got SIGTERM (``scancel``, its time limit): the
    run ends KILLED and, being an ``Exception``, the job still reports back,
    so the sweep goes on and its report lists the run."""

    run_status = "KILLED"
    exit_code = 128 + signal.SIGTERM


def raise_job_cancelled(signum, frame):
    raise JobCancelled(f"the job was cancelled ({signal.Signals(signum).name}: scancel, time limit or preemption)")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; ``exit_code`` follows the shell's 128 + signal number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def raise_interrupted(signum, frame):
    raise Interrupted(signum)
