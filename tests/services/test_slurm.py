"""Sweeps through SLURM: the `hydra/launcher=slurm` preset, and a real one-node
cluster on 127.0.0.1 (munged, slurmctld, slurmd) running a sweep's jobs."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPORT_FILES, skip_or_fail
from helpers.hooks import SLOW_EPOCHS, hook_env
from hydra import compose, initialize_config_dir

from mnist_runner.config import compose as config
from mnist_runner.services import slurm_cluster
from mnist_runner.services.slurm_cluster import ClusterError, Layout


def hydra_config(*overrides):
    with initialize_config_dir(config_dir=str(config.CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True).hydra


def test_slurm_preset_composes_over_submitit_and_takes_overrides():
    hydra_cfg = hydra_config("hydra/launcher=slurm")
    launcher = hydra_cfg.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition is None and launcher.tasks_per_node == 1 and launcher.nodes == 1
    assert launcher.timeout_min > 0 and launcher.cpus_per_task >= 1 and launcher.mem_gb >= 1
    assert launcher.submitit_folder.startswith(hydra_cfg.sweep.dir + "/")
    changed = hydra_config(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.mem_gb=16",
        "hydra.launcher.timeout_min=240",
    ).launcher
    assert (changed.partition, changed.mem_gb, changed.timeout_min) == ("gpu", 16, 240)


def open_folder():
    """A new folder under /tmp: munged needs every parent of its socket open to
    all, which pytest's private tmp folders are not."""
    root = Path(tempfile.mkdtemp(prefix="mnist-slurm-"))
    root.chmod(0o755)
    return root


@pytest.fixture
def cluster_dir():
    root = open_folder()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_slurm_conf_stays_on_localhost_and_inside_its_folder(cluster_dir):
    layout = Layout(cluster_dir / "cluster")
    conf = slurm_cluster.write_config(layout).read_text()
    settings = dict(line.split("=", 1) for line in conf.splitlines() if "=" in line and not line.startswith("#"))
    cpus, memory = slurm_cluster.machine_resources()
    assert f"NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory}" in conf
    assert settings["SlurmctldHost"].endswith("(127.0.0.1)")
    assert settings["SlurmctldPort"] != settings["SlurmdPort"]
    for key in ("StateSaveLocation", "SlurmdSpoolDir", "SlurmctldPidFile", "SlurmdLogFile"):
        assert settings[key].startswith(str(layout.root)), key
    assert settings["AuthInfo"] == f"socket={layout.munge_socket}"
    assert layout.munge_key.stat().st_mode & 0o777 == 0o400


def test_a_folder_munged_cannot_use_is_refused_by_name(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ClusterError, match=f"but {private} is mode 700"):
        slurm_cluster.write_config(Layout(private / "cluster"))


def test_missing_root_rights_or_programs_are_named(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterError, match="must run as root"):
        slurm_cluster.check_prerequisites()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ClusterError, match=r"missing programs: munged, slurmctld, slurmd, .*make install-e2e"):
        slurm_cluster.check_prerequisites()


def test_stop_skips_daemons_that_are_down_and_stale_pid_files(tmp_path):
    layout = Layout(tmp_path)
    assert slurm_cluster.stop(tmp_path) == []
    # A PID file naming a live process of another program (this one) is stale.
    layout.pid_file("slurmctld").parent.mkdir(parents=True)
    layout.pid_file("slurmctld").write_text(f"{os.getpid()}\n")
    assert slurm_cluster.status(tmp_path) == {"munged": None, "slurmctld": None, "slurmd": None}
    assert slurm_cluster.stop(tmp_path) == []


@pytest.fixture(scope="module")
def cluster(request):
    """A one-node SLURM cluster, stopped at the end of the module even when a test fails."""
    try:
        slurm_cluster.check_prerequisites()
    except ClusterError as missing:
        skip_or_fail(f"{missing} (SLURM tests need root and `make install-e2e`)")
    root = open_folder()
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    request.addfinalizer(lambda: slurm_cluster.stop(root))
    began = time.monotonic()
    layout = slurm_cluster.start(root)
    print(f"SLURM cluster idle after {time.monotonic() - began:.1f} s")
    yield layout
    slurm_cluster.stop(root)
    assert all(pid is None for pid in slurm_cluster.status(root).values())
    assert slurm_cluster.leftover_job_processes(layout) == []


