"""Turn finished experiment cells into markdown tables and plots.

    python benchmarks/report.py benchmarks/experiments/defaults.yaml [--out benchmarks/results/defaults.md]

Reads `<runs_dir>/*/cell.json` (written by run.py), groups cells by dataset and variant, and reports
the main validation metric (and test, where the dataset has one) as mean ± spread over seeds, with
train size, steps and wall time. Plots: validation curves of every variant per dataset.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from lsllm.report import save_figure_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def load_cells(runs_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/cell.json"))]


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.pstdev(values):.1f} (n={len(values)})"


def table(spec: dict, cells: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["dataset"], c["variant"])].append(c)
    lines = ["| dataset | variant | main metric | validation | test | train examples | steps | wall time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(spec["variants"])}
    for (dataset, variant), group in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        main = group[0]["main_metric"]
        val = [g["metrics"]["validation"][main] for g in group if "validation" in g["metrics"]]
        test = [g["metrics"]["test"][main] for g in group if "test" in g["metrics"]]
        wall = statistics.mean(g["wall_time_s"] for g in group)
        lines.append(f"| {dataset} | {variant} | {main} | {fmt(val)} | {fmt(test)} | {group[0]['train_examples']} | "
                     f"{group[0]['steps']} | {wall:.0f} |")
    return "\n".join(lines)


def plot_validation_curves(cells: list[dict], runs_dir: Path, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        if c["seed"] == min(x["seed"] for x in cells if x["dataset"] == c["dataset"]):
            by_dataset[c["dataset"]].append(c)
    for dataset, group in by_dataset.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for c in group:
            log = runs_dir / c["name"] / "run" / "log.jsonl"
            records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
            evals = [r for r in records if r["type"] == "eval"]
            ax.plot([r["step"] for r in evals], [100 * r["metrics"][c["main_metric"]] for r in evals], marker="o",
                    label=c["variant"])
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation {group[0]['main_metric']} (%)")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
        path = out_dir / f"curves_{dataset}.png"
        save_figure_atomic(fig, path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default: print only)")
    parser.add_argument("--runs-dir", type=Path, default=None)
    args = parser.parse_args()
    spec = yaml.safe_load(args.experiments.read_text())
    runs_dir = args.runs_dir or ROOT / spec.get("runs_dir", "benchmarks/runs")
    cells = load_cells(runs_dir)
    text = table(spec, cells)
    print(text)
    if args.out:
        plots = plot_validation_curves(cells, runs_dir, args.out.parent)
        body = f"{text}\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
        write_text_atomic(args.out, body)


if __name__ == "__main__":
    main()
