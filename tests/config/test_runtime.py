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
