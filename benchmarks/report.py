"""Turn finished experiment cells into markdown tables and plots.

    python benchmarks/report.py benchmarks/experiments/paper.yaml [--out FILE.md] [--results benchmarks/RESULTS.md]

Reads `<runs_dir>/*/cell.json` (written by run.py). Always prints (and writes to --out) the table of every
cell: main metric on validation and test as mean ± spread over seeds, test size, train size, steps, wall
time. When the experiments file has a `report:` section it also lays the cells out like the paper's tables
(rows = variants, columns = datasets, with an optional clearly-labelled reference column), draws the
training curves of the chosen variants, a pooling-ablation bar chart, and learning curves over training-set
size (`data_curves`: a dataset and its `like:` subsets, test metric against training examples, one plot and
table per dataset, so the sizes where one method overtakes another are visible). `--results FILE` splices the whole
report into FILE between `<!-- report:NAME begin -->` and `<!-- report:NAME end -->` (NAME = the
experiments file's stem), leaving the hand-written text around it alone; plots go to
`benchmarks/results/NAME/`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from lsllm.files import write_text_atomic
from lsllm.report import save_figure_atomic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run.py's test_sample


def load_cells(runs_dir: Path, records_dir: Path | None = None) -> list[dict]:
    """Finished cells: the committed records (records_dir) and any newer ones in the run folders."""
    cells = {c["name"]: c for c in (json.loads(p.read_text()) for p in sorted(records_dir.glob("*.json")))
             } if records_dir is not None and records_dir.is_dir() else {}
    cells.update((c["name"], c) for c in (json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/cell.json"))))
    return [cells[name] for name in sorted(cells)]


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.pstdev(values):.1f} (n={len(values)})"


def group_cells(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["dataset"], c["variant"])].append(c)
    return groups


def scores(group: list[dict], split: str) -> list[float]:
    return [g["metrics"][split][g["main_metric"]] for g in group if split in g["metrics"]]


def test_size(group: list[dict]) -> int | None:
    sizes = [g["metrics"]["test"].get("n") for g in group if "test" in g["metrics"]]
    return sizes[0] if sizes else None


def table(spec: dict, cells: list[dict]) -> str:
    """Every cell group, one row each."""
    lines = ["| dataset | variant | main metric | validation | test | test examples | train examples | steps | "
             "wall time (s) |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    order = {name: i for i, name in enumerate(spec["variants"])}
    for (dataset, variant), group in sorted(group_cells(cells).items(),
                                            key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        walls = [g["wall_time_s"] for g in group if g.get("wall_time_s") is not None]
        wall = f"{statistics.mean(walls):.0f}" if walls else "-"
        lines.append(f"| {dataset} | {variant} | {group[0]['main_metric']} | {fmt(scores(group, 'validation'))} | "
                     f"{fmt(scores(group, 'test'))} | {test_size(group) or '-'} | {group[0]['train_examples']} | "
                     f"{group[0]['steps']} | {wall} |")
    return "\n".join(lines)


def paper_table(layout: dict, spec: dict, cells: list[dict]) -> str:
    """Rows = variants, columns = datasets, test metric (validation where a dataset has no test). A cell scored
    on fewer test examples than the dataset's other cells is marked † (a fixed seeded sample)."""
    groups = group_cells(cells)
    labels = spec.get("report", {}).get("labels", {})
    reference = layout.get("reference", {})
    datasets = layout["datasets"]
    full = {d: max((test_size(g) or 0) for (ds, _), g in groups.items() if ds == d) if any(
        ds == d for ds, _ in groups) else 0 for d in datasets}
    header = "| variant | " + " | ".join(datasets) + " |"
    lines = [f"**{layout['title']}**", "", header, "|---|" + "---:|" * len(datasets)]
    marked = False
    for variant in layout["variants"]:
        row = []
        for d in datasets:
            group = groups.get((d, variant), [])
            value = fmt(scores(group, "test") or scores(group, "validation"))
            if group and test_size(group) and test_size(group) < full[d]:
                value, marked = f"{value} †", True
            row.append(value)
        lines.append(f"| {labels.get(variant, variant)} | " + " | ".join(row) + " |")
    for name, values in reference.get("rows", {}).items():
        lines.append(f"| *{name}* | " + " | ".join(str(values.get(d, "n/a")) for d in datasets) + " |")
    if marked:
        lines.append("")
        lines.append("† scored on a fixed seeded 1,000-example sample of the test split (prompting is costly on CPU).")
    if reference.get("note"):
        lines += ["", reference["note"]]
    return "\n".join(lines)


