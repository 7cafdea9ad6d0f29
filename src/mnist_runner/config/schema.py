"""The config schema: one dataclass per config group, registered in Hydra's
ConfigStore under ``schema/<group>`` and named in each YAML's defaults list.

Hydra and OmegaConf check types and unknown keys while composing
(``trainer.epochs=abc`` fails there); the ``__post_init__`` checks below check
ranges and choices when ``validate`` turns the config into these objects,
before any data is loaded, model built or MLflow run started. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mnist_runner.config import backend
from mnist_runner.datasets.catalog import DATASETS, DEFAULT_DATASET
from mnist_runner.errors import UserError

PREPROCESSINGS = ("scale", "standardize", "none")
MODEL_TYPES = ("dense", "cnn")
ACTIVATIONS = ("relu", "elu", "selu", "gelu", "silu", "swish", "tanh", "sigmoid", "leaky_relu", "linear")
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "nadam", "adagrad", "adadelta", "adamax")
# Keras dtype policies: computations in bfloat16 with float32 weights pay off
# only on CPUs with bfloat16 instructions (AVX-512 BF16, AMX).
PRECISIONS = ("float32", "mixed_bfloat16")
# How the learning rate moves during training: constant, or a linear warm-up
# from a tenth of it over the first quarter of the steps, then a cosine decay
# to a hundredth (a one-cycle schedule: large steps early, small ones late).
LR_SCHEDULES = ("constant", "warmup_cosine")


class ConfigError(UserError, ValueError):
    """A config value out of range or not among the allowed choices."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    require(value in choices, key, value, f"choose one of {', '.join(choices)}")


def positive_ints(key: str, values: List[int]) -> None:
    require(all(v >= 1 for v in values), key, list(values), "every size must be >= 1")


# The defaults below are the defaults: the YAML files in conf/ repeat them,
# with comments, and a test checks that the two agree. ``${project_root:}``
# resolves to the repository, so the store does not depend on the cwd.


@dataclass
class DataConfig:
    name: str = DEFAULT_DATASET
    path: Optional[str] = None
    train_samples: Optional[int] = None

    def __post_init__(self) -> None:
        one_of("data.name", self.name, tuple(DATASETS))
        if self.name == "digits":
            require(self.path is None, "data.path", self.path, "data=digits comes with scikit-learn and reads no files")
        if self.train_samples is not None:
            size = DATASETS[self.name].train_size
            require(
                10 <= self.train_samples <= size,
                "data.train_samples",
                self.train_samples,
                f"between 10 (one per class) and {size} (the {self.name} training set), or null for all",
            )


@dataclass
class PreprocessConfig:
    name: str = "scale"

    def __post_init__(self) -> None:
        one_of("preprocess.name", self.name, PREPROCESSINGS)


@dataclass
class ModelConfig:
    name: str = "model"
    type: str = "dense"
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        one_of("model.type", self.type, MODEL_TYPES)
        one_of("model.activation", self.activation, ACTIVATIONS)
        require(0 <= self.dropout < 1, "model.dropout", self.dropout, "a rate in [0, 1)")


@dataclass
class DenseConfig(ModelConfig):
    name: str = "dense"
    hidden_units: List[int] = field(default_factory=lambda: [512, 256, 128, 32])

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_ints("model.hidden_units", self.hidden_units)


