"""Checkpoints: the newest readable one is found, leftovers of a process killed
mid-save are removed, a damaged one falls back to the one before, and the
callback keeps the two newest, each with the whole history so far."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mnist_runner.pipeline import checkpoint_callback
from mnist_runner.pipeline.checkpoint_callback import EpochCheckpoint
from mnist_runner.pipeline.checkpoints import complete_epochs, find

WEIGHTS = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8


def rows(epochs: int) -> list[dict]:
    return [{"epoch": epoch, "loss": 1.0 / epoch} for epoch in range(1, epochs + 1)]


def write_model(path: Path, members: dict[str, bytes] | None = None) -> None:
    members = (
        {"config.json": b'{"class_name": "Sequential"}', "model.weights.h5": WEIGHTS} if members is None else members
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def write_checkpoint(folder: Path, epoch: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"epoch-{epoch}.json").write_text(json.dumps(rows(epoch)))
    write_model(folder / f"epoch-{epoch}.keras")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Checkpoints of epochs 1, 2 and 3."""
    for epoch in (1, 2, 3):
        write_checkpoint(tmp_path / "run", epoch)
    return tmp_path / "run"


def test_the_newest_complete_checkpoint_is_found(folder):
    found, skipped = find(folder)
    assert skipped == []
    assert found.epochs_done == 3
    assert found.model_file == folder / "epoch-3.keras"
    assert found.history == rows(3)


def test_leftovers_of_an_interrupted_save_are_removed(folder):
    (folder / "epoch-4.json").write_text(json.dumps(rows(4)))  # killed before its model was in place
    (folder / "epoch-4.part.keras").write_bytes(b"half a model")
    (folder / "epoch-5.json.part").write_text("[{")
    (folder / "notes.txt").write_text("mine")
    found, skipped = find(folder)
    assert (found.epochs_done, skipped) == (3, [])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["notes.txt"] + [f"epoch-{epoch}.{kind}" for epoch in (1, 2, 3) for kind in ("json", "keras")]
    )


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_weight_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[data.index(WEIGHTS) + 100] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (truncate, "epoch-3.keras is corrupt"),
        (lambda path: path.write_bytes(b""), "epoch-3.keras is corrupt"),
        (lambda path: path.write_text("not a zip at all"), "epoch-3.keras is corrupt"),
        (lambda path: write_model(path, {"config.json": b"{}"}), "epoch-3.keras is incomplete (model.weights.h5)"),
        (flip_a_weight_byte, "epoch-3.keras is incomplete (model.weights.h5)"),
    ],
    ids=["truncated", "empty", "not-a-zip", "member-missing", "crc-broken"],
)
def test_a_damaged_newest_model_falls_back_to_the_one_before(folder, damage, reason):
    damage(folder / "epoch-3.keras")
    found, skipped = find(folder)
    assert found.epochs_done == 2 and found.history == rows(2)
    assert len(skipped) == 1 and skipped[0].startswith(f"epoch 3: {reason}")


@pytest.mark.parametrize(
    "history, reason",
    [
        ('[{"epoch": 1, "loss": 1.0}, {"epo', "epoch-3.json is corrupt"),
        ("", "epoch-3.json is corrupt"),
        (json.dumps([1, 2, 3]), "epoch-3.json is corrupt"),
        (json.dumps(rows(2)), "epoch-3.json does not hold epochs 1-3"),
        (json.dumps([rows(3)[0], rows(3)[2], rows(3)[1]]), "epoch-3.json does not hold epochs 1-3"),
        (json.dumps({"epoch": 3}), "epoch-3.json does not hold epochs 1-3"),
    ],
    ids=["truncated", "empty", "not-rows", "too-few", "out-of-order", "not-a-list"],
)
def test_a_damaged_newest_history_falls_back_to_the_one_before(folder, history, reason):
    (folder / "epoch-3.json").write_text(history)
    found, skipped = find(folder)
    assert found.epochs_done == 2 and found.history == rows(2)
    assert len(skipped) == 1 and skipped[0].startswith(f"epoch 3: {reason}")


def test_nothing_readable_is_none_with_every_reason(folder):
    for epoch in (1, 2, 3):
        truncate(folder / f"epoch-{epoch}.keras")
    (folder / "epoch-2.json").write_text("{")
    found, skipped = find(folder)
    assert found is None
    assert [reason.split(":")[0] for reason in skipped] == ["epoch 3", "epoch 2", "epoch 1"]
    assert "epoch-2.json is corrupt" in skipped[1]


def test_no_folder_no_checkpoint(tmp_path):
    assert find(tmp_path / "missing") == (None, [])


def test_complete_epochs_newest_first_by_number(tmp_path):
    for epoch in (2, 10, 9):
        write_checkpoint(tmp_path, epoch)
    write_model(tmp_path / "epoch-11.keras")  # no history: not complete
    (tmp_path / "epoch-12.json").write_text(json.dumps(rows(12)))  # no model: not complete
    (tmp_path / "epoch-x.json").write_text("[]")
    assert complete_epochs(tmp_path) == [10, 9, 2]


def tiny_model():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)  # as after a first batch
    return model


def test_the_callback_keeps_the_two_newest_each_with_the_whole_history(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "epoch-7.part.keras").write_bytes(b"left by a killed process")
    callback = EpochCheckpoint(folder)
    callback.set_model(tiny_model())
    callback.on_train_begin()
    assert list(folder.iterdir()) == []
    for epoch, loss in enumerate([1.0, 0.5, 0.25]):
        callback.on_epoch_end(epoch, {"loss": loss, "accuracy": 0.5})
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch-2.json",
        "epoch-2.keras",
        "epoch-3.json",
        "epoch-3.keras",
    ]
    expected = [{"epoch": e, "loss": loss, "accuracy": 0.5} for e, loss in ((1, 1.0), (2, 0.5), (3, 0.25))]
    assert json.loads((folder / "epoch-2.json").read_text()) == expected[:2]
    found, skipped = find(folder)  # what Keras wrote passes the integrity check
    assert (found.epochs_done, found.history, skipped) == (3, expected, [])
    assert checkpoint_callback.load_model(found).count_params() == 3


def test_a_resumed_callback_continues_the_history(tmp_path):
    callback = EpochCheckpoint(tmp_path, history=rows(2))
    callback.set_model(tiny_model())
    callback.on_train_begin()
    callback.on_epoch_end(2, {"loss": 1 / 3})
    assert json.loads((tmp_path / "epoch-3.json").read_text()) == rows(3)
    assert complete_epochs(tmp_path) == [3]
