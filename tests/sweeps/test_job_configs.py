"""A grid sweep's jobs are composed once, by the sweep callback, and a
launcher that runs them in this process is handed those configs: they must
be exactly what Hydra would have composed for each job."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from hydra_plugins.mnist_runner_grid import grid_sweeper
from mnist_runner.config.compose import register
from mnist_runner.paths import CONFIG_DIR
from mnist_runner.sweeps import callback, job_configs


@pytest.fixture
def hydra_loader():
    """Hydra's config loader, as in ``run.py -m``, and a sweep's config from it."""
    register()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()

        def sweep_config(*overrides: str):
            return loader.load_configuration("config", overrides=list(overrides), run_mode=RunMode.MULTIRUN)

        yield loader, sweep_config
    job_configs.forget()


def as_text(config) -> str:
    return OmegaConf.to_yaml(config)


def test_each_kept_config_is_what_hydras_launcher_composes(hydra_loader):
    loader, sweep_config = hydra_loader
    master = sweep_config("experiment=overfitting_gap", "trainer.epochs=1", "hydra.sweep.dir=sweeps/here")
    _, grid = callback.expand_grid(callback.sweep_overrides(master))
    # Jobs that change different keys of the same groups: a file read once
    # and shared would carry one job's values into the next.
    jobs = [*grid[:4], ["model=cnn", "model.dropout=0.5", "verbose=true"], ["model=cnn"], []]
    expected = [as_text(loader.load_sweep_config(master, job)) for job in jobs]

    configs = callback.validate_jobs(master, jobs)

    launcher_loader = job_configs.Precomposed(loader)
    handed = [launcher_loader.load_sweep_config(master, job) for job in jobs]
    assert [as_text(config) for config in handed] == expected
    # What the job's task function sees: the same, without Hydra's node.
    for config, whole in zip(configs, handed):
        assert "hydra" not in config and "hydra" in whole
        assert as_text(config) == as_text(OmegaConf.masked_copy(whole, [k for k in whole if k != "hydra"]))
    assert [(c.model.dropout, c.verbose) for c in configs[-3:]] == [(0.5, True), (0.0, False), (0.0, False)]
    assert loader.repository.__class__.__name__ == "ConfigRepository"  # Hydra's own again afterwards


class CountingLoader:
    def __init__(self):
        self.composed = []

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed.append(sweep_overrides)
        return OmegaConf.create({"composed": True})


def test_a_kept_job_is_handed_out_once_and_others_are_composed(hydra_loader):
    _, sweep_config = hydra_loader
    master = sweep_config("model=dense,cnn", "hydra.sweep.dir=sweeps/here")
    callback.validate_jobs(master, [["model=dense"]])
    counting = CountingLoader()
    loader = job_configs.Precomposed(counting)

    assert loader.load_sweep_config(master, ["model=dense"]).model.name == "dense"
    assert counting.composed == []
    assert loader.load_sweep_config(master, ["model=dense"]) == {"composed": True}  # launched again: composed
    assert loader.load_sweep_config(master, ["model=cnn"]) == {"composed": True}
    assert counting.composed == [["model=dense"], ["model=cnn"]]


@pytest.mark.parametrize(
    ("launcher", "handed_kept"), [("basic", True), ("joblib", False)], ids=["in-process", "worker-processes"]
)
def test_the_grid_sweeper_hands_kept_configs_only_to_an_in_process_launcher(hydra_loader, launcher, handed_kept):
    loader, sweep_config = hydra_loader
    master = sweep_config("model=dense,cnn", f"hydra/launcher={launcher}", "hydra.sweep.dir=sweeps/here")
    sweeper = grid_sweeper.GridSweeper(max_batch_size=None)
    sweeper.setup(hydra_context=HydraContext(loader, callbacks=None), task_function=lambda cfg: None, config=master)
    given = sweeper.launcher.hydra_context.config_loader
    assert isinstance(given, job_configs.Precomposed) == handed_kept
    assert sweeper.hydra_context.config_loader is loader  # the sweeper's own checks compose as Hydra's


def test_an_unexpected_error_stops_the_sweep_before_any_job(caplog):
    # Hydra only warns about a callback's error and goes on: every job would
    # run outside the sweep (no parent run, no report) and the sweep exit 0.
    broken = OmegaConf.create({"hydra": {"sweeper": {"params": None}}})
    with pytest.raises(SystemExit) as stopped:
        callback.SweepCallback().on_multirun_start(config=broken, config_name="config")
    assert stopped.value.code == 1
    assert "the sweep could not be started; no job was run" in caplog.text
