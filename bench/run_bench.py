"""The benchmark suite: ``make bench`` (about 30 minutes on 2 idle CPU cores).

Every figure compares things measured side by side in this one run; the
runs of the sides are interleaved (their order rotates from round to round),
so a machine that drifts slower hits every side alike. n always counts runs:
processes, or training runs of the driver, never epochs.

1. runner overhead, ``run.py model=dense trainer.epochs=3`` against plain
   Keras (bench/reference_keras.py): like-for-like (the reference with the
   runner's execution options and uint8 input) and against what a course
   notebook writes (Keras' defaults, float32 arrays)
2. training throughput and test accuracy, ``trainer.precision=mixed_bfloat16``
   against float32, one pair of runs per seed
3. time to 99% test accuracy over seeds: keras-io's recipe with Keras'
   defaults and with the runner's execution options, the fast_convnet recipe
   with them, and the fast_convnet preset through the runner, so that the
   options, the recipe and the runner each get their own ratio; and the
   preset as a user runs it, ``python run.py experiment=fast_convnet``: its
   whole process and test accuracy per seed, against keras-io's recipe
4. start-up of ``run.py --help`` and ``--cfg job`` (an absolute limit)
5. an in-process sweep against separate processes; memory after many jobs;
   ``make sweep``'s wall time against the sum of its jobs' training
6. peak memory of item 1's runs, like-for-like and against the notebook

Before each item the suite checks that no other process uses the CPU
(waiting up to ``--wait-idle`` seconds), and while it runs it samples the
load average and other processes' CPU share (bench/machine.py). An item
measured while others used more than 10% of the CPU is flagged busy and
measured once more; the quieter attempt is published, both are kept.

Writes bench/results/bench.json (every run's raw numbers, the machine, the
load samples, the command), BENCHMARKS.md and docs/bench.png. ``--quick`` is
a smoke run for development (small subsets, few epochs, a lower accuracy
target, no repeats): its numbers mean nothing and go to runs/bench/quick/
only, as does a run of only some ``--items``. Runs use a temporary MLflow
store, never the project's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from machine import BUSY_SHARE, CpuWatch, machine, others_share, rounded, snapshot, wait_until_quiet
from omegaconf import OmegaConf
from report import publish

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "bench.json"
PYTHON = sys.executable
RUN_PY = str(ROOT / "run.py")
REFERENCE = str(ROOT / "bench" / "reference_keras.py")
DRIVER = str(ROOT / "bench" / "runner_driver.py")
CHILD_TIMEOUT_S = 900
# The tiny jobs of the sweep measurements (item 5).
TINY_JOB = ("data.train_samples=2000", "trainer.epochs=1", "tracking.log_model=false")
# What each job of a sweep prints as it ends, its fit_seconds: "... (12.3 s training)".
TRAINING_SECONDS = re.compile(r"\(([\d.]+) s training\)")


def runner_options() -> dict:
    """The runner's execution options (its defaults), which the like-for-like reference gets too."""
    trainer = OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml")
    return {"steps_per_execution": int(trainer.steps_per_execution), "eval_batch_size": int(trainer.eval_batch_size)}


def like_runner(options: dict) -> list[str]:
    """reference_keras.py's arguments that run it as the runner runs: its options, uint8 input."""
    return [
        "--steps-per-execution",
        str(options["steps_per_execution"]),
        "--eval-batch-size",
        str(options["eval_batch_size"]),
        "--uint8",
    ]


@dataclass(frozen=True)
class Settings:
    overhead_rounds: int  # items 1 and 6: rounds of (runner, like-for-like reference, notebook reference)
    overhead_runner: tuple[str, ...]  # run.py overrides ...
    overhead_reference: tuple[str, ...]  # ... and reference_keras.py arguments for the same run
    throughput_models: tuple[str, ...]  # item 2: each trained in float32 and in mixed_bfloat16 ...
    throughput_overrides: tuple[str, ...]  # ... with these overrides (none: the course's run) ...
    throughput_seeds: tuple[int, ...]  # ... one pair of runs per seed
    target_accuracy: float  # item 3
    target_seeds: tuple[int, ...]
    target_runner_extra: tuple[str, ...]  # limits for a smoke run (none: the recipes as they are)
    target_reference_extra: tuple[str, ...]
    startup_rounds: int  # item 4
    sweep_jobs: int  # item 5: jobs per sweep ...
    sweep_rounds: int  # ... rounds of (one sweep, as many separate processes)
    leak_jobs: int
    make_sweep_extra: tuple[str, ...]  # item 5: overrides of `make sweep` (none: all its 48 jobs)
    out: str


