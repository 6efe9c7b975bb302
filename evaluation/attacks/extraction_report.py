"""The model-extraction report: report.json, report.md and two plots, written into a folder at once.

* `report.json`: `ExtractionResult.summary()` plus where the victim and the data came from.
* `report.md`: the headline overlap@10 of both adversaries, their accuracy, the budget curve as a table.
* `budget_curve.png`: overlap@10 with the victim against the query budget, both adversaries.
* `accuracy.png`: NDCG@10 and HR@10 of the victim and both surrogates on the held-out users.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.report import markdown_text, write_files_atomically
from evaluation.report_plots import figure_png

PLOT_FILES = ("budget_curve.png", "accuracy.png")
LABELS = {"few_shot": "few-shot extraction (augmentation + repair)", "distillation": "plain distillation"}


def report_json(summary: dict[str, Any]) -> bytes:
    """The summary as indented JSON bytes (ending with a newline)."""
    return (json.dumps(summary, indent=2, sort_keys=False) + "\n").encode()


def report_markdown(summary: dict[str, Any]) -> str:
    """report.md's text from `ExtractionResult.summary()` (with `victim_path` and `data`)."""
    accuracy = summary["accuracy"]
    config = summary["config"]
    lines = [
        "# Few-shot model extraction",
        "",
        f"Victim: {markdown_text(summary.get('victim_path', '?'))}; data: {markdown_text(summary.get('data', '?'))}.",
        f"The adversary holds {summary['users']['few_shot']:,} users' sequences (fraction {summary['fraction']:g}) and "
        f"may ask the victim for {summary['budget']:,} top-{config['list_k']} lists; every figure below is measured "
        f"on the other {summary['users']['held_out']:,} users.",
        "",
        f"**overlap@10 with the victim: few-shot extraction {summary['overlap10_surrogate']:.4f}, "
        f"plain distillation {summary['overlap10_distillation']:.4f}** "
        f"({summary['overlap10_surrogate'] - summary['overlap10_distillation']:+.4f}).",
        "",
        "## Accuracy (leave-one-out, history excluded from the ranking)",
        "",
        "| model | NDCG@10 | HR@10 |",
        "|---|---:|---:|",
    ]
    for name, label in (
        ("victim", "victim"),
        ("surrogate", LABELS["few_shot"]),
        ("distillation", LABELS["distillation"]),
    ):
        lines.append(f"| {label} | {accuracy[name]['ndcg@10']:.4f} | {accuracy[name]['hr@10']:.4f} |")
    lines += [
        "",
        "## Budget curve",
        "",
        "| budget | few-shot overlap@10 | distillation overlap@10 | few-shot NDCG@10 | distillation NDCG@10 | "
        "queries used (few-shot / distillation) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for point in summary["budget_curve"]:
        few, plain = point["few_shot"], point["distillation"]
        lines.append(
            f"| {point['budget']:,} | {few['overlap10']:.4f} | {plain['overlap10']:.4f} | {few['ndcg@10']:.4f} | "
            f"{plain['ndcg@10']:.4f} | {few['queries_used']:,} / {plain['queries_used']:,} |"
        )
    lines += [
        "",
        "overlap@10 = |top-10 of the victim ∩ top-10 of the surrogate| / 10 on each held-out user's full history "
        "(items of the history excluded, as the victim serves), averaged over users.",
        "",
        "## Plots",
        "",
        *(f"![{name}](./{name})" for name in PLOT_FILES),
        "",
        f"Settings: {markdown_text(json.dumps(config, sort_keys=True))}",
        "",
    ]
    return "\n".join(lines)


def report_plots(summary: dict[str, Any]) -> dict[str, bytes]:
    """The report's figures as PNG bytes, keyed by file name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve = summary["budget_curve"]
    budgets = [point["budget"] for point in curve]
    fig = Figure(figsize=(6.5, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for method, marker in (("few_shot", "o"), ("distillation", "s")):
        ax.plot(budgets, [point[method]["overlap10"] for point in curve], marker=marker, label=LABELS[method])
    ax.set_xlabel("query budget (histories sent to the victim)")
    ax.set_ylabel("overlap@10 with the victim")
    ax.set_title(f"Extraction with {summary['users']['few_shot']} users' sequences")
    if len(budgets) > 1 and min(budgets) > 0:
        ax.set_xscale("log")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plots = {"budget_curve.png": figure_png(fig)}

    accuracy = summary["accuracy"]
    fig = Figure(figsize=(6.5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = ("victim", "surrogate", "distillation")
    width = 0.38
    for offset, metric in ((-width / 2, "ndcg@10"), (width / 2, "hr@10")):
        ax.bar(
            [i + offset for i in range(len(names))], [accuracy[n][metric] for n in names], width, label=metric
        )
    ax.set_xticks(range(len(names)), ["victim", "few-shot", "distillation"])
    ax.set_ylabel("held-out users, leave-one-out")
    ax.set_title(f"Accuracy at budget {summary['budget']:,}")
    ax.legend(loc="best")
    fig.tight_layout()
    plots["accuracy.png"] = figure_png(fig)
    return plots


def write_report(out_dir: Path, summary: dict[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md and the plots into `out_dir`, all renamed into place together."""
    files = {"report.json": report_json(summary), "report.md": report_markdown(summary).encode()}
    files.update(report_plots(summary))
    return write_files_atomically(Path(out_dir), files)
