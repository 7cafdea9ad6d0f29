"""MLflow at the edge. ``store``: connecting to a tracking store; ``runs``:
one run's lifecycle; ``epoch_logger`` and ``records``: what a run logs;
``provenance``: where a run came from; ``run_history``: reading back what a
run logged (resume); ``links``: addresses in the MLflow UI; ``figures``: the
run's plots. The pipeline calls these and never touches MLflow itself."""
