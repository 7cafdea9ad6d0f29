"""The plain-Keras reference for the benchmark: what the runner's runs would be
if written by hand, with no Hydra, MLflow or project code.

    python bench/reference_keras.py dense                     # the course's dense run, as its notebook does it
    python bench/reference_keras.py convnet --target 0.99     # keras-io's recipe until 99% test accuracy
    python bench/reference_keras.py dense --steps-per-execution 32 --eval-batch-size 1024 --uint8
                                                              # the same, run as the runner runs it
    KERAS_BACKEND=jax python bench/reference_keras.py cnn --steps-per-execution 32 --eval-batch-size 1024

It reads the project's MNIST cache with NumPy, trains the same model on the
same data with the same settings, and prints one JSON object: times,
per-epoch throughput and test accuracy.

Without options it is what a course notebook writes: Keras' defaults for
running the model (one batch per call, validation in batches of the
training's 128, the test set in Keras' 32) and the images converted to
float32 arrays divided by 255.
``--steps-per-execution 32 --eval-batch-size 1024 --uint8`` runs it as the
runner does (its ``trainer.steps_per_execution`` and
``trainer.eval_batch_size``, and uint8 images rescaled by the model's first
layer), so that a comparison with the runner measures the runner's own cost.
"""

import argparse
import json
import time
from pathlib import Path

START = time.perf_counter()  # before TensorFlow's import, which is part of the cost

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "runs" / "data" / "mnist.npz"
# The recipes as the course and keras-io give them, and the runner's fast_convnet preset.
RECIPES = {
    "dense": {"optimizer": "rmsprop", "validation_split": 0.3, "epochs": 10},
    "cnn": {"optimizer": "rmsprop", "validation_split": 0.3, "epochs": 10},
    "convnet": {"optimizer": "adam", "validation_split": 0.1, "epochs": 15},
    "fast_convnet": {
        "optimizer": "adam",
        "learning_rate": 0.02,
        "lr_schedule": "warmup_cosine",
        "validation_split": 0.1,
        "epochs": 2,
    },
}


def dense_model() -> keras.Model:
    """The course's network: 784-512-256-128-32-10."""
    return keras.Sequential(
        [keras.Input((28, 28)), layers.Flatten()]
        + [layers.Dense(units, activation="relu") for units in (512, 256, 128, 32)]
        + [layers.Dense(10, activation="softmax")]
    )


