"""Credentials given in the config or on the command line are masked in the
files Hydra writes and in every log message."""

from __future__ import annotations

import io
import logging

import pytest
from omegaconf import OmegaConf

from mnist_runner import redaction
from mnist_runner.config.secrets import ScrubSecrets
from mnist_runner.redaction import redact_logs, scrub_file, secret_values

TOKEN = "tok-4f9a81c2"
PASSWORD = "pw-77d1e0b3"
URI = f"http://alice:{PASSWORD}@tracking.example:5000/"


def test_secret_values_are_found_wherever_they_are():
    config = {
        "tracking": {"uri": URI, "experiment": "mnist"},
        "trainer": {"api_token": TOKEN, "epochs": 3},
        "services": {"db_password": "hunter2", "Secret": 12345, "empty_key": "", "masked_token": "***"},
        "hydra": {"overrides": {"task": ["trainer.epochs=3", "+trainer.api_key=k-31337", "+x.token="]}},
        "notes": ["a mirror at https://:bearer-xyz@mirror.example/data"],
        "command": "run.py +cloud.access_key=AKIA123 trainer.epochs=3",
    }
    assert secret_values(config) == {PASSWORD, TOKEN, "hunter2", "12345", "k-31337", "bearer-xyz", "AKIA123"}


def test_nothing_secret_nothing_found():
    config = {"tracking": {"uri": "sqlite:////runs/mlflow.db"}, "model": {"hidden_units": [512, 256]}}
    assert secret_values(config) == set()


def test_scrub_file_masks_every_occurrence(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"uri: {URI}\napi_token: {TOKEN}\nagain: {TOKEN}{TOKEN}\nepochs: 3\n")
    assert scrub_file(path, {PASSWORD, TOKEN})
    assert (
        path.read_text() == "uri: http://alice:***@tracking.example:5000/\napi_token: ***\nagain: ******\nepochs: 3\n"
    )
    assert not scrub_file(path, {PASSWORD, TOKEN})  # nothing left to change
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_longer_secret_is_masked_whole(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("- +a.token=abc\n- +b.token=abcdef\n")
    scrub_file(path, {"abc", "abcdef"})
    assert path.read_text() == "- +a.token=***\n- +b.token=***\n"


@pytest.fixture
def masked_logs():
    """``redact_logs`` installed for one test, the factory restored after."""
    factory = logging.getLogRecordFactory()
    redact_logs()
    yield
    logging.setLogRecordFactory(factory)


def test_log_messages_have_credentials_masked(masked_logs, caplog):
    log = logging.getLogger("hydra.core.utils")
    with caplog.at_level(logging.INFO):
        log.info("#0 : +trainer.api_token=abc tracking.uri=http://u:pw@h/")
        log.info("#%d : %s", 1, f"trainer.epochs=3 tracking.uri={URI}")
        log.info("connecting to %s", URI)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "#0 : +trainer.api_token=*** tracking.uri=http://u:***@h/",
        "#1 : trainer.epochs=3 tracking.uri=http://alice:***@tracking.example:5000/",
        "connecting to http://alice:***@tracking.example:5000/",
    ]


def test_installing_twice_masks_once(masked_logs):
    redact_logs()
    factory = logging.getLogRecordFactory()
    assert isinstance(factory, redaction._RedactingRecords)
    assert not isinstance(factory.factory, redaction._RedactingRecords)


def test_a_bad_log_call_does_not_raise(masked_logs, capsys):
    """A library's broken log call is reported by logging, as without the
    masking, and does not stop the run (pytest's own log capture would
    re-raise it, so this logger has a plain handler of its own)."""
    logger = logging.getLogger("some.library.with.a.bug")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(io.StringIO()))
    try:
        logger.warning("%s and %s", "only one argument")
    finally:
        logger.handlers.clear()
    assert "Logging error" in capsys.readouterr().err


@pytest.fixture
def hydra_output(tmp_path):
    """A sweep folder as Hydra leaves it, with one job's output folder, all
    holding the credentials of the job's config."""
    sweep = tmp_path / "multirun"
    job = sweep / "0"
    (job / ".hydra").mkdir(parents=True)
    files = {
        job / ".hydra" / "config.yaml": f"tracking:\n  uri: {URI}\ntrainer:\n  api_token: {TOKEN}\n  epochs: 3\n",
        job / ".hydra" / "overrides.yaml": f"- +trainer.api_token={TOKEN}\n- tracking.uri={URI}\n",
        job / ".hydra" / "hydra.yaml": f"hydra:\n  overrides:\n    task:\n    - +trainer.api_token={TOKEN}\n",
        job / "run.log": f"[INFO] - connecting to {URI}\n[INFO] - token {TOKEN} used\n",
        sweep / "multirun.yaml": f"hydra:\n  overrides:\n    task:\n    - tracking.uri={URI}\n",
        sweep / "report.txt": f"sweep over {URI}\n",
    }
    for path, text in files.items():
        path.write_text(text)
    # Decodes as text, but is no text file by its name: left as it is.
    (job / "weights.bin").write_bytes(TOKEN.encode() + b"\x00\x01")
    config = OmegaConf.create(
        {
            "tracking": {"uri": URI},
            "trainer": {"api_token": TOKEN, "epochs": 3},
            "hydra": {
                "runtime": {"output_dir": str(job)},
                "sweep": {"dir": str(sweep)},
                "overrides": {"task": [f"+trainer.api_token={TOKEN}", f"tracking.uri={URI}"]},
            },
        }
    )
    return config, job, sweep, files


def holding_secrets(paths) -> list[str]:
    return sorted(path.name for path in paths if TOKEN in path.read_text() or PASSWORD in path.read_text())


def test_job_start_scrubs_what_hydra_wrote_before_the_job(hydra_output):
    config, job, sweep, files = hydra_output
    ScrubSecrets().on_job_start(config=config)
    assert holding_secrets(files) == ["report.txt", "run.log"]  # written later, scrubbed later
    assert (job / ".hydra" / "config.yaml").read_text() == (
        "tracking:\n  uri: http://alice:***@tracking.example:5000/\ntrainer:\n  api_token: ***\n  epochs: 3\n"
    )


def test_job_end_scrubs_the_jobs_folder(hydra_output):
    config, job, sweep, files = hydra_output
    ScrubSecrets().on_job_end(config=config, job_return=None)
    assert holding_secrets(files) == ["multirun.yaml", "report.txt"]  # the sweep's, not the job's
    assert (
        job / "run.log"
    ).read_text() == "[INFO] - connecting to http://alice:***@tracking.example:5000/\n[INFO] - token *** used\n"
    assert (job / "weights.bin").read_bytes() == TOKEN.encode() + b"\x00\x01"


def test_multirun_end_scrubs_the_whole_sweep(hydra_output):
    config, job, sweep, files = hydra_output
    ScrubSecrets().on_multirun_end(config=config)
    assert holding_secrets(files) == []
    assert (job / "weights.bin").read_bytes() == TOKEN.encode() + b"\x00\x01"
