"""Train, evaluate and track one image classifier: ``python run.py model=cnn``.

Hydra composes the config from conf/ (and a preset from experiments/) and the
command line; ``mnist_runner.experiment.run_experiment`` does the work.
TensorFlow is imported only inside ``main``, so ``--help`` and ``--cfg`` are fast.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mnist_runner import config

config.register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from mnist_runner.experiment import run_experiment

    result = run_experiment(cfg, overrides=list(HydraConfig.get().overrides.task))
    # What a Hydra sweeper would optimise.
    return result.metrics["best_val_accuracy"]


if __name__ == "__main__":
    main()
