"""What is known of each data set before it is loaded: its size, image shape
and pixel range. The config schema checks values against it, the loader
checks what it loaded against it, and predict reads a model's pixel range
from it. Nothing here imports NumPy, so ``run.py --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    train_size: int  # images in the training part
    test_size: int
    image_shape: tuple[int, int]
    pixel_max: int  # the largest pixel value; a model takes raw pixels of this range
    description: str
    num_classes: int = 10
    # How much of the image the digit's longer side fills: MNIST's 20 of 28
    # pixels (centred by mass); scikit-learn's digits fill the whole 8x8
    # field. Predict prepares image files the same way.
    digit_box: float = 20 / 28
    # What each label means, where it is not the digit itself.
    class_names: tuple[str, ...] = ()


# Fashion-MNIST's labels 0-9, as its authors name them.
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", 60_000, 10_000, (28, 28), 255, "handwritten digits"),
        DatasetInfo(
            "fashion_mnist", 60_000, 10_000, (28, 28), 255, "Zalando's clothing images", class_names=FASHION_CLASSES
        ),
        # scikit-learn's 1,797 images, of which a fixed stratified 20% is the test set.
        DatasetInfo("digits", 1_437, 360, (8, 8), 16, "scikit-learn's 8x8 digits, offline", digit_box=1.0),
    )
}
DEFAULT_DATASET = "mnist"


def class_names(name: str, num_classes: int = 10) -> list[str]:
    """The names of a data set's classes by label: its own, else the digits."""
    info = DATASETS.get(name)
    return list(info.class_names) if info and info.class_names else [str(label) for label in range(num_classes)]
