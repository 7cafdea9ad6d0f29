"""One run, start to end, in the order the data flows:
config -> data -> split -> preprocessing -> model -> training -> test -> MLflow.

Everything that can fail on bad config or data (validation, loading,
splitting, building the model) happens before the MLflow run starts, so a
typo leaves no run behind. What is specific to a sweep or a search (the
parent run, pruning) is handed in by the caller; this module knows nothing
of either.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mnist_runner import signals
from mnist_runner.config import backend, params, schema
from mnist_runner.datasets.catalog import class_names
from mnist_runner.datasets.loader import Dataset, load_dataset
from mnist_runner.paths import DATA_CACHE_DIR
from mnist_runner.pipeline import checkpoints
from mnist_runner.pipeline.checkpoint_callback import EpochCheckpoint
from mnist_runner.pipeline.model_card import model_card
from mnist_runner.pipeline.models import build_model
from mnist_runner.pipeline.places import open_run_places
from mnist_runner.pipeline.preprocess import fit_preprocessing
from mnist_runner.pipeline.resume import Resume, checkpoint_folder
from mnist_runner.pipeline.session import prepare_session
from mnist_runner.pipeline.splits import Split, split_training_data
from mnist_runner.pipeline.training import (
    TestResults,
    compile_model,
    fit,
    history_frame,
    predict_test_set,
    stretch_schedule,
    summarize_history,
)
from mnist_runner.redaction import redact_override
from mnist_runner.tracking import learning_figures, links, provenance, records
from mnist_runner.tracking.epoch_logger import EpochLogger
from mnist_runner.tracking.runs import IN_PLACE, Pace, next_job_trains, tracked_run, wait_for_finishing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float] | None  # None: the run is being finished in a thread
    history: pd.DataFrame


def run_experiment(
    cfg: DictConfig,
    *,
    overrides: Sequence[str] = (),
    resume: Resume | None = None,
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    experiment_id: str | None = None,
    finish_in_background: bool = False,
) -> RunResult:
    """Train and test the configured model; record everything in one MLflow run.

    ``resume`` continues an interrupted run from its checkpoint (see
    ``resume.plan_resume``); ``parent_run_id`` makes the run a child of a
    sweep's parent run; ``extra_tags`` and ``callbacks`` (added to Keras'
    ``fit``: a search's pruning, a benchmark's clock) come from the caller.
    ``experiment_id``: the caller has opened the run's places already
    (``places.open_run_places``, as run.py does before Keras loads).
    ``finish_in_background``: once trained, the run is tested, recorded and
    closed in a thread (``TrackedRun.finish_in_background``) and this returns
    at once, without metrics: a sweep's next job trains meanwhile.
    """
    schema.validate(cfg)
    data, trainer, track = cfg.data, cfg.trainer, cfg.tracking
    shown_overrides = " ".join(redact_override(o) for o in overrides)
    log.info("config (overrides: %s):\n%s", shown_overrides or "none", params.summary(cfg))
    if experiment_id is None:
        experiment_id = open_run_places(cfg)
    # The data first: plain NumPy (the subset has its own seeded generator),
    # done while an earlier sweep job, if one is being finished, still runs its model.
    dataset = load_dataset(data.name, data.path, DATA_CACHE_DIR)
    split = split_training_data(dataset, data.train_samples, trainer.validation_split, trainer.seed)
    rescale = fit_preprocessing(cfg.preprocess.name, split.x_train, dataset.pixel_max)
    # The session is reset and seeded only once that model no longer runs.
    wait_for_finishing(released_only=True)
    # .get: a resumed run logged before these options existed goes on as it ran
    # (its checkpoint keeps how it was compiled).
    prepare_session(trainer.seed, trainer.deterministic, trainer.get("precision", "float32"), backend.of_config(cfg))
    # .get: configs composed before the option existed (tests' own).
    lr_schedule = trainer.get("lr_schedule", "constant")
    total_steps = trainer.epochs * math.ceil(len(split.y_train) / trainer.batch_size)
    if resume and resume.checkpoint:
        model, initial_epoch = resume.load_model(), resume.epochs_done
        stretch_schedule(model, lr_schedule, trainer.learning_rate, total_steps)
    else:
        model = build_model(
            OmegaConf.to_container(cfg.model, resolve=True), dataset.image_shape, dataset.num_classes, rescale
        )
        compile_model(
            model,
            trainer.optimizer,
            trainer.learning_rate,
            trainer.steps_per_execution,
            trainer.jit_compile,
            lr_schedule=lr_schedule,
            total_steps=total_steps,
        )
        initial_epoch = 0

    tags = run_tags(cfg, dataset, shown_overrides, resume, extra_tags or {})
    run_name = track.run_name or f"{cfg.model.name}-{dataset.name}"
    inputs = records.dataset_inputs(dataset.name, dataset.checksum, dataset.source, split_digests(cfg, split))
    with tracked_run(
        experiment_id,
        run_name,
        tags,
        parent_run_id,
        resume.run_id if resume else None,
        description=track.get("description"),
        # .get: a resumed run logged before these options existed.
        system_metrics_interval=track.system_metrics_interval if track.get("system_metrics") else None,
    ) as run:
        run_id = run.info.run_id
        # A stop signal now waits until the config is logged: every run that
        # is stopped can be resumed.
        with signals.stops_deferred():
            if resume:
                records.log_epochs(resume.unlogged_history())
            else:
                records.log_config(OmegaConf.to_container(cfg, resolve=True), params.flatten(cfg), list(overrides))
                records.log_derived(derived_params(split, dataset, rescale, model))
                records.log_datasets(inputs)
            log.info("MLflow run %s %s (experiment %r)", run_id, "resumed" if resume else "started", track.experiment)
        signals.raise_if_pending()

        folder = checkpoint_folder(cfg, run_id)
        history, seconds = train(cfg, model, split, dataset.num_classes, folder, resume, initial_epoch, callbacks)
        if finish_in_background:
            run.finish_in_background(
                lambda pace: test_and_record(cfg, model, dataset, split, history, seconds, inputs["test"], pace),
                lambda metrics: finished(RunResult(run_id, experiment_id, metrics, history), folder, track),
            )
            return RunResult(run_id, experiment_id, None, history)
        metrics = test_and_record(cfg, model, dataset, split, history, seconds, inputs["test"])
    return finished(RunResult(run_id, experiment_id, metrics, history), folder, track)


def finished(result: RunResult, folder: Path | None, track: DictConfig) -> RunResult:
    """After the run closed FINISHED: its checkpoints are no longer needed, and the console gets its result."""
    if folder:
        checkpoints.remove(folder)
    log.info("%s", summary_line(result, track))
    return result


def train(
    cfg: DictConfig,
    model: keras.Model,
    split: Split,
    num_classes: int,
    folder: Path | None,
    resume: Resume | None,
    initial_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback],
) -> tuple[pd.DataFrame, float]:
    """Fit the model, checkpointing and logging every epoch; the whole history
    (a resumed run's earlier epochs first) and the seconds it trained."""
    trainer = cfg.trainer
    earlier = resume.history if resume else None
    # The checkpoint before the logger: a resume can then log an epoch
    # whose logging was cut short, and never logs one twice.
    done_rows = resume.checkpoint.history if resume and resume.checkpoint else []
    all_callbacks = [EpochCheckpoint(folder, done_rows)] if folder else []
    # An earlier sweep job's run, finished in a thread, draws and writes once
    # this training is under way (its first steps traced and run), not during
    # the set-up or tracing, which hold Python's interpreter lock as drawing does.
    trains = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: next_job_trains())
    all_callbacks += [EpochLogger(), trains, *callbacks]
    try:
        fitted = fit(
            model,
            (split.x_train, split.y_train),
            (split.x_val, split.y_val),
            num_classes=num_classes,
            epochs=trainer.epochs,
            batch_size=trainer.batch_size,
            eval_batch_size=trainer.get("eval_batch_size", trainer.batch_size),
            seed=trainer.seed,
            train_eval_samples=trainer.train_eval_samples,
            early_stopping=trainer.early_stopping,
            patience=trainer.patience,
            callbacks=all_callbacks,
            initial_epoch=initial_epoch,
        )
    except BaseException:
        # Interrupted or diverged: keep the epochs that did complete, if the store still takes them.
        completed = getattr(getattr(model, "history", None), "history", None)
        if completed:
            records.keep_history(joined(earlier, history_frame(completed, first_epoch=initial_epoch + 1)))
        raise
    return joined(earlier, fitted.history), fitted.seconds


