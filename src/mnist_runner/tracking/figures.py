"""The run's figures, drawn on matplotlib ``Figure`` objects (no pyplot state,
no display needed) for ``mlflow.log_figure``.

Their shapes do not change from run to run, so their margins are fixed
here: a layout engine (``layout="constrained"``) measured every label at
each save and made these two pictures cost twice as much to draw, about
0.2 s of every run (2-core CPU)."""

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
    figure = Figure(figsize=(11, 4))
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.93, wspace=0.16)
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

    figure = Figure(figsize=(7, 6))
    figure.subplots_adjust(left=0.1, right=0.98, bottom=0.09, top=0.94)
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(num_classes)), ax=ax, colorbar=False, values_format="d"
    )
    ax.set_title(f"test set: {int((y_true == y_pred).sum())} of {len(y_true)} correct")
    return figure
