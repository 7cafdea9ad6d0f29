"""Config-driven image-classification experiments with Keras, Hydra and MLflow.

The package's folders are its layers; each imports only from the ones listed
before it (``tests/project/test_layers.py`` checks):

- ``errors``, ``signals``, ``redaction``, ``paths``: what every layer shares.
- ``datasets``: what each data set is, where its files come from, loading.
- ``config``: the schema, Hydra wiring, config as params.
- ``tracking``: MLflow at the edge: the store, a run's lifecycle, what it logs.
- ``pipeline``: one run, in the order the data flows: data -> split ->
  preprocessing -> model -> training -> test, recorded through ``tracking``
  (``pipeline.experiment.run_experiment``).
- ``sweeps``: multirun parent runs, the gap report, the search's job side.
- ``serving``: using trained models: predict, the registry.
- ``services``: the MLflow UI, a tracking server, a SLURM cluster.
- ``api``: ``train()`` from Python.

Importing this package does not import TensorFlow.
"""

from mnist_runner.api import train

__all__ = ["train"]