def test_and_record(
    cfg: DictConfig,
    model: keras.Model,
    dataset: Dataset,
    split: Split,
    history: pd.DataFrame,
    seconds: float,
    test_input,
    pace: Pace = IN_PLACE,
) -> dict[str, float]:
    """Score the test set and record the results: the history, the model with
    its card and summary, the final metrics (the test ones linked to the
    model and the test data) and the confusion matrix. ``pace``: in a run
    finished in a thread, when the model is done and when to draw and write
    (``TrackedRun.finish_in_background``)."""
    trainer, track = cfg.trainer, cfg.tracking
    # Shaped as the data set's images whatever the model does with them (a dense model flattens).
    images = np.reshape(dataset.x_test, (-1, *dataset.image_shape))

    eval_batch_size = trainer.get("eval_batch_size", trainer.batch_size)

    def run_model() -> tuple[TestResults, learning_figures.ConvView | None]:
        tested = predict_test_set(model, dataset.x_test, dataset.y_test, dataset.num_classes, eval_batch_size)
        conv = learning_figures.first_conv_view(model, images, dataset.y_test)
        if not track.log_model:  # the last use of the model
            pace.model_done()
        return tested, conv

    # The model runs in a thread while the history is logged: the backend
    # computes outside Python's interpreter lock.
    with ThreadPoolExecutor(1, thread_name_prefix="test-set") as pool:
        running = pool.submit(run_model)
        pace.wait_to_write()
        records.log_history(history)
        tested, conv = running.result()
    names = class_names(dataset.name, dataset.num_classes)
    per_class = learning_figures.class_accuracy(dataset.y_test, tested.predicted, names)
    metrics = {
        **tested.metrics,
        **records.class_metrics(per_class),
        **summarize_history(history),
        "fit_seconds": seconds,
    }
    card = model_card(cfg, dataset, split, metrics, model, per_class)
    # The model first, so that its test metrics and data set can be linked to it.
    model_id = records.log_model(model, dataset.x_test[:5], card, tested.probabilities[:5]) if track.log_model else None
    pace.model_done()  # the model's layer table below reads no tensor
    summary = records.model_summary(model)
    records.log_model_description(summary, card)
    records.log_test_results(
        metrics, dataset.y_test, tested.predicted, dataset.num_classes, model_id=model_id, test_input=test_input
    )
    records.log_learning_pictures(
        (images, dataset.y_test), dataset.pixel_max, tested.predicted, tested.probabilities, names, conv
    )
    return metrics


