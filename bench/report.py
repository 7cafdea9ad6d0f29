"""BENCHMARKS.md and the plot, from the results of bench/run_bench.py.

python bench/report.py bench/results/bench.json    # write them again
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

ROOT = Path(__file__).resolve().parents[1]
SELECTION = "fast_convnet_selection.json"  # bench/select_fast_convnet.py's choice, beside bench.json
SCORE = "fast_convnet_score.json"  # ... and its score of the chosen preset on the test set
SIGN = {"<=": "≤", ">=": "≥", "within": "±"}
# bench/backends.py writes the end of BENCHMARKS.md from this line on; a new page keeps it.
BACKENDS_SECTION = "<!-- The section below is written by bench/backends.py (make bench-backends, make bench-gpu). -->"

METHODS = """\
## How each figure is measured

Unless said otherwise, each side runs as its own process (`python run.py ...`
or `python bench/reference_keras.py ...`), timed from start to exit; peak RSS
is that process's own `ru_maxrss` (from `wait4`). The runs of the sides are
interleaved: each round runs every side once, and which side goes first
rotates from round to round. Runner runs share one temporary MLflow store
(created, with the libraries read into the page cache, by unmeasured warm-up
runs of each side first). Minutes per item: {item_minutes}.

The plain-Keras reference (bench/reference_keras.py) runs the same model on
the same data in two ways. **Like-for-like**: with the runner's execution
options ({options}) and the images kept uint8 and rescaled by the model's
first layer, as the runner does, so that runner / reference is the runner's
own cost. **Notebook**: what the course's notebook writes, Keras' defaults
(one batch per call, validation in batches of 128, the test set in batches
of 32) and float32 arrays divided by 255.

1. **Runner overhead**: `python run.py {overhead_runner}` (the course's dense
   run, {overhead_epochs}, with everything the runner records: per-epoch
   MLflow logging, the overfitting gap's re-evaluation, checkpoints, plots,
   the logged model) against `python bench/reference_keras.py
   {overhead_reference}` like-for-like (`{like}`) and as the notebook does;
   {overhead_rounds} rounds of the three, whole-process wall time, the ratio
   of each round. The notebook row is not an overhead: the runner's faster
   execution options are in it.
2. **bfloat16**: `trainer.precision=mixed_bfloat16` against `float32` for
   {throughput_models}, with {throughput_overrides}, one pair of runs per seed
   ({throughput_seeds}), all in one process (bench/runner_driver.py, which
   calls `run_experiment`), the precision that goes first alternating. A
   run's throughput is training samples / epoch wall time (training,
   validation and the gap's re-evaluation), the median of its epochs after
   the first; each pair of runs gives one ratio, and one accuracy difference.
