"""Every job's config of a grid sweep, composed once, before any job runs.

The sweep callback composes every job up front: to refuse a bad value
before anything trains, and to know each job by its config
(``continuation.job_key``). Hydra's launcher would then compose each job
again as it starts it (``load_sweep_config``): ~0.1 s of Python a job on
2 CPU cores, spent while the previous job's model is being tested in a
thread beside it (``TrackedRun.finish_in_background``), and slowing it.

``compose_job`` composes a job exactly as Hydra's launcher does (the sweep's
own config and Hydra overrides, then the job's) and keeps the result;
``Precomposed``, which the grid sweeper gives to a launcher that runs its
jobs in this process, hands each job its kept config instead of composing
it again. ``files_read_once``: while the jobs are composed, each config
file is read and parsed once for all of them, where Hydra reads them all
again for every composition.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

# A job's overrides -> its whole config (Hydra's node included), until launched.
_kept: dict[tuple[str, ...], DictConfig] = {}


def compose_job(sweep_config: DictConfig, job: Sequence[str]) -> DictConfig:
    """The config the job will run with (without Hydra's node), composed as
    Hydra's launcher composes it; the whole config is kept for the launch."""
    loader = GlobalHydra.instance().config_loader()
    whole = loader.load_sweep_config(sweep_config, list(job))
    _kept[tuple(job)] = whole
    # What Hydra's run_job gives the task: a copy without the hydra node.
    task = copy.deepcopy(whole)
    with open_dict(task):
        del task["hydra"]
    return task


def forget() -> None:
    """Drop the configs of jobs that were not launched in this process (a worker launcher's)."""
    _kept.clear()


class Precomposed:
    """A config loader for a launcher: a job the sweep callback composed gets
    the config it was composed with; anything else goes to Hydra's loader."""

    def __init__(self, loader: Any):
        self._loader = loader

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        whole = _kept.pop(tuple(sweep_overrides), None)
        if whole is None:
            return self._loader.load_sweep_config(master_config, sweep_overrides)
        # As Hydra's loader does at launch: values resolved once for the
        # sweep (the ``${now:...}`` of its folder) are the job's too.
        OmegaConf.copy_cache(from_config=master_config, to_config=whole)
        return whole

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_loader":  # copying: not set yet
            raise AttributeError(name)
        return getattr(self._loader, name)


class _ReadOnce:
    """Hydra's config repository, each file loaded once; every use gets its
    own copy (Hydra changes what it loads while composing).

    Hydra deep-copies the whole repository at the start of every composition
    (``CachingConfigRepository``), ~0.04 s, so that a ``hydra.searchpath``
    can change that composition's sources alone. A copy of this one shares
    the repository and the files read until it is given other sources; then
    it takes its own copy, as Hydra's did, and reads its own files.
    """

    def __init__(self, repository: Any, loaded: dict[str, Any] | None = None):
        self._repository = repository
        self._loaded: dict[str, Any] = {} if loaded is None else loaded
        self._shared = loaded is not None

    def __deepcopy__(self, memo: dict) -> _ReadOnce:
        return _ReadOnce(self._repository, self._loaded)

    def load_config(self, config_path: str) -> Any:
        if config_path not in self._loaded:
            self._loaded[config_path] = self._repository.load_config(config_path=config_path)
        return copy.deepcopy(self._loaded[config_path])

    def initialize_sources(self, config_search_path: Any) -> None:
        if self._shared:
            self._repository, self._shared = copy.deepcopy(self._repository), False
        self._loaded = {}  # other sources: other files
        self._repository.initialize_sources(config_search_path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_repository", "_loaded", "_shared"):  # not set yet
            raise AttributeError(name)
        return getattr(self._repository, name)


@contextmanager
def files_read_once() -> Iterator[None]:
    """Within: Hydra's compositions read each config file once. Only while
    the files cannot change (one sweep's start): Hydra offers no cache of its own."""
    loader = GlobalHydra.instance().config_loader()
    repository = loader.repository
    loader.repository = _ReadOnce(repository)  # type: ignore[assignment]
    try:
        yield
    finally:
        loader.repository = repository
