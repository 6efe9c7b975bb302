"""`seqrec world`: write logged data sets from the ground-truth world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The ground-truth user world: write logs with exact propensities.")


@app.callback()
def world() -> None:
    """The ground-truth user world (docs/world.md)."""


def _world_config(text: str | None):
    from recsim_env.world import WorldConfig

    if not text:
        return None
    try:
        fields = json.loads(text)
        return WorldConfig(**fields)
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise typer.BadParameter(f"--world-config: {error}") from None


@app.command("log")
def log_command(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write (atomically).")],
    policy: Annotated[
        str, typer.Option("--policy", help="uniform | popularity | softmax | epsilon-greedy")
    ] = "uniform",
    steps: Annotated[int, typer.Option("--steps", min=1, help="User-steps to log.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Exploration of epsilon-greedy.")] = 0.1,
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature.")] = 1.0,
    slate_size: Annotated[int, typer.Option("--slate-size", min=1)] = 1,
    sessions_per_user: Annotated[int, typer.Option("--sessions-per-user", min=1)] = 3,
    world_config: Annotated[
        str | None, typer.Option("--world-config", help="JSON object of WorldConfig fields.")
    ] = None,
) -> None:
    """Log a policy's recommendations and the world's responses, with exact propensities."""
    from recsim_env.world.logging import LOGGING_POLICIES, log_world

    if policy not in LOGGING_POLICIES:
        raise typer.BadParameter(f"--policy must be one of {list(LOGGING_POLICIES)}, got {policy!r}")
    try:
        data = log_world(
            policy,
            steps=steps,
            seed=seed,
            world_config=_world_config(world_config),
            epsilon=epsilon,
            temperature=temperature,
            slate_size=slate_size,
            sessions_per_user=sessions_per_user,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    data.to_parquet(out)
    stats = data.stats()
    typer.echo(
        f"wrote {out}: {stats.n_interactions} interactions, {stats.n_users} users, {stats.n_items} items, "
        f"click rate {data.frame['click'].mean():.3f}"
    )