def cnn_model() -> keras.Model:
    """The course's CNN: Conv32, pooling, ReLU, Dense 128."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3),
            layers.MaxPooling2D(2),
            layers.Activation("relu"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def fast_convnet_model() -> keras.Model:
    """experiments/fast_convnet.yaml: convolutions of 16 and 32 filters, each
    followed by pooling and ReLU, then a Dense 64."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3),
            layers.MaxPooling2D(2),
            layers.Activation("relu"),
            layers.Conv2D(32, 3),
            layers.MaxPooling2D(2),
            layers.Activation("relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


MODELS = {"dense": lambda: dense_model(), "cnn": lambda: cnn_model(), "fast_convnet": lambda: fast_convnet_model()}


def convnet_model() -> keras.Model:
    """keras-io's "Simple MNIST convnet"."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


class EpochClock(keras.callbacks.Callback):
    """Per-epoch wall times and, with a target, the accuracy after each epoch:
    training stops at the end of the first epoch that reaches it.

    ``monitor="test"`` evaluates the test set after each epoch; the time that
    takes is the clock's own and is left out of ``reached_at`` (seconds from
    the start of training to the end of the epoch that reached the target).
    ``monitor="val"`` reads the epoch's ``val_accuracy`` and never looks at
    the test set. Put the clock last among the callbacks: what runs before it
    at an epoch's end (a checkpoint, logging) is inside the epoch's time.
    """

    def __init__(self, x_test, y_test, target: float | None, monitor: str = "test"):
        super().__init__()
        if monitor not in ("test", "val"):
            raise ValueError(f"monitor={monitor!r}: test or val")
        self.x_test, self.y_test, self.target, self.monitor = x_test, y_test, target, monitor
        self.seconds, self.accuracy = [], []
        self.reached_at = None  # seconds since fit started, the clock's own evaluations left out
        self.evaluating = 0.0  # seconds spent evaluating the test set so far

    def on_train_begin(self, logs=None):
        self.fit_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        self.seconds.append(end - self.epoch_start)
        self.at_epoch_end(epoch)
        if self.target is None:
            return
        if self.monitor == "val":
            accuracy = float((logs or {})["val_accuracy"])
        else:
            _, accuracy = self.model.evaluate(self.x_test, self.y_test, batch_size=1024, verbose=0)
        self.accuracy.append(float(accuracy))
        if accuracy >= self.target:
            self.reached_at = end - self.fit_start - self.evaluating
            self.model.stop_training = True
        self.evaluating += time.perf_counter() - end

    def at_epoch_end(self, epoch: int) -> None:
        """A subclass's check at the end of an epoch, after its time was taken."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(RECIPES))
    parser.add_argument("--data", default=DEFAULT_DATA, help="a keras-style mnist.npz")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--train-samples", type=int, help="the first N training images (default all)")
    parser.add_argument("--target", type=float, help="stop at this test accuracy, checked after each epoch")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps-per-execution", type=int, default=1, help="Keras' compile option (default: 1)")
    parser.add_argument("--eval-batch-size", type=int, help="validation and test batch size (default: Keras')")
    parser.add_argument(
        "--uint8",
        action="store_true",
        help="keep the images uint8 and rescale them in the model's first layer, as the runner does "
        "(default: float32 arrays divided by 255, as the course's notebook does)",
    )
    args = parser.parse_args()
    recipe = RECIPES[args.model]

    keras.utils.set_random_seed(args.seed)
    with np.load(args.data, allow_pickle=False) as data:
        x_train, y_train = data["x_train"][: args.train_samples], data["y_train"][: args.train_samples]
        x_test, y_test = data["x_test"], data["y_test"]
    if not args.uint8:
        x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
    if args.model != "dense":
        x_train, x_test = x_train[..., None], x_test[..., None]
    y_train, y_test = keras.utils.to_categorical(y_train, 10), keras.utils.to_categorical(y_test, 10)

    model = MODELS.get(args.model, convnet_model)()
    if args.uint8:  # the scaling as the model's first layer, as in the runner
        model = keras.Sequential([keras.Input(model.input_shape[1:]), layers.Rescaling(1 / 255), *model.layers])
    optimizer = recipe["optimizer"]
    epochs = args.epochs or recipe["epochs"]
    if "learning_rate" in recipe:
        rate = recipe["learning_rate"]
        if recipe.get("lr_schedule") == "warmup_cosine":  # as the runner's trainer.lr_schedule=warmup_cosine
            steps = epochs * -(-int(len(y_train) * (1 - recipe["validation_split"])) // 128)
            rate = keras.optimizers.schedules.CosineDecay(
                rate / 10, steps - steps // 4, alpha=0.01, warmup_target=rate, warmup_steps=steps // 4
            )
        optimizer = keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": rate}})
    model.compile(
        optimizer=optimizer,
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=args.steps_per_execution,
    )
    clock = EpochClock(x_test, y_test, args.target)
    fit_start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=epochs,
        validation_split=recipe["validation_split"],
        validation_batch_size=args.eval_batch_size,
        callbacks=[clock],
        verbose=0,
    )
    fit_seconds = time.perf_counter() - fit_start
    # batch_size None: Keras' default (32), as a notebook's model.evaluate(x_test, y_test).
    _, test_accuracy = model.evaluate(x_test, y_test, batch_size=args.eval_batch_size, verbose=0)

    trained = int(len(y_train) * (1 - recipe["validation_split"]))
    print(
        json.dumps(
            {
                "model": args.model,
                "backend": keras.backend.backend(),
                "seed": args.seed,
                "input_dtype": str(x_train.dtype),
                "steps_per_execution": args.steps_per_execution,
                "eval_batch_size": args.eval_batch_size,
                "epochs_run": len(clock.seconds),
                "fit_seconds": fit_seconds,
                "epoch_seconds": clock.seconds,
                "samples_per_second": [trained / seconds for seconds in clock.seconds],
                "test_accuracy": float(test_accuracy),
                "test_accuracy_per_epoch": clock.accuracy,
                "seconds_to_target": clock.reached_at,
                "seconds_in_process": time.perf_counter() - START,
            }
        )
    )


if __name__ == "__main__":
    main()
