"""The leaderboard's tables: per setting and policy, the mean over seeds with a 95% interval.

`leaderboard.json` holds every per-seed result and the summaries; `leaderboard.md` the tables, each
policy's share of the ceiling (`filter-farsighted`) and the issue's checks; `leaderboard.png` bars of the
mean return per episode with their 95% intervals.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.leaderboard.config import CEILING, LeaderboardConfig
from evaluation.leaderboard.run import SAMPLED_SUFFIX, Result, row_names
from recsim_env.io import atomic_write, write_atomic

METRICS = ("mean_return", "click_rate", "session_length", "return_gap_days", "sessions")
"""Columns averaged over seeds; `sessions` is sessions per episode (return / return per session)."""


@dataclass(frozen=True)
class Summary:
    """One policy in one setting, over its seeds."""

    setting: str
    row: str
    kind: str
    seeds: int
    mean: dict[str, float]
    """Mean over seeds of each of `METRICS`."""
    ci95: dict[str, tuple[float, float]]
    """95% interval of each mean: Student's t over the seeds' means (with one seed, the rollout's own
    normal interval of the mean return, and none for the other metrics)."""
    train_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "row": self.row,
            "kind": self.kind,
            "seeds": self.seeds,
            "mean": self.mean,
            "ci95": {k: list(v) for k, v in self.ci95.items()},
            "train_s": self.train_s,
        }


def _metric(stats: dict[str, Any], name: str) -> float:
    if name == "sessions":  # sessions per episode
        return stats["mean_return"] / stats["return_per_session"] if stats["return_per_session"] else 0.0
    return float(stats[name])


def _share(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.1%}" if ceiling else "-"


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval of the mean of `values` (at least two)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def summarise(results: Sequence[Result], config: LeaderboardConfig) -> list[Summary]:
    """A `Summary` per setting and row, in `row_names` order."""
    summaries = []
    for setting in config.settings:
        for row in row_names(config):
            mine = [r for r in results if r.setting == setting and r.row == row]
            if not mine:
                continue
            mean, ci95 = {}, {}
            for name in METRICS:
                values = [_metric(r.stats, name) for r in mine]
                mean[name] = float(np.mean(values))
                if len(values) > 1:
                    ci95[name] = t_interval(values)
                elif name == "mean_return":
                    ci95[name] = tuple(mine[0].stats["return_ci95"])
            summaries.append(
                Summary(
                    setting,
                    row,
                    mine[0].kind,
                    len(mine),
                    mean,
                    ci95,
                    float(np.mean([r.train_s for r in mine])),
                )
            )
    return summaries


def checks(summaries: Sequence[Summary], config: LeaderboardConfig) -> list[str]:
    """The acceptance figures the leaderboard measures, one line each (shares of the ceiling, retention gain)."""
    lines = []
    by_key = {(s.setting, s.row): s for s in summaries}
    agents = [row for row in row_names(config) if row.split(" ")[0] in config.agents]
    for setting in config.settings:
        ceiling = by_key.get((setting, CEILING))
        if ceiling is None:
            continue
        for row in agents:
            summary = by_key.get((setting, row))
            if summary is not None:
                share = _share(summary.mean["mean_return"], ceiling.mean["mean_return"])
                lines.append(f"{setting}: {row} reaches {share} of {CEILING}'s mean return")
    supervised = by_key.get(("retention", "supervised"))
    long_term = [
        by_key[("retention", row)]
        for row in agents
        if ("retention", row) in by_key and row != "supervised" and not row.endswith(SAMPLED_SUFFIX)
    ]
    if supervised is not None and long_term and supervised.mean["mean_return"]:
        best = max(long_term, key=lambda s: s.mean["mean_return"])
        gain = best.mean["mean_return"] / supervised.mean["mean_return"] - 1.0
        overlap = _overlap(best.ci95.get("mean_return"), supervised.ci95.get("mean_return"))
        lines.append(
            f"retention: best long-term agent {best.row} vs supervised: {gain:+.1%} return per episode, "
            f"return gap {best.mean['return_gap_days']:.2f} vs {supervised.mean['return_gap_days']:.2f} days, "
            f"95% intervals {'overlap' if overlap else 'do not overlap'}"
        )
    return lines


def _overlap(a, b) -> bool:
    return a is None or b is None or not (a[1] < b[0] or b[1] < a[0])


def _cell(summary: Summary, name: str, digits: int) -> str:
    value = summary.mean[name]
    interval = summary.ci95.get(name)
    text = f"{value:.{digits}f}"
    return text + (f" ({interval[0]:.{digits}f}-{interval[1]:.{digits}f})" if interval else "")


def markdown(summaries: Sequence[Summary], config: LeaderboardConfig, *, command: str, wall_s: float) -> str:
    lines = [
        "# Leaderboard",
        "",
        f"`{command}`; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.node()} ({platform.machine()}, "
        f"{_cpus()} CPUs); {wall_s / 60:.1f} min in this run (results kept from earlier runs are read back). {config.seeds} seed(s), {config.episodes} evaluation episodes "
        f"per policy and seed, training budget {config.time_budget_s:.0f} s per agent and seed "
        "(agents whose config has no budget run it as set).",
        "",
        "Means over seeds; brackets: 95% intervals over seeds (Student's t). `sessions`: sessions per episode. "
        "Agents act on their most probable item (as `seqrec evaluate RUN` does); `(sampled)` rows sample from "
        "the policy's distribution.",
    ]
    for setting in config.settings:
        rows = sorted((s for s in summaries if s.setting == setting), key=lambda s: -s.mean["mean_return"])
        if not rows:
            continue
        ceiling = next((s for s in rows if s.row == CEILING), None)
        env = config.env_kwargs(setting) or "SeqRec-v0 defaults"
        lines += [
            "",
            f"## {setting} ({env})",
            "",
            f"| policy | kind | return per episode | share of {CEILING} | click rate | session length | return gap (days) "
            "| sessions | training (s) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in rows:
            share = _share(s.mean["mean_return"], ceiling.mean["mean_return"]) if ceiling else "-"
            lines.append(
                f"| {s.row} | {s.kind} | {_cell(s, 'mean_return', 2)} | {share} | {_cell(s, 'click_rate', 3)} | "
                f"{_cell(s, 'session_length', 1)} | {_cell(s, 'return_gap_days', 2)} | {s.mean['sessions']:.1f} | "
                f"{s.train_s:.0f} |"
            )
    found = checks(summaries, config)
    if found:
        lines += ["", "## Checks", "", *(f"- {line}" for line in found)]
    return "\n".join(lines) + "\n"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def plot(summaries: Sequence[Summary], config: LeaderboardConfig, path: Path) -> None:
    """Horizontal bars of the mean return per episode with 95% intervals, one panel per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "#9e9e9e", "world reference": "#4c72b0", "agent": "#dd8452"}
    settings = [s for s in config.settings if any(x.setting == s for x in summaries)]
    fig, axes = plt.subplots(
        1, len(settings), figsize=(6.5 * len(settings), 0.45 * len(row_names(config)) + 1.5)
    )
    for ax, setting in zip(np.atleast_1d(axes), settings):
        rows = sorted((s for s in summaries if s.setting == setting), key=lambda s: s.mean["mean_return"])
        means = np.array([s.mean["mean_return"] for s in rows])
        low = np.array([s.ci95.get("mean_return", (m, m))[0] for s, m in zip(rows, means)])
        high = np.array([s.ci95.get("mean_return", (m, m))[1] for s, m in zip(rows, means)])
        ax.barh(
            range(len(rows)), means, xerr=[means - low, high - means], capsize=3,
            color=[colours.get(s.kind, "#55a868") for s in rows],
        )  # fmt: skip
        ax.set_yticks(range(len(rows)), [s.row for s in rows])
        ax.set_xlabel("return per episode (95% CI over seeds)")
        ax.set_title(f"{setting}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def write_leaderboard(
    results: Sequence[Result], config: LeaderboardConfig, out: str | Path, *, command: str, wall_s: float
) -> list[Summary]:
    """Write `leaderboard.json`, `leaderboard.md` and `leaderboard.png` into `out`; return the summaries."""
    out = Path(out)
    summaries = summarise(results, config)
    document = {
        "config": config.to_dict(),
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpus": _cpus(), "python": platform.python_version()},
        "wall_s": wall_s,
        "summaries": [s.to_dict() for s in summaries],
        "checks": checks(summaries, config),
        "results": [r.to_dict() for r in results],
    }
    write_atomic(out / "leaderboard.json", (json.dumps(document, indent=1) + "\n").encode())
    write_atomic(out / "leaderboard.md", markdown(summaries, config, command=command, wall_s=wall_s).encode())
    plot(summaries, config, out / "leaderboard.png")
    return summaries