def same_sample_table(layout: dict, spec: dict, cells: list[dict], runs_dir: Path) -> str:
    """Cells scored on the whole test split re-scored (from their saved test predictions) on the
    fixed seeded sample that the sampled (†) cells of the same dataset used: a like-for-like row."""
    from run import test_sample

    groups = group_cells(cells)
    labels = spec.get("report", {}).get("labels", {})
    lines = []
    for dataset in layout["datasets"]:
        sizes = {v: test_size(g) for (d, v), g in groups.items()
                 if d == dataset and v in layout["variants"] and test_size(g)}
        if not sizes or min(sizes.values()) == max(sizes.values()):
            continue
        full, k = max(sizes.values()), min(sizes.values())
        index = test_sample(full, k)
        row = []
        for variant in layout["variants"]:
            group = groups.get((dataset, variant), [])
            if not group:
                continue
            if sizes.get(variant) == k:
                row.append(f"{labels.get(variant, variant)} {fmt(scores(group, 'test'))}")
                continue
            values = []
            for c in group:
                path = runs_dir / c["name"] / "run" / "test_predictions.jsonl"
                if path.is_file() and c["main_metric"] == "accuracy":
                    preds = [json.loads(line) for line in path.read_text().splitlines()]
                    if len(preds) == full:
                        values.append(sum(preds[i]["label"] == preds[i]["gold"] for i in index) / k)
            if values:
                row.append(f"{labels.get(variant, variant)} {fmt(values)}")
        lines.append(f"- {dataset}, the same {k} of {full} test examples: " + "; ".join(row))
    return ("Like-for-like on the prompting rows' test sample (whole-test cells re-scored from their "
            "saved predictions):\n\n" + "\n".join(lines)) if lines else ""


