"""The runner's side of the measurements that ``python run.py`` cannot make:
per-epoch times, stopping at an accuracy, memory after each job.

    python bench/runner_driver.py '["model=cnn", "trainer.epochs=3"]' '["model=dense"]' --target 0.99
    python bench/runner_driver.py '["experiment=fast_convnet"]' --target 0.99 --monitor val

Each positional argument is one job, a JSON list of overrides, composed as
``run.py`` composes them and run with ``mnist_runner.pipeline.experiment.run_experiment``
one after another in this process, as the jobs of an in-process sweep are.
Jobs train on MNIST. Prints one JSON object per job: epoch times, accuracy
per epoch (with ``--target``), seconds to the target, and this process's
memory afterwards.

The clock (reference_keras.EpochClock) is the last callback of the run: the
epoch's checkpoint and its MLflow logging come before it, so they are inside
the epoch's time; ``checkpoint_in_clock`` says, per epoch, whether that
epoch's checkpoint file existed when the clock stopped. With ``--monitor
val`` the target is on validation accuracy and the test set is not looked
at: no test figure is printed.
"""

import argparse
import json
import resource
import sys
from pathlib import Path

import keras
import numpy as np
import psutil
from hydra import compose, initialize_config_dir

from mnist_runner.config import compose as config
from mnist_runner.datasets.loader import Dataset, load_dataset
from mnist_runner.pipeline import experiment
from mnist_runner.pipeline.splits import holdout

sys.path.insert(0, str(Path(__file__).parent))
from reference_keras import EpochClock  # noqa: E402  the same clock on both sides


class RunnerClock(EpochClock):
    """EpochClock that also notes whether the epoch's checkpoint was written before the clock stopped."""

    def __init__(self, *args, checkpoint_dir: str | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpointed: list[bool] = []

    def at_epoch_end(self, epoch: int) -> None:
        if self.checkpoint_dir:  # <checkpoint_dir>/<run id>/epoch-N.keras
            self.checkpointed.append(any(self.checkpoint_dir.glob(f"*/epoch-{epoch + 1}.keras")))


def run_job(overrides: list[str], target: float | None, monitor: str, data: Dataset) -> dict:
    with initialize_config_dir(config_dir=str(config.CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    y_test = keras.utils.to_categorical(data.y_test, data.num_classes)
    clock = RunnerClock(data.x_test, y_test, target, monitor=monitor, checkpoint_dir=cfg.trainer.checkpoint_dir)
    # The caller's callbacks come after the runner's checkpoint and MLflow logger.
    result = experiment.run_experiment(cfg, overrides=overrides, callbacks=[clock])
    indices = np.arange(cfg.data.train_samples or len(data.y_train))
    trained = len(holdout(indices, indices, cfg.trainer.validation_split)[0])
    done = {
        "overrides": overrides,
        "seed": cfg.trainer.seed,
        "epochs_run": len(clock.seconds),
        "epoch_seconds": clock.seconds,
        "samples_per_second": [trained / seconds for seconds in clock.seconds],
        "checkpoint_in_clock": clock.checkpointed,
        "seconds_to_target": clock.reached_at,
        "val_accuracy_per_epoch": [float(v) for v in result.history["val_accuracy"]],
        "fit_seconds": result.metrics["fit_seconds"],
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
    }
    if monitor == "test":
        done.update(test_accuracy=result.metrics["test_accuracy"], test_accuracy_per_epoch=clock.accuracy)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", nargs="+", type=json.loads, help="a JSON list of overrides per job")
    parser.add_argument("--target", type=float, help="stop a job at this accuracy, checked after each epoch")
    parser.add_argument(
        "--monitor", choices=("test", "val"), default="test", help="the accuracy --target applies to (default: test)"
    )
    args = parser.parse_args()
    config.register()
    data = load_dataset("mnist")  # the test set for --target; the jobs load their own data
    for overrides in args.jobs:
        print(json.dumps(run_job(overrides, args.target, args.monitor, data)), flush=True)


if __name__ == "__main__":
    main()