FULL = Settings(
    overhead_rounds=5,
    overhead_runner=("model=dense", "trainer.epochs=3"),
    overhead_reference=("dense", "--epochs", "3"),
    throughput_models=("dense", "cnn"),
    throughput_overrides=(),
    throughput_seeds=(42, 43, 44),
    target_accuracy=0.99,
    target_seeds=(42, 43, 44),
    target_runner_extra=(),
    target_reference_extra=(),
    startup_rounds=3,
    sweep_jobs=3,
    sweep_rounds=3,
    leak_jobs=12,
    make_sweep_extra=(),
    out="runs/bench",
)
QUICK = Settings(
    overhead_rounds=2,
    overhead_runner=("model=dense", "trainer.epochs=1", "data.train_samples=5000"),
    overhead_reference=("dense", "--epochs", "1", "--train-samples", "5000"),
    throughput_models=("dense", "cnn"),
    throughput_overrides=("trainer.epochs=2", "data.train_samples=3000"),
    throughput_seeds=(42, 43),
    target_accuracy=0.9,
    target_seeds=(42, 43),
    target_runner_extra=("data.train_samples=6000", "trainer.epochs=2"),
    target_reference_extra=("--train-samples", "6000", "--epochs", "2"),
    startup_rounds=2,
    sweep_jobs=2,
    sweep_rounds=2,
    leak_jobs=3,
    make_sweep_extra=("model=dense", "trainer.epochs=2", "data.train_samples=3000", "trainer.seed=1"),
    out="runs/bench/quick",
)


@dataclass(frozen=True)
class Child:
    seconds: float
    peak_rss_mb: float
    output: str


class Bench:
    """Runs child processes with a temporary MLflow store; keeps their logs and raw numbers."""

    def __init__(self, settings: Settings, tmp: Path):
        self.settings, self.tmp = settings, tmp
        self.options = runner_options()
        self.logs = ROOT / settings.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runs: list[dict] = []  # every process of the current item (attempt), for the results file
        self.prefix = ""  # names the attempt in the log files

    def store(self, name: str) -> list[str]:
        """One MLflow store for every runner process, as a user's runs share one."""
        tmp = self.tmp
        return [
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"tracking.artifact_location={tmp}/art",
            f"hydra.run.dir={tmp}/hydra/{name}",
            f"hydra.sweep.dir={tmp}/hydra/{name}",
            f"trainer.checkpoint_dir={tmp}/checkpoints",
        ]

    def child(self, name: str, *args: str, **record) -> Child:
        """Wall time and peak RSS of one process (and its waited-for children),
        and other processes' share of the CPU while it ran."""
        log = self.logs / f"{self.prefix}{name}.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        before = snapshot()
        with open(log, "w") as out:
            start = time.perf_counter()
            process = subprocess.Popen([PYTHON, *args], stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp, env=env)
            killer = threading.Timer(CHILD_TIMEOUT_S, process.kill)
            killer.start()
            # wait4, unlike RUSAGE_CHILDREN, gives this child's own peak RSS.
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - start
            killer.cancel()
        share = others_share(before, snapshot())
        process.returncode = os.waitstatus_to_exitcode(status)
        output = log.read_text()
        if process.returncode != 0:
            raise RuntimeError(f"{name} failed (exit {process.returncode}); see {log}:\n{output[-2000:]}")
        done = Child(seconds, usage.ru_maxrss / 1024, output)
        self.runs.append(
            {
                "name": name,
                "argv": ["python", *(shown(a, self.tmp) for a in args)],
                "seconds": round(seconds, 3),
                "peak_rss_mb": round(done.peak_rss_mb, 1),
                "others_share": round(share, 3),
                **record,
            }
        )
        busy = f", others {share:.0%} of the CPU: busy" if share > BUSY_SHARE else ""
        print(f"  {name}: {seconds:.1f} s, {done.peak_rss_mb:.0f} MB{busy}", flush=True)
        return done

    def reference(self, name: str, *args: str) -> dict:
        """One bench/reference_keras.py process; its JSON report, with the process's time and memory."""
        done = self.child(name, REFERENCE, *args)
        report = last_json(done.output)
        self.runs[-1]["report"] = report
        return {**report, "process_seconds": done.seconds, "peak_rss_mb": done.peak_rss_mb}

    def runner(self, name: str, *overrides: str) -> dict:
        """One ``python run.py`` process."""
        done = self.child(name, RUN_PY, *overrides, *self.store(name))
        accuracy = test_accuracy(done.output)
        self.runs[-1]["test_accuracy"] = accuracy
        return {"process_seconds": done.seconds, "peak_rss_mb": done.peak_rss_mb, "test_accuracy": accuracy}

    def driver(self, name: str, jobs: list[list[str]], target: float | None = None) -> list[dict]:
        """bench/runner_driver.py: the jobs in one process; one result per job."""
        extra = ["--target", str(target)] if target else []
        done = self.child(name, DRIVER, *[json.dumps([*job, *self.store(name)]) for job in jobs], *extra)
        results = [json.loads(line) for line in done.output.splitlines() if line.startswith('{"overrides"')]
        for result in results:  # the store's temporary paths say nothing
            result["overrides"] = [o for o in result["overrides"] if str(self.tmp) not in o]
        self.runs[-1]["jobs"] = results
        return results


