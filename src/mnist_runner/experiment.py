"""One run, start to end, in the order the data flows:
config -> data -> split -> preprocessing -> model -> training -> test -> MLflow.

Everything that can fail on bad config or data (validation, loading,
splitting, building the model) happens before the MLflow run starts, so a
typo leaves no run behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import pandas as pd
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from omegaconf import DictConfig, OmegaConf

from mnist_runner import checkpoints, config, schema, tracking
from mnist_runner.datasets import load_dataset
from mnist_runner.models import build_model
from mnist_runner.preprocess import fit_preprocessing
from mnist_runner.splits import holdout, stratified_subset
from mnist_runner.sweep import SweepInfo
from mnist_runner.training import compile_model, evaluate_test_set, fit, history_frame, summarize_history

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    history: pd.DataFrame


def run_experiment(
    cfg: DictConfig,
    overrides: Sequence[str] = (),
    sweep: SweepInfo | None = None,
    resume_run_id: str | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> RunResult:
    """Train and test the configured model; record everything in one MLflow run
    (a child of the sweep's parent run when ``sweep`` is given). With
    ``resume_run_id``, continue that interrupted run from its last checkpoint.
    ``extra_callbacks`` are added to Keras' ``fit`` (e.g. a benchmark's clock)."""
    schema.validate(cfg)
    data, trainer, track = cfg.data, cfg.trainer, cfg.tracking
    shown_overrides = " ".join(tracking.redact_override(o) for o in overrides)
    log.info("config (overrides: %s):\n%s", shown_overrides or "none", config.summary(cfg))
    experiment_id = tracking.connect(track.uri, track.experiment, track.artifact_location)
    # .get: a resumed run logged before these options existed goes on as it ran
    # (its checkpoint keeps how it was compiled).
    prepare_session(trainer.seed, trainer.deterministic, trainer.get("precision", "float32"))
    eval_batch_size = trainer.get("eval_batch_size", trainer.batch_size)

    dataset = load_dataset(data.name, data.path)
    x, y = dataset.x_train, dataset.y_train
    if data.train_samples is not None:
        x, y = stratified_subset(x, y, data.train_samples, trainer.seed)
    x_train, y_train, x_val, y_val = holdout(x, y, trainer.validation_split)
    rescale = fit_preprocessing(cfg.preprocess.name, x_train, dataset.pixel_max)
    if resume_run_id:
        model, initial_epoch = checkpoints.load_checkpoint(checkpoint_folder(cfg, resume_run_id), resume_run_id)
    else:
        model = build_model(OmegaConf.to_container(cfg.model, resolve=True), dataset.image_shape,
                            dataset.num_classes, rescale)
        compile_model(model, trainer.optimizer, trainer.learning_rate, trainer.steps_per_execution,
                      trainer.jit_compile)
        initial_epoch = 0

    tags = {
        "model": cfg.model.name,
        "data": dataset.name,
        "data_source": dataset.source,
        "data_checksum": dataset.checksum,
        **tracking.git_tags(),
        **tracking.environment_tags(),
    }
    if resume_run_id:
        tags["resumed_from_epoch"] = str(initial_epoch)
    else:
        tags["overrides"] = shown_overrides
        if sweep:
            tags["sweep_id"] = sweep.sweep_id
    run_name = track.run_name or f"{cfg.model.name}-{dataset.name}"
    parent_run_id = sweep.parent_run_id if sweep else None
    with tracking.tracked_run(experiment_id, run_name, tags, parent_run_id, resume_run_id) as run:
        run_id = run.info.run_id
        if not resume_run_id:
            tracking.log_config(OmegaConf.to_container(cfg, resolve=True), config.flatten(cfg), list(overrides))
            tracking.log_derived(
                {
                    "derived.train_samples": len(y_train),
                    "derived.validation_samples": len(y_val),
                    "derived.test_samples": len(dataset.y_test),
                    "derived.preprocess_scale": rescale.scale,
                    "derived.preprocess_offset": rescale.offset,
                    "derived.parameters": model.count_params(),
                }
            )
        earlier = tracking.epoch_history(run_id, initial_epoch) if initial_epoch else None
        callbacks = [tracking.EpochLogger(), *search_callbacks(cfg), *extra_callbacks]
        if trainer.checkpoint_dir:
            callbacks.append(checkpoints.EpochCheckpoint(checkpoint_folder(cfg, run_id)))
        try:
            fitted = fit(
                model,
                (x_train, y_train),
                (x_val, y_val),
                num_classes=dataset.num_classes,
                epochs=trainer.epochs,
                batch_size=trainer.batch_size,
                eval_batch_size=eval_batch_size,
                seed=trainer.seed,
                train_eval_samples=trainer.train_eval_samples,
                early_stopping=trainer.early_stopping,
                patience=trainer.patience,
                callbacks=callbacks,
                initial_epoch=initial_epoch,
            )
        except BaseException:
            # Interrupted or diverged: keep the epochs that did complete.
            completed = getattr(getattr(model, "history", None), "history", None)
            if completed:
                tracking.log_history(joined(earlier, history_frame(completed, first_epoch=initial_epoch + 1)))
            raise
        history = joined(earlier, fitted.history)
        tracking.log_history(history)
        test, predicted = evaluate_test_set(model, dataset.x_test, dataset.y_test, dataset.num_classes,
                                            eval_batch_size)
        metrics = {
            **test,
            **summarize_history(history),
            "fit_seconds": fitted.seconds,
        }
        tracking.log_test_results(metrics, dataset.y_test, predicted, dataset.num_classes)
        if track.log_model:
            tracking.log_model(model, dataset.x_test[:5])
    if trainer.checkpoint_dir:
        checkpoints.remove(checkpoint_folder(cfg, run_id))

    log.info(
        "test_accuracy=%.4f  final_overfit_gap=%+.4f  best val_accuracy=%.4f at epoch %d  (%.1f s training)",
        metrics["test_accuracy"], metrics["final_overfit_gap"], metrics["best_val_accuracy"],
        metrics["best_epoch"], fitted.seconds,
    )
    log.info("MLflow run %s (experiment %r); open it: %s", run_id, track.experiment,
             tracking.ui_hint(track.uri, experiment_id, run_id))
    return RunResult(run_id=run_id, experiment_id=experiment_id, metrics=metrics, history=history)


def checkpoint_folder(cfg: DictConfig, run_id: str) -> Path:
    return Path(cfg.trainer.checkpoint_dir) / run_id


def joined(earlier: pd.DataFrame | None, later: pd.DataFrame) -> pd.DataFrame:
    """The history of a resumed run: epochs from before the interruption, then the new ones."""
    return later if earlier is None else pd.concat([earlier, later], ignore_index=True)


def search_callbacks(cfg: DictConfig) -> list[keras.callbacks.Callback]:
    """A trial of a pruning hyperparameter search reports its epochs to Optuna
    (``search.*`` is set by the search sweeper)."""
    if "search" not in cfg or cfg.search.warmup_epochs is None:
        return []
    from mnist_runner.pruning import PruningReporter
    from mnist_runner.search import median_pruner

    trial = cfg.search
    return [PruningReporter(trial.storage, trial.study_name, trial.trial_number, median_pruner(trial.warmup_epochs))]


_sessions_prepared = 0  # in this process: an in-process sweep or a notebook runs several jobs


def prepare_session(seed: int, deterministic: bool, precision: str = "float32") -> None:
    """A fresh Keras state seeded for this run: a job of a sweep run in the same
    process gives the numbers it gives alone. The dtype policy is set every
    time, float32 included, since it is global and would otherwise leak from a
    ``mixed_bfloat16`` job into the next. With ``deterministic``, also
    TensorFlow's op determinism."""
    global _sessions_prepared
    # Garbage collection frees an earlier job's models and graphs; it takes
    # ~0.2 s, so the first job of a process, with nothing to free, skips it.
    keras.backend.clear_session(free_memory=_sessions_prepared > 0)
    _sessions_prepared += 1
    forget_traced_gradients()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def forget_traced_gradients() -> None:
    """Let earlier jobs' training graphs go (an in-process sweep grew ~10-18 MB per job).

    Keras' TensorFlow optimizer sums gradients with a replica-context
    all-reduce that is a ``tf.custom_gradient``; in graph mode each trace
    registers its gradient function under a new name in TensorFlow's global
    gradient registry, and that entry keeps the whole traced train step alive
    for the life of the process. The registry is read only while a graph is
    being differentiated, which happens while tracing, so between jobs the
    entries can go. The registry is private to TensorFlow: if it changes, this
    does nothing.
    """
    registry = getattr(getattr(tf_ops, "gradient_registry", None), "_registry", None)
    if isinstance(registry, dict):
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]
