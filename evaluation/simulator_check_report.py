"""`seqrec simulator-check`: a saved simulator's panel values beside their off-policy estimates on its log.

Writes `report.md`, `report.json` and `values.png` into `--out`, atomically
(`evaluation.report_files.write_files_atomically`). The computation is `evaluation.simulator_check`.
torch and matplotlib are imported inside the command and the plot, never at module import.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from evaluation.report_files import write_files_atomically

CAVEATS = (
    "The behaviour model is each item's frequency in the evaluated rows, the same for every row: it ignores "
    "that the logger (the users themselves, on ratings logs) chose by history, so every importance weight, "
    "and every IPS / SNIPS / DR estimate, is only as good as that model. On ratings logs an item is rated "
    "mostly by users who like it, so these estimates lean high.",
    "The DM / DR reward model is context-free (each item's smoothed mean reward on the training users).",
    "The simulated value averages over the histories the policy produces from logged start prefixes, the "
    "off-policy estimate over the logged histories: a policy that moves the user away from the log "
    "(greedy) is valued on different contexts in the two columns.",
    "'first step' is the simulated reward of the episodes' first steps alone, from logged start prefixes: "
    "its gap to the simulated value is what the policy's own histories change, its gap to the estimate "
    "what the simulator's responses change.",
    "A deterministic policy (greedy) matches few logged rows: its IPS-type intervals rest on a few rows "
    "(ESS share) and DR leans on the reward model.",
    "On positive-only logs (MovieLens) the unclicked exposures are sampled unrated items, so both columns "
    "value 'rated rather than a random unrated item', not a click-through rate.",
)


def _number(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The per-policy table: simulated value and interval, each estimator's value and interval, verdict."""
    config = result["config"]
    estimator = config["verdict_estimator"]
    header = "| policy | simulated [CI] | first step | DM | IPS [CI] | SNIPS [CI] | DR [CI] | ESS share | verdict |"
    lines = [header, "|" + " --- |" * 9]
    for name, entry in result["policies"].items():
        sim, ope = entry["simulated"], entry["off_policy"]

        def cell(e: dict[str, float]) -> str:
            return f"{_number(e['value'])} [{_number(e['lower'])}, {_number(e['upper'])}]"

        lines.append(
            f"| {name} | {cell(sim)} | {_number(sim['first_step'])} | {_number(ope['DM']['value'])} | {cell(ope['IPS'])} | {cell(ope['SNIPS'])} "
            f"| {cell(ope['DR'])} | {entry['ess_share']:.3f} | **{entry['verdict']}** "
            f"(vs {estimator}: {entry['reason']}) |"
        )
    return "\n".join(lines)


def markdown(result: dict[str, Any], *, title: str) -> str:
    """The whole report as Markdown (the table, the verdicts, the rank correlation, the caveats)."""
    config, log, reward = result["config"], result["log"], result["reward"]
    n = len(result["policies"])
    disagree = [name for name, e in result["policies"].items() if e["verdict"] == "disagree"]
    confidence = round(100 * (1 - config["alpha"]))
    parts = [
        f"# {title}",
        "",
        f"Per-step reward: `1[{reward['signal']} >= {reward['threshold']:g}]`, on both sides. Log: "
        f"{log['source']}, {log['rows']} rows of {log['users']} users (logged value {_number(log['logged_value'])}). "
        f"Behaviour model: {log['behaviour_model']}. Simulated: {config['episodes']} episodes of at most "
        f"{config['max_steps']} steps per policy. Intervals: {confidence}% percentile bootstrap.",
        "",
        f"**Verdict**: {result['agree']} of {n} policies agree (simulated value inside the {config['verdict_estimator']} "
        f"interval or within {config['tolerance']:.0%} of it); "
        + (f"they disagree on {', '.join(disagree)}." if disagree else "none disagrees.")
        + f" Spearman's rank correlation of the two columns: {_number(result['spearman'])}.",
        "",
        markdown_table(result),
        "",
        "![values](values.png)",
        "",
        "## Caveats",
        "",
        *[f"- {c}" for c in CAVEATS],
        "",
    ]
    return "\n".join(parts)


