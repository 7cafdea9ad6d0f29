"""Real components the runner works with, started on 127.0.0.1 by the project:
a PostgreSQL-backed MLflow tracking server and a one-node SLURM cluster."""
