"""Does the fast_convnet preset's choice hold on validation data?

    python bench/select_fast_convnet.py            # 6 candidates x 3 seeds: about 15 minutes on 2 idle cores
    python bench/select_fast_convnet.py --quick    # a smoke run (small subset, 90%, 2 epochs): numbers mean nothing

experiments/fast_convnet.yaml was tuned looking at test accuracy. This
script chooses again without it: each candidate (the preset, the preset with
one of its choices undone or pushed further, and keras-io's recipe) trains
through the runner (bench/runner_driver.py ``--monitor val``) until its
**validation** accuracy, on the runner's hold-out (the last 10% of the
training set), reaches 99%, at most 10 epochs. The test set is not looked at.
The seeds (1, 2, 3) are not those that ``make bench`` scores time to 99%
test accuracy on (42, 43, 44).

Candidates are ranked by how many of their runs reached the target (more
first), then by the median seconds to reach it (training time, the runner's
per-epoch recording included). The preset stands if it ranks first and
reached the target in every run.
One runner process per seed, the candidates' order rotating from seed to
seed, after an unmeasured warm-up job (the first job of a process pays
one-time costs that the others do not). Writes bench/results/fast_convnet_selection.json (``--quick``:
runs/bench/quick/), which BENCHMARKS.md quotes the next time it is written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import CpuWatch, machine, wait_until_quiet
from report import SELECTION, publish
from run_bench import FULL, QUICK, RESULTS, ROOT, Bench, rotated, utc

# name -> overrides of the runner (on top of the preset, or instead of it)
CANDIDATES = {
    "fast_convnet": ["experiment=fast_convnet"],
    "no hidden Dense": ["experiment=fast_convnet", "model.dense_units=[]"],
    "dropout 0.5": ["experiment=fast_convnet", "model.dropout=0.5"],
    "learning rate 0.001": ["experiment=fast_convnet", "trainer.learning_rate=0.001"],
    "learning rate 0.003": ["experiment=fast_convnet", "trainer.learning_rate=0.003"],
    # keras-io's recipe, with the preset's smaller gap sample so that seconds compare.
    "keras-io recipe": ["experiment=keras_convnet", "trainer.train_eval_samples=2000"],
}
VALIDATION_SPLIT = 0.1  # both presets'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 1 2 3 (--quick: 1)")
    parser.add_argument("--max-epochs", type=int, help="default 10 (--quick: 2)")
    parser.add_argument(
        "--wait-idle", type=float, help="seconds to wait for a busy machine first (default 120; --quick: 0)"
    )
    args = parser.parse_args()
    seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    max_epochs = args.max_epochs or (2 if args.quick else 10)
    target = 0.9 if args.quick else 0.99
    limits = ["data.train_samples=6000"] if args.quick else []
    settings = QUICK if args.quick else FULL
    out = (ROOT / QUICK.out if args.quick else RESULTS.parent) / SELECTION
    command = " ".join(["python bench/select_fast_convnet.py", *sys.argv[1:]])
    started = time.time()
    print(f"{command}: {len(CANDIDATES)} candidates x {len(seeds)} seed(s), target {target:.0%} validation accuracy")
    before = wait_until_quiet(args.wait_idle if args.wait_idle is not None else (0 if args.quick else 120))
    runs: dict[str, dict[int, dict]] = {name: {} for name in CANDIDATES}
    with tempfile.TemporaryDirectory(prefix="mnist-select-") as tmp, CpuWatch() as watch:
        bench = Bench(settings, Path(tmp))
        for k, seed in enumerate(seeds):
            order = rotated(list(CANDIDATES), k)
            jobs = [
                [*CANDIDATES[name], f"trainer.seed={seed}", f"trainer.epochs={max_epochs}", *limits]
                + ["tracking.log_model=false"]
                for name in order
            ]
            warm_up = [
                "experiment=fast_convnet",
                "data.train_samples=1000",
                "trainer.epochs=1",
                "tracking.log_model=false",
            ]
            extra = ["--target", str(target), "--monitor", "val"]
            done = bench.child(
                f"select-seed{seed}",
                str(ROOT / "bench" / "runner_driver.py"),
                *[json.dumps([*job, *bench.store(f"select-{seed}")]) for job in [warm_up, *jobs]],
                *extra,
            )
            lines = [line for line in done.output.splitlines() if line.startswith('{"overrides"')]
            results = [json.loads(line) for line in lines][1:]  # not the warm-up
            for name, result in zip(order, results):
                result["overrides"] = [o for o in result["overrides"] if tmp not in o]
                runs[name][seed] = result
    during = watch.summary()

    candidates = []
    for name, by_seed in runs.items():
        reached = [r for r in by_seed.values() if r["seconds_to_target"] is not None]
        seconds = [r["seconds_to_target"] for r in reached]
        candidates.append(
            {
                "name": name,
                "overrides": [o for o in CANDIDATES[name] if o != "experiment=fast_convnet"],
                "reached": len(reached),
                "median_seconds": statistics.median(seconds) if seconds else None,
                "epochs_to_target": [
                    by_seed[seed]["epochs_run"] if by_seed[seed]["seconds_to_target"] is not None else None
                    for seed in seeds
                ],
                "runs": by_seed,
            }
        )
    candidates.sort(key=lambda c: (-c["reached"], c["median_seconds"] if c["reached"] else float("inf")))
    for rank, candidate in enumerate(candidates, 1):
        candidate["rank"] = rank
    best = candidates[0]
    preset = next(c for c in candidates if c["name"] == "fast_convnet")
    if not best["reached"]:
        verdict = f"Inconclusive: no candidate reached {target:.0%} validation accuracy in {max_epochs} epochs."
    elif best is preset and preset["reached"] == len(seeds):
        verdict = "The validation data supports the preset: fast_convnet ranks first."
    elif best is preset:
        verdict = (
            f"The preset ranks first, but reached {target:.0%} validation accuracy in only {preset['reached']} "
            f"of {len(seeds)} runs: no candidate does better, none is shown to be good enough."
        )
    else:
        verdict = (
            f"The validation data does not support the preset: {best['name']} "
            f"(`{' '.join(best['overrides'])}`) reached {target:.0%} validation accuracy "
            f"{'in more runs' if best['reached'] > preset['reached'] else 'sooner'} "
            f"(median {fmt(best['median_seconds'])} s against {fmt(preset['median_seconds'])} s)."
        )
    selection = {
        "command": command,
        "quick": args.quick,
        "started": utc(started),
        "minutes": (time.time() - started) / 60,
        "machine": machine(),
        "target": target,
        "monitor": "val_accuracy",
        "validation_split": VALIDATION_SPLIT,
        "seeds": seeds,
        "max_epochs": max_epochs,
        "limits": limits,
        "before": before,
        "others_share": during["others_share"],
        "busy": during["busy"],
        "load_samples": during["samples"],
        "candidates": candidates,
        "verdict": verdict,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(selection, indent=1) + "\n")
    for c in candidates:
        epochs = ", ".join("-" if e is None else str(e) for e in c["epochs_to_target"])
        print(
            f"  {c['rank']}. {c['name']:20} reached {c['reached']} of {len(seeds)}, "
            f"median {fmt(c['median_seconds'])} s, epochs {epochs}"
        )
    print(verdict)
    if selection["busy"]:
        print(f"busy: other processes used {during['others_share']:.0%} of the CPU; the seconds are slower and noisier")
    print(f"results: {out.relative_to(ROOT)} ({selection['minutes']:.1f} min)")
    bench_results = out.parent / ("results.json" if args.quick else RESULTS.name)
    if bench_results.exists():  # BENCHMARKS.md quotes the selection: write it again
        publish(json.loads(bench_results.read_text()), bench_results)


def fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f}"


if __name__ == "__main__":
    main()
