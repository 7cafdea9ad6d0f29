"""The plain functions behind continuing a sweep (``sweeps.continuation``):
what makes a job the same job, how a continued grid is merged and what it
refuses, and what each job does given the runs it has. The real sweeps
stopped and continued are in test_sweep_continue.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

from mnist_runner.errors import UserError
from mnist_runner.paths import CONFIG_DIR
from mnist_runner.sweeps import continuation
from mnist_runner.sweeps.continuation import DONE, NEW, RERUN, RESUME, JobRun
from mnist_runner.tracking import sweep_records


def config(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def test_a_job_is_its_config_but_where_it_is_logged_and_its_files_go():
    key = continuation.job_key(config("data=digits", "trainer.seed=1"))
    moved = config(
        "data=digits",
        "trainer.seed=1",
        "tracking.uri=sqlite:////elsewhere.db",
        "tracking.run_name=again",
        "trainer.checkpoint_dir=/other",
        "data.path=/data",
        "verbose=true",
        "resume=abc",
        "+trainer.api_token=a-new-token",
    )
    assert continuation.job_key(moved) == continuation.job_key(
        config("data=digits", "trainer.seed=1", "+trainer.api_token=old")
    )
    assert continuation.job_key(moved) != key  # the token's key is part of the config; its value is not
    for change in ("trainer.seed=2", "model=cnn", "trainer.epochs=3", "model.dropout=0.5", "backend=jax"):
        assert continuation.job_key(config("data=digits", "trainer.seed=1", change)) != key, change
    # The logged config.yaml (a plain dict, credentials masked) gives the same key.
    from omegaconf import OmegaConf

    from mnist_runner.redaction import redact

    logged = redact(OmegaConf.to_container(config("data=digits", "trainer.seed=1"), resolve=True))
    assert continuation.job_key(logged) == key


def test_a_continued_grid_adds_values_and_keeps_what_the_sweep_had():
    recorded = ["data=digits", "model=dense,cnn", "trainer.seed=1,2,3", "trainer.epochs=5"]
    defaults = config("data=digits", "model=dense", "trainer.seed=1", "trainer.epochs=5", hydra=True)
    merged = continuation.merged_overrides
    assert merged(recorded, [], defaults) == recorded
    assert merged(recorded, ["trainer.seed=4,5"], defaults)[2] == "trainer.seed=1,2,3,4,5"
    assert merged(recorded, ["trainer.seed=5"], defaults)[2] == "trainer.seed=1,2,3,5"
    assert merged(recorded, ["trainer.epochs=5"], defaults) == recorded  # as it was: no change
    assert merged(recorded, ["trainer.epochs=5,10"], defaults)[3] == "trainer.epochs=5,10"
    # A key the sweep left at its default may become swept, the default kept among its values.
    assert merged(recorded, ["model.dropout=0.2,0.5"], defaults)[-1] == "model.dropout=0.0,0.2,0.5"
    assert merged(recorded, ["tracking.uri=sqlite:////x.db"], defaults)[-1] == "tracking.uri=sqlite:////x.db"


@pytest.mark.parametrize(
    "given, message",
    [
        (["trainer.epochs=10"], "the sweep ran every job with trainer.epochs=5"),
        (["data=mnist"], "the sweep ran every job with data=digits"),
        (["model.dropout=0.5"], "the sweep ran every job with model.dropout=0.0"),
        (["trainer.batch_size=64"], "the sweep ran every job with trainer.batch_size=128"),
    ],
)
def test_a_changed_fixed_setting_is_refused_with_what_to_do(given, message):
    recorded = ["data=digits", "model=dense,cnn", "trainer.epochs=5"]
    defaults = config("data=digits", "model=dense", "trainer.epochs=5", hydra=True)
    with pytest.raises(UserError, match=message) as refused:
        continuation.merged_overrides(recorded, given, defaults)
    assert "incomparable" in str(refused.value) and "add values to the sweep" in str(refused.value)


def test_a_recorded_credential_is_given_again():
    recorded = ["data=digits", "+trainer.api_token=***", "trainer.seed=1,2"]
    defaults = config("data=digits", "trainer.seed=1", hydra=True)
    merged = continuation.merged_overrides(recorded, ["+trainer.api_token=new"], defaults)
    assert merged == ["data=digits", "+trainer.api_token=new", "trainer.seed=1,2"]


def job_run(run_id: str, status: str, start: int = 0) -> JobRun:
    return JobRun(run_id, status, None if status == "FINISHED" else f"{status.lower()} reason", start)


def test_each_job_does_what_its_runs_call_for():
    grid = [(k, [f"trainer.seed={i}"]) for i, k in enumerate(["a", "b", "c", "d", "e"])]
    by_job = {
        "a": [job_run("a2", "FAILED", 2), job_run("a1", "FINISHED", 1)],  # a finished run wins
        "b": [job_run("b2", "KILLED", 2), job_run("b1", "FAILED", 1)],  # interrupted: continue it
        "c": [job_run("c2", "FAILED", 2), job_run("c1", "FAILED", 1)],  # failed: the newest is superseded
        "d": [],
    }
    plan = continuation.plan_jobs(grid, by_job)
    assert {key: (step["action"], step["run_id"]) for key, step in plan.items()} == {
        "a": (DONE, "a1"),
        "b": (RESUME, "b2"),
        "c": (RERUN, "c2"),
        "d": (NEW, None),
        "e": (NEW, None),
    }
    assert continuation.plan_counts(plan) == {DONE: 1, RESUME: 1, RERUN: 1, NEW: 2}
    outcomes = {tuple(o.overrides): (o.status, o.run_id) for o in continuation.outcomes(plan, by_job)}
    assert outcomes[("trainer.seed=0",)] == ("FINISHED", "a1")
    assert outcomes[("trainer.seed=2",)] == ("FAILED", "c2")
    assert outcomes[("trainer.seed=4",)] == (None, None)


def test_a_job_still_running_refuses_the_continuation():
    with pytest.raises(UserError, match="trainer.seed=1 is still running \\(run r1\\)"):
        continuation.plan_jobs([("a", ["trainer.seed=1"])], {"a": [job_run("r1", "RUNNING")]})


def test_job_counts_take_each_jobs_best_run():
    def run(run_id, status, key):
        return SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, status=status),
            data=SimpleNamespace(tags={sweep_records.TAG_JOB_KEY: key}),
        )

    parent = SimpleNamespace(data=SimpleNamespace(tags={sweep_records.TAG_JOBS: "5"}, params={}))
    runs = [run("1", "FINISHED", "a"), run("2", "FAILED", "a"), run("3", "KILLED", "b"), run("4", "FAILED", "c")]
    assert sweep_records.job_counts(parent, runs) == {
        "jobs": 5,
        "finished": 1,
        "interrupted": 1,
        "failed": 1,
        "running": 0,
        "to_run": 2,
    }


def test_the_continue_command_names_the_store_unless_it_is_the_default():
    from mnist_runner.paths import DEFAULT_TRACKING_URI

    assert continuation.continue_command("abc", DEFAULT_TRACKING_URI) == "python run.py resume=abc"
    assert (
        continuation.continue_command("abc", "http://bob:pw@host:5000")
        == "python run.py resume=abc tracking.uri=http://bob:***@host:5000"
    )