def values_png(result: dict[str, Any]) -> bytes:
    """Each policy's simulated value and interval beside the verdict estimator's, as a PNG."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    estimator = result["config"]["verdict_estimator"]
    names = list(result["policies"])
    fig = Figure(figsize=(7, 0.6 * len(names) + 2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    y = np.arange(len(names))
    for offset, (label, pick, color) in enumerate(
        (
            ("simulator", lambda e: e["simulated"], "tab:blue"),
            (estimator, lambda e: e["off_policy"][estimator], "tab:orange"),
        )
    ):
        points = [pick(result["policies"][n]) for n in names]
        values = np.array([p["value"] for p in points])
        err = [
            values - np.array([p["lower"] for p in points]),
            np.array([p["upper"] for p in points]) - values,
        ]
        ax.errorbar(
            values, y + 0.15 * (2 * offset - 1), xerr=err, fmt="o", capsize=4, color=color, label=label
        )
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("value per step")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_check_report(
    result: dict[str, Any], out: Path, *, title: str = "Simulator against off-policy evaluation"
):
    """Write report.md, report.json and values.png into `out` (all or nothing); returns their paths."""
    return write_files_atomically(
        Path(out),
        {
            "report.md": markdown(result, title=title).encode(),
            "report.json": json.dumps(result, indent=2, allow_nan=True).encode(),
            "values.png": values_png(result),
        },
    )


def simulator_check_command(
    simulator: Annotated[Path, typer.Argument(help="A saved simulator (from train-simulator).")],
    out: Annotated[Path, typer.Option(help="Directory for report.md, report.json and values.png.")],
    logs: Annotated[
        Path | None,
        typer.Option(help="Logs to evaluate on (default: the simulator's held-out test users' exposures)."),
    ] = None,
    reward_signal: Annotated[str, typer.Option(help="Signal the per-step reward reads.")] = "click",
    reward_threshold: Annotated[
        float, typer.Option(help="The step is worth 1 when the signal is >= this.")
    ] = 1.0,
    episodes: Annotated[int, typer.Option(help="Simulated episodes per policy.")] = 512,
    max_steps: Annotated[int, typer.Option(help="Steps per simulated episode at most.")] = 20,
    max_rows: Annotated[int, typer.Option(help="Logged rows evaluated at most (whole users).")] = 20_000,
    epsilon: Annotated[float, typer.Option(help="Uniform share of the epsilon-greedy policy.")] = 0.3,
    tolerance: Annotated[float, typer.Option(help="Relative tolerance of the verdict.")] = 0.1,
    estimator: Annotated[str, typer.Option(help="Verdict estimator: DM, IPS, SNIPS or DR.")] = "DR",
    alpha: Annotated[float, typer.Option(help="Significance level of the intervals.")] = 0.05,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 1,
) -> None:
    """Each panel policy's value in a saved simulator beside its off-policy estimate on the log, and a verdict."""
    from recsim_env.errors import ArgumentError, DataError

    try:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        from evaluation.simulator_check import SimulatorCheckConfig, StepReward, simulator_check
        from simulators.checkpoint import load

        config = SimulatorCheckConfig(
            episodes=episodes,
            max_steps=max_steps,
            max_rows=max_rows,
            epsilon=epsilon,
            tolerance=tolerance,
            verdict_estimator=estimator,
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        reward = StepReward(signal=reward_signal, threshold=reward_threshold)
        data = None
        if logs is not None:
            from recsim_env.data import load as load_logs

            data = load_logs(logs)
        model = load(simulator, data=data)
        result = simulator_check(
            model,
            reward=reward,
            config=config,
            logs=data,
            on_policy=lambda n: typer.echo(f"policy {n}", err=True),
        )
        write_check_report(result, out)
    except (ArgumentError, DataError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(str(Path(out) / "report.md"))