def shown(arg: str, tmp: Path) -> str:
    """An argument as the results file shows it: paths relative to the repository, the temporary folder as $TMP."""
    if arg.startswith(str(ROOT)):
        return os.path.relpath(arg, ROOT)
    return arg.replace(str(tmp), "$TMP")


def figure(
    item: str,
    name: str,
    samples: list[float],
    target: tuple[str, float] | None,
    *,
    unit: str = "x",
    detail: str = "",
    n: str = "pairs",
    panel: str = "",
    label: str = "",
    judged: str = "median",
) -> dict:
    """One row of the table: median, min and max of the samples (one per run,
    or per pair of runs: ``n`` says which), and whether the ``judged``
    statistic (the median; ``max`` or ``min`` where every sample must meet
    it) meets the target (``("<=", 1.05)``, ``(">=", 1.5)`` or
    ``("within", 0.2)``: at most that far from 0). ``panel`` and ``label``
    place it in the plot."""
    median = statistics.median(samples) if samples else None
    met = None
    if target and median is not None:
        op, limit = target
        value = {"median": median, "max": max(samples), "min": min(samples)}[judged]
        met = {"<=": value <= limit, ">=": value >= limit, "within": abs(value) <= limit}[op]
    elif target:
        met = False  # nothing measured: e.g. the accuracy was never reached
    return {
        "item": item,
        "name": name,
        "unit": unit,
        "target": target,
        "samples": samples,
        "n": len(samples),
        "n_of": n,
        "median": median,
        "min": min(samples, default=None),
        "max": max(samples, default=None),
        "met": met,
        "judged": judged,
        "detail": detail,
        "panel": panel,
        "label": label,
    }


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators)]


def median(values) -> float:
    return statistics.median(list(values))


def rotated(sides: list, round_: int) -> list:
    """The sides in the order of this round: each side goes first in turn."""
    shift = round_ % len(sides)
    return sides[shift:] + sides[:shift]


def last_json(output: str) -> dict:
    """What reference_keras.py prints: its last JSON line (TensorFlow may log around it)."""
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def test_accuracy(log: str) -> float:
    """The runner's summary line: ``test_accuracy=0.9804 ...``."""
    return float(re.findall(r"test_accuracy=([\d.]+)", log)[-1])


# -- the items ------------------------------------------------------------------------


def startup(bench: Bench) -> list[dict]:
    """Item 4: seconds to answer, the two commands alternating, and whether
    TensorFlow or Keras shows up in ``-X importtime``'s list."""
    commands = (["--help"], ["--cfg", "job"])
    seconds: dict[str, list[float]] = {args[0]: [] for args in commands}
    for i in range(bench.settings.startup_rounds):
        for args in rotated(list(commands), i):
            seconds[args[0]].append(bench.child(f"startup{args[0]}-{i}", RUN_PY, *args).seconds)
    figures = []
    for args in commands:
        imports = bench.child(f"startup{args[0]}-importtime", "-X", "importtime", RUN_PY, *args).output
        imported = sorted(set(re.findall(r"\|\s+(tensorflow|keras)\b", imports)))
        figures.append(
            figure(
                "4",
                f"`run.py {' '.join(args)}` start-up",
                seconds[args[0]],
                ("<=", 1.5),
                unit="s",
                n="runs",
                detail=f"imports {', '.join(imported)}!" if imported else "TensorFlow not imported",
                panel="Start-up (s)",
                label=" ".join(args),
            )
        )
        if imported:
            figures[-1]["met"] = False
    return figures


