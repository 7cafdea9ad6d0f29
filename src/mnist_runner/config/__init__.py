"""The config: its schema (``schema``), Hydra wiring and composing
(``compose``), and turning it into MLflow params (``params``). The YAML files
are in the repository's ``conf/`` and presets in ``experiments/``."""
