"""BENCHMARKS.md and the plot, from the results of bench/run_bench.py.

python bench/report.py runs/bench/results.json    # write them again
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
SIGN = {"<=": "≤", ">=": "≥", "within": "±"}
# bench/backends.py writes the end of BENCHMARKS.md from this line on; a new page keeps it.
BACKENDS_SECTION = "<!-- The section below is written by bench/backends.py (make bench-backends, make bench-gpu). -->"

METHODS = """\
## How each figure is measured

Unless said otherwise, each side runs as its own process (`python run.py ...`
or `python bench/reference_keras.py ...`), timed from start to exit; peak RSS
is that process's own `ru_maxrss` (from `wait4`). Repeated measurements
alternate between the two sides. Runner runs use a temporary MLflow store.
Time per step (minutes): {step_minutes}.

1. **Runner overhead**: `python run.py {dense_runner}` against the same
   training in plain Keras, `python bench/reference_keras.py {dense_reference}`.
   `model=dense` alone is the course's run (10 epochs, RMSprop, batch 128, 30%
   validation), with everything the runner records, the logged model
   included, and the runner's own defaults for running it
   (`trainer.steps_per_execution=32`, `trainer.eval_batch_size=1024`: the
   same numbers, less overhead; docs/performance.md, "Execution options"). The reference
   is what the course's notebook does: Keras' defaults. {reps}
   repetition(s); the ratio of each pair.
2. **Throughput**: samples per second of each epoch after the first
   (training samples / epoch wall time: training, validation and the
   per-epoch overfitting-gap evaluation), for {throughput_models}, each
   trained in `trainer.precision=float32` and then `mixed_bfloat16` with
   {throughput_overrides}, once per seed ({throughput_seeds}), in one
   process (bench/runner_driver.py, which calls `run_experiment`). Each
   epoch after the first is a repetition, paired with the same epoch of the
   same seed in the other precision. Test accuracy: the difference of each
   seed's pair of runs (detail: bf16 / fp32 per seed).
3. **Time to {target_accuracy:.0%} test accuracy**: seconds from the start of
   training to the end of the first epoch whose test accuracy (checked after
   every epoch, on both sides) reaches it. The runner runs
   `{target_runner}` (experiments/fast_convnet.yaml: keras-io's convnet with
   a hidden Dense 128, dropout 0.25, Adam at 0.002, float32) through
   bench/runner_driver.py (`run.py` cannot stop at
   an accuracy: the driver adds the check as an extra Keras callback to
   `run_experiment`, so per-epoch MLflow logging and checkpoints are
   included); the reference is keras-io's recipe in plain Keras
   (`reference_keras.py {target_reference}`: Adam, batch 128, 10%
   validation, float32). One run each: one keras-io run to 99% takes about
   two minutes here, and three would not fit the time budget.
4. **Start-up**: wall time of `python run.py --help` and
   `python run.py --cfg job`, 3 times each; one more run under
   `python -X importtime` checks that neither TensorFlow nor Keras is imported.
5. **Sweeps**: {sweep_jobs} tiny jobs (`{tiny}`, seeds 1 to {sweep_jobs}) as one
   `python run.py -m ...` against {sweep_jobs} separate `python run.py`
   processes: each process's wall time over the sweep's wall time per job
   (the issue sets no target: this is what sharing a process saves).
   Leak check: {leak_jobs} such jobs one after another in one process
   (bench/runner_driver.py); peak RSS after the last job against after job 2.
