"""How the gap report reads a sweep's settings from MLflow's params: which
keys vary, how a value reads in a label (``dense · 10 ep · dropout 0.5``),
and how values sort (10 after 5, "none" last)."""

from __future__ import annotations

import math

import pandas as pd

# Config groups swept by option (model=dense,cnn) show as their name param.
GROUPS = ("data", "preprocess", "model")


NOT_SWEPT = ("derived.", "tracking.", "search.")


# Swept to repeat a configuration, not to compare settings: runs that differ
# only in these are one configuration's repeats.
REPEAT_KEYS = ("trainer.seed",)


SEED = "trainer.seed"


SEPARATOR = " · "


# Short names of common swept keys in labels; others show their last part.
SHORT_NAMES = {"trainer.learning_rate": "lr", "trainer.batch_size": "batch"}


def param_column(key: str) -> str:
    """The ``params.*`` column of a swept key: ``model`` -> ``params.model.name``."""
    key = key.lstrip("+~")
    return f"params.{key}.name" if key in GROUPS else f"params.{key}"


def varying_params(runs: pd.DataFrame) -> list[str]:
    """Params that differ between runs and are set for all of them: what a
    set of runs not launched as one sweep compared. Config groups' names come
    first, then the other keys alphabetically; a param that only restates
    another (``model.type`` beside ``model.name``) is left out."""
    candidates = [
        column
        for column in runs.columns
        if column.startswith("params.")
        and not column.removeprefix("params.").startswith(NOT_SWEPT)
        and runs[column].notna().all()
        and runs[column].nunique() > 1
    ]
    names = [param_column(group) for group in GROUPS]
    candidates.sort(key=lambda column: (column not in names, column))
    columns: list[str] = []
    for column in candidates:
        if not any(same_partition(runs[column], runs[kept]) for kept in columns):
            columns.append(column)
    return columns


def same_partition(a: pd.Series, b: pd.Series) -> bool:
    """Whether two params split the runs into the same groups (one determines the other)."""
    pairs = pd.DataFrame({"a": a.astype(str), "b": b.astype(str)}).drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique


def parse_number(value) -> int | float | None:
    """A param as MLflow stores it ("10", "0.5", "None") as a number; None if it is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def format_number(value: int | float) -> str:
    """3 significant digits for fractions (0.00123, 0.5), thousands separators for large counts."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))


def is_none(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("None", "null", "")


def format_setting(key: str, value) -> str:
    """One setting as people read it: ``cnn``, ``10 ep``, ``dropout 0.5``,
    ``6,000 samples``, ``all samples`` (the whole training set)."""
    key = key.lstrip("+~")
    if key == "data.train_samples":
        if is_none(value):
            return "all samples"
        number = parse_number(value)
        return f"{number:,} samples" if number is not None else f"{value} samples"
    if key == "trainer.epochs":
        return f"{value} ep"
    if key in GROUPS or key.endswith(".name"):
        return str(value)
    leaf = SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
    if is_none(value):
        return f"{leaf} none"
    number = parse_number(value)
    if number is None or isinstance(value, bool) or str(value) in ("True", "False"):
        return str(value) if leaf in ("optimizer", "activation", "precision") else f"{leaf} {value}"
    return f"{leaf} {format_number(number)}"


def config_label(row: pd.Series, factors: list[str]) -> str:
    return SEPARATOR.join(format_setting(key, row[key]) for key in factors) or str(row["run"])


def config_labels(table: pd.DataFrame, factors: list[str]) -> pd.Series:
    """Each run's configuration label; configurations whose rounded labels
    coincide (learning rates 0.001234 and 0.001236) get their exact values."""
    if table.empty:
        return pd.Series([], index=table.index, dtype=object)
    labels = table.apply(lambda row: config_label(row, factors), axis=1)
    exact = table.apply(lambda row: SEPARATOR.join(f"{key}={row[key]}" for key in factors), axis=1)
    ambiguous = exact.groupby(labels).transform("nunique") > 1
    return labels.where(~ambiguous, exact)


def value_order(value) -> tuple:
    """Sort key of a param value: numbers ascending, then text, none (all) last."""
    number = parse_number(value)
    return (is_none(value), number is None, number if number is not None else 0, str(value))


def ordered_values(values: pd.Series) -> list:
    """The distinct values of a param column in ``value_order``."""
    return sorted(dict.fromkeys(values), key=value_order)


def natural_sort(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``table`` sorted by the param ``columns`` in ``value_order`` (10 after 5)."""
    if not columns:
        return table
    return table.sort_values(columns, key=lambda column: column.map(value_order), kind="stable")