def overhead_and_memory(bench: Bench) -> list[dict]:
    """Items 1 and 6: the same dense run through the runner, in plain Keras
    run as the runner runs it, and in plain Keras as a notebook runs it; the
    three sides rotate."""
    s = bench.settings
    sides = {
        "runner": lambda i: bench.runner(f"dense-runner-{i}", *s.overhead_runner),
        "like": lambda i: bench.reference(
            f"dense-reference-like-{i}", *s.overhead_reference, *like_runner(bench.options)
        ),
        "notebook": lambda i: bench.reference(f"dense-reference-notebook-{i}", *s.overhead_reference),
    }
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for i in range(s.overhead_rounds):
        for side in rotated(list(sides), i):
            runs[side].append(sides[side](i))
    wall = {side: [r["process_seconds"] for r in done] for side, done in runs.items()}
    rss = {side: [r["peak_rss_mb"] for r in done] for side, done in runs.items()}
    accuracy = {side: median(r["test_accuracy"] for r in done) for side, done in runs.items()}
    command = " ".join(s.overhead_runner)

    def seconds(side: str) -> str:
        extra = median(a - b for a, b in zip(wall["runner"], wall[side]))
        return (
            f"{median(wall['runner']):.1f} s / {median(wall[side]):.1f} s (runner {extra:+.1f} s); test accuracy "
            f"{accuracy['runner']:.2%} / {accuracy[side]:.2%}"
        )

    arrays = median(rss["notebook"]) - median(rss["like"])
    return [
        figure(
            "1",
            f"Runner overhead, like-for-like: `run.py {command}` / plain Keras with the runner's execution "
            "options and uint8 input (wall time, whole process)",
            ratios(wall["runner"], wall["like"]),
            ("<=", 1.10),
            detail=seconds("like"),
            panel="Runner / plain Keras, wall time (x)",
            label="like-for-like",
        ),
        figure(
            "1",
            f"`run.py {command}` / what a course notebook writes (plain Keras, Keras' defaults, float32 arrays)",
            ratios(wall["runner"], wall["notebook"]),
            None,
            detail=seconds("notebook") + "; not an overhead: the runner's execution options are in it",
            panel="Runner / plain Keras, wall time (x)",
            label="notebook defaults",
        ),
        figure(
            "6",
            "Peak RSS, like-for-like: `run.py` / plain Keras with uint8 input (the same runs)",
            ratios(rss["runner"], rss["like"]),
            ("<=", 1.2),
            detail=f"{median(rss['runner']):.0f} MB / {median(rss['like']):.0f} MB",
            panel="Peak RSS (x)",
            label="like-for-like",
        ),
        figure(
            "6",
            "Peak RSS, `run.py` / the notebook's plain Keras with float32 arrays (the same runs)",
            ratios(rss["runner"], rss["notebook"]),
            None,
            detail=f"{median(rss['runner']):.0f} MB / {median(rss['notebook']):.0f} MB; not like-for-like: the "
            f"notebook holds the images as float32 (4 bytes a pixel, the runner 1): plain Keras with float32 "
            f"arrays / with uint8 {median(rss['notebook']):.0f} / {median(rss['like']):.0f} MB ({arrays:+.0f} MB)",
            panel="Peak RSS (x)",
            label="notebook float32",
        ),
    ]


