"""`seqrec attack world`: poisoned learned simulators and their policies, measured in the world.

    seqrec attack world --out DIR [--steps 100000] [--kind sequential] [--fraction 0.01] [--target 7 ...]

Runs `evaluation.attacks.world.run_world_attack` (every `WorldAttackConfig` field is an option) and writes
DIR/report.md, DIR/report.json and DIR/world_attack.png atomically; prints the report's headline figures
as one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from evaluation.attacks.world import WorldAttackConfig
from recsim_env.config_cli import config_options
from recsim_env.errors import ArgumentError, RecsimError


@config_options(WorldAttackConfig, exclude=("targets",))
def world_command(
    out: Annotated[
        Path, typer.Option(help="Folder to write report.md, report.json and world_attack.png to.")
    ],
    config: WorldAttackConfig,
    target: Annotated[
        list[int] | None,
        typer.Option("--target", help="A target item id of the world (repeat for several; default: drawn)."),
    ] = None,
    threads: Annotated[int, typer.Option(help="Torch threads while fitting and scoring.")] = 1,
) -> None:
    """Fit clean, poisoned and defended simulators on a world log and measure them and their policies in
    the world."""
    try:
        from evaluation.attacks.world import run_world_attack, world_report

        if out.exists() and not out.is_dir():
            raise ArgumentError(f"--out: {out} exists and is not a folder")
        config = dataclasses.replace(config, targets=tuple(target or ()))
        result = run_world_attack(config, progress=True, num_threads=threads)
        world_report(result, out)
    except (RecsimError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2 if isinstance(err, ArgumentError) else 1) from None
    headline = {
        arm: {
            "simulated_target_click_rate": entry["probe_in_simulator"]["target_click_rate_when_shown"],
            "target_shown_per_1000": entry["policy_in_world"]["target_shown_per_1000"],
            "target_clicked_per_1000": entry["policy_in_world"]["target_clicked_per_1000"],
        }
        for arm, entry in result.arms.items()
    }
    typer.echo(
        json.dumps(
            {
                "out": str(out),
                "targets": result.targets.tolist(),
                "world_target_click_rate": result.world_probe["target_click_rate_when_shown"],
                "arms": headline,
            }
        )
    )


app = typer.Typer(help="Poisoned learned simulators measured in the world.", no_args_is_help=True)
"""A stand-alone group holding `world` (the `seqrec attack` app registers `world_command` itself)."""
app.command("world")(world_command)


@app.callback()
def _group() -> None:
    """Poisoned learned simulators measured in the world."""
