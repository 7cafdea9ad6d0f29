"""What ``config.runtime`` sets for the process before and after Keras loads:
here, that garbage collection is paused only while it loads."""

import gc

import pytest

from mnist_runner.config import runtime


def test_collection_is_paused_only_within_and_left_as_it_was():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with runtime.collection_paused():
            assert not gc.isenabled()
            with runtime.collection_paused():
                pass
            assert not gc.isenabled()  # the inner one leaves the outer pause alone
            raise RuntimeError("a failed import")
    assert gc.isenabled()
    gc.disable()
    try:
        with runtime.collection_paused():
            pass
        assert not gc.isenabled()  # switched off by someone else: left off
    finally:
        gc.enable()


def test_what_is_loaded_for_good_is_frozen_before_collection_resumes(monkeypatch):
    monkeypatch.setattr(runtime, "_frozen", False)
    collections = []
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        with runtime.loading_for_good():
            loaded = [[i] for i in range(50_000)]  # as an import's objects: tracked by the collector
            assert not gc.isenabled()
        assert gc.isenabled()
        # Out of every generation, so that no pass scans them again: frozen,
        # before the collector ran once.
        assert collections == []
        assert gc.get_freeze_count() >= len(loaded)
        assert not any(obj is loaded[-1] for obj in gc.get_objects(generation=0))
    finally:
        gc.callbacks.pop()
        gc.unfreeze()