def throughput(bench: Bench) -> list[dict]:
    """Item 2: the course's run of each model in float32 and in
    mixed_bfloat16, one pair of runs per seed, in one process, the precision
    that goes first alternating. A run's throughput is the median of its
    epochs after the first; each pair gives one ratio."""
    s, figures = bench.settings, []
    order = []
    for k, seed in enumerate(s.throughput_seeds):
        for model in s.throughput_models:
            for precision in rotated(["float32", "mixed_bfloat16"], k):
                order.append((model, seed, precision))
    jobs = [
        [f"model={model}", f"trainer.seed={seed}", f"trainer.precision={precision}", *s.throughput_overrides]
        + ["tracking.log_model=false"]
        for model, seed, precision in order
    ]
    results = dict(zip(order, bench.driver("throughput", jobs)))
    for model in s.throughput_models:
        pairs = [
            (results[model, seed, "float32"], results[model, seed, "mixed_bfloat16"]) for seed in s.throughput_seeds
        ]
        speed = [
            (median(fp32["samples_per_second"][1:]), median(bf16["samples_per_second"][1:])) for fp32, bf16 in pairs
        ]
        epochs = len(pairs[0][0]["samples_per_second"])
        measured = f"epochs 2 to {epochs}" if epochs > 2 else "epoch 2"
        figures.append(
            figure(
                "2",
                f"{model}: training throughput, bf16 / fp32 (each run's median of {measured})",
                [b / a for a, b in speed],
                (">=", 1.5),
                detail=f"{median(b for _, b in speed):,.0f} / {median(a for a, _ in speed):,.0f} samples/s",
                panel="bf16 / fp32 throughput (x)",
                label=model,
            )
        )
        accuracy = [(bf16["test_accuracy"], fp32["test_accuracy"]) for fp32, bf16 in pairs]
        figures.append(
            figure(
                "2",
                f"{model}: test accuracy, bf16 - fp32",
                [100 * (a16 - a32) for a16, a32 in accuracy],
                ("within", 0.2),
                unit="points",
                detail="; ".join(f"{a16:.2%} / {a32:.2%}" for a16, a32 in accuracy),
                panel="bf16 - fp32 test accuracy (points)",
                label=model,
            )
        )
    return figures


# Item 3's sides: (label, what it is).
ARMS = {
    "A": "keras-io recipe, Keras' defaults (plain Keras, as a notebook)",
    "B": "keras-io recipe, the runner's execution options (plain Keras)",
    "C": "fast_convnet recipe, the runner's execution options (plain Keras)",
    "D": "fast_convnet preset through the runner (`run_experiment`: MLflow logging, checkpoints)",
}


# Item 3's side that runs the preset as a user does: a whole `python run.py experiment=fast_convnet`.
PRESET = "P"

# Item 3's ratios: (numerator, denominator), what the ratio isolates, its target, its label in the plot.
RATIOS = (
    (
        ("B", "A"),
        "the execution options: keras-io recipe with the runner's options / with Keras' defaults",
        None,
        "B/A",
    ),
    (("C", "B"), "the recipe: fast_convnet / keras-io, both plain Keras with the runner's options", ("<=", 0.5), "C/B"),
    (("D", "C"), "the runner's recording: fast_convnet through the runner / in plain Keras", None, "D/C"),
    (("D", "A"), "all together: the runner's fast_convnet preset / keras-io's recipe in a notebook", None, "D/A"),
)