6. **Peak memory**: peak RSS of the runs of item 1, runner over reference.
"""


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if unit == "points" else f"{value:.2f}"


def target_text(figure: dict) -> str:
    if not figure["target"]:
        return "—"
    op, limit = figure["target"]
    return f"{SIGN[op]} {limit:g}{' s' if figure['unit'] == 's' else ''}"


def table(results: dict) -> str:
    rows = ["| # | figure | target | median | min – max | n | met | detail |", "|---|---|---|---|---|---|---|---|"]
    for f in results["figures"]:
        unit = {"x": "×", "s": " s", "points": " points"}[f["unit"]]
        spread = f"{cell(f['min'], f['unit'])} – {cell(f['max'], f['unit'])}" if len(f["samples"]) > 1 else ""
        met = {True: "yes", False: "**no**", None: "—"}[f["met"]]
        median = cell(f["median"], f["unit"]) + (unit if f["median"] is not None else "")
        rows.append(
            f"| {f['item']} | {f['name']} | {target_text(f)} | {median} | "
            f"{spread} | {len(f['samples'])} | {met} | {f['detail']} |"
        )
    return "\n".join(rows)


def write_markdown(results: dict, path: Path, plot: str) -> str:
    """Write the page; returns its table."""
    m, s = results["machine"], results["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    # Lists (tuples before the JSON round trip) of overrides print as a command line.
    settings = {
        key: " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value for key, value in s.items()
    }
    settings["tiny"] = " ".join(results["tiny_job"])
    settings["step_minutes"] = ", ".join(f"{step} {minutes:.1f}" for step, minutes in results["step_minutes"].items())
    settings["throughput_models"] = " and ".join(f"`model={model}`" for model in s["throughput_models"])
    overrides = " ".join(s["throughput_overrides"])
    settings["throughput_overrides"] = f"`{overrides}`" if overrides else "the course's settings (no overrides)"
    settings["throughput_seeds"] = ", ".join(str(seed) for seed in s["throughput_seeds"])
    page = f"""# Benchmarks

Generated by `{results["command"]}` (bench/run_bench.py) on {results["started"]}, in
{results["minutes"]:.1f} minutes. Do not edit by hand: run it again.

- **Machine**: {m["cpu"]}, {m["cores"]} cores (bfloat16 instructions: {", ".join(m["bfloat16_instructions"])}),
  {m["memory_gib"]} GiB memory, {m["os"]}
- **Software**: Python {m["python"]}, {versions}
- **Load average** (1, 5, 15 min) before: {fmt_load(results["load_average_before"])}; after:
  {fmt_load(results["load_average_after"])}{busy_note(results)}

Ratios are runner / reference (or bf16 / fp32) of runs measured side by side
in this one invocation. Median of n repetitions, with the smallest and largest.

{table(results)}

![each figure against its target]({plot})

{METHODS.format(**settings)}"""
    kept = path.read_text().partition(BACKENDS_SECTION) if path.exists() else ("", "", "")
    path.write_text(page + (f"\n{kept[1]}{kept[2]}" if kept[1] else ""))
    return table(results)


def busy_note(results: dict) -> str:
    """A warning when the machine was busier than its cores during the run."""
    cores = results["machine"]["cores"]
    if max(results["load_average_before"][0], results["load_average_after"][0]) > cores:
        return " (above the core count: something else was running)"
    return ""


def fmt_load(load: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def write_plot(results: dict, path: Path) -> None:
    """One small panel per figure with a target: the median as a bar, min to
    max as an error bar, the target as a dashed line; green when met."""
    figures = [f for f in results["figures"] if f["target"] and f["median"] is not None]
    columns = min(len(figures), 5)
    rows = -(-len(figures) // columns)
    fig = Figure(figsize=(2.6 * columns, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flat
    for ax in axes[len(figures) :]:
        ax.set_visible(False)
    for ax, f in zip(axes, figures):
        op, limit = f["target"]
        error = [[f["median"] - f["min"]], [f["max"] - f["median"]]]
        ax.bar([0], [f["median"]], yerr=error, capsize=4, color="tab:green" if f["met"] else "tab:red")
        for line in (limit, -limit) if op == "within" else (limit,):
            ax.axhline(line, color="black", linestyle="--", linewidth=1)
        ax.set_xticks([])
        ax.set_title(textwrap.fill(f"{f['item']}. {f['name'].replace('`', '')}", 32), fontsize=8)
        ax.set_ylabel(f"{f['unit']} (target {target_text(f)})", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{results['command']}: median (bar), min to max (whiskers), target (dashed)", fontsize=9)
    fig.savefig(path, dpi=120)


def publish(results: dict, out: Path) -> str:
    """The page at the repository root with its plot in docs/ (both committed),
    or both in ``out`` for a quick run (whose numbers mean nothing). Returns the table."""
    page = out / "BENCHMARKS.md" if results["quick"] else ROOT / "BENCHMARKS.md"
    plot = out / "bench.png" if results["quick"] else ROOT / "docs" / "bench.png"
    write_plot(results, plot)
    return write_markdown(results, page, os.path.relpath(plot, page.parent))


def main() -> None:
    results_path = Path(sys.argv[1])
    print(publish(json.loads(results_path.read_text()), results_path.parent))


if __name__ == "__main__":
    main()