def multirun(cluster, store, *overrides, background=False, env=None):
    launch = store.start_py if background else store.run_py
    process = launch(
        "hydra/launcher=slurm",
        # Fits any node: both jobs run side by side on two CPUs.
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "data=digits",
        *overrides,
        "tracking.log_model=false",
        multirun=True,
        env={**cluster.client_env(), **(env or {})},
    )
    return process, store.uri


def running_children(sweep: subprocess.Popen, store, count: int, timeout: float) -> list:
    """The sweep's RUNNING child runs, once ``count`` of them are (or the sweep
    ended, or ``timeout`` seconds passed)."""
    deadline = time.monotonic() + timeout
    running = []
    while len(running) < count and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(1)
        running = [run for run in store.runs(role="child") if run.info.status == "RUNNING"]
    return running


@pytest.fixture(autouse=True)
def queue_left_empty(request):
    """Each test that uses the cluster leaves its queue empty, so that no test
    depends on the ones before it: a job still listed is waited for (a bound),
    then cancelled, and the test fails."""
    if "cluster" not in request.fixturenames:
        yield
        return
    layout = request.getfixturevalue("cluster")
    yield
    deadline = time.monotonic() + 60
    while (left := queue(layout)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        slurm_cluster.cancel_jobs(layout)
        pytest.fail(f"the test left jobs in the queue for over 60 s:\n{left}")


def queue(layout) -> str:
    listed = subprocess.run(["squeue", "--noheader"], env=layout.client_env(), capture_output=True, text=True)
    return listed.stdout.strip()


def slow_jobs(folder: Path, exit_seconds: float, epoch_pause: float) -> dict[str, str]:
    """The environment for SLURM jobs whose Python processes take
    ``exit_seconds`` to exit (a ``sitecustomize`` that sleeps at exit in a
    job): a cancelled job then stays in the queue (CG) that long after it
    closed its run, as a busy node's jobs do, so that a sweep not waiting for
    them is caught every time. Their epochs end with a pause of
    ``epoch_pause`` (``helpers.hooks.slow_epochs``): still training when the
    test stops them, without the CPU of many epochs."""
    exit_delay = (
        "\nimport atexit, os, time\n"
        f"if 'SLURM_JOB_ID' in os.environ:\n    atexit.register(time.sleep, {exit_seconds})\n"
    )
    return hook_env(folder, SLOW_EPOCHS + exit_delay, MNIST_TEST_EPOCH_PAUSE=str(epoch_pause))


@pytest.mark.slurm
@pytest.mark.e2e
def test_sweep_runs_each_job_as_a_slurm_job(cluster, tmp_store):
    done, uri = multirun(cluster, tmp_store, "trainer.epochs=2", "model.dropout=0.0,0.5")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]

    client, parents, children = tmp_store.client(), tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert [child.info.status for child in children] == ["FINISHED", "FINISHED"]
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id}
    assert sorted(child.data.params["model.dropout"] for child in children) == ["0.0", "0.5"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_finished"] == 2
    logged = {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "report")}
    assert {f"report/{name}" for name in REPORT_FILES} <= logged
    table = pd.read_csv(tmp_store.root / "sweep" / "report" / "gap_report.csv")
    assert set(table["run_id"]) == {child.info.run_id for child in children}

    # Each job ran under SLURM: submitit's per-job folder holds its log and result.
    job_logs = sorted((tmp_store.root / "sweep" / "slurm").glob("*_*/*_0_log.out"))
    assert len(job_logs) == 2
    assert all("Job completed successfully" in path.read_text() for path in job_logs)
    assert "Submitit 'slurm' sweep output dir" in output


