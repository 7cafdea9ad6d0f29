"""Hyperparameter search with Optuna's ask/tell API, as a Hydra sweeper:
``hydra/sweeper=optuna_search``.

It asks Optuna for each trial's values, launches the trial as an ordinary job
through Hydra's launcher (so it is an MLflow child run of the sweep like any
other), and tells Optuna the result. The study lives in SQLite, so a search
that was interrupted resumes where it stopped; trials report validation
accuracy per epoch and hopeless ones are pruned (``mnist_runner.sweeps.pruning``).

This is the glue Hydra discovers; the settings are in ``config``, the work in
``_impl``. Optuna is imported only when a search runs, so Hydra's plugin scan
stays fast."""

from __future__ import annotations

import logging
import sys
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnist_runner_search import _impl as search
from hydra_plugins.mnist_runner_search.config import OBJECTIVES, SearchSweeperConf
from mnist_runner.errors import UserError
from mnist_runner.sweeps.trials import TrialRef

log = logging.getLogger(__name__)

ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna_search", node=SearchSweeperConf, provider="mnist_runner"
)


class SearchSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = SearchSweeperConf(**conf)
        self.launcher = None
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.batch_size = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=1) or 1)

    def sweep(self, arguments: List[str]) -> Any:
        from mnist_runner.sweeps import search_runs

        space, fixed = search.search_space(dict(self.conf.params), arguments)
        settings = search.study_settings(self.config, space, self.conf.objective)
        try:
            study = search.make_study(self.conf, settings)
        except UserError as error:  # a study made with other settings: nothing runs, no run is left behind
            search_runs.discard_parent_run()
            log.error("%s", error)
            sys.exit(error.exit_code)
        done = search.counted_trials(study)
        if done >= self.conf.n_trials or search.exhausted(study, space):
            return self.nothing_to_run(study, done)
        log.info(
            "study %r in %s: %d of %d trials done; searching %s",
            self.conf.study_name,
            self.conf.storage,
            done,
            self.conf.n_trials,
            ", ".join(space),
        )
        warmup = self.conf.pruning_warmup_epochs if search.prunes(self.conf) else None
        job_index = 0
        while done < self.conf.n_trials:
            batch, repeats = self.ask_batch(study, space, min(self.batch_size, self.conf.n_trials - done))
            if batch:
                jobs = [
                    fixed
                    + search.trial_overrides(trial.params)
                    + TrialRef(self.conf.storage, self.conf.study_name, trial.number, warmup).overrides()
                    for trial in batch
                ]
                returns = self.launcher.launch(jobs, initial_job_idx=job_index)
                job_index += len(jobs)
                for trial, job in zip(batch, returns):
                    self.tell(study, trial, job.return_value)
            for trial, earlier in repeats:  # the same values as a trial of this batch: its result
                search.reuse_result(study, trial, study.trials[earlier.number])
            done = search.counted_trials(study)
            if not batch and search.exhausted(study, space):
                log.info("every combination of the search space has been tried: the search stops here")
                break
        if job_index == 0:  # every trial reused an earlier result: no run to report on
            search_runs.discard_parent_run()
            log.info("no trial needed training: every one had the values of an earlier trial")
        else:
            self.log_importances(study, space)
        return self.log_best(study)

    def ask_batch(self, study, space, size: int):
        """Up to ``size`` new trials to train, and the trials asked meanwhile whose
        values were already trained (their result is reused; they still count)."""
        batch, repeats = [], []
        for _ in range(size):
            if search.exhausted(study, space):
                break
            trial = study.ask(space)
            earlier = search.same_values(study, trial.params)
            if earlier is not None:
                log.info(
                    "trial %d has the values of trial %d: not trained again, its result is reused",
                    trial.number,
                    earlier.number,
                )
                search.reuse_result(study, trial, earlier)
                continue
            in_batch = next((other for other in batch if other.params == trial.params), None)
            if in_batch is not None:
                trial.set_user_attr("duplicate_of", in_batch.number)
                repeats.append((trial, in_batch))
                continue
            batch.append(trial)
        return batch, repeats

    def tell(self, study, trial, result) -> None:
        """Tell Optuna a trial's result: its metrics (None if its job failed)."""
        import optuna

        values = search.objective_values(self.conf.objective, result)
        if values is not None:
            study.tell(trial, values)
        elif result and result.get("pruned"):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def nothing_to_run(self, study, done: int) -> Any:
        """A complete study (or a finite space fully tried): say so, leave no empty run."""
        from mnist_runner.sweeps import search_runs

        search_runs.discard_parent_run()
        if done >= self.conf.n_trials:
            reason = (
                f"study {self.conf.study_name!r} in {self.conf.storage} already has {done} of "
                f"hydra.sweeper.n_trials={self.conf.n_trials} trials: nothing to run. Raise "
                "hydra.sweeper.n_trials to continue it, or name a new study with hydra.sweeper.study_name"
            )
        else:
            reason = (
                f"study {self.conf.study_name!r} in {self.conf.storage} has tried every combination of its "
                "search space: nothing to run"
            )
        log.info("%s", reason)
        return self.log_best(study)

    def log_best(self, study) -> Any:
        best = study.best_trials
        if best:
            log.info("best trial %s", search.describe_trial(best[0], self.conf.objective))
        return best

    def log_importances(self, study, space) -> None:
        from mnist_runner.sweeps import search_runs

        objective = OBJECTIVES[self.conf.objective][0][0]
        importances = search.param_importances(study, space, self.conf.seed)
        if importances is None:
            log.info("parameter importances need %d completed trials: none logged", search.MIN_TRIALS_FOR_IMPORTANCE)
            return
        search_runs.log_importances(importances, objective)