3. **Time to {target_percent} test accuracy**: seconds from the start of training
   (Keras' `on_train_begin`) to the end of the first epoch whose test
   accuracy reaches {target_percent}, once per seed ({target_seeds}) on each of four
   sides, which rotate from seed to seed. The test accuracy is evaluated after
   every epoch on every side; that evaluation is the clock's own and its time
   is left out. On the runner's side (D, bench/runner_driver.py, which adds
   the clock as the last callback to `run_experiment`, since `run.py` cannot
   stop at an accuracy) the epoch's checkpoint and its MLflow logging happen
   before the clock stops, so they are inside the time (checked: the epoch's
   checkpoint file exists when it stops); what comes after training (the test
   set's prediction, the logged model) is not, on either side. Sides:
{arms}
   keras-io's recipe stops at its 15 epochs and fast_convnet at its 2 if the
   accuracy is not reached; the ratios pair runs of the same seed. C / B is
   the recipe's effect, B / A the execution options', D / C the runner's
   recording, D / A all together. Side **P** is the preset as a user runs it,
   in the same rotation: a whole `python run.py experiment=fast_convnet`
   process per seed (start-up, training, the test set, figures, the logged
   model), its wall time and final test accuracy, each seed held to the
   target; P / A sets that whole process against the training time keras-io's
   recipe needed to reach {target_percent} in a notebook.
4. **Start-up**: wall time of `python run.py --help` and
   `python run.py --cfg job`, {startup_rounds} times each, alternating; one more run
   under `python -X importtime` checks that neither TensorFlow nor Keras is imported.
5. **Sweeps**: {sweep_rounds} rounds of {sweep_jobs} tiny jobs (`{tiny}`) as one
   `python run.py -m ...` and as {sweep_jobs} separate `python run.py` processes (which
   goes first alternates): a round's mean process wall time over the sweep's
   wall time per job (no target: this is what sharing a process saves). Leak
   check: {leak_jobs} such jobs one after another in one process
   (bench/runner_driver.py); peak RSS after the last job against after job 2.
   And `make sweep` once ({make_sweep}), the overfitting-gap sweep in one
   process as a user runs it: its wall time, start to exit, against the sum
   of its jobs' training (each job's `fit_seconds`, as it prints it:
   training, validation and the gap's re-evaluation), and (wall - that sum)
   / jobs, what a job costs beyond its training with the process's start-up
   and the report shared out.
6. **Peak memory**: peak RSS of item 1's runs, runner over each reference.
"""


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "points":
        return f"{value:+.2f}"
    if unit == "%":  # a fraction shown as a percentage
        return f"{100 * value:.2f}"
    return f"{value:.1f}" if unit == "s" and value >= 10 else f"{value:.2f}"


def target_text(figure: dict) -> str:
    if not figure["target"]:
        return "—"
    op, limit = figure["target"]
    shown = f"{100 * limit:g}%" if figure["unit"] == "%" else f"{limit:g}{' s' if figure['unit'] == 's' else ''}"
    # A row judged on its largest or smallest sample holds every run to the target.
    return f"{SIGN[op]} {shown}" + (" each" if figure.get("judged", "median") != "median" else "")


def others_text(figure: dict) -> str:
    share = figure.get("others_share")
    if share is None:
        return ""
    return f"{share:.0%}" + (" **busy**" if figure.get("busy") else "")


def table(results: dict) -> str:
    rows = [
        "| # | figure | target | median | min – max | n | met | others' CPU | detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in results["figures"]:
        unit = {"x": "×", "s": " s", "points": " points", "%": "%"}[f["unit"]]
        spread = f"{cell(f['min'], f['unit'])} – {cell(f['max'], f['unit'])}" if len(f["samples"]) > 1 else ""
        met = {True: "yes", False: "**no**", None: "—"}[f["met"]]
        median = cell(f["median"], f["unit"]) + (unit if f["median"] is not None else "")
        rows.append(
            f"| {f['item']} | {f['name']} | {target_text(f)} | {median} | {spread} | {len(f['samples'])} "
            f"{f['n_of']} | {met} | {others_text(f)} | {f['detail']} |"
        )
    return "\n".join(rows)


def busy_summary(results: dict) -> str:
    busy = []
    for name, item in results["items"].items():
        attempts = item["attempts"]
        if any(a["busy"] for a in attempts):
            shares = ", ".join(f"{a['during']['others_share']:.0%}" for a in attempts)
            state = "busy" if attempts[item["published_attempt"] - 1]["busy"] else "quiet"
            busy.append(
                f"{name} (others' share per attempt: {shares}; published: attempt {item['published_attempt']}, {state})"
            )
    if not busy:
        return "No item was busy."
    return "**Busy**: " + "; ".join(busy) + ". Figures flagged busy are slower and noisier than this machine's own."


def selection_text(results_path: Path, page_dir: Path) -> str:
    """What bench/select_fast_convnet.py chose on validation data, and its
    score of the chosen preset on the test set, where they have run."""
    path = results_path.parent / SELECTION
    if not path.exists():
        return (
            "Not chosen yet: `python bench/select_fast_convnet.py` chooses the preset on validation accuracy alone "
            f"and writes {SELECTION} beside this page's results file."
        )
    selection = json.loads(path.read_text())
    seeds = selection["seeds"]
    lines = [
        f"`{selection['command']}` ({selection['started']}; [{SELECTION}]({os.path.relpath(path, page_dir)})): "
        f"each candidate recipe as a whole `python run.py` process per seed ({', '.join(map(str, seeds))}), "
        f"judged by its last epoch's **validation** accuracy (the runner's hold-out, the last "
        f"{selection['validation_split']:.0%} of the training set; the test set is not looked at). Ranked by "
        f"the runs that reached {selection['target']:.1%}"
        + (" (99% with a margin for the hold-out's noise)" if selection["target"] > 0.99 else "")
        + ", then by the median whole-process seconds:",
        "",
        "| rank | candidate | reached | lowest val. acc. | median s | val. acc. per seed |",
        "|---|---|---|---|---|---|",
    ]
    for c in selection["candidates"]:
        per_seed = ", ".join(f"{run['val_accuracy']:.4f}" for run in c["runs"].values())
        lines.append(
            f"| {c['rank']} | {c['name']} | {c['reached']} of {len(seeds)} | {c['min_val_accuracy']:.4f} "
            f"| {c['median_seconds']:.1f} | {per_seed} |"
        )
    lines += ["", selection["verdict"]]
    if selection.get("busy"):
        lines.append(f"(Measured while other processes used {selection['others_share']:.0%} of the CPU: busy.)")
    scored = results_path.parent / SCORE
    if scored.exists():
        result = json.loads(scored.read_text())
        runs = ", ".join(
            f"seed {seed}: {run['test_accuracy']:.2%} in {run['process_seconds']:.1f} s"
            for seed, run in result["preset"].items()
        )
        reference = ", ".join(
            f"{r['seconds_to_target']:.1f} s" if r["seconds_to_target"] else "not reached"
            for r in result["keras_io_to_99"].values()
        )
        lines += [
            "",
            f"Scored once on the test set (`{result['command']}`, {result['started']}; "
            f"[{SCORE}]({os.path.relpath(scored, page_dir)})), whole `python run.py experiment=fast_convnet` "
            f"processes: {runs}. keras-io's recipe in plain Keras on the same seeds, training time to 99% test "
            f"accuracy: {reference}.",
        ]
        bench_started = json.loads(results_path.read_text()).get("started", "")
        if bench_started < result["started"]:  # both "YYYY-MM-DD HH:MM UTC"
            lines.append(
                f"(Figure 3 above is from the benchmark run of {bench_started}, before this choice: it measured "
                "the preset as it was then. The next `make bench` measures this one.)"
            )
    return "\n".join(lines)


def write_markdown(results: dict, path: Path, plot: str, results_path: Path) -> str:
    """Write the page; returns its table."""
    m, s = results["machine"], results["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    options = results["runner_options"]
    like = (
        f"--steps-per-execution {options['steps_per_execution']} --eval-batch-size {options['eval_batch_size']} --uint8"
    )
    epochs = [o.split("=")[1] for o in s["overhead_runner"] if o.startswith("trainer.epochs=")]
    items = results["items"]
    overrides = " ".join(s["throughput_overrides"])
    settings = {
        "item_minutes": ", ".join(f"{name} {item['attempts'][-1]['minutes']:.1f}" for name, item in items.items()),
        "options": f"`trainer.steps_per_execution={options['steps_per_execution']}`, "
        f"`trainer.eval_batch_size={options['eval_batch_size']}`",
        "overhead_runner": " ".join(s["overhead_runner"]),
        "overhead_epochs": f"{epochs[0]} epochs" if epochs else "10 epochs",
        "overhead_reference": " ".join(s["overhead_reference"]),
        "like": like,
        "overhead_rounds": s["overhead_rounds"],
        "throughput_models": " and ".join(f"`model={model}`" for model in s["throughput_models"]),
        "throughput_overrides": f"`{overrides}`" if overrides else "the course's settings (no overrides)",
        "throughput_seeds": ", ".join(str(seed) for seed in s["throughput_seeds"]),
        "target_percent": f"{s['target_accuracy']:.0%}",
        "target_seeds": ", ".join(str(seed) for seed in s["target_seeds"]),
        "arms": "\n".join(f"   - **{arm}**: {what}" for arm, what in results["arms"].items()),
        "startup_rounds": s["startup_rounds"],
        "sweep_rounds": s["sweep_rounds"],
        "sweep_jobs": s["sweep_jobs"],
        "leak_jobs": s["leak_jobs"],
        "tiny": " ".join(results["tiny_job"]),
        "make_sweep": "`python run.py experiment=overfitting_gap"
        + "".join(f" {o}" for o in s.get("make_sweep_extra", []))
        + "`",
    }
    smoke = ""
    if results["quick"] or results["partial"]:
        smoke = (
            "\n**A smoke run** (small subsets, few epochs"
            + (f", a {s['target_accuracy']:.0%} target" if results["quick"] else "")
            + "): its numbers mean nothing.\n"
        )
    results_link = os.path.relpath(results_path, path.parent)
    page = f"""# Benchmarks

Generated by `{results["command"]}` (bench/run_bench.py) on {results["started"]}, in
{results["minutes"]:.1f} minutes. Do not edit by hand: run it again. Every run's
raw numbers, the machine, the load samples and the command are in
[{results_link}]({results_link}).
{smoke}
- **Machine**: {m["cpu"]}, {m["cores"]} cores (bfloat16 instructions: {", ".join(m["bfloat16_instructions"])}),
  {m["memory_gib"]} GiB memory, {m["os"]}
- **Software**: Python {m["python"]}, {versions}
- **Other processes**: before each item the suite checks that other processes
  use at most {results["busy_share"]:.0%} of the CPU (waiting for them up to a limit),
  and during it samples their share every 5 s (from `/proc/stat`, less this
  suite's own processes); an item during which they used more than {results["busy_share"]:.0%} is
  flagged **busy** and measured again. {busy_summary(results)} Load average (1, 5, 15 min; this
  suite's own processes count in it) before: {fmt_load(results["load_average_before"])}; after:
  {fmt_load(results["load_average_after"])}.

n counts runs, never epochs: a ratio's n is its number of pairs (or rounds) of
runs measured side by side in this invocation. Median of the n samples, with
the smallest and largest. "others' CPU": other processes' share of the CPU
during the item.

{table(results)}

![each figure against its target]({plot})

## fast_convnet's choice, on validation data

{selection_text(results_path, path.parent)}

{METHODS.format(**settings)}"""
    kept = path.read_text().partition(BACKENDS_SECTION) if path.exists() else ("", "", "")
    path.write_text(page + (f"\n{kept[1]}{kept[2]}" if kept[1] else ""))
    return table(results)


def fmt_load(load: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def write_plot(results: dict, path: Path) -> None:
    """One panel per group of figures: the median as a bar, min to max as
    whiskers, each figure's target as a dashed mark over its bar; green when
    met, red when not, grey without a target; hatched when busy."""
    panels: dict[str, list[dict]] = {}
    for f in results["figures"]:
        if f["median"] is not None:
            panels.setdefault(f["panel"] or f["name"], []).append(f)
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(3.4 * columns, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flat
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, figures) in zip(axes, panels.items()):
        for x, f in enumerate(figures):
            color = {True: "tab:green", False: "tab:red", None: "tab:gray"}[f["met"]]
            error = [[f["median"] - f["min"]], [f["max"] - f["median"]]]
            ax.bar([x], [f["median"]], yerr=error, capsize=4, color=color, hatch="//" if f.get("busy") else None)
            ax.annotate(
                cell(f["median"], f["unit"]),
                (x, f["median"]),
                textcoords="offset points",
                xytext=(6, 2),
                fontsize=7,
            )
            if f["target"]:
                op, limit = f["target"]
                for line in (limit, -limit) if op == "within" else (limit,):
                    ax.hlines(line, x - 0.45, x + 0.45, color="black", linestyle="--", linewidth=1)
        if all(f["unit"] == "%" for f in figures):  # accuracies near the target: show the top of the scale
            low = min([f["min"] for f in figures] + [f["target"][1] for f in figures if f["target"]])
            ax.set_ylim(low - 0.01, 1.0)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2))  # as the bars' labels: 99.07%
        if any(f["unit"] == "points" for f in figures):
            ax.axhline(0, color="black", linewidth=0.5)
        elif all(f["unit"] == "x" for f in figures):  # a ratio of 1: no difference
            ax.axhline(1, color="gray", linewidth=0.5)
        # Wrapped: three labels side by side in a panel would run into each other.
        labels = [textwrap.fill(f["label"] or f["name"], 14) for f in figures]
        ax.set_xticks(range(len(figures)), labels, fontsize=7)
        ax.set_title(textwrap.fill(f"{figures[0]['item']}. {title}", 36), fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlim(-0.6, len(figures) - 0.4)
    smoke = " (smoke run: numbers mean nothing)" if results["quick"] or results["partial"] else ""
    fig.suptitle(
        f"{results['command']}{smoke}: median (bar), min to max (whiskers), target (dashed); "
        "green met, red not, grey no target, hatched busy",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)


def publish(results: dict, results_path: Path) -> str:
    """The page at the repository root with its plot in docs/ (both committed),
    or both beside the results for a smoke or partial run. Returns the table."""
    smoke = results["quick"] or results["partial"]
    page = results_path.parent / "BENCHMARKS.md" if smoke else ROOT / "BENCHMARKS.md"
    plot = results_path.parent / "bench.png" if smoke else ROOT / "docs" / "bench.png"
    write_plot(results, plot)
    return write_markdown(results, page, os.path.relpath(plot, page.parent), results_path)


def main() -> None:
    results_path = Path(sys.argv[1]).resolve()
    print(publish(json.loads(results_path.read_text()), results_path))


if __name__ == "__main__":
    main()
