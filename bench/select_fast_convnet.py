"""Choose the fast_convnet preset on validation data, then score it once.

    python bench/select_fast_convnet.py            # choose: 12 candidates x 3 seeds, about 15 minutes on 2 idle cores
    python bench/select_fast_convnet.py --score    # score experiments/fast_convnet.yaml on the test set, once
    python bench/select_fast_convnet.py --quick    # a smoke run (small subset, 1 epoch): numbers mean nothing

The preset is a whole recipe (architecture, epochs and learning-rate
schedule together), so each candidate runs as users run the preset: one
whole ``python run.py`` process per seed (seeds 1, 2, 3), its model logged,
timed from start to exit. A candidate is judged by its final **validation**
accuracy, on the runner's hold-out (the last 10% of the training set), read
from the run's last epoch; the test set is not looked at. Candidates are
ranked by how many of their runs reached the target (more first), then by
the median whole-process seconds. The target is the preset's 99% test
accuracy plus a margin of 0.2 points: the hold-out's 6,000 images measure an
accuracy near 99% with a standard error of about 0.13 points, so a recipe
just over 99% there could well fall under it on the test set. Writes
bench/results/fast_convnet_selection.json.

``--score`` then runs ``experiment=fast_convnet`` (the chosen recipe, copied
into the preset) on seeds 42, 43 and 44, which the choice never saw, and
reports each run's test accuracy and whole-process time, beside keras-io's
recipe in plain Keras (bench/reference_keras.py) trained on the same seeds
until its test accuracy reaches 99%, in the same invocation. Writes
bench/results/fast_convnet_score.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import CpuWatch, machine, wait_until_quiet
from report import SCORE, SELECTION, publish
from run_bench import FULL, QUICK, RESULTS, ROOT, RUN_PY, Bench, rotated, test_accuracy, utc

# What every candidate shares: a small CNN trained with Adam and a
# warm-up-then-cosine learning rate, the hold-out and gap sample of the old preset.
BASE = [
    "model=cnn",
    "model.dropout=0.0",
    "trainer.optimizer=adam",
    "trainer.lr_schedule=warmup_cosine",
    "trainer.batch_size=128",
    "trainer.validation_split=0.1",
    "trainer.train_eval_samples=2000",
]
# name -> overrides on top of BASE (the old preset's are complete in themselves)
CANDIDATES = {
    "conv 16-32, dense 64, 2 epochs, lr 0.01": [
        "model.conv_filters=[16,32]",
        "model.dense_units=[64]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.01",
    ],
    "conv 16-32, 2 epochs, lr 0.02": [
        "model.conv_filters=[16,32]",
        "model.dense_units=[]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.02",
    ],
    "conv 16-32, dense 64, 2 epochs, lr 0.02": [
        "model.conv_filters=[16,32]",
        "model.dense_units=[64]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.02",
    ],
    "conv 24-48, dense 64, 2 epochs, lr 0.01": [
        "model.conv_filters=[24,48]",
        "model.dense_units=[64]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.01",
    ],
    "conv 16-32, dense 64, 3 epochs, lr 0.01": [
        "model.conv_filters=[16,32]",
        "model.dense_units=[64]",
        "trainer.epochs=3",
        "trainer.learning_rate=0.01",
    ],
    "conv 32-64, 2 epochs, lr 0.005": [
        "model.conv_filters=[32,64]",
        "model.dense_units=[]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.005",
    ],
    # Smaller convolutions or larger batches: less work, or fewer steps, per epoch.
    "conv 8-16, dense 64, 2 epochs, lr 0.02": [
        "model.conv_filters=[8,16]",
        "model.dense_units=[64]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.02",
    ],
    "conv 8-16, dense 64, 3 epochs, lr 0.02": [
        "model.conv_filters=[8,16]",
        "model.dense_units=[64]",
        "trainer.epochs=3",
        "trainer.learning_rate=0.02",
    ],
    "conv 12-24, dense 64, 2 epochs, lr 0.02": [
        "model.conv_filters=[12,24]",
        "model.dense_units=[64]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.02",
    ],
    "conv 16-32, dense 64, 2 epochs, lr 0.02, batch 256": [
        "model.conv_filters=[16,32]",
        "model.dense_units=[64]",
        "trainer.epochs=2",
        "trainer.learning_rate=0.02",
        "trainer.batch_size=256",
    ],
    "conv 16-32 + batch norm, dense 64, 2 epochs, lr 0.01": [
        "model.conv_filters=[16,32]",
        "model.dense_units=[64]",
        "model.batch_norm=true",
        "trainer.epochs=2",
        "trainer.learning_rate=0.01",
    ],
    # The preset before this choice: keras-io's convnet with a Dense 128,
    # dropout 0.25, 6 epochs at a constant 0.002 (tuned looking at test accuracy).
    "the old fast_convnet (6 epochs)": [
        "model=convnet",
        "model.dense_units=[128]",
        "model.dropout=0.25",
        "trainer.epochs=6",
        "trainer.optimizer=adam",
        "trainer.learning_rate=0.002",
        "trainer.validation_split=0.1",
        "trainer.train_eval_samples=2000",
    ],
}
OLD = "the old fast_convnet (6 epochs)"
TEST_TARGET = 0.99  # what the preset promises on the test set
VALIDATION_MARGIN = 0.002  # see the module's docstring
VALIDATION_SPLIT = 0.1
SELECTION_SEEDS = [1, 2, 3]
SCORE_SEEDS = [42, 43, 44]  # never seen by the choice
VAL_ACCURACY = re.compile(r"val_accuracy: ([0-9.]+)")
FIT_SECONDS = re.compile(r"\(([0-9.]+) s training\)")


def overrides_of(name: str) -> list[str]:
    """A candidate's overrides on top of BASE; where both set a key, the candidate's."""
    if name == OLD:
        return CANDIDATES[name]
    own = CANDIDATES[name]
    keys = {override.split("=", 1)[0] for override in own}
    return [override for override in BASE if override.split("=", 1)[0] not in keys] + own


def last_validation_accuracy(output: str) -> float:
    """The validation accuracy of the run's last epoch, from Keras' epoch lines."""
    found = VAL_ACCURACY.findall(output)
    if not found:
        raise RuntimeError("no val_accuracy in the run's output")
    return float(found[-1])


def fit_seconds(output: str) -> float | None:
    found = FIT_SECONDS.findall(output)
    return float(found[-1]) if found else None


def choose(bench: Bench, seeds: list[int], target: float, limits: list[str]) -> list[dict]:
    """Every candidate once per seed, whole processes, their order rotating from seed to seed."""
    runs: dict[str, dict[int, dict]] = {name: {} for name in CANDIDATES}
    for k, seed in enumerate(seeds):
        for name in rotated(list(CANDIDATES), k):
            label = f"select-{list(CANDIDATES).index(name)}-seed{seed}"
            done = bench.child(label, RUN_PY, *overrides_of(name), f"trainer.seed={seed}", *limits, *bench.store(label))
            runs[name][seed] = {
                "process_seconds": round(done.seconds, 2),
                "fit_seconds": fit_seconds(done.output),
                "val_accuracy": last_validation_accuracy(done.output),
            }
    candidates = []
    for name, by_seed in runs.items():
        accuracies = [r["val_accuracy"] for r in by_seed.values()]
        candidates.append(
            {
                "name": name,
                "overrides": overrides_of(name),
                "reached": sum(a >= target for a in accuracies),
                "min_val_accuracy": min(accuracies),
                "median_seconds": statistics.median(r["process_seconds"] for r in by_seed.values()),
                "runs": by_seed,
            }
        )
    candidates.sort(key=lambda c: (-c["reached"], c["median_seconds"]))
    for rank, candidate in enumerate(candidates, 1):
        candidate["rank"] = rank
    return candidates


def verdict_of(candidates: list[dict], seeds: list[int], target: float) -> str:
    best = candidates[0]
    if best["reached"] < len(seeds):
        return f"Inconclusive: no candidate reached {target:.1%} validation accuracy on every seed."
    return (
        f"Chosen: {best['name']}, {target:.1%} validation accuracy or more on each of {len(seeds)} seeds "
        f"(lowest {best['min_val_accuracy']:.2%}) in a median {best['median_seconds']:.1f} s whole process."
    )


def score(bench: Bench, seeds: list[int], limits: list[str], reference_extra: list[str]) -> dict:
    """The preset on the test set, once per seed, beside keras-io's recipe to 99% in plain Keras."""
    preset, reference = {}, {}
    for k, seed in enumerate(seeds):
        for side in rotated(["preset", "keras-io"], k):
            if side == "preset":
                label = f"score-preset-seed{seed}"
                done = bench.child(
                    label, RUN_PY, "experiment=fast_convnet", f"trainer.seed={seed}", *limits, *bench.store(label)
                )
                preset[seed] = {
                    "process_seconds": round(done.seconds, 2),
                    "fit_seconds": fit_seconds(done.output),
                    "test_accuracy": test_accuracy(done.output),
                }
            else:
                result = bench.reference(
                    f"score-keras-io-seed{seed}",
                    "convnet",
                    "--seed",
                    str(seed),
                    "--target",
                    str(TEST_TARGET),
                    *reference_extra,
                )
                reference[seed] = {
                    "process_seconds": round(result["process_seconds"], 2),
                    "seconds_to_target": result.get("seconds_to_target"),
                    "epochs_run": result.get("epochs_run"),
                }
    ratios = [
        preset[seed]["process_seconds"] / reference[seed]["seconds_to_target"]
        for seed in seeds
        if reference[seed]["seconds_to_target"]
    ]
    return {
        "seeds": seeds,
        "preset": preset,
        "keras_io_to_99": reference,
        "lowest_test_accuracy": min(r["test_accuracy"] for r in preset.values()),
        "median_process_seconds": statistics.median(r["process_seconds"] for r in preset.values()),
        "preset_process_over_keras_io_fit_to_99": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--score", action="store_true", help="score experiments/fast_convnet.yaml on the test set")
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    parser.add_argument(
        "--wait-idle", type=float, help="seconds to wait for a busy machine first (default 120; --quick: 0)"
    )
    args = parser.parse_args()
    target = 0.9 if args.quick else TEST_TARGET + VALIDATION_MARGIN
    limits = ["data.train_samples=3000", "trainer.epochs=1"] if args.quick else []
    reference_extra = ["--train-samples", "3000", "--epochs", "1"] if args.quick else []
    settings = QUICK if args.quick else FULL
    folder = ROOT / QUICK.out if args.quick else RESULTS.parent
    command = " ".join(["python bench/select_fast_convnet.py", *sys.argv[1:]])
    started = time.time()
    before = wait_until_quiet(args.wait_idle if args.wait_idle is not None else (0 if args.quick else 120))
    with tempfile.TemporaryDirectory(prefix="mnist-select-") as tmp, CpuWatch() as watch:
        bench = Bench(settings, Path(tmp))
        # Unmeasured: creates the store and reads the libraries into the page cache.
        bench.child("warm-up", RUN_PY, "data.train_samples=1000", "trainer.epochs=1", *bench.store("warm-up"))
        if args.score:
            seeds = [SCORE_SEEDS[0]] if args.quick else SCORE_SEEDS
            found = score(bench, seeds, limits, reference_extra)
        else:
            seeds = [SELECTION_SEEDS[0]] if args.quick else SELECTION_SEEDS
            candidates = choose(bench, seeds, target, limits)
    during = watch.summary()
    record = {
        "command": command,
        "quick": args.quick,
        "started": utc(started),
        "minutes": (time.time() - started) / 60,
        "machine": machine(),
        "limits": limits,
        "before": before,
        "others_share": during["others_share"],
        "busy": during["busy"],
        "load_samples": during["samples"],
    }
    if args.score:
        record.update(found)
        out = folder / SCORE
        print(
            f"fast_convnet on seeds {seeds}: test accuracy "
            + ", ".join(f"{r['test_accuracy']:.2%} in {r['process_seconds']:.1f} s" for r in found["preset"].values())
        )
    else:
        record.update(
            target=target,
            monitor="val_accuracy (last epoch)",
            validation_split=VALIDATION_SPLIT,
            seeds=seeds,
            candidates=candidates,
            verdict=verdict_of(candidates, seeds, target),
        )
        out = folder / SELECTION
        for c in candidates:
            print(
                f"  {c['rank']}. {c['name']:55} reached {c['reached']} of {len(seeds)}, "
                f"lowest {c['min_val_accuracy']:.2%}, median {c['median_seconds']:.1f} s"
            )
        print(record["verdict"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    if record["busy"]:
        print(f"busy: other processes used {during['others_share']:.0%} of the CPU; the seconds are slower and noisier")
    print(f"results: {out.relative_to(ROOT)} ({record['minutes']:.1f} min)")
    bench_results = out.parent / ("results.json" if args.quick else RESULTS.name)
    if bench_results.exists():  # BENCHMARKS.md quotes the selection and the score: write it again
        publish(json.loads(bench_results.read_text()), bench_results)


if __name__ == "__main__":
    main()
