"""Jobs run one after another in one process (an in-process sweep, a notebook
calling train() repeatedly) do not keep the earlier jobs' TensorFlow graphs."""

import gc

import pytest
from tensorflow.python.framework.func_graph import FuncGraph

from mnist_runner import train

pytestmark = pytest.mark.slow


def live_graphs() -> int:
    gc.collect()
    return sum(isinstance(obj, FuncGraph) for obj in gc.get_objects())


def test_later_jobs_do_not_keep_earlier_training_graphs(tmp_store):
    overrides = ["data=digits", "trainer.epochs=1", "tracking.log_model=false", *tmp_store.overrides()]
    counts = []
    for _ in range(3):
        train(overrides)
        counts.append(live_graphs())
    # Each job traces its train/test steps anew (over 20 graphs); they must go
    # once the next job starts, so the count stays flat instead of climbing.
    assert counts[2] <= counts[1], counts
