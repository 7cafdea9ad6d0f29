"""Real components the runner works with, started on 127.0.0.1 by the project:
the MLflow UI on the local store (``ui``), optuna-dashboard on the search
studies (``dashboard``), a PostgreSQL-backed MLflow tracking server
(``tracking_server``, its cluster in ``postgres``) and a one-node SLURM
cluster (``slurm_cluster``). ``startup`` holds what their starts share."""
