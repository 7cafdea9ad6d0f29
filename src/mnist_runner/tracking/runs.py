"""One MLflow run per job, always closed with the status that says what happened.

A run ends FINISHED; FAILED on an error, with its reason as the
``failure_reason`` tag; KILLED on Ctrl-C or SIGTERM (also where the signal's
exception was dropped or surfaced as another error, see ``signals``) or with
an error's own ``run_status`` (a cancelled cluster job, a pruned trial).

What if the process cannot close its run? Killed outright, it leaves the
liveness tags and heartbeat that let the next process close it
(``liveness``). With a store that stops accepting writes, the final state is
kept locally and written later (``pending``), and the user gets one line.

In a sweep run in one process, a job's run can be finished in a thread
(``TrackedRun.finish_in_background``): its test set and records are done
while the next job trains, and the thread closes the run as above.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Iterator, Mapping

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient, fluent
from sqlalchemy.exc import SQLAlchemyError

from mnist_runner import signals
from mnist_runner.redaction import redact
from mnist_runner.tracking import liveness, pending, run_state
from mnist_runner.tracking.store import StoreWriteError, store_errors, store_problem

log = logging.getLogger(__name__)
STORE_ERRORS = (MlflowException, SQLAlchemyError)
KILLED = RunStatus.to_string(RunStatus.KILLED)


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
    description: str | None = None,
    system_metrics_interval: float | None = None,
) -> Iterator[TrackedRun]:
    """One MLflow run, always closed (see above). In a sweep it is a child of
    the sweep's parent run; ``resume_run_id`` reopens an interrupted run.
    ``description`` shows at the top of the run's page; with
    ``system_metrics_interval`` MLflow samples CPU, memory (and GPUs) every
    that many seconds as ``system/*`` metrics."""
    uri = mlflow.get_tracking_uri()
    all_tags = {**tags, **liveness.process_tags()}
    if system_metrics_interval:
        mlflow.set_system_metrics_sampling_interval(system_metrics_interval)
    # A stop signal while the run starts is noted and raised once it has
    # started (see signals): a run stopped then is closed KILLED, not lost.
    with store_errors(uri, "tracking.uri"), signals.stops_deferred():
        if resume_run_id:
            client = MlflowClient()
            if "failure_reason" in client.get_run(resume_run_id).data.tags:
                client.delete_tag(resume_run_id, "failure_reason")
            run = mlflow.start_run(
                run_id=resume_run_id, tags=all_tags, log_system_metrics=bool(system_metrics_interval)
            )
        else:
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=run_name,
                parent_run_id=parent_run_id,
                tags=all_tags,
                description=description,
                log_system_metrics=bool(system_metrics_interval),
            )
    heartbeat = liveness.Heartbeat(uri, run.info.run_id).start()
    tracked = TrackedRun(run, uri, heartbeat)
    status, reason, cause = "FINISHED", None, None
    try:
        yield tracked
        if not tracked.handed_over:
            signals.raise_if_pending()  # a stop signal whose exception Python dropped
    except BaseException as error:
        if tracked.handed_over:  # its thread closes the run; the stop is this process's
            raise
        # A stop signal is the reason, whatever error it surfaced as.
        cause = signals.take_pending_stop() or error
        status, reason = final_state(cause)
        if status == KILLED:
            cause.run_id = run.info.run_id  # what `resume=` needs, for the message the user sees
        if cause is not error:
            raise cause from error
        raise
    finally:
        if not tracked.handed_over:
            heartbeat.stop()
            close(uri, run.info.run_id, status, reason, cause)


class TrackedRun:
    """What ``tracked_run`` yields: the MLflow run (its ``info``, ``data``),
    which the caller may hand to a thread to finish."""

    def __init__(self, active: mlflow.ActiveRun, uri: str, heartbeat: liveness.Heartbeat):
        self.active, self.uri, self.heartbeat = active, uri, heartbeat
        self.handed_over = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.active, name)

    def finish_in_background(self, work: Callable[[Pace], Any], then: Callable[[Any], None]) -> None:
        """Let a thread finish the run while this one goes on (a sweep's next
        job): ``work(pace)`` runs there with the run active (see ``Pace`` for
        how it keeps out of the next job's way); the thread then closes the
        run as ``tracked_run`` would, FINISHED, or FAILED with its error as
        the reason, and after a FINISHED one calls ``then(what work
        returned)``. Its heartbeat beats until then. One run is finished at
        a time: an earlier one is waited for first.

        A stop signal noted during training ends the run here instead, KILLED
        as usual; one that comes later stops this thread only: the thread
        finishes the run, whose training was complete, and whoever ends the
        sweep waits for it (``wait_for_finishing``)."""
        global _finishing
        signals.raise_if_pending()
        wait_for_finishing()
        # MLflow keeps the active runs in a stack per thread and has no public
        # call that takes a run off it but ``end_run``, which would close it:
        # the run moves from this thread's stack to the finishing thread's.
        stack = fluent._active_run_stack.get()
        if not stack or stack[-1].info.run_id != self.info.run_id:
            raise RuntimeError(f"run {self.info.run_id} is not this thread's active MLflow run")
        stack.pop()
        self.handed_over = True
        _finishing = Finishing(self, work, then)


class Pace:
    """How the work of a run finished in a thread keeps out of the next job's
    way; for a run finished in place, both calls return at once."""

    def model_done(self) -> None:
        """The model is no longer run: the next job may reset and seed the
        backend's session (it waits for this: ``wait_for_finishing(released_only=True)``)."""

    def wait_to_write(self) -> None:
        """Returns once the next job trains (``next_job_trains``) or the sweep
        ends: the drawing and writing hold Python's interpreter lock, as the
        next job's set-up does, so they are done beside its training."""


IN_PLACE = Pace()  # a run finished where it trained


class Finishing(Pace):
    """A run being finished in a thread (``TrackedRun.finish_in_background``).
    Not a daemon thread: a process that exits without waiting for it still
    lets it close the run."""

    def __init__(self, tracked: TrackedRun, work: Callable[[Pace], Any], then: Callable[[Any], None]):
        self.run_id = tracked.info.run_id
        self.released, self.may_write = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=self._finish, args=(tracked, work, then), name=f"finishing-{self.run_id[:8]}"
        )
        self.thread.start()

    def model_done(self) -> None:
        self.released.set()

    def wait_to_write(self) -> None:
        self.may_write.wait()

    def _finish(self, tracked: TrackedRun, work: Callable[[Pace], Any], then: Callable[[Any], None]) -> None:
        fluent._active_run_stack.get().append(tracked.active)  # this thread's stack (see above)
        status, reason, cause, result = "FINISHED", None, None, None
        try:
            result = work(self)
        except BaseException as error:
            status, reason = final_state(error)
            cause = error
            log.error("run %s failed while its results were recorded: %s", self.run_id, error, exc_info=True)
        finally:
            self.released.set()
            tracked.heartbeat.stop()
        try:
            close(tracked.uri, self.run_id, status, reason, cause)
        except StoreWriteError as error:
            log.error("%s", error)
            return
        if status == "FINISHED":
            try:
                then(result)
            except Exception as error:  # the run stands as closed; what is left over is said
                log.error("run %s finished, but what follows it failed: %s", self.run_id, error, exc_info=True)


_finishing: Finishing | None = None


def next_job_trains() -> None:
    """Called as the next job's training runs: the run being finished, if
    any, may draw and write now (``Pace.wait_to_write``)."""
    if _finishing is not None:
        _finishing.may_write.set()


def wait_for_finishing(released_only: bool = False) -> None:
    """Wait for the run this process is finishing in a thread, if any: until
    it is closed, or with ``released_only`` until it has released what the
    next job resets. A stop signal interrupts the wait."""
    global _finishing
    finishing = _finishing
    if finishing is None:
        return
    if released_only:
        finishing.released.wait()
        return
    finishing.may_write.set()
    finishing.thread.join()
    _finishing = None


def final_state(error: BaseException) -> tuple[str, str]:
    """The status a run ends with on ``error``, and its reason."""
    if isinstance(error, KeyboardInterrupt):
        return KILLED, "interrupted"
    if isinstance(error, STORE_ERRORS):
        return "FAILED", f"the tracking store failed: {store_problem(error)}"
    return getattr(error, "run_status", "FAILED"), f"{type(error).__name__}: {error}"[:5000]


def close(uri: str, run_id: str, status: str, reason: str | None, cause: BaseException | None) -> None:
    """End the active run; where the store cannot be written, keep its final
    state locally and say so in one line (``StoreWriteError``)."""
    tag_failed = ended_failed = None
    try:
        if reason:
            mlflow.set_tag("failure_reason", reason)
    except STORE_ERRORS as error:
        tag_failed = error
    try:
        mlflow.end_run(status)  # takes the run off MLflow's stack first, then writes
        if status == "FINISHED":  # taken for dead meanwhile (a store cut off for minutes): it was not
            run_state.drop_reaped_reason(MlflowClient(), run_id)
    except STORE_ERRORS as error:
        ended_failed = error
    if tag_failed is not None and ended_failed is None:
        with contextlib.suppress(*STORE_ERRORS):  # the store is back: the reason too
            MlflowClient().set_tag(run_id, "failure_reason", reason)
    if ended_failed is None and not isinstance(cause, STORE_ERRORS):
        return
    problem = store_problem(ended_failed or cause)
    if ended_failed is None:  # the store failed during the run, then recovered
        note = f"the run is {status}"
    else:
        kept = pending.keep(uri, run_id, status, reason)
        note = (
            f"the run's final state ({status}) is kept in {kept} and written when the store can be written again"
            if kept
            else f"the run's final state ({status}) could not be kept either; it will show as RUNNING"
        )
    message = f"tracking.uri={redact(uri)}: the store stopped accepting writes ({problem}); {note}"
    if cause is not None and not isinstance(cause, STORE_ERRORS):
        log.error("%s", message)  # the run's own error or interruption is what the user sees
        return
    raise StoreWriteError(message) from (cause or ended_failed)
