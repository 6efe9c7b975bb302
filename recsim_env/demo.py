"""`seqrec demo`: the world end to end — log data, fit log-based baselines, compare them with oracles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer


@dataclass(frozen=True)
class DemoResult:
    """The demo's table (one `RolloutStats` per policy) and the logs it learned from."""

    stats: list
    log_summary: dict

    def by_name(self, name: str):
        return next(s for s in self.stats if s.policy == name)


def run_demo(
    *,
    log_steps: int = 50_000,
    episodes: int = 1000,
    seed: int = 0,
    slate_size: int = 1,
    logs_out: Path | None = None,
    progress: bool = True,
) -> DemoResult:
    """Log a uniform policy in the world, then roll out five policies in `SeqRec-v0`.

    Uniform, popularity and greedy learn only from the logs; the myopic and far-sighted oracles read
    the world's hidden state. Deterministic for a seed.
    """
    from tqdm.auto import tqdm

    from recsim_env.policies import (
        FarsightedOracle,
        GreedyPolicy,
        LoggedItemStats,
        MyopicOracle,
        PopularityPolicy,
        UniformPolicy,
    )
    from recsim_env.rollout import rollout
    from recsim_env.world import UserWorld
    from recsim_env.world.logging import log_world

    logs = log_world("uniform", steps=log_steps, seed=seed, slate_size=slate_size, progress=progress)
    if logs_out is not None:
        logs.to_parquet(logs_out)
    item_stats = LoggedItemStats.from_logs(logs)
    world = UserWorld()
    policies = [
        UniformPolicy(world.n_items, slate_size),
        PopularityPolicy(item_stats, slate_size),
        GreedyPolicy(item_stats, slate_size),
        MyopicOracle(world, slate_size),
        FarsightedOracle(world, slate_size),
    ]
    results = []
    with tqdm(total=episodes * len(policies), desc="rollouts", unit="episode", disable=not progress) as bar:
        for policy in policies:
            bar.set_postfix_str(policy.name)
            results.append(
                rollout(
                    policy, n_episodes=episodes, seed=seed + 1, slate_size=slate_size, on_episode=bar.update
                )
            )
    summary = {
        "interactions": logs.n_interactions,
        "users": logs.n_users,
        "click_rate": float(logs.frame["click"].mean()),
    }
    return DemoResult(results, summary)


def demo_command(
    episodes: Annotated[int, typer.Option("--episodes", min=2, help="Episodes per policy.")] = 1000,
    log_steps: Annotated[
        int, typer.Option("--log-steps", min=1, help="User-steps of uniform logs.")
    ] = 50_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    slate_size: Annotated[int, typer.Option("--slate-size", min=1)] = 1,
    logs_out: Annotated[Path | None, typer.Option("--logs-out", help="Also save the logs (Parquet).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Run the world end to end: log data, fit baselines on it, compare them with two oracles."""
    from rich.console import Console
    from rich.table import Table

    result = run_demo(
        log_steps=log_steps,
        episodes=episodes,
        seed=seed,
        slate_size=slate_size,
        logs_out=logs_out,
        progress=not as_json,
    )
    if as_json:
        typer.echo(json.dumps({"logs": result.log_summary, "policies": [s.as_dict() for s in result.stats]}))
        return
    table = Table(title=f"SeqRec-v0 on the world: {episodes} episodes per policy (seed {seed})")
    for column in ("policy", "mean return (95% CI)", "click rate", "session length", "return gap (days)"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for s in result.stats:
        low, high = s.return_ci95
        table.add_row(
            s.policy,
            f"{s.mean_return:.2f} ({low:.2f}-{high:.2f})",
            f"{s.click_rate:.3f}",
            f"{s.session_length:.1f}",
            f"{s.return_gap_days:.2f}",
        )
    console = Console(width=max(Console().width, 110))
    logs = result.log_summary
    console.print(
        f"logged {logs['interactions']} interactions of {logs['users']} users "
        f"(uniform logging, click rate {logs['click_rate']:.3f})"
    )
    console.print(table)
    myopic, popularity = result.by_name("myopic-oracle"), result.by_name("popularity")
    farsighted = result.by_name("farsighted-oracle")
    console.print(
        f"myopic / popularity mean return: {myopic.mean_return / popularity.mean_return:.2f}x; "
        f"far-sighted vs myopic return per session: {farsighted.return_per_session:.2f} vs "
        f"{myopic.return_per_session:.2f}"
    )
