"""Hydra wiring: the ``${project_root:}`` resolver and the config schemas
(``register``), and composing the config of ``python run.py <overrides>``
from Python (``compose_config``).

Nothing here imports TensorFlow, so ``run.py --help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_runner.config import schema
from mnist_runner.errors import UserError
from mnist_runner.paths import CONFIG_DIR, PROJECT_ROOT


def register() -> None:
    """Make the project's config pieces known to Hydra; safe to call twice.

    The ``experiment`` group needs nothing here: ``conf/experiment`` is a link
    to the top-level ``experiments/``, so Hydra reads the presets as files.
    Files cost less than ConfigStore entries, which Hydra deep-copies for
    every group that ``--help`` lists.
    """
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    schema.register_schemas()


def list_groups_once() -> None:
    """Make ``run.py --help`` fast: it lists every config group, and Hydra 1.3
    answers each question about a group (about 115 of them) with a fresh deep
    copy of its whole config repository, 40 ms each. Within one ``--help``
    the repository does not change, so one copy answers them all. Hydra
    offers no setting for this; only ``run.py`` calls it, for ``--help``.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    if getattr(ConfigLoaderImpl.get_group_options, "lists_groups_once", False):
        return
    repos: dict = {}

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        key = (id(self), config_name, tuple(overrides or ()))
        if key not in repos:
            repos[key] = self._parse_overrides_and_create_caching_repo(config_name, list(overrides or ()))[1]
        return repos[key].get_group_options(group_name, results_filter)

    get_group_options.lists_groups_once = True
    ConfigLoaderImpl.get_group_options = get_group_options


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python run.py <overrides>`` would run, validated.

    Raises ``UserError`` naming the override on an unknown key or option, a
    bad value, or sweep syntax (``a,b``), which only ``run.py -m`` expands.
    """
    register()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    except HydraException as error:
        # Hydra's own message is on the innermost error (e.g. "Value 'abc' ...
        # could not be converted to Integer, full_key: trainer.batch_size").
        reason = error
        while reason.__cause__ is not None:
            reason = reason.__cause__
        detail = str(error) if reason is error else f"{error}: {reason}"
        raise UserError(f"overrides {list(overrides)}: {detail}") from error
    if cfg.hydra.mode == RunMode.MULTIRUN or cfg.hydra.sweeper.get("params") or _has_sweep(overrides):
        raise UserError(
            f"overrides {list(overrides)} describe a sweep; train() runs one job. "
            "Run sweeps with `python run.py -m ...`, or call train() once per value."
        )
    # What run.py's jobs see: the config without Hydra's own node (the typed
    # schema nodes stay, so validate checks ranges as it does for run.py).
    with open_dict(cfg):
        del cfg["hydra"]
    schema.validate(cfg)
    return cfg


def _has_sweep(overrides: Sequence[str]) -> bool:
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return any(override.is_sweep_override() for override in parsed)
