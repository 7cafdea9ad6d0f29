"""Keras backends side by side, and the runner's fixed cost: ``make bench-backends``.

    python bench/backends.py                          # all three parts, on this machine
    python bench/backends.py --parts overhead --reps 5
    python bench/backends.py --gpu                    # on an NVIDIA GPU (see bench/gpu.sh)

1. ``table``: every installed backend (TensorFlow, JAX, PyTorch) x every
   workload (the course's dense net and CNN, ``experiment=fast_convnet``),
   one ``python run.py`` process each with the workload's own settings:
   seconds per epoch (the median of epochs 2 on, from the times at which
   the run logged each epoch's metrics), the first epoch (compilation
   included), the whole process, and test accuracy. With ``--reference``
   (the default with ``--gpu``) the same workloads in plain Keras on JAX
   (bench/reference_keras.py) beside them.
2. ``overhead``: ``python run.py model=dense trainer.epochs=3`` against
   ``bench/reference_keras.py dense --epochs 3 --uint8`` with the runner's
   execution options (``steps_per_execution``, eval batch size) and its uint8
   input, on TensorFlow and on
   JAX, the two sides alternating, ``--reps`` times: whole-process wall time,
   runner / plain Keras.
3. ``jax_cache``: two runs of the dense net on JAX, one after the other,
   starting from an empty persistent compilation cache: the second run's
   first epoch loads what the first compiled.
4. ``device_data`` (with ``--gpu``): every workload on JAX with the training
   set kept on the device (``MNIST_RUNNER_DEVICE_DATA=1``, the default with
   a GPU) and in host memory (``=0``).

Writes bench/results/backends.json (gpu.json with ``--gpu``) and the
"Backends" section at the end of BENCHMARKS.md (from both files). The load
average is recorded before and after each part: on a busy machine the
figures say so; measure again when it is idle. Runs use a temporary MLflow
store and compilation cache, never the project's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from mnist_runner.tracking.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "<!-- The section below is written by bench/backends.py (make bench-backends, make bench-gpu). -->"
PYTHON = sys.executable
# workload -> (run.py overrides, bench/reference_keras.py recipe)
WORKLOADS = {
    "dense": (["model=dense"], "dense"),
    "cnn": (["model=cnn"], "cnn"),
    "fast_convnet": (["experiment=fast_convnet"], "fast_convnet"),
}
# The runner's execution options (conf/trainer/default.yaml), given to plain Keras too.
STEPS_PER_EXECUTION, EVAL_BATCH_SIZE = 32, 1024
OVERHEAD_EPOCHS = 3
CHILD_TIMEOUT_S = 1800


def installed_backends() -> list[str]:
    return [name for name in ("tensorflow", "jax", "torch") if find_spec(name)]


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


class Bench:
    def __init__(self, tmp: Path, logs: Path):
        self.tmp, self.logs = tmp, logs
        self.count = 0
        self.jax_cache = tmp / "jax-cache"

    def env(self, backend: str | None = None, jax_cache: Path | None = None, **extra: str) -> dict[str, str]:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([str(ROOT / "src")])}
        env.pop("KERAS_BACKEND", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # both sides import from cached bytecode, as usual
        if backend:  # plain Keras: the backend from the environment, no compilation cache (a plain script's)
            env["KERAS_BACKEND"] = backend
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
        else:  # the runner: its own compilation cache, in a temporary folder
            env["JAX_COMPILATION_CACHE_DIR"] = str(jax_cache or self.jax_cache)
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
        return {**env, **extra}

    def child(self, name: str, command: list[str], env: dict[str, str]) -> tuple[float, str]:
        """Run one process; its wall time and output (kept in the logs folder)."""
        self.count += 1
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=self.tmp)
        seconds = time.perf_counter() - start
        output = done.stdout + done.stderr
        (self.logs / f"{self.count:03d}-{name}.log").write_text(" ".join(command) + "\n\n" + output)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed ({done.returncode}):\n{output[-3000:]}")
        print(f"  {name}: {seconds:.1f} s", flush=True)
        return seconds, done.stdout

    def runner(
        self, backend: str, overrides: list[str], label: str, jax_cache: Path | None = None, **extra_env: str
    ) -> dict:
        """One ``python run.py`` process; its times from the process and from MLflow. All
        runs log to one store, as a user's runs do (a new store costs its creation once)."""
        store = self.tmp / "store"
        command = [
            PYTHON,
            str(ROOT / "run.py"),
            f"backend={backend}",
            *overrides,
            f"tracking.uri=sqlite:///{store}/mlflow.db",
            f"tracking.artifact_location={store}/artifacts",
            f"trainer.checkpoint_dir={store}/checkpoints",
            f"hydra.run.dir={store}/hydra",
        ]
        seconds, _ = self.child(f"runner-{backend}-{label}", command, self.env(jax_cache=jax_cache, **extra_env))
        return {"side": "runner", "backend": backend, "process_seconds": seconds, **logged_times(store)}

    def reference(self, backend: str, recipe: str, extra: list[str], label: str) -> dict:
        """One plain-Keras process (bench/reference_keras.py)."""
        command = [PYTHON, str(ROOT / "bench" / "reference_keras.py"), recipe, *extra]
        seconds, stdout = self.child(f"keras-{backend}-{label}", command, self.env(backend))
        report = json.loads(stdout.strip().splitlines()[-1])
        epochs = report["epoch_seconds"]
        return {
            "side": "plain Keras",
            "backend": report["backend"],
            "process_seconds": seconds,
            "epochs": len(epochs),
            "first_epoch_seconds": epochs[0],
            "epoch_seconds": statistics.median(epochs[1:]) if len(epochs) > 1 else None,
            "test_accuracy": report["test_accuracy"],
        }


