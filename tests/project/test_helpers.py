"""The tests' own launcher and reader (``tests/helpers/store.py``): a run
started through it logs into the test's folder, and reading a store that
does not exist creates nothing."""

from helpers import TempStore

from mnist_runner.paths import PROJECT_ROOT


def test_the_command_sends_a_run_to_the_store_unless_the_test_names_another_place(tmp_path):
    store = TempStore(tmp_path)
    command = store.command("model=cnn", "tracking.uri=sqlite:///elsewhere.db")
    assert command[1] == str(PROJECT_ROOT / "run.py") and command[2] == "model=cnn"
    assert [arg for arg in command if arg.startswith("tracking.uri=")] == ["tracking.uri=sqlite:///elsewhere.db"]
    assert f"trainer.checkpoint_dir={store.checkpoints}" in command
    assert f"hydra.run.dir={tmp_path / 'hydra'}" in command and "-m" not in command
    # A command may be a sweep without -m (resume=<parent run id>): its folder is placed too.
    assert f"hydra.sweep.dir={tmp_path / 'sweep'}" in command

    sweep = store.command("model=dense,cnn", multirun=True, sweep_dir="again")
    assert sweep[2] == "-m" and f"hydra.sweep.dir={tmp_path / 'again'}" in sweep
    given = store.command("resume=0123", f"hydra.sweep.dir={tmp_path / 'mine'}")
    assert [arg for arg in given if arg.startswith("hydra.sweep.dir=")] == [f"hydra.sweep.dir={tmp_path / 'mine'}"]


def test_reading_a_store_that_does_not_exist_finds_nothing_and_creates_nothing(tmp_path):
    store = TempStore(tmp_path)
    assert store.runs() == [] and store.runs("mnist", role="parent") == []
    assert not store.db.exists()
