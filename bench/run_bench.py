"""The benchmark suite: ``make bench`` (about 12 minutes on 2 idle CPU cores).

Every figure compares two things measured side by side in this one run, with
repetitions alternating between the two sides, so a slower or busier machine
slows both:

1. runner overhead: ``python run.py model=dense`` against bench/reference_keras.py
2. training throughput, ``trainer.precision=mixed_bfloat16`` against float32
3. time to 99% test accuracy, the fast_convnet preset against keras-io's recipe
4. start-up of ``run.py --help`` and ``--cfg job`` (an absolute limit)
5. an in-process sweep against separate processes; memory after many jobs
6. peak memory of the dense run against the reference

Writes runs/bench/results.json, runs/bench/bench.png and BENCHMARKS.md.
``--quick`` is a smoke run for development (one repetition, small subsets, a
lower accuracy target): its numbers mean nothing and go to runs/bench/quick/
only. Runs use a temporary MLflow store, never the project's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import psutil
from report import publish

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RUN_PY = str(ROOT / "run.py")
REFERENCE = str(ROOT / "bench" / "reference_keras.py")
DRIVER = str(ROOT / "bench" / "runner_driver.py")
CHILD_TIMEOUT_S = 600
# The tiny jobs of the sweep measurements (item 5).
TINY_JOB = ("data.train_samples=2000", "trainer.epochs=1", "tracking.log_model=false")


@dataclass(frozen=True)
class Settings:
    reps: int  # repetitions of each whole-process measurement
    dense_runner: tuple[str, ...]  # items 1 and 6: run.py overrides ...
    dense_reference: tuple[str, ...]  # ... and reference_keras.py arguments for the same run
    throughput_models: tuple[str, ...]  # item 2: each trained in float32 and in mixed_bfloat16 ...
    throughput_overrides: tuple[str, ...]  # ... with these overrides (none: the course's run) ...
    throughput_seeds: tuple[int, ...]  # ... once per seed
    target_accuracy: float  # item 3
    target_runner: tuple[str, ...]
    target_reference: tuple[str, ...]
    sweep_jobs: int  # item 5
    leak_jobs: int
    out: str


FULL = Settings(
    reps=3,
    dense_runner=("model=dense",),
    dense_reference=("dense",),
    throughput_models=("dense", "cnn"),
    throughput_overrides=(),
    throughput_seeds=(42, 43),
    target_accuracy=0.99,
    target_runner=("experiment=fast_convnet",),
    target_reference=("convnet",),
    sweep_jobs=8,
    leak_jobs=20,
    out="runs/bench",
)
QUICK = Settings(
    reps=1,
    dense_runner=("model=dense", "trainer.epochs=1", "data.train_samples=5000"),
    dense_reference=("dense", "--epochs", "1", "--train-samples", "5000"),
    throughput_models=("dense", "cnn"),
    throughput_overrides=("trainer.epochs=2", "data.train_samples=3000"),
    throughput_seeds=(42,),
    target_accuracy=0.9,
    target_runner=("experiment=fast_convnet", "data.train_samples=6000", "trainer.epochs=2"),
    target_reference=("convnet", "--train-samples", "6000", "--epochs", "2"),
    sweep_jobs=2,
    leak_jobs=3,
    out="runs/bench/quick",
)


@dataclass(frozen=True)
class Child:
    seconds: float
    peak_rss_mb: float
    output: str


class Bench:
    """Runs child processes with a temporary MLflow store; keeps their logs."""

    def __init__(self, settings: Settings, tmp: Path):
        self.settings, self.tmp = settings, tmp
        self.logs = ROOT / settings.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, dict] = {}  # every process measured, for results.json

    def store(self, name: str) -> list[str]:
        tmp = self.tmp
        return [
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"tracking.artifact_location={tmp}/art",
            f"hydra.run.dir={tmp}/hydra/{name}",
            f"hydra.sweep.dir={tmp}/hydra/{name}",
            f"trainer.checkpoint_dir={tmp}/checkpoints",
        ]

    def child(self, name: str, *args: str) -> Child:
        """Wall time and peak RSS of one process (and its waited-for children)."""
        log = self.logs / f"{name}.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(log, "w") as out:
            start = time.perf_counter()
            process = subprocess.Popen([PYTHON, *args], stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp, env=env)
            killer = threading.Timer(CHILD_TIMEOUT_S, process.kill)
            killer.start()
            # wait4, unlike RUSAGE_CHILDREN, gives this child's own peak RSS.
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - start
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        output = log.read_text()
        if process.returncode != 0:
            raise RuntimeError(f"{name} failed (exit {process.returncode}); see {log}:\n{output[-2000:]}")
        done = Child(seconds, usage.ru_maxrss / 1024, output)
        self.runs[name] = {"seconds": done.seconds, "peak_rss_mb": done.peak_rss_mb}
        print(f"  {name}: {done.seconds:.1f} s, {done.peak_rss_mb:.0f} MB", flush=True)
        return done

    def driver(self, name: str, jobs: list[list[str]], target: float | None = None) -> list[dict]:
        """bench/runner_driver.py: the jobs in one process; one result per job."""
        extra = ["--target", str(target)] if target else []
        done = self.child(name, DRIVER, *[json.dumps([*job, *self.store(name)]) for job in jobs], *extra)
        self.runs[name]["jobs"] = [
            json.loads(line) for line in done.output.splitlines() if line.startswith('{"overrides"')
        ]
        return self.runs[name]["jobs"]


def figure(
    item: str, name: str, samples: list[float], target: tuple[str, float] | None, unit: str = "x", detail: str = ""
) -> dict:
    """One row of the table: median, min and max of the samples, and whether
    the median meets the target (``("<=", 1.05)``, ``(">=", 1.5)`` or
    ``("within", 0.2)``: at most that far from 0)."""
    median = statistics.median(samples) if samples else None
    met = None
    if target and median is not None:
        op, limit = target
        met = {"<=": median <= limit, ">=": median >= limit, "within": abs(median) <= limit}[op]
    elif target:
        met = False  # nothing measured: e.g. the accuracy was never reached
    return {
        "item": item,
        "name": name,
        "unit": unit,
        "target": target,
        "samples": samples,
        "median": median,
        "min": min(samples, default=None),
        "max": max(samples, default=None),
        "met": met,
        "detail": detail,
    }


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators)]


def last_json(output: str) -> dict:
    """What reference_keras.py prints: its last JSON line (TensorFlow may log around it)."""
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def test_accuracy(log: str) -> float:
    """The runner's summary line: ``test_accuracy=0.9804 ...``."""
    return float(re.findall(r"test_accuracy=([\d.]+)", log)[-1])