def logged_times(store: Path) -> dict:
    """Per-epoch times of the latest run in ``store``: the epochs' metrics are
    logged as each epoch ends, so their timestamps are its clock."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    [run] = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    assert run.info.status == "FINISHED", run.info
    stamps = sorted((m.step, m.timestamp) for m in client.get_metric_history(run.info.run_id, "loss"))
    ends = [stamp / 1000 for _, stamp in stamps]
    durations = [later - earlier for earlier, later in zip(ends, ends[1:])]
    return {
        "epochs": len(ends),
        "first_epoch_seconds": ends[0] - run.info.start_time / 1000,
        "epoch_seconds": statistics.median(durations) if durations else None,
        "test_accuracy": run.data.metrics["test_accuracy"],
        "device": run.data.tags.get("device"),
        "fit_seconds": run.data.metrics.get("fit_seconds"),
    }


def part_table(bench: Bench, backends: list[str], workloads: list[str], epochs: int | None, reference: bool) -> dict:
    rows = []
    # Not timed: the store's creation, the bytecode and the disk cache, as a user's later runs find them.
    bench.runner(backends[0], ["model=dense", "trainer.epochs=1", "data.train_samples=1000"], "warm-up")
    capped = [f"trainer.epochs={epochs}"] if epochs else []
    for workload in workloads:
        overrides, recipe = WORKLOADS[workload]
        for backend in backends:
            rows.append({"workload": workload, **bench.runner(backend, overrides + capped, workload), "load": load()})
        if reference:
            options = ["--steps-per-execution", str(STEPS_PER_EXECUTION), "--eval-batch-size", str(EVAL_BATCH_SIZE)]
            options += ["--epochs", str(epochs)] if epochs else []
            rows.append({"workload": workload, **bench.reference("jax", recipe, options, workload), "load": load()})
    return {"rows": rows, "epochs_cap": epochs}


def part_overhead(bench: Bench, backends: list[str], reps: int) -> dict:
    rows = []
    # Not timed: the bytecode, the disk cache and JAX's compilation cache as a user's second run finds them.
    for backend in backends:
        bench.runner(backend, ["model=dense", "trainer.epochs=1", "data.train_samples=1000"], "warm-up")
        bench.reference(backend, "dense", ["--epochs", "1", "--train-samples", "1000"], "warm-up")
    for rep in range(reps):
        for backend in backends:
            pair = []
            sides = ["runner", "keras"] if rep % 2 == 0 else ["keras", "runner"]
            for side in sides:
                if side == "runner":
                    pair.append(bench.runner(backend, ["model=dense", f"trainer.epochs={OVERHEAD_EPOCHS}"], "overhead"))
                else:
                    # Like for like: the runner's execution options and its uint8 input, rescaled in the model.
                    options = ["--epochs", str(OVERHEAD_EPOCHS), "--steps-per-execution", str(STEPS_PER_EXECUTION)]
                    options += ["--eval-batch-size", "1024", "--uint8"]
                    pair.append(bench.reference(backend, "dense", options, "overhead"))
            runner, keras = sorted(pair, key=lambda row: row["side"] != "runner")
            rows.append(
                {
                    "rep": rep + 1,
                    "backend": backend,
                    "runner_seconds": runner["process_seconds"],
                    "keras_seconds": keras["process_seconds"],
                    "ratio": runner["process_seconds"] / keras["process_seconds"],
                    "runner_test_accuracy": runner["test_accuracy"],
                    "keras_test_accuracy": keras["test_accuracy"],
                }
            )
    summary = {}
    for backend in backends:
        ratios = [row["ratio"] for row in rows if row["backend"] == backend]
        extra = [row["runner_seconds"] - row["keras_seconds"] for row in rows if row["backend"] == backend]
        summary[backend] = {
            "median_ratio": statistics.median(ratios),
            "min_ratio": min(ratios),
            "max_ratio": max(ratios),
            "median_extra_seconds": statistics.median(extra),
            "runner_median_seconds": statistics.median(r["runner_seconds"] for r in rows if r["backend"] == backend),
            "keras_median_seconds": statistics.median(r["keras_seconds"] for r in rows if r["backend"] == backend),
        }
    return {"rows": rows, "summary": summary, "epochs": OVERHEAD_EPOCHS}


def part_jax_cache(bench: Bench) -> dict:
    cache = bench.tmp / "jax-cache-fresh"
    runs = [bench.runner("jax", ["model=dense", "trainer.epochs=2"], f"cache-{n}", jax_cache=cache) for n in (1, 2)]
    return {
        "first_run_first_epoch_seconds": runs[0]["first_epoch_seconds"],
        "second_run_first_epoch_seconds": runs[1]["first_epoch_seconds"],
        "second_run_later_epoch_seconds": runs[1]["epoch_seconds"],
        "first_run_process_seconds": runs[0]["process_seconds"],
        "second_run_process_seconds": runs[1]["process_seconds"],
        "cache_entries": len(list(cache.glob("*"))) if cache.exists() else 0,
    }


def part_device_data(bench: Bench, workloads: list[str]) -> dict:
    """JAX with the training set on the device (the default with a GPU) and without."""
    rows = []
    for workload in workloads:
        for setting in ("1", "0"):
            label = f"{workload}-device-data-{setting}"
            row = bench.runner("jax", WORKLOADS[workload][0], label, MNIST_RUNNER_DEVICE_DATA=setting)
            rows.append({"workload": workload, "device_data": setting == "1", **row})
    return {"rows": rows}


def machine() -> dict:
    versions = {}
    for package in ("keras", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch", "mlflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    gpu = None
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "gpu": gpu or None,
        "python": platform.python_version(),
        "versions": versions,
    }


# -- BENCHMARKS.md --------------------------------------------------------------------


def fmt(value, digits=2, suffix="") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def load_note(part: dict, cores: int) -> str:
    before, after = part["load_before"], part["load_after"]
    busy = f" (**busy**: more than the benchmark's own {cores})" if max(before[0], after[0]) > cores + 0.5 else ""
    when = part.get("measured", "")
    return f"measured {when}, load average (1 min) {before[0]:.2f} before, {after[0]:.2f} after{busy}"


def render(results: dict, title: str) -> str:
    m = results["machine"]
    hardware = f"{m['gpu']} GPU, " if m.get("gpu") else ""
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    lines = [
        f"### {title}",
        "",
        f"`{results['command']}`: {hardware}{m['cpu']}, {m['cores']} cores; Python {m['python']}, {versions}.",
        "",
    ]
    parts = results["parts"]
    if "table" in parts:
        table = parts["table"]
        cap = f", capped at {table['epochs_cap']} epochs" if table["epochs_cap"] else ""
        if len({row.get("measured") for row in table["rows"]}) > 1:
            cap += "; the rows were measured at different times (bench/results/), the last ones"
        lines += [
            f"Each workload with its own settings{cap}, one process each ({load_note(table, m['cores'])}):",
            "",
            "| workload | backend | s/epoch | first epoch (s) | whole process (s) | test accuracy |",
            "|---|---|---|---|---|---|",
        ]
        for row in table["rows"]:
            who = row["backend"] if row["side"] == "runner" else f"plain Keras, {row['backend']}"
            lines.append(
                f"| {row['workload']} | {who} | {fmt(row['epoch_seconds'])} | {fmt(row['first_epoch_seconds'], 1)} "
                f"| {fmt(row['process_seconds'], 1)} | {fmt(100 * row['test_accuracy'], 2, '%')} |"
            )
        lines.append("")
    if "overhead" in parts:
        overhead = parts["overhead"]
        lines += [
            f"The runner's fixed cost: `run.py model=dense trainer.epochs={overhead['epochs']}` against plain Keras "
            f"(`reference_keras.py dense --uint8`, the same execution options and input; on JAX the runner also has "
            f"its persistent compilation cache, which the plain script does not), alternating, whole process, "
            f"median of "
            f"{len(overhead['rows']) // max(len(overhead['summary']), 1)} pairs ({load_note(overhead, m['cores'])}):",
            "",
            "| backend | runner (s) | plain Keras (s) | runner / Keras (min – max) | extra (s) |",
            "|---|---|---|---|---|",
        ]
        for backend, s in overhead["summary"].items():
            lines.append(
                f"| {backend} | {s['runner_median_seconds']:.1f} | {s['keras_median_seconds']:.1f} | "
                f"{s['median_ratio']:.2f}x ({s['min_ratio']:.2f} – {s['max_ratio']:.2f}) | "
                f"{s['median_extra_seconds']:+.1f} |"
            )
        lines.append("")
    if "device_data" in parts:
        lines += [
            f"JAX, the training set on the device or not ({load_note(parts['device_data'], m['cores'])}):",
            "",
            "| workload | training set | s/epoch | first epoch (s) | whole process (s) | test accuracy |",
            "|---|---|---|---|---|---|",
        ]
        for row in parts["device_data"]["rows"]:
            where = "on the device" if row["device_data"] else "in host memory"
            lines.append(
                f"| {row['workload']} | {where} | {fmt(row['epoch_seconds'])} | {fmt(row['first_epoch_seconds'], 1)} "
                f"| {fmt(row['process_seconds'], 1)} | {fmt(100 * row['test_accuracy'], 2, '%')} |"
            )
        lines.append("")
    if "jax_cache" in parts:
        cache = parts["jax_cache"]
        lines += [
            "JAX's persistent compilation cache: two dense runs from an empty cache "
            f"({load_note(cache, m['cores'])}): the first epoch took {cache['first_run_first_epoch_seconds']:.1f} s "
            f"in the first run and {cache['second_run_first_epoch_seconds']:.1f} s in the second (later epochs "
            f"{fmt(cache['second_run_later_epoch_seconds'])} s); whole processes "
            f"{cache['first_run_process_seconds']:.1f} s and {cache['second_run_process_seconds']:.1f} s.",
            "",
        ]
    return "\n".join(lines)


def write_section() -> None:
    blocks = []
    for name, title in (("backends.json", "On this machine's CPU"), ("gpu.json", "On an NVIDIA GPU")):
        path = RESULTS / name
        if path.exists():
            blocks.append(render(json.loads(path.read_text()), title))
    if not (RESULTS / "gpu.json").exists():
        blocks.append("### On an NVIDIA GPU\n\nNot measured yet: `make bench-gpu` where there is one (bench/gpu.sh).")
    section = (
        f"{SECTION}\n\n## Backends\n\nWritten by `make bench-backends` and `make bench-gpu` (bench/backends.py; "
        "results in bench/results/). Seconds per epoch: the median of epochs 2 on, validation and the "
        "overfitting gap's re-evaluation included; the first epoch includes compilation. The benchmark keeps "
        "every core busy itself (a load average near the core count); more means other work was running.\n\n"
        + "\n".join(blocks)
    )
    page = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    page = page.split(SECTION)[0].rstrip("\n")
    BENCHMARKS.write_text(page + "\n\n" + section.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts",
        nargs="+",
        help="table overhead jax_cache device_data (default: the first three; with --gpu all four)",
    )
    parser.add_argument("--backends", nargs="+", help="default: every one installed")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, help="cap every table workload at this many epochs")
    parser.add_argument("--reps", type=int, default=3, help="pairs per backend in the overhead part")
    parser.add_argument("--reference", action="store_true", help="plain Keras on JAX in the table too")
    parser.add_argument("--gpu", action="store_true", help="the GPU run: results/gpu.json, plain Keras beside")
    parser.add_argument("--no-write", action="store_true", help="print only; keep results and BENCHMARKS.md")
    args = parser.parse_args()
    backends = args.backends or installed_backends()
    parts = args.parts or ["table", "overhead", "jax_cache"] + (["device_data"] if args.gpu else [])
    started = time.time()
    results = {
        "command": "make bench-gpu" if args.gpu else "make bench-backends",
        "argv": sys.argv[1:],
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": machine(),
        "parts": {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        logs = ROOT / "runs" / "bench" / "backends-logs"
        logs.mkdir(parents=True, exist_ok=True)
        bench = Bench(Path(tmp), logs)
        for part in parts:
            print(f"{part} (load {load()}):", flush=True)
            before = load()
            if part == "table":
                figures = part_table(bench, backends, args.workloads, args.epochs, args.reference or args.gpu)
            elif part == "overhead":
                figures = part_overhead(bench, [b for b in backends if b in ("tensorflow", "jax")], args.reps)
            elif part == "jax_cache":
                figures = part_jax_cache(bench) if "jax" in backends else None
            elif part == "device_data":
                figures = part_device_data(bench, args.workloads) if "jax" in backends else None
            else:
                raise SystemExit(f"unknown part {part!r}")
            if figures is not None:
                measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                results["parts"][part] = {**figures, "load_before": before, "load_after": load(), "measured": measured}
    results["minutes"] = (time.time() - started) / 60
    print(render(results, "results"))
    if not args.no_write:
        path = RESULTS / ("gpu.json" if args.gpu else "backends.json")
        if path.exists():  # parts measured before and not again now stay, and so do table rows
            earlier = json.loads(path.read_text()).get("parts", {})
            if "table" in earlier and "table" in results["parts"]:
                table = results["parts"]["table"]
                again = {(row["workload"], row["side"], row["backend"]) for row in table["rows"]}
                kept = [r for r in earlier["table"]["rows"] if (r["workload"], r["side"], r["backend"]) not in again]
                table["rows"] = sorted(kept + table["rows"], key=lambda r: list(WORKLOADS).index(r["workload"]))
                for row in kept:
                    row.setdefault("measured", earlier["table"].get("measured"))
                for row in table["rows"]:
                    row.setdefault("measured", table["measured"])
            results["parts"] = {**earlier, **results["parts"]}
        path.write_text(json.dumps(results, indent=1) + "\n")
        write_section()


if __name__ == "__main__":
    main()
