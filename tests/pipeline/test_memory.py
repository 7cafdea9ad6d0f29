"""Jobs run one after another in one process (an in-process sweep, a notebook
calling train() repeatedly) do not keep the earlier jobs' TensorFlow graphs,
also where the process froze what it loaded (``run.py``)."""

import gc

import pytest
from tensorflow.python.framework.func_graph import FuncGraph

from mnist_runner import train
from mnist_runner.config import runtime

pytestmark = pytest.mark.slow


def live_graphs() -> int:
    gc.collect()
    return sum(isinstance(obj, FuncGraph) for obj in gc.get_objects())


@pytest.mark.parametrize("frozen", [False, True], ids=["notebook", "run.py"])
def test_later_jobs_do_not_keep_earlier_training_graphs(tmp_store, monkeypatch, frozen):
    overrides = ["data=digits", "trainer.epochs=1", "tracking.log_model=false", *tmp_store.overrides()]
    monkeypatch.setattr(runtime, "_frozen", False)
    counts, frozen_counts = [], []
    try:
        for _ in range(3):
            if frozen:  # as run.py does before every job: only the first one freezes
                runtime.freeze_loaded_objects()
            frozen_counts.append(gc.get_freeze_count())
            train(overrides)
            counts.append(live_graphs())
    finally:
        gc.unfreeze()  # the test process's objects back in the collector's reach
    # Each job traces its train/test steps anew (over 20 graphs); they must go
    # once the next job starts, so the count stays flat instead of climbing.
    assert counts[2] <= counts[1], counts
    # A job's objects are never frozen, or they would never be freed: the
    # count does not grow (it shrinks as frozen objects are freed by their
    # reference count).
    assert frozen_counts[2] <= frozen_counts[1] <= frozen_counts[0], frozen_counts
    assert (frozen_counts[0] > 0) == frozen