def _evals(runs_dir: Path, cell: dict) -> list[dict]:
    log = runs_dir / cell["name"] / "run" / "log.jsonl"
    if not log.is_file():  # a committed record of a run folder that is gone
        return cell.get("evals", [])
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["type"] == "eval"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_validation_curves(cells: list[dict], runs_dir: Path, out_dir: Path, datasets: list[str] | None = None,
                           variants: list[str] | None = None, labels: dict | None = None) -> list[Path]:
    """Validation curves (main metric against optimizer step) of every (or the chosen) variant, one plot per
    dataset, first seed only."""
    plt = _pyplot()
    written = []
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        if (c["seed"] == min(x["seed"] for x in cells if x["dataset"] == c["dataset"])
                and (datasets is None or c["dataset"] in datasets) and (variants is None or c["variant"] in variants)):
            by_dataset[c["dataset"]].append(c)
    for dataset, group in by_dataset.items():
        curves = [(c, _evals(runs_dir, c)) for c in group]
        if not any(evals for _, evals in curves):  # records without validation curves: no empty plot
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        # Batches are sized by tokens since issue 13, so steps are not comparable across runs: examples seen are.
        by_examples = all(r.get("examples") for _, evals in curves for r in evals)
        for c, evals in curves:
            if evals:
                ax.plot([r["examples"] if by_examples else r["step"] for r in evals],
                        [100 * r["metrics"][c["main_metric"]] for r in evals],
                        marker="o", label=(labels or {}).get(c["variant"], c["variant"]))
        ax.set_xlabel("training examples seen" if by_examples else "optimizer step")
        ax.set_ylabel(f"validation {group[0]['main_metric']} (%)")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
        path = out_dir / f"curves_{dataset}.png"
        save_figure_atomic(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def _family(spec: dict, base: str) -> list[str]:
    """`base` and the datasets declared `like: base` (its learning-curve subsets)."""
    entries = spec.get("datasets", {})
    return [base] + [d for d, e in entries.items() if isinstance(e, dict) and e.get("like") == base]


def _family_metric(spec: dict, cells: list[dict], base: str) -> str:
    return next(c["main_metric"] for c in cells if c["dataset"] in _family(spec, base))


def data_size_points(spec: dict, cells: list[dict], base: str, variants: list[str]) -> dict[str, list[tuple]]:
    """Per variant, (training examples, [test metric per seed]) over `base` and its subsets, by size."""
    groups = group_cells(cells)
    family = _family(spec, base)
    points: dict[str, list[tuple]] = {}
    for variant in variants:
        row = [(g[0]["train_examples"], scores(g, "test") or scores(g, "validation"))
               for d in family if (g := groups.get((d, variant)))]
        if row:
            points[variant] = sorted(row)
    return points


def data_size_table(spec: dict, cells: list[dict], base: str, variants: list[str]) -> str:
    """Rows = variants, columns = training-set sizes, test metric (the best variant of each size in bold)."""
    points = data_size_points(spec, cells, base, variants)
    if not points:
        return ""
    labels = spec.get("report", {}).get("labels", {})
    sizes = sorted({n for row in points.values() for n, _ in row})
    best = {n: max(statistics.mean(v) for row in points.values() for m, v in row if m == n and v) for n in sizes}
    metric = _family_metric(spec, cells, base)
    lines = [f"**{base}: test {metric} % by training examples**", "",
             "| variant | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for variant, row in points.items():
        by_size = dict(row)
        cells_text = []
        for n in sizes:
            value = fmt(by_size.get(n, []))
            if by_size.get(n) and statistics.mean(by_size[n]) == best[n] and len(points) > 1:
                value = f"**{value}**"
            cells_text.append(value)
        lines.append(f"| {labels.get(variant, variant)} | " + " | ".join(cells_text) + " |")
    return "\n".join(lines)


def plot_data_size(spec: dict, cells: list[dict], base: str, variants: list[str], out_dir: Path) -> Path | None:
    """Test metric against training examples (log scale), one line per variant."""
    points = data_size_points(spec, cells, base, variants)
    if not points:
        return None
    plt = _pyplot()
    labels = spec.get("report", {}).get("labels", {})
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, row in points.items():
        xs = [n for n, v in row if v]
        ys = [100 * statistics.mean(v) for _, v in row if v]
        ax.plot(xs, ys, marker="o", label=labels.get(variant, variant))
    ax.set_xscale("log")
    sizes = sorted({n for row in points.values() for n, v in row if v})
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])  # the sizes trained, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel("training examples (log scale)")
    metric = _family_metric(spec, cells, base)
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_title(f"{base}: learning curves over training-set size")
    ax.legend(fontsize=7)
    path = out_dir / f"data_size_{base}.png"
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def plot_pooling(layout: dict, cells: list[dict], out_dir: Path) -> Path | None:
    """Grouped bars: test metric per pooling, causal vs bidirectional, per dataset (like the paper's Table 5)."""
    groups = group_cells(cells)
    poolings = layout["poolings"]
    if not any((d, v) in groups for d in layout["datasets"] for mode in ("causal", "bidirectional")
               for v in layout[mode].values()):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layout["datasets"]), figsize=(4.5 * len(layout["datasets"]), 3.8), squeeze=False)
    width = 0.38
    for ax, dataset in zip(axes[0], layout["datasets"]):
        for k, mode in enumerate(("causal", "bidirectional")):
            values = []
            for pooling in poolings:
                group = groups.get((dataset, layout[mode].get(pooling, "")), [])
                s = scores(group, "test") or scores(group, "validation")
                values.append(100 * statistics.mean(s) if s else 0.0)
            xs = [i + (k - 0.5) * width for i in range(len(poolings))]
            bars = ax.bar(xs, values, width, label="LS (causal)" if mode == "causal" else "LS-un (bidirectional)")
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(poolings)), poolings)
        ax.set_title(dataset)
        ax.set_ylabel("test accuracy (%)")
        lows = [b.get_height() for b in ax.patches if b.get_height() > 0]
        if lows:
            ax.set_ylim(max(0, min(lows) - 10), min(100, max(lows) + 5))
    axes[0][0].legend(fontsize=7, loc="lower left")
    path = out_dir / "pooling.png"
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def build_report(spec: dict, cells: list[dict], runs_dir: Path, plot_dir: Path, link_prefix: str) -> str:
    layout = spec.get("report", {})
    labels = layout.get("labels", {})
    parts = []
    for t in layout.get("tables", []):
        parts.append(paper_table(t, spec, cells))
        same = same_sample_table(t, spec, cells, runs_dir)
        if same:
            parts.append(same)
    plots = []
    if "pooling" in layout:
        plots.append(plot_pooling(layout["pooling"], cells, plot_dir))
    curves = layout.get("curves", {})
    plots += plot_validation_curves(cells, runs_dir, plot_dir, curves.get("datasets"), curves.get("variants"), labels)
    for block in layout.get("data_curves", []):
        size_table = data_size_table(spec, cells, block["dataset"], block["variants"])
        if size_table:
            parts.append(size_table)
        plots.append(plot_data_size(spec, cells, block["dataset"], block["variants"], plot_dir))
    parts.append("**Every cell** (main metric, mean ± population spread over seeds)\n\n" + table(spec, cells))
    parts.append("\n".join(f"![{p.stem}]({link_prefix}{p.name})" for p in plots if p))
    return "\n\n".join(parts) + "\n"


def splice(path: Path, name: str, body: str) -> None:
    """Replace the text between the report markers in `path` (append the markers if absent)."""
    begin, end = f"<!-- report:{name} begin -->", f"<!-- report:{name} end -->"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(path, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the report (plots beside it)")
    parser.add_argument("--results", type=Path, default=None,
                        help="markdown file to splice the report into, between report markers")
    parser.add_argument("--runs-dir", type=Path, default=None)
    args = parser.parse_args()
    spec = yaml.safe_load(args.experiments.read_text())
    runs_dir = args.runs_dir or ROOT / spec.get("runs_dir", "benchmarks/runs")
    cells = load_cells(runs_dir, ROOT / spec["records_dir"] if spec.get("records_dir") else None)
    print(table(spec, cells))
    name = args.experiments.stem
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, build_report(spec, cells, runs_dir, args.out.parent, ""))
    if args.results:
        plot_dir = args.results.parent / "results" / name
        plot_dir.mkdir(parents=True, exist_ok=True)
        splice(args.results, name, build_report(spec, cells, runs_dir, plot_dir, f"results/{name}/"))


if __name__ == "__main__":
    main()