def startup(bench: Bench) -> list[dict]:
    """Item 4: seconds to answer, three times each (cheap), and whether
    TensorFlow or Keras shows up in ``-X importtime``'s list."""
    figures = []
    for args in (["--help"], ["--cfg", "job"]):
        label = " ".join(args)
        seconds = [bench.child(f"startup{args[0]}-{i}", RUN_PY, *args).seconds for i in range(3)]
        imports = bench.child(f"startup{args[0]}-importtime", "-X", "importtime", RUN_PY, *args).output
        imported = sorted(set(re.findall(r"\|\s+(tensorflow|keras)\b", imports)))
        figures.append(
            figure(
                "4",
                f"`run.py {label}` start-up",
                seconds,
                ("<=", 1.5),
                unit="s",
                detail=f"imports {', '.join(imported)}!" if imported else "TensorFlow not imported",
            )
        )
        if imported:
            figures[-1]["met"] = False
    return figures


def overhead_and_memory(bench: Bench) -> list[dict]:
    """Items 1 and 6: the course's dense run, runner and reference alternating."""
    runner, reference = [], []
    for i in range(bench.settings.reps):
        runner.append(
            bench.child(f"dense-runner-{i}", RUN_PY, *bench.settings.dense_runner, *bench.store(f"dense-{i}"))
        )
        reference.append(bench.child(f"dense-reference-{i}", REFERENCE, *bench.settings.dense_reference))
    wall = [c.seconds for c in runner], [c.seconds for c in reference]
    rss = [c.peak_rss_mb for c in runner], [c.peak_rss_mb for c in reference]
    accuracy = (
        statistics.median(test_accuracy(c.output) for c in runner),
        statistics.median(last_json(c.output)["test_accuracy"] for c in reference),
    )
    return [
        figure(
            "1",
            "Runner overhead: wall time, `run.py model=dense` / reference",
            ratios(*wall),
            ("<=", 1.05),
            detail=f"{statistics.median(wall[0]):.1f} s / {statistics.median(wall[1]):.1f} s; test accuracy "
            f"{accuracy[0]:.2%} / {accuracy[1]:.2%}",
        ),
        figure(
            "6",
            "Peak RSS, `run.py model=dense` / reference",
            ratios(*rss),
            ("<=", 1.2),
            detail=f"{statistics.median(rss[0]):.0f} MB / {statistics.median(rss[1]):.0f} MB",
        ),
    ]