def time_to_target(bench: Bench) -> list[dict]:
    """Item 3: seconds from the start of training to the end of the first
    epoch whose test accuracy reaches the target, once per seed on each of
    four sides (ARMS), and the preset as a user runs it (side P: a whole
    ``python run.py experiment=fast_convnet`` process, its test accuracy at
    the end), the sides rotating from seed to seed."""
    s = bench.settings
    target = str(s.target_accuracy)
    options = like_runner(bench.options)
    extra = list(s.target_reference_extra)

    def run(arm: str, seed: int) -> dict:
        name = f"target-{arm}-seed{seed}"
        if arm == "A":
            return bench.reference(name, "convnet", "--seed", str(seed), "--target", target, *extra)
        if arm == "B":
            return bench.reference(name, "convnet", "--seed", str(seed), "--target", target, *options, *extra)
        if arm == "C":
            return bench.reference(name, "fast_convnet", "--seed", str(seed), "--target", target, *options, *extra)
        if arm == PRESET:
            return bench.runner(name, "experiment=fast_convnet", f"trainer.seed={seed}", *s.target_runner_extra)
        job = ["experiment=fast_convnet", f"trainer.seed={seed}", *s.target_runner_extra, "tracking.log_model=false"]
        [result] = bench.driver(name, [job], s.target_accuracy)
        return result

    runs: dict[str, dict[int, dict]] = {arm: {} for arm in [*ARMS, PRESET]}
    for k, seed in enumerate(s.target_seeds):
        for arm in rotated([*ARMS, PRESET], k):
            runs[arm][seed] = run(arm, seed)

    def reached(arm: str) -> dict[int, float]:
        return {seed: r["seconds_to_target"] for seed, r in runs[arm].items() if r["seconds_to_target"] is not None}

    def per_seed(arm: str) -> str:
        done = [
            f"{r['epochs_run']}" if r["seconds_to_target"] is not None else f"not in {r['epochs_run']}"
            for r in runs[arm].values()
        ]
        return f"epochs {', '.join(done)}"

    percent = f"{s.target_accuracy:.0%}"
    figures = []
    for arm, what in ARMS.items():
        times = reached(arm)
        note = per_seed(arm)
        if arm == "D":
            inside = all(all(r["checkpoint_in_clock"]) for r in runs["D"].values())
            note += "; each epoch's checkpoint inside the clock: " + ("yes" if inside else "**no**")
        if len(times) < len(s.target_seeds):
            note += f"; {len(times)} of {len(s.target_seeds)} runs reached {percent}"
        figures.append(
            figure(
                "3",
                f"Time to {percent} test accuracy, {arm}: {what}",
                list(times.values()),
                None,
                unit="s",
                n="runs",
                detail=note,
                panel=f"Time to {percent} test accuracy (s)",
                label=arm,
            )
        )

    def ratio(numerator: str, denominator: str) -> list[float]:
        top, bottom = reached(numerator), reached(denominator)
        return [top[seed] / bottom[seed] for seed in s.target_seeds if seed in top and seed in bottom]

    for (top, bottom), name, target_, label in RATIOS:
        figures.append(
            figure(
                "3",
                f"Time to {percent}, {name}",
                ratio(top, bottom),
                target_,
                detail=f"{top} / {bottom}, pairs of runs with the same seed",
                panel=f"Time to {percent}: ratios (x)",
                label=label,
            )
        )
    return figures + preset_figures(runs[PRESET], reached("A"), s.target_accuracy)


def preset_figures(preset: dict[int, dict], keras_io: dict[int, float], target: float) -> list[dict]:
    """Side P: the preset's whole process and test accuracy on every seed
    (each must meet its target), and its whole process over the time
    keras-io's recipe took to reach the target in plain Keras with Keras'
    defaults (side A's clock: training only), per seed."""
    per_seed = "; ".join(
        f"seed {seed}: {r['process_seconds']:.1f} s, {r['test_accuracy']:.2%}" for seed, r in preset.items()
    )
    over = {seed: r["process_seconds"] / keras_io[seed] for seed, r in preset.items() if seed in keras_io}
    return [
        figure(
            "3",
            "fast_convnet preset as a user runs it, `python run.py experiment=fast_convnet`: whole process, every seed",
            [r["process_seconds"] for r in preset.values()],
            ("<=", 20.0),
            unit="s",
            n="runs",
            judged="max",
            detail=per_seed,
            panel="Preset: whole run.py process (s)",
            label="P",
        ),
        figure(
            "3",
            "fast_convnet preset: test accuracy, every seed (the same runs)",
            [r["test_accuracy"] for r in preset.values()],
            (">=", target),
            unit="%",
            n="runs",
            judged="min",
            detail=per_seed,
            panel="Preset: test accuracy (%)",
            label="P",
        ),
        figure(
            "3",
            f"Preset's whole process (P) / keras-io's training to {target:.0%} in plain Keras, Keras' defaults (A)",
            list(over.values()),
            ("<=", 0.25),
            detail="pairs of runs with the same seed: "
            + ", ".join(f"seed {seed} {ratio:.2f}" for seed, ratio in over.items())
            + (f"; {len(preset) - len(over)} seed(s) where A did not reach it" if len(over) < len(preset) else ""),
            panel=f"Time to {target:.0%}: ratios (x)",
            label="P/A",
        ),
    ]