@dataclass
class CnnConfig(ModelConfig):
    name: str = "cnn"
    type: str = "cnn"
    conv_filters: List[int] = field(default_factory=lambda: [32])
    kernel_size: int = 3
    pool_size: int = 2
    dense_units: List[int] = field(default_factory=lambda: [128])
    batch_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_ints("model.conv_filters", self.conv_filters)
        positive_ints("model.dense_units", self.dense_units)
        require(self.kernel_size >= 1, "model.kernel_size", self.kernel_size, "must be >= 1")
        require(self.pool_size >= 1, "model.pool_size", self.pool_size, "must be >= 1")


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 128
    validation_split: float = 0.3
    optimizer: str = "rmsprop"
    learning_rate: float = 0.001
    lr_schedule: str = "constant"
    seed: int = 42
    deterministic: bool = False
    precision: str = "float32"
    early_stopping: bool = False
    patience: int = 3
    checkpoint_dir: Optional[str] = "${project_root:}/runs/checkpoints"
    train_eval_samples: Optional[int] = 10_000
    eval_batch_size: int = 1024
    steps_per_execution: int = 32
    jit_compile: Optional[bool] = None

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "trainer.epochs", self.epochs, "must be >= 1")
        require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, "must be >= 1")
        require(self.eval_batch_size >= 1, "trainer.eval_batch_size", self.eval_batch_size, "must be >= 1")
        require(self.steps_per_execution >= 1, "trainer.steps_per_execution", self.steps_per_execution, "must be >= 1")
        require(
            0 < self.validation_split < 1,
            "trainer.validation_split",
            self.validation_split,
            "a fraction strictly between 0 and 1",
        )
        one_of("trainer.optimizer", self.optimizer, OPTIMIZERS)
        require(self.learning_rate > 0, "trainer.learning_rate", self.learning_rate, "must be > 0")
        one_of("trainer.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        require(self.seed >= 0, "trainer.seed", self.seed, "must be >= 0")
        one_of("trainer.precision", self.precision, PRECISIONS)
        require(self.patience >= 1, "trainer.patience", self.patience, "must be >= 1")
        if self.train_eval_samples is not None:
            require(
                self.train_eval_samples >= 1,
                "trainer.train_eval_samples",
                self.train_eval_samples,
                "must be >= 1, or null for all training samples",
            )


# The experiment that commands (compare, predict, register, the UI) open by
# default: the default data set's, as runs log into their data set's experiment.
DEFAULT_EXPERIMENT = DEFAULT_DATASET
# The lengths MLflow's database columns hold (SQLite does not enforce them,
# PostgreSQL and MySQL do).
MAX_EXPERIMENT_NAME = 256
MAX_RUN_NAME = 250
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 8000
RUN_ID = re.compile(r"[0-9a-f]{32}")


def within_limit(key: str, value: str, limit: int) -> None:
    if len(value) > limit:
        shown = value if len(value) <= 40 else f"{value[:37]}..."
        raise ConfigError(f"{key}={shown!r} is not allowed: {len(value)} characters; MLflow keeps at most {limit}")


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///${project_root:}/runs/mlflow.db"
    # One experiment per data set, so that runs, and the best run, are
    # compared within one data set.
    experiment: str = "${data.name}"
    artifact_location: Optional[str] = "${project_root:}/runs/mlartifacts"
    run_name: Optional[str] = None
    log_model: bool = True
    tags: Dict[str, str] = field(default_factory=dict)
    description: Optional[str] = None
    system_metrics: bool = True
    system_metrics_interval: float = 10.0

    def __post_init__(self) -> None:
        require(bool(self.experiment.strip()), "tracking.experiment", self.experiment, "must not be empty")
        within_limit("tracking.experiment", self.experiment, MAX_EXPERIMENT_NAME)
        if self.run_name is not None:
            within_limit("tracking.run_name", self.run_name, MAX_RUN_NAME)
        require(
            "://" in self.uri,
            "tracking.uri",
            self.uri,
            "a URI such as sqlite:///abs/path/mlflow.db or http://127.0.0.1:5000",
        )
        for key, value in self.tags.items():
            within_limit("tracking.tags key", str(key), MAX_TAG_KEY)
            within_limit(f"tracking.tags.{key}", str(value), MAX_TAG_VALUE)
        require(
            self.system_metrics_interval >= 1,
            "tracking.system_metrics_interval",
            self.system_metrics_interval,
            "seconds between samples, at least 1",
        )


SCHEMAS = {
    "data": {"data": DataConfig},
    "preprocess": {"preprocess": PreprocessConfig},
    "model": {"dense": DenseConfig, "cnn": CnnConfig},
    "trainer": {"trainer": TrainerConfig},
    "tracking": {"tracking": TrackingConfig},
}


def register_schemas() -> None:
    """``schema/<group>/<name>`` entries for the YAMLs' defaults lists."""
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=schema)


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check every group's ranges and choices; the groups as schema objects.

    Raises ``ConfigError`` naming the first bad key, its value and what is allowed.
    """
    require(isinstance(cfg.get("verbose", False), bool), "verbose", cfg.get("verbose"), "true or false")
    backend.check(cfg.get("backend", backend.DEFAULT))
    resume = cfg.get("resume")
    if resume is not None:
        require(
            isinstance(resume, str) and RUN_ID.fullmatch(resume) is not None,
            "resume",
            resume,
            "the id of an interrupted MLflow run (32 hex characters, printed when it started)",
        )
    return {group: OmegaConf.to_object(cfg[group]) for group in SCHEMAS}
