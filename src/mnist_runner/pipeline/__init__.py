"""One run, in the order the data flows (``experiment.run_experiment``):
data (``mnist_runner.datasets``) -> ``splits`` -> ``preprocess`` -> ``models``
-> ``training`` (with ``gap``'s overfitting gap and ``checkpoints``) -> the
test set, recorded through ``mnist_runner.tracking``. ``session`` holds the
process-wide Keras state; ``resume`` what continuing a run needs."""