def sweeps(bench: Bench) -> list[dict]:
    """Item 5: rounds of one in-process sweep of N tiny jobs and N separate
    processes of the same jobs (which goes first alternates); each round's
    mean process against the sweep's mean job. Then peak RSS of one process
    after job 2 and after its last job."""
    s = bench.settings
    jobs = s.sweep_jobs
    per_round = []
    for r in range(s.sweep_rounds):
        seeds = list(range(r * jobs + 1, (r + 1) * jobs + 1))

        def grid(r=r, seeds=seeds) -> float:
            sweep = ",".join(map(str, seeds))
            return bench.child(
                f"sweep-grid-{r}", RUN_PY, "-m", *TINY_JOB, f"trainer.seed={sweep}", *bench.store(f"grid-{r}")
            ).seconds

        def separate(r=r, seeds=seeds) -> list[float]:
            return [
                bench.child(
                    f"sweep-process-{r}-{seed}",
                    RUN_PY,
                    *TINY_JOB,
                    f"trainer.seed={seed}",
                    *bench.store(f"p-{r}-{seed}"),
                ).seconds
                for seed in seeds
            ]

        if r % 2 == 0:
            grid_seconds, process_seconds = grid(), separate()
        else:
            process_seconds = separate()
            grid_seconds = grid()
        per_round.append((grid_seconds, process_seconds))
    leak = bench.driver("leak", [[*TINY_JOB, f"trainer.seed={seed}"] for seed in range(1, s.leak_jobs + 1)])
    peak = [job["peak_rss_mb"] for job in leak]
    return [
        figure(
            "5",
            f"Tiny job: own process / one job of a {jobs}-job in-process sweep (wall)",
            [statistics.mean(processes) / (grid / jobs) for grid, processes in per_round],
            None,
            n="rounds",
            detail=f"process {median(x for _, p in per_round for x in p):.1f} s / sweep "
            f"{median(g for g, _ in per_round):.1f} s for {jobs} jobs (no target set)",
            panel="Sweeps (x)",
            label="own process / in sweep",
        ),
        figure(
            "5",
            f"Peak RSS of one process after job {len(peak)} / after job 2",
            [peak[-1] / peak[1]],
            ("<=", 1.1),
            n="process",
            detail=f"{peak[-1]:.0f} MB / {peak[1]:.0f} MB; RSS now {leak[-1]['rss_mb']:.0f} MB "
            f"/ {leak[1]['rss_mb']:.0f} MB (one process: measured once)",
            panel="Sweeps (x)",
            label=f"RSS job {len(peak)} / job 2",
        ),
    ]


def make_sweep(bench: Bench) -> list[dict]:
    """Item 5 as a user meets it: ``make sweep`` (experiment=overfitting_gap,
    its jobs in one process) once; the whole process's wall time against the
    sum of its jobs' training (each job's ``fit_seconds``: training,
    validation and the gap's re-evaluation, as the job prints it), and what
    a job costs beyond its training, start-up and the report shared out."""
    s = bench.settings
    extra = s.make_sweep_extra
    done = bench.child("make-sweep", RUN_PY, "experiment=overfitting_gap", *extra, *bench.store("make-sweep"))
    training = [float(seconds) for seconds in TRAINING_SECONDS.findall(done.output)]
    bench.runs[-1]["training_seconds"] = training
    jobs, trained = len(training), sum(training)
    command = "make sweep" + (f" ({' '.join(extra)})" if extra else "")
    return [
        figure(
            "5",
            f"`{command}`, {jobs} jobs in one process: wall time / the sum of the jobs' training",
            [done.seconds / trained],
            ("<=", 1.1),
            n="sweep",
            detail=f"{done.seconds:.1f} s / {trained:.1f} s",
            panel="Sweeps (x)",
            label="make sweep / training",
        ),
        figure(
            "5",
            f"`{command}`: a job's cost beyond its training, (wall - training) / jobs",
            [(done.seconds - trained) / jobs],
            ("<=", 0.5),
            unit="s",
            n="sweep",
            detail=f"({done.seconds:.1f} s - {trained:.1f} s) / {jobs}; the process's start-up and the report "
            "are shared out among the jobs",
            panel="Sweep: a job beyond training (s)",
            label="per job",
        ),
    ]


ITEMS = {
    "startup": startup,
    "overhead_and_memory": overhead_and_memory,
    "throughput": throughput,
    "time_to_target": time_to_target,
    "sweeps": sweeps,
    "make_sweep": make_sweep,
}


