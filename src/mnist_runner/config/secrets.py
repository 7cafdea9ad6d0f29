"""No credential on disk in plain text, Hydra's output folder included.

Hydra saves each job's config, overrides and its own config under
``<output dir>/.hydra/`` and the sweep's under ``multirun.yaml``, and keeps a
log per job. MLflow and the console already get masked values (see
``redaction``); this callback masks the same credentials in those files,
as soon as Hydra has written them and again when the job or sweep ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_runner.redaction import scrub_file, secret_values

TEXT_SUFFIXES = {".yaml", ".yml", ".log", ".json", ".txt", ".out", ".err"}


def scrub_folder(folder: Path, secrets: set[str]) -> list[Path]:
    """Mask ``secrets`` in the text files under ``folder``; the files changed."""
    if not secrets or not folder.is_dir():
        return []
    return [
        path
        for path in folder.rglob("*")
        if path.suffix in TEXT_SUFFIXES and path.is_file() and scrub_file(path, secrets)
    ]


def config_secrets(config: DictConfig) -> set[str]:
    return secret_values(OmegaConf.to_container(config, resolve=False))


class ScrubSecrets(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        secrets = config_secrets(config)
        scrub_folder(Path(config.hydra.runtime.output_dir) / ".hydra", secrets)
        multirun = Path(config.hydra.sweep.dir) / "multirun.yaml"
        if multirun.is_file():
            scrub_file(multirun, secrets)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        scrub_folder(Path(config.hydra.runtime.output_dir), config_secrets(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        scrub_folder(Path(config.hydra.sweep.dir), config_secrets(config))