@pytest.mark.slurm
@pytest.mark.e2e
def test_cancelled_job_ends_killed_and_the_sweep_says_so(cluster, tmp_store):
    sweep, uri = multirun(cluster, tmp_store, "trainer.epochs=500", "model.dropout=0.0", background=True)
    try:
        assert running_children(sweep, tmp_store, 1, timeout=180), "the job's MLflow run never started"
        # This sweep's one SLURM job, as submitit names its pickle: <job id>_submitted.pkl.
        pickles = (tmp_store.root / "sweep" / "slurm").glob("*/*_submitted.pkl")
        job_ids = [path.name.removesuffix("_submitted.pkl") for path in pickles]
        assert len(job_ids) == 1, job_ids
        subprocess.run(["scancel", job_ids[0]], env=cluster.client_env(), check=True)
        output, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 1, output[-3000:]  # the sweep did not finish its job
    parents, children = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert [child.info.status for child in children] == ["KILLED"]
    assert children[0].data.tags["failure_reason"].startswith("JobCancelled: the job was cancelled (SIGTERM")
    assert parents[0].info.status == "KILLED" and parents[0].data.metrics["jobs_failed"] == 1
    assert f"continue it (finished jobs are kept): python run.py resume={parents[0].info.run_id}" in output


@pytest.mark.slurm
@pytest.mark.e2e
def test_stopping_a_slurm_sweep_cancels_its_jobs_closes_every_run_and_it_continues(cluster, tmp_store):
    slow = slow_jobs(tmp_store.root / "slow_jobs", exit_seconds=8, epoch_pause=1)
    epochs = 12  # the stopped sweep's at 1 s each; its continuation's, without a pause, at once
    sweep, uri = multirun(
        cluster, tmp_store, f"trainer.epochs={epochs}", "model.dropout=0.0,0.5", background=True, env=slow
    )
    try:
        running = running_children(sweep, tmp_store, 2, timeout=240)
        assert len(running) == 2, "the jobs' MLflow runs never started"
        client = tmp_store.client()
        deadline = time.monotonic() + 120  # each has a checkpoint to continue from
        while time.monotonic() < deadline and not all(
            len(client.get_metric_history(run.info.run_id, "loss")) >= 2 for run in running
        ):
            time.sleep(0.5)
        sweep.send_signal(signal.SIGINT)  # Ctrl-C in the terminal that submitted the sweep
        output, _ = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    # Read at once: the sweep returns only once its cancelled jobs have left the queue.
    left = queue(cluster)
    assert sweep.returncode == 130, output[-3000:]
    assert left == "", f"jobs left in the queue:\n{left}\n{output[-2000:]}"
    assert "the cancelled SLURM jobs left the queue after" in output, output[-3000:]
    parents, children = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert [parent.info.status for parent in parents] == ["KILLED"]
    assert len(children) == 2 and all(child.info.status == "KILLED" for child in children), [
        (child.info.status, child.data.tags.get("failure_reason")) for child in children
    ]
    assert (tmp_store.root / "sweep" / "report" / "gap_report.csv").is_file()
    parent_id = parents[0].info.run_id
    assert f"continue it (finished jobs are kept): python run.py resume={parent_id}" in output

    # Continued: the same launcher (SLURM), the same parent, each job in its own run.
    continued = tmp_store.run_py(f"resume={parent_id}", sweep_dir="again", env=cluster.client_env())
    assert continued.returncode == 0, (continued.stdout + continued.stderr)[-3000:]
    assert len(list((tmp_store.root / "again" / "slurm").glob("*_*/*_0_log.out"))) == 2  # SLURM ran them
    parents, after = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert [(parent.info.run_id, parent.info.status) for parent in parents] == [(parent_id, "FINISHED")]
    assert {run.info.run_id for run in after} == {child.info.run_id for child in children}
    for run in after:
        assert run.info.status == "FINISHED" and int(run.data.tags["resumed_from_epoch"]) >= 1
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
        assert steps == list(range(1, epochs + 1))
