"""The run's figures, drawn on matplotlib ``Figure`` objects (no pyplot state,
no display needed) for ``mlflow.log_figure``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def history_figure(history: pd.DataFrame) -> Figure:
    """Accuracy and loss per epoch, training vs validation, like the course's plots.

    The training curves are Keras' running means (what the course plotted);
    the dotted line is training re-evaluated in inference mode, the number the
    overfitting gap uses.
    """
    figure = Figure(figsize=(11, 4), layout="constrained")
    for ax, metric in zip(figure.subplots(1, 2), ("accuracy", "loss")):
        ax.plot(history["epoch"], history[metric], "o-", label=f"training ({metric}, running)")
        ax.plot(history["epoch"], history[f"train_eval_{metric}"], ":", label="training (inference mode)")
        ax.plot(history["epoch"], history[f"val_{metric}"], "s-", label="validation")
        ax.set(title=f"model {metric}", xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def confusion_matrix_figure(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Figure:
    """Test-set confusion matrix: rows are true classes, columns predictions."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure = Figure(figsize=(7, 6), layout="constrained")
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(num_classes)), ax=ax, colorbar=False, values_format="d"
    )
    ax.set_title(f"test set: {int((y_true == y_pred).sum())} of {len(y_true)} correct")
    return figure
