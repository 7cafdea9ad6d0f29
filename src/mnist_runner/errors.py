"""Errors meant for people, and the exit codes of the commands.

A ``UserError`` carries a message that names the key or file, what was wrong
and what is allowed; the commands print it on one line, without a traceback
(``run.py`` shows one with HYDRA_FULL_ERROR=1), and exit with its
``exit_code``. Stop signals have their own exceptions, in ``signals``.
"""

from __future__ import annotations

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
