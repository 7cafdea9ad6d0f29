"""Does an execution option make the runner's training faster here? Seconds
per epoch of the course's models under each option, each in a fresh process.

    python bench/execution_options.py                      # dense and cnn, 2 rounds (about 12 minutes)
    python bench/execution_options.py --models dense --rounds 3 --options default steps_64 xla+steps_32

An epoch here is what the runner's epoch is: training, validation and the
overfitting gap's re-evaluation of 10,000 training samples (``GapMetrics``),
on the model ``build_model`` makes. Options, each against ``default``
(Keras' defaults, evaluation at the training batch size of 128, as the
course's notebook does):

- ``steps_32``: 32 batches per call into TensorFlow
  (``trainer.steps_per_execution``)
- ``eval_batch_1024``: validation and gap evaluation in batches of 1024
  (``trainer.eval_batch_size``); training is unchanged
- ``xla``: ``jit_compile=True`` (``trainer.jit_compile``; Keras' "auto"
  means off on CPUs)
- ``tf_data``: a ``tf.data`` pipeline with shuffle, batch and prefetch
  instead of NumPy arrays
- ``threads_intra2_inter1`` / ``threads_intra1_inter2``: TensorFlow's thread
  pools (``tf.config.threading``; not a runner option)

``+`` combines options; the numbers in a name can be changed (``steps_64``).
The runner keeps an option as a default only if it wins beyond the
epoch-to-epoch noise at the same accuracy; docs/performance.md, "Execution options", has
the last numbers and what was kept.

Writes bench/results/execution_options.json (every run's epoch times and
accuracies, the summary, the machine's CPU and software, other processes'
share of the CPU before and during the runs, the command); a run with other
``--models``, ``--options`` or ``--rounds`` writes runs/bench/execution_options.json
instead, so the kept file stays the full measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OPTIONS = (
    "default",
    "steps_32",
    "eval_batch_1024",
    "steps_32+eval_batch_1024",
    "xla",
    "tf_data",
    "threads_intra2_inter1",
    "threads_intra1_inter2",
)
EPOCHS = 4
CNN_SAMPLES = 12_000  # a CNN epoch on all 42,000 training samples takes too long for several rounds
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "execution_options.json"  # the default, full measurement
PARTIAL = ROOT / "runs" / "bench" / "execution_options.json"  # any other


def settings(option: str) -> dict:
    """What an option name asks for; ``+`` combines options (``eval_batch_1024+xla``)."""
    chosen = {"xla": False, "tf_data": False, "eval_batch": None, "steps": 1, "threads": None}
    for part in option.split("+"):
        if part in ("xla", "tf_data"):
            chosen[part] = True
        elif part.startswith("steps_"):
            chosen["steps"] = int(part.removeprefix("steps_"))
        elif part.startswith("eval_batch_"):
            chosen["eval_batch"] = int(part.removeprefix("eval_batch_"))
        elif part.startswith("threads_"):
            intra, inter = part.removeprefix("threads_intra").split("_inter")
            chosen["threads"] = (int(intra), int(inter))
        elif part != "default":
            raise ValueError(f"unknown option {part!r} in {option!r}")
    return chosen


def one_run(option: str, model_name: str) -> dict:
    """Train in this process with ``option``; seconds of each epoch and the accuracies."""
    import tensorflow as tf

    chosen = settings(option)
    if chosen["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(chosen["threads"][0])
        tf.config.threading.set_inter_op_parallelism_threads(chosen["threads"][1])
    import keras
    from omegaconf import OmegaConf

    from mnist_runner.config.compose import compose_config
    from mnist_runner.datasets.loader import load_dataset
    from mnist_runner.pipeline.gap import GapMetrics, eval_sample
    from mnist_runner.pipeline.models import build_model
    from mnist_runner.pipeline.preprocess import fit_preprocessing
    from mnist_runner.pipeline.splits import holdout

    cfg = compose_config([f"model={model_name}"])
    trainer = cfg.trainer
    data = load_dataset("mnist")
    x_train, y_train, x_val, y_val = holdout(data.x_train, data.y_train, trainer.validation_split)
    if model_name == "cnn":
        x_train, y_train = x_train[:CNN_SAMPLES], y_train[:CNN_SAMPLES]
    keras.utils.set_random_seed(trainer.seed)
    rescale = fit_preprocessing(cfg.preprocess.name, x_train, data.pixel_max)
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), data.image_shape, 10, rescale)
    model.compile(
        optimizer=keras.optimizers.RMSprop(trainer.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=True if chosen["xla"] else "auto",
        steps_per_execution=chosen["steps"],
    )
    y_train, y_val = keras.utils.to_categorical(y_train, 10), keras.utils.to_categorical(y_val, 10)
    batch = trainer.batch_size
    eval_batch = chosen["eval_batch"] or batch
    x_eval, y_eval = eval_sample(x_train, y_train, trainer.train_eval_samples, trainer.seed)
    seconds: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    callbacks = [GapMetrics(x_eval, y_eval, eval_batch), Clock()]  # the clock last: the gap is part of the epoch
    if chosen["tf_data"]:
        train = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(y_train), seed=trainer.seed)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch).prefetch(tf.data.AUTOTUNE)
        history = model.fit(train, validation_data=val, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    else:
        history = model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            batch_size=batch,
            epochs=EPOCHS,
            validation_batch_size=eval_batch,
            callbacks=callbacks,
            verbose=0,
        )
    _, test_accuracy = model.evaluate(
        data.x_test, keras.utils.to_categorical(data.y_test, 10), batch_size=eval_batch, verbose=0
    )
    return {
        "option": option,
        "model": model_name,
        "epoch_seconds": seconds,
        "val_accuracy": history.history["val_accuracy"][-1],
        "test_accuracy": test_accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dense", "cnn"], choices=["dense", "cnn"])
    parser.add_argument(
        "--options",
        nargs="+",
        default=list(OPTIONS),
        help="names as above; + combines them, e.g. eval_batch_2048+threads_intra1_inter2",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("OPTION", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    for option in args.options:
        try:
            settings(option)  # an unknown name fails here, not in the first child
        except ValueError as error:
            parser.error(f"{error}; known: {', '.join(OPTIONS)}")
    if args.one:
        print(json.dumps(one_run(*args.one)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import CpuWatch, machine, others_share, snapshot, wait_until_quiet

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    options = ["default", *(option for option in args.options if option != "default")]
    full = sorted(args.models) == ["cnn", "dense"] and set(options) == set(OPTIONS) and args.rounds == 2
    out = RESULTS if full else PARTIAL
    started = time.time()
    before = wait_until_quiet(120)
    results = []
    with CpuWatch() as watch:
        for round_ in range(args.rounds):  # rounds alternate the options, so drifting load hits them alike
            for model_name in args.models:
                for option in options:
                    first = snapshot()
                    done = subprocess.run(
                        [sys.executable, __file__, "--one", option, model_name],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    share = others_share(first, snapshot())
                    run = json.loads(done.stdout.strip().splitlines()[-1])
                    results.append({**run, "round": round_ + 1, "others_share": round(share, 3)})
    during = watch.summary()
    print(
        f"seconds per epoch after the first, median over {args.rounds} run(s) x {EPOCHS - 1} epochs "
        "(ratio to default; test accuracy of the last run):"
    )
    summary = []
    for model_name in args.models:
        base = None
        for option in options:
            runs = [r for r in results if r["model"] == model_name and r["option"] == option]
            epochs = [s for r in runs for s in r["epoch_seconds"][1:]]
            median = statistics.median(epochs)
            base = base or median
            first = statistics.median(r["epoch_seconds"][0] for r in runs)
            summary.append(
                {
                    "model": model_name,
                    "option": option,
                    "runs": len(runs),
                    "median_epoch_seconds": median,
                    "ratio_to_default": median / base,
                    "min_epoch_seconds": min(epochs),
                    "max_epoch_seconds": max(epochs),
                    "first_epoch_seconds": first,
                    "test_accuracy_last_run": runs[-1]["test_accuracy"],
                }
            )
            print(
                f"  {model_name:5} {option:22} {median:5.2f} s ({median / base:.2f}x, "
                f"{min(epochs):.2f}-{max(epochs):.2f})  first epoch {first:5.2f} s  "
                f"test accuracy {runs[-1]['test_accuracy']:.4f}"
            )
    busy = during["busy"]
    if busy:
        print(f"busy: other processes used {during['others_share']:.0%} of the CPU; measure again when it is idle")
    record = {
        "command": " ".join(["python bench/execution_options.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "minutes": (time.time() - started) / 60,
        "machine": machine(),
        "epochs_per_run": EPOCHS,
        "cnn_samples": CNN_SAMPLES,
        "before": before,
        "others_share": during["others_share"],
        "busy": busy,
        "load_samples": during["samples"],
        "summary": summary,
        "runs": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"details: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