def measure(bench: Bench, name: str, repeat: bool, wait_idle_s: float) -> dict:
    """One item: a check that the machine is quiet (waiting for it up to
    ``wait_idle_s``), the item with the CPU watched, and, if others used
    more than BUSY_SHARE of it during the item, once more. The quieter
    attempt is published; every attempt is kept."""
    attempts = []
    for attempt in range(2 if repeat else 1):
        print(f"{name}{' (again: the first attempt was busy)' if attempt else ''}:", flush=True)
        before = wait_until_quiet(wait_idle_s)
        bench.runs, bench.prefix = [], f"{name}-{attempt + 1}-" if attempt else ""
        started = time.time()
        with CpuWatch() as watch:
            figures = ITEMS[name](bench)
        during = watch.summary()
        busy = during["busy"]  # what the item's runs shared the machine with; `before` is kept too
        attempts.append(
            {
                "attempt": attempt + 1,
                "started": utc(started),
                "minutes": (time.time() - started) / 60,
                "before": before,
                "during": during,
                "busy": busy,
                "runs": bench.runs,
                "figures": figures,
            }
        )
        if busy:
            print(
                f"  busy: other processes used {during['others_share']:.0%} of the CPU during {name} "
                f"({before['others_share']:.0%} before it)",
                flush=True,
            )
        else:
            break
    chosen = min(attempts, key=lambda a: (a["busy"], a["during"]["others_share"]))
    for f in chosen["figures"]:
        f.update(busy=chosen["busy"], others_share=chosen["during"]["others_share"], attempt=chosen["attempt"])
    return {"published_attempt": chosen["attempt"], "attempts": attempts}


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run for development; numbers mean nothing")
    parser.add_argument("--items", nargs="+", choices=list(ITEMS), help="only these (results go to runs/bench/quick/)")
    parser.add_argument("--no-repeat", action="store_true", help="do not measure a busy item again (--quick: never)")
    parser.add_argument(
        "--wait-idle", type=float, help="seconds to wait for a busy machine before each item (default 120; --quick: 0)"
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    wait_idle = args.wait_idle if args.wait_idle is not None else (0 if args.quick else 120)
    items = args.items or list(ITEMS)
    partial = args.quick or items != list(ITEMS)
    out = ROOT / (QUICK.out if partial else settings.out)
    results_path = out / "results.json" if partial else RESULTS
    started = time.time()
    results = {
        "command": " ".join(["python bench/run_bench.py", *sys.argv[1:]]) if sys.argv[1:] else "make bench",
        "quick": args.quick,
        "partial": partial,
        "started": utc(started),
        "machine": machine(),
        "busy_share": BUSY_SHARE,
        "runner_options": runner_options(),
        "load_average_before": rounded(os.getloadavg()),
        "settings": asdict(settings),
        "tiny_job": TINY_JOB,
        "arms": ARMS,
    }
    print(f"{results['machine']['cpu']}, {results['machine']['cores']} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as tmp:
        bench = Bench(settings, Path(tmp))
        print("set-up (not measured):", flush=True)
        # The verified MNIST cache that reference_keras.py reads, as `make data` makes it.
        bench.child("setup-data", "-m", "mnist_runner.datasets", "mnist")
        # Libraries into the page cache, the MLflow store created, bytecode compiled: as a user's
        # second run finds them, so that the first measured process is not the only cold one.
        bench.runner("setup-runner", "model=dense", "trainer.epochs=1", "data.train_samples=1000")
        tiny = ("dense", "--epochs", "1", "--train-samples", "1000")
        bench.reference("setup-reference", *tiny, *like_runner(bench.options))
        bench.driver("setup-driver", [["model=dense", "trainer.epochs=1", "data.train_samples=1000"]])
        results["setup_runs"] = bench.runs
        results["items"] = {}
        for name in items:
            results["items"][name] = measure(
                bench, name, repeat=not (args.quick or args.no_repeat), wait_idle_s=wait_idle
            )
    figures = [
        f for item in results["items"].values() for f in item["attempts"][item["published_attempt"] - 1]["figures"]
    ]
    figures.sort(key=lambda f: f["item"])  # in the order
    results.update(figures=figures, minutes=(time.time() - started) / 60, load_average_after=rounded(os.getloadavg()))
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    print(publish(results, results_path))
    print(f"results: {os.path.relpath(results_path, ROOT)} ({results['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
