"""The default grid sweeper skips Hydra's second composition of each job
where the sweep callback has composed and validated them already."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from hydra_plugins.mnist_runner_grid import grid_sweeper
from mnist_runner.sweeps import parent

BATCH = [["model.dropout=0.0"], ["model.dropout=0.5"]]


class CountingLoader:
    def __init__(self):
        self.composed = []

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed.append(sweep_overrides)


@pytest.fixture
def sweeper():
    # Through the module, not a name imported at collection: Hydra's plugin
    # scan (a run in this process) executes the plugin modules again, and
    # Hydra's BasicSweeper then names its class anew.
    grid = grid_sweeper.GridSweeper(max_batch_size=None)
    grid.hydra_context = SimpleNamespace(config_loader=CountingLoader())
    grid.config = OmegaConf.create({})
    return grid


def open_sweep(jobs: dict) -> parent.SweepInfo:
    return parent.SweepInfo("s", "p", "1", "sqlite:///x.db", ["model.dropout"], "sweep", 1, jobs)


def test_jobs_the_callback_validated_are_not_composed_again(sweeper, monkeypatch):
    monkeypatch.setattr(parent, "_active", open_sweep({"a": {}, "b": {}}))
    sweeper.validate_batch_is_legal(BATCH)
    assert sweeper.hydra_context.config_loader.composed == []


@pytest.mark.parametrize("info", [None, open_sweep({})], ids=["no-callback", "search"])
def test_otherwise_hydra_composes_each_job(sweeper, monkeypatch, info):
    monkeypatch.setattr(parent, "_active", info)
    sweeper.validate_batch_is_legal(BATCH)
    assert sweeper.hydra_context.config_loader.composed == BATCH
