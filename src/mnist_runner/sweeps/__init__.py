"""Sweeps: Hydra's multirun as one MLflow parent run with a child run per job
(``callback``, ``parent``), the overfitting-gap report at the end (``report``:
pure pandas and matplotlib; ``collect``: the runs from MLflow; ``compare``: the
report on demand), and the job side of a hyperparameter search (``pruning``;
the search itself is the Hydra plugin in ``hydra_plugins/mnist_runner_search``)."""
