"""The best run of an experiment (``serving.logged_models.best_run``), on a
store of hand-made runs (``helpers.fake_runs``): within a data set's
experiment it keeps to that data set and to runs with a model; in an
experiment of several data sets it needs the data set."""

import pytest

from mnist_runner.serving import logged_models


def test_best_run_of_a_data_set_experiment_keeps_to_that_data_set(fake_store):
    run, model = logged_models.best_run(fake_store.client(), "digits")
    assert run.info.run_id == fake_store.ids["digits-best"]  # not the better mnist run, not the run without a model
    assert model.source_run_id == run.info.run_id


def test_best_run_of_a_mixed_experiment_needs_the_data_set(fake_store):
    with pytest.raises(logged_models.ModelNotFound) as refused:
        logged_models.best_run(fake_store.client(), "mixed")
    assert "digits, mnist" in str(refused.value) and "--data" in str(refused.value)


@pytest.mark.parametrize(("data", "label"), [("digits", "mixed-digits"), ("mnist", "mixed-mnist")])
def test_best_run_of_a_mixed_experiment_for_one_data_set(fake_store, data, label):
    run, _ = logged_models.best_run(fake_store.client(), "mixed", data=data)
    assert run.info.run_id == fake_store.ids[label]
