"""Stop signals (Ctrl-C, SIGTERM, a cluster's cancel), in one place.

What happens on a stop signal, from the handler to the run's final state:

1. ``install_handlers`` (``run.py``) makes SIGINT and SIGTERM raise
   ``Interrupted``; in a cluster job (``install_job_handlers``, called by the
   sweep callback) SIGTERM raises ``JobCancelled`` instead, an ``Exception``
   so that the job still reports back and the sweep goes on.
2. A handler runs wherever the main thread happens to be, and its exception
   is raised there: inside Keras' ``fit`` that crashed TensorFlow natively in
   about 1 run of 10 ("free(): invalid next size", the MLflow run left
   RUNNING), in TensorFlow's tracing it came out as a ValueError, and in a
   garbage-collection callback Python printed and dropped it. So every
   handler first notes the exception (``pending_stop``); while training
   (``stops_deferred``) it only notes it, and the training loop raises it
   between batches (``raise_if_pending``, from ``pipeline.training``).
3. A run that ends while a stop is noted ends KILLED for it, whatever error
   it surfaced as (``take_pending_stop``, from ``tracking.runs``).

Exit codes follow the shell: 128 + the signal's number (130 for Ctrl-C, 143
for SIGTERM). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from mnist_runner.errors import UserError


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; ``exit_code`` follows the shell's 128 + signal number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


class JobCancelled(UserError):
    """A sweep job on a cluster got SIGTERM (``scancel``, its time limit): the
    run ends KILLED and, being an ``Exception``, the job still reports back,
    so the sweep goes on and its report lists the run."""

    run_status = "KILLED"
    exit_code = 128 + signal.SIGTERM


_pending_stop: BaseException | None = None
_deferring = 0


def _stop(error: BaseException) -> None:
    global _pending_stop
    if _deferring and _pending_stop is None:
        _pending_stop = error
        return
    _pending_stop = error  # outside training, or a second signal: at once
    raise error


def raise_interrupted(signum, frame) -> None:
    _stop(Interrupted(signum))


def raise_job_cancelled(signum, frame) -> None:
    _stop(JobCancelled(f"the job was cancelled ({signal.Signals(signum).name}: scancel, time limit or preemption)"))


def install_handlers() -> None:
    """SIGINT and SIGTERM end the run KILLED (``run.py``)."""
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)


def install_job_handlers() -> None:
    """In a cluster job, SIGTERM cancels the job but lets it report back.

    submitit ignores SIGTERM, so ``scancel`` would SIGKILL the job 30 s later:
    its run left RUNNING, no result for the submitting process, which then
    waits forever where SLURM has no accounting.
    """
    signal.signal(signal.SIGTERM, raise_job_cancelled)


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


def raise_if_pending() -> None:
    """Raise a noted stop signal's exception, where stopping is safe."""
    if _pending_stop is not None:
        raise _pending_stop


def take_pending_stop() -> BaseException | None:
    """``pending_stop()``, which a run is now ending on."""
    global _pending_stop
    error, _pending_stop = _pending_stop, None
    return error