def throughput(bench: Bench) -> list[dict]:
    """Item 2: the course's runs of each model in float32 and in
    mixed_bfloat16, once per seed, in one process. Each epoch after the first
    is a repetition, paired with the same epoch of the same seed in the other
    precision; the accuracy difference is one sample per seed."""
    settings, figures = bench.settings, []
    pairs = [(model, seed) for model in settings.throughput_models for seed in settings.throughput_seeds]
    jobs = [
        [
            f"model={model}",
            f"trainer.seed={seed}",
            f"trainer.precision={precision}",
            *settings.throughput_overrides,
            "tracking.log_model=false",
        ]
        for model, seed in pairs
        for precision in ("float32", "mixed_bfloat16")
    ]
    results = bench.driver("throughput", jobs)
    for model in settings.throughput_models:
        runs = [(fp32, bf16) for (name, _), fp32, bf16 in zip(pairs, results[::2], results[1::2]) if name == model]
        speed = [
            ratio
            for fp32, bf16 in runs
            for ratio in ratios(bf16["samples_per_second"][1:], fp32["samples_per_second"][1:])
        ]
        speed32 = statistics.median(s for fp32, _ in runs for s in fp32["samples_per_second"][1:])
        speed16 = statistics.median(s for _, bf16 in runs for s in bf16["samples_per_second"][1:])
        figures.append(
            figure(
                "2",
                f"{model}: throughput, bf16 / fp32",
                speed,
                (">=", 1.5),
                detail=f"{speed16:,.0f} / {speed32:,.0f} samples/s",
            )
        )
        accuracy = [(bf16["test_accuracy"], fp32["test_accuracy"]) for fp32, bf16 in runs]
        figures.append(
            figure(
                "2",
                f"{model}: test accuracy, bf16 - fp32",
                [100 * (a16 - a32) for a16, a32 in accuracy],
                ("within", 0.2),
                unit="points",
                detail="; ".join(f"{a16:.2%} / {a32:.2%}" for a16, a32 in accuracy),
            )
        )
    return figures


def time_to_target(bench: Bench) -> list[dict]:
    """Item 3: seconds of training until the test accuracy (checked after each
    epoch) reaches the target; the runner side through the driver, since
    run.py cannot stop at an accuracy. One run each: keras-io's recipe takes
    about two minutes to get there, three runs would not fit the budget."""
    settings = bench.settings
    [runner] = bench.driver(
        "target-runner", [[*settings.target_runner, "tracking.log_model=false"]], settings.target_accuracy
    )
    reference = last_json(
        bench.child(
            "target-reference", REFERENCE, *settings.target_reference, "--target", str(settings.target_accuracy)
        ).output
    )

    def describe(result: dict) -> str:
        if result["seconds_to_target"] is None:
            return f"not reached in {result['epochs_run']} epochs"
        return f"{result['seconds_to_target']:.0f} s (epoch {result['epochs_run']})"

    reached = runner["seconds_to_target"] and reference["seconds_to_target"]
    return [
        figure(
            "3",
            f"Time to {settings.target_accuracy:.0%} test accuracy, fast_convnet / keras-io recipe",
            [runner["seconds_to_target"] / reference["seconds_to_target"]] if reached else [],
            ("<=", 0.5),
            detail=f"{describe(runner)} / {describe(reference)}",
        )
    ]


