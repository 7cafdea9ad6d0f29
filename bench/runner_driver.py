"""The runner's side of the measurements that ``python run.py`` cannot make:
per-epoch times, stopping at a test accuracy, memory after each job.

    python bench/runner_driver.py '["model=cnn", "trainer.epochs=3"]' '["model=dense"]' --target 0.99

Each positional argument is one job, a JSON list of overrides, composed as
``run.py`` composes them and run with ``mnist_runner.pipeline.experiment.run_experiment``
one after another in this process, as the jobs of an in-process sweep are.
Jobs train on MNIST. Prints one JSON object per job: epoch times, test
accuracy (per epoch with ``--target``), seconds to the target, and this
process's memory afterwards.
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


def run_job(overrides: list[str], target: float | None, data: Dataset) -> dict:
    with initialize_config_dir(config_dir=str(config.CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    clock = EpochClock(data.x_test, keras.utils.to_categorical(data.y_test, data.num_classes), target)
    result = experiment.run_experiment(cfg, overrides=overrides, extra_callbacks=[clock])
    indices = np.arange(cfg.data.train_samples or len(data.y_train))
    trained = len(holdout(indices, indices, cfg.trainer.validation_split)[0])
    return {
        "overrides": overrides,
        "epochs_run": len(clock.seconds),
        "epoch_seconds": clock.seconds,
        "samples_per_second": [trained / seconds for seconds in clock.seconds],
        "test_accuracy": result.metrics["test_accuracy"],
        "test_accuracy_per_epoch": clock.test_accuracy,
        "seconds_to_target": clock.reached_at,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", nargs="+", type=json.loads, help="a JSON list of overrides per job")
    parser.add_argument("--target", type=float, help="stop a job at this test accuracy, checked after each epoch")
    args = parser.parse_args()
    config.register()
    data = load_dataset("mnist")  # the test set for --target; the jobs load their own data
    for overrides in args.jobs:
        print(json.dumps(run_job(overrides, args.target, data)), flush=True)


if __name__ == "__main__":
    main()