def summary_line(result: RunResult, track: DictConfig) -> str:
    """The result of a run in two lines, for the console (run.py, train())."""
    metrics = result.metrics
    return (
        f"test_accuracy={metrics['test_accuracy']:.4f}  final_overfit_gap={metrics['final_overfit_gap']:+.4f}  "
        f"best val_accuracy={metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}  "
        f"({metrics['fit_seconds']:.1f} s training)\n"
        f"MLflow run {result.run_id} (experiment {track.experiment!r}); open it: "
        f"{links.ui_hint(track.uri, result.experiment_id, result.run_id)}"
    )


def split_digests(cfg: DictConfig, split: Split) -> dict[str, str]:
    """What makes each part of the data what it is, for its MLflow dataset digest:
    the training subset and hold-out depend on these settings; the test set does not."""
    data, trainer = cfg.data, cfg.trainer
    chosen = f"samples={data.train_samples}:validation={trainer.validation_split}:seed={trainer.seed}"
    return {
        "train": f"{chosen}:train:{len(split.y_train)}",
        "validation": f"{chosen}:validation:{len(split.y_val)}",
        "test": "test",
    }


def run_tags(
    cfg: DictConfig, dataset: Dataset, shown_overrides: str, resume: Resume | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """What the run is and where it came from; a resumed run keeps its first tags."""
    tags = {
        "model": cfg.model.name,
        "data": dataset.name,
        "data_source": dataset.source,
        "data_checksum": dataset.checksum,
        **provenance.git_tags(),
        **provenance.environment_tags(),
    }
    # The user's tags first: the runner's own keep their meaning.
    tags = {**{str(k): str(v) for k, v in cfg.tracking.get("tags", {}).items()}, **tags}
    if resume:
        return {**tags, "resumed_from_epoch": str(resume.epochs_done)}
    return {**tags, "overrides": shown_overrides, **extra}


def derived_params(split: Split, dataset: Dataset, rescale, model: keras.Model) -> dict[str, float | int]:
    """Params computed during the run, not set by the config."""
    return {
        "derived.train_samples": len(split.y_train),
        "derived.validation_samples": len(split.y_val),
        "derived.test_samples": len(dataset.y_test),
        "derived.preprocess_scale": rescale.scale,
        "derived.preprocess_offset": rescale.offset,
        "derived.parameters": model.count_params(),
    }


def joined(earlier: pd.DataFrame | None, later: pd.DataFrame) -> pd.DataFrame:
    """The history of a resumed run: epochs from before the interruption, then the new ones."""
    return later if earlier is None else pd.concat([earlier, later], ignore_index=True)
