"""`seqrec leaderboard --out DIR [--quick]`: options generated from `LeaderboardConfig`."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from evaluation.leaderboard.config import QUICK, LeaderboardConfig
from recsim_env.config_cli import config_options, given_options


@config_options(LeaderboardConfig, aliases={"time_budget_s": ("--time-budget",)})
def leaderboard_command(
    context: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory of the results, runs and leaderboard files.")],
    config: LeaderboardConfig,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="A few minutes per agent: "
            + ", ".join(f"{k}={v}" for k, v in QUICK.items())
            + " (where not given).",
        ),
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    threads: Annotated[
        int,
        typer.Option(
            "--threads", min=0, help="torch threads for evaluation (training: each agent's config)."
        ),
    ] = 1,
) -> None:
    """Train every agent under one budget and evaluate every policy on the same seeds and users.

    Writes leaderboard.md, leaderboard.json and leaderboard.png; started again with the same --out,
    it continues from the results already there.
    """
    from agents.cli import set_torch_threads
    from evaluation.leaderboard.report import write_leaderboard
    from evaluation.leaderboard.run import run_leaderboard
    from recsim_env.errors import RecsimError

    set_torch_threads(threads)
    if quick:
        config = config.with_quick_defaults(given_options(context, LeaderboardConfig))
    started = time.perf_counter()
    try:
        results = run_leaderboard(config, out, progress=progress, log=lambda line: typer.echo(line, err=True))
    except (RecsimError, ValueError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    command = shlex.join(["seqrec", "leaderboard", *sys.argv[2:]])
    write_leaderboard(results, config, out, command=command, wall_s=time.perf_counter() - started)
    typer.echo((Path(out) / "leaderboard.md").read_text())
