"""Pictures of what the network learned from the pixels: the test images it
got wrong, the kernels of its first convolution, and what that convolution
makes of a few test images. Drawn on matplotlib ``Figure`` objects like
``figures``; the choice of images is kept apart, as plain functions of the
run's predictions, so that it can be checked against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import CenteredNorm, Colormap, Normalize
from matplotlib.figure import Figure

MISCLASSIFIED_LIMIT = 25  # a 5x5 grid: enough to see a pattern, each image still large enough to read
FEATURE_MAP_IMAGES = 4
FEATURE_MAP_FILTERS = 8  # of each image; more would shrink the maps below what can be seen
LINE_INCHES = 0.15  # one line of the labels' small type, with its leading
TITLE_LINE_INCHES = 0.2
MIN_WIDTH_INCHES = 6.8  # what the titles need: a narrower grid (few mistakes, few filters) is centred
# Diverging, centred on 0: a positive weight (red) favours a bright pixel there, a negative one (blue) a dark one.
DIVERGING = "RdBu_r"


def misclassified_indices(
    y_true: np.ndarray, y_pred: np.ndarray, probabilities: np.ndarray, limit: int = MISCLASSIFIED_LIMIT
) -> np.ndarray:
    """The test images predicted wrongly, the most confident mistakes first
    (the predicted class's probability; ties in test-set order), at most ``limit``."""
    wrong = np.flatnonzero(np.asarray(y_pred) != np.asarray(y_true))
    confidence = probabilities[wrong, y_pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def feature_map_indices(y_true: np.ndarray, count: int = FEATURE_MAP_IMAGES) -> np.ndarray:
    """The first test image of each of the first ``count`` classes present:
    different classes, so that the maps can be compared across them."""
    classes, first = np.unique(np.asarray(y_true), return_index=True)
    return first[np.argsort(classes)][:count]


def class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per class (index: the label): its name, its test images, how
    many were right, the accuracy (NaN for a class without test images) and
    the class it was most often mistaken for (empty when never)."""
    from sklearn.metrics import confusion_matrix

    labels = range(len(class_names))
    counts = confusion_matrix(y_true, y_pred, labels=list(labels))  # rows: true classes
    wrong = counts * (1 - np.eye(len(labels), dtype=counts.dtype))
    table = pd.DataFrame(
        {
            "name": list(class_names),
            "images": counts.sum(axis=1),
            "correct": np.diag(counts),
            "mistaken_for": [class_names[k] if row[k] else "" for k, row in zip(wrong.argmax(axis=1), wrong)],
        },
        index=pd.Index(labels, name="label"),
    )
    table.insert(3, "accuracy", table["correct"] / table["images"].where(table["images"] > 0))
    return table


def misclassified_figure(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray,
    indices: np.ndarray,
    class_names: Sequence[str],
    pixel_max: int,
) -> Figure:
    """The test images at ``indices`` (from ``misclassified_indices``), each
    labelled with its true class, the prediction and the prediction's probability."""
    mistakes = int((np.asarray(y_pred) != np.asarray(y_true)).sum())
    if not len(indices):
        figure = Figure(figsize=(5, 1))
        figure.text(0.5, 0.5, f"no mistakes on the {len(y_true):,} test images", ha="center", va="center")
        return figure
    grid = misclassified_grid(len(indices), images.shape[1:])
    columns = grid.columns
    if mistakes == 1:
        title = f"the one mistake on {len(y_true):,} test images"
    else:
        shown = (
            f"all {mistakes:,}" if len(indices) == mistakes else f"the {len(indices)} most confident of {mistakes:,}"
        )
        title = f"{shown} mistakes on {len(y_true):,} test images, the surest first"
    # Short labels: their text is most of what the picture costs to draw.
    figure, ax = grid.figure(f"{title}\neach image: true class \u2192 predicted class, and how sure the model was")
    grid.draw(ax, images[indices], 0, columns, "gray_r", Normalize(0, pixel_max))
    for i, index in enumerate(indices):
        # Rounded down: a 99.7% sure mistake must not read as 100% sure.
        sure = int(np.floor(100 * probabilities[index, y_pred[index]]))
        text = f"{class_names[y_true[index]]} \u2192 {class_names[y_pred[index]]}\n{sure}% sure"
        grid.label(ax, i // columns, i % columns, text)
    return figure


def misclassified_grid(count: int, tile: tuple[int, int]) -> Grid:
    """Where ``misclassified_figure`` puts ``count`` images: in rows of 5, with
    two lines of label above each."""
    columns = min(count, int(np.ceil(np.sqrt(MISCLASSIFIED_LIMIT))))
    return Grid(-(-count // columns), columns, tuple(tile), cell_inches=1.6, label_lines=2)


@dataclass(frozen=True)
class Grid:
    """Tiles of one shape in ``rows`` x ``columns`` cells, each with a band for
    its label above it, drawn as a few images on one Axes: one Axes per tile
    would make a picture cost seconds to render instead of a few hundredths."""

    rows: int
    columns: int
    tile: tuple[int, int]  # (height, width) in pixels
    cell_inches: float  # the width of a cell
    label_lines: int

    @property
    def margin(self) -> int:
        return max(1, self.tile[1] // 8)

    @property
    def inches_per_pixel(self) -> float:
        return self.cell_inches / (self.tile[1] + 2 * self.margin)

    @property
    def band(self) -> int:
        return int(np.ceil(self.label_lines * LINE_INCHES / self.inches_per_pixel))

    @property
    def cell(self) -> tuple[int, int]:
        return self.band + self.tile[0] + self.margin, self.tile[1] + 2 * self.margin

    def figure(self, title: str, right_inches: float = 0.0) -> tuple[Figure, Axes]:
        """A figure just large enough for the cells (square pixels, no layout
        engine to run), with ``title`` above and ``right_inches`` to spare on the right."""
        width, height = (
            n * size * self.inches_per_pixel for n, size in zip((self.columns, self.rows), self.cell[::-1])
        )
        title_inches = 0.15 + TITLE_LINE_INCHES * (title.count("\n") + 1)
        total = max(width + right_inches, MIN_WIDTH_INCHES)
        figure = Figure(figsize=(total, height + title_inches))
        figure.suptitle(title, y=1 - 0.1 / (height + title_inches), va="top", fontsize="medium", linespacing=1.3)
        left = (total - width - right_inches) / 2
        ax = figure.add_axes((left / total, 0, width / total, height / (height + title_inches)))
        ax.set_axis_off()
        ax.set(xlim=(-0.5, self.columns * self.cell[1] - 0.5), ylim=(self.rows * self.cell[0] - 0.5, -0.5))
        return figure, ax

    def draw(self, ax: Axes, tiles: np.ndarray, first_column: int, columns: int, cmap: str | Colormap, norm: Normalize):
        """``tiles`` row by row into ``columns`` columns from ``first_column``, as one image."""
        height, width = self.cell
        rows = -(-len(tiles) // columns)
        cells = np.full((rows * columns, height, width), np.nan, dtype=np.float32)  # NaN: not drawn
        cells[: len(tiles), self.band : self.band + self.tile[0], self.margin : self.margin + self.tile[1]] = tiles
        image = cells.reshape(rows, columns, height, width).swapaxes(1, 2).reshape(rows * height, columns * width)
        left = first_column * width - 0.5
        extent = (left, left + columns * width, rows * height - 0.5, -0.5)
        return ax.imshow(image, cmap=cmap, norm=norm, extent=extent, interpolation="nearest", aspect="auto")

    def label(self, ax: Axes, row: int, column: int, text: str) -> None:
        height, width = self.cell
        x, y = column * width + width / 2 - 0.5, row * height + self.band / 2 - 0.5
        ax.text(x, y, text, ha="center", va="center_baseline", fontsize="small", linespacing=1.1)


def first_conv_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The model's first 2-D convolution, or None (a dense model)."""
    return next((layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)), None)


def filters_figure(kernel: np.ndarray, layer_name: str) -> Figure:
    """One small image per filter of a convolution's ``kernel`` (height, width,
    channels, filters), row by row, on one colour scale centred on 0. The
    first convolution here sees one channel; were there more, their kernels
    are averaged, which keeps one picture per filter."""
    kernel = np.asarray(kernel, dtype=np.float32).mean(axis=2)
    count, tiles = kernel.shape[-1], np.moveaxis(kernel, -1, 0)
    columns = min(count, FEATURE_MAP_FILTERS)
    grid = Grid(-(-count // columns), columns, tiles.shape[1:], cell_inches=0.7, label_lines=1)
    peak = float(np.abs(kernel).max()) or 1.0
    # The scale in words rather than a colour bar: a bar is an Axes with
    # ticks, which would cost more to draw than all the kernels.
    size = f"{kernel.shape[0]}x{kernel.shape[1]}"
    figure, ax = grid.figure(
        f"{layer_name}: the {count} kernels ({size}) of the first convolution, row by row\n"
        f"weights from -{peak:.2g} (blue) through 0 (white) to +{peak:.2g} (red):\n"
        "red favours a bright pixel there, blue a dark one"
    )
    grid.draw(ax, tiles, 0, columns, DIVERGING, CenteredNorm(0, peak))
    for f in range(columns):  # the first row: the filters that feature_maps.png shows
        grid.label(ax, 0, f, f"{f + 1}")
    return figure


@dataclass(frozen=True)
class ConvView:
    """What the pictures of a model's first convolution show, as plain arrays:
    its kernel, and its maps of a few test images (``chosen``)."""

    layer_name: str
    kernel: np.ndarray
    chosen: np.ndarray
    maps: np.ndarray


def first_conv_view(model: keras.Model, images: np.ndarray, y_true: np.ndarray) -> ConvView | None:
    """The model's first convolution seen on the test ``images`` (shaped as
    the data set's), or None for a model without one. Computed apart from
    the drawing: this part runs the model, the drawing needs only arrays."""
    conv = first_conv_layer(model)
    if conv is None:
        return None
    chosen = feature_map_indices(y_true)
    return ConvView(
        conv.name,
        np.asarray(conv.kernel.numpy(), dtype=np.float32),
        chosen,
        feature_maps(model, conv, images[chosen]),
    )


def feature_maps(model: keras.Model, layer: keras.layers.Layer, images: np.ndarray) -> np.ndarray:
    """``layer``'s outputs for a few raw ``images``, called directly (no
    ``predict``: for a handful of images that is the faster way)."""
    probe = keras.Model(model.input, layer.output)
    inputs = np.asarray(images, dtype=np.float32).reshape(len(images), *model.input.shape[1:])
    return np.asarray(keras.ops.convert_to_numpy(probe(inputs, training=False)), dtype=np.float32)


def feature_maps_figure(
    images: np.ndarray, maps: np.ndarray, labels: Sequence[str], layer_name: str, pixel_max: int
) -> Figure:
    """Each image beside its first ``FEATURE_MAP_FILTERS`` maps, each map on
    its own scale centred on 0 (the convolution's raw output, before pooling
    and activation: negative where a kernel's pattern is absent)."""
    shown = min(maps.shape[-1], FEATURE_MAP_FILTERS)
    tiles = np.moveaxis(maps[..., :shown], -1, 1)  # (image, filter, height, width)
    # Each map scaled by its largest magnitude, so that the weaker ones show too.
    tiles = tiles / np.where((peak := np.abs(tiles).max(axis=(2, 3), keepdims=True)) > 0, peak, 1)
    # A valid convolution's map is smaller than its input: centred, each of
    # its pixels lies under the middle of the kernel that made it.
    (height, width), (map_height, map_width) = images.shape[1:], tiles.shape[2:]
    top, left = (height - map_height) // 2, (width - map_width) // 2
    placed = np.full((*tiles.shape[:2], height, width), np.nan, dtype=np.float32)
    placed[..., top : top + map_height, left : left + map_width] = tiles
    grid = Grid(len(images), shown + 1, (height, width), cell_inches=1.0, label_lines=1)
    figure, ax = grid.figure(
        f"{layer_name}: a test image per class (left), then what filters 1-{shown} of {maps.shape[-1]} make of it\n"
        "red: where the filter finds its pattern; blue: its opposite (each map on its own scale)"
    )
    grid.draw(ax, images, 0, 1, "gray_r", Normalize(0, pixel_max))
    grid.draw(ax, placed.reshape(-1, height, width), 1, shown, DIVERGING, CenteredNorm(0, 1))
    for row, label in enumerate(labels):
        grid.label(ax, row, 0, label)
    for f in range(shown):  # the columns' headings, once
        grid.label(ax, 0, f + 1, f"filter {f + 1}")
    return figure