def sweeps(bench: Bench) -> list[dict]:
    """Item 5: N tiny jobs as one in-process sweep and as N processes, each
    process against the sweep's mean job; then peak RSS of one process after
    job 2 and after its last job."""
    jobs, leak_jobs = bench.settings.sweep_jobs, bench.settings.leak_jobs
    seeds = ",".join(str(seed) for seed in range(1, jobs + 1))
    grid = bench.child("sweep-grid", RUN_PY, "-m", *TINY_JOB, f"trainer.seed={seeds}", *bench.store("grid"))
    separate = [
        bench.child(
            f"sweep-process-{seed}", RUN_PY, *TINY_JOB, f"trainer.seed={seed}", *bench.store(f"process-{seed}")
        ).seconds
        for seed in range(1, jobs + 1)
    ]
    leak = bench.driver("leak", [[*TINY_JOB, f"trainer.seed={seed}"] for seed in range(1, leak_jobs + 1)])
    peak = [job["peak_rss_mb"] for job in leak]
    return [
        figure(
            "5",
            f"Tiny job: own process / one of a {jobs}-job in-process sweep (wall)",
            [seconds / (grid.seconds / jobs) for seconds in separate],
            None,
            detail=f"{jobs} processes {sum(separate):.0f} s / sweep {grid.seconds:.0f} s (no target set)",
        ),
        figure(
            "5",
            f"Peak RSS of one process after job {len(peak)} / after job 2",
            [peak[-1] / peak[1]],
            ("<=", 1.1),
            detail=f"{peak[-1]:.0f} MB / {peak[1]:.0f} MB; RSS now {leak[-1]['rss_mb']:.0f} MB "
            f"/ {leak[1]['rss_mb']:.0f} MB",
        ),
    ]


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = set(flags.group(1).split()) if flags else set()
    versions = {}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "mlflow", "hydra-core", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": model.group(1) if model else platform.processor() or "unknown",
        "cores": len(os.sched_getaffinity(0)),
        # Whether mixed_bfloat16 can be fast at all here.
        "bfloat16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"}) or ["none"],
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run for development; numbers mean nothing")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    out = ROOT / settings.out
    started = time.time()
    results = {
        "command": "python bench/run_bench.py --quick" if args.quick else "make bench",
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "settings": asdict(settings),
        "tiny_job": TINY_JOB,
    }
    if results["load_average_before"][0] > 0.5 * results["machine"]["cores"]:
        print("warning: other processes are using the CPU; timings will be slower and noisier", flush=True)
    figures, step_minutes = [], {}
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as tmp:
        bench = Bench(settings, Path(tmp))
        print("set-up (not measured):", flush=True)
        # The verified MNIST cache that reference_keras.py reads, as `make data` makes it.
        bench.child("setup-data", "-m", "mnist_runner.datasets", "mnist")
        # Libraries into the page cache, so the first measured process is not the only cold one.
        bench.child("setup-warm-up", "-c", "import mlflow, tensorflow")
        for step in (startup, overhead_and_memory, throughput, time_to_target, sweeps):
            print(f"{step.__name__}:", flush=True)
            step_started = time.time()
            figures += step(bench)
            step_minutes[step.__name__] = (time.time() - step_started) / 60
        results["runs"] = bench.runs
    figures.sort(key=lambda f: f["item"])  # in the order
    results.update(
        figures=figures,
        step_minutes=step_minutes,
        minutes=(time.time() - started) / 60,
        load_average_after=os.getloadavg(),
    )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(publish(results, out))
    print(f"results: {out / 'results.json'} ({results['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
