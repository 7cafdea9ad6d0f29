"""A model card: what the trained model is, what it learned from and how well
it did, in a page of Markdown logged with the run (``model_card.md``) and
used as the description of its registered versions."""

from __future__ import annotations

import keras
import pandas as pd
from omegaconf import DictConfig

from mnist_runner.datasets.loader import Dataset
from mnist_runner.pipeline.splits import Split


def model_card(
    cfg: DictConfig,
    dataset: Dataset,
    split: Split,
    metrics: dict[str, float],
    model: keras.Model,
    per_class: pd.DataFrame | None = None,
) -> str:
    """``per_class``: ``learning_figures.class_accuracy``'s table, shown as the
    card's last section."""
    model_cfg, trainer = cfg.model, cfg.trainer
    height, width = dataset.image_shape
    layers = " -> ".join(layer.__class__.__name__ for layer in model.layers[1:])
    subset = "all" if cfg.data.train_samples is None else f"a stratified subset of {cfg.data.train_samples}"
    return "\n".join(
        [
            f"# {model_cfg.name} on {dataset.name}",
            "",
            f"- **Input**: raw {height}x{width} grayscale images, pixel values 0-{dataset.pixel_max} "
            f"(the model scales them itself: `{cfg.preprocess.name}`).",
            f"- **Output**: probabilities of the {dataset.num_classes} classes.",
            f"- **Architecture** ({model_cfg.type}, {model.count_params():,} parameters): {layers}.",
            f"- **Data**: {dataset.name} from {dataset.source} (SHA-256 {dataset.checksum[:16]}...): "
            f"{len(split.y_train):,} training images ({subset}, {1 - trainer.validation_split:.0%} of them), "
            f"{len(split.y_val):,} for validation, {len(dataset.y_test):,} for the test.",
            f"- **Training**: {trainer.optimizer}, learning rate {trainer.learning_rate}{schedule_text(trainer)}, "
            f"batch {trainer.batch_size}, "
            f"{len_epochs(metrics, trainer.epochs)} epochs, seed {trainer.seed}.",
            f"- **Results**: test accuracy {metrics['test_accuracy']:.4f} (test loss {metrics['test_loss']:.4f}); "
            f"best validation accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}; "
            f"overfitting gap at the end {metrics['final_overfit_gap']:+.4f} "
            "(training accuracy in inference mode minus validation accuracy).",
            "",
            *([] if per_class is None else class_section(per_class)),
        ]
    )


def class_section(per_class: pd.DataFrame) -> list[str]:
    """The test accuracy of each class, with the class it was most often taken
    for: where the model is weak, which the overall accuracy hides."""
    table = pd.DataFrame(
        {
            "class": [f"{label} ({name})" if name != str(label) else name for label, name in per_class["name"].items()],
            "test images": per_class["images"],
            "correct": per_class["correct"],
            "accuracy": per_class["accuracy"].map(lambda value: "-" if pd.isna(value) else f"{value:.4f}"),
            "most often taken for": per_class["mistaken_for"].replace("", "-"),
        }
    )
    return [
        "## Test accuracy per class",
        "",
        table.to_markdown(index=False, colalign=("left", "right", "right", "right", "left"), disable_numparse=True),
        "",
    ]


def len_epochs(metrics: dict[str, float], planned: int) -> str:
    """The epochs trained: fewer than planned when early stopping ended the run."""
    done = int(metrics.get("epochs_trained", planned))
    return f"{done}" if done == planned else f"{done} of {planned}"


def schedule_text(trainer) -> str:
    """`` (warmup_cosine schedule)`` unless the learning rate was constant."""
    schedule = trainer.get("lr_schedule", "constant")
    return "" if schedule == "constant" else f" ({schedule} schedule)"
