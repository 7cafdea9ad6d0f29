"""Errors meant for people, and the exit codes of ``run.py``.

A ``UserError`` carries a message that names the key or file, what was wrong
and what is allowed; ``run.py`` prints it without a traceback (unless
HYDRA_FULL_ERROR=1) and exits with its ``exit_code``.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

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
    _stop(JobCancelled(f"the job was cancelled ({signal.Signals(signum).name}: scancel, time limit or preemption)"))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; ``exit_code`` follows the shell's 128 + signal number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def raise_interrupted(signum, frame):
    _stop(Interrupted(signum))


# Stop signals (SIGINT, SIGTERM) and training. A signal handler runs wherever
# the main thread happens to be, and its exception is raised there: inside
# Keras' fit it crashed TensorFlow natively in about 1 run of 10 ("free():
# invalid next size", the MLflow run left RUNNING), in TensorFlow's tracing
# it came out as a ValueError, and in a garbage-collection callback Python
# prints and drops it ("Exception ignored in ..."). So the handlers note the
# signal's exception; while training (``stops_deferred``) they only note it
# and ``training.StopOnSignal`` raises it between batches; and a run that
# ends with one noted ends KILLED for it, whatever error it surfaced as.
_pending_stop: BaseException | None = None
_deferring = 0


def _stop(error: BaseException) -> None:
    global _pending_stop
    if _deferring and _pending_stop is None:
        _pending_stop = error
        return
    _pending_stop = error  # outside training, or a second signal: at once
    raise error


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Within: a first stop signal is noted, not raised; see above."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def pending_stop() -> BaseException | None:
    """The exception of a stop signal that no run has ended on yet."""
    return _pending_stop


def take_pending_stop() -> BaseException | None:
    """``pending_stop()``, which a run is now ending on."""
    global _pending_stop
    error, _pending_stop = _pending_stop, None
    return error
