"""`seqrec train-simulator` and `seqrec simulator-report`.

Plain functions with typer-annotated parameters, registered through the `seqrec.commands` entry
points. torch is imported inside the commands so that `seqrec --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recsim_env.config_cli import config_options
from recsim_env.ray_cli import NumWorkersOption, RayStoragePathOption
from simulators.config import SimulatorConfig

WORLD_CHOICES = ("auto", "yes", "no")


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code=1)


def _world_for(simulator, choice: str):
    """The world section's argument for `write_report`: "default", or None to skip it."""
    if choice not in WORLD_CHOICES:
        raise ValueError(f"option '--world' must be one of {WORLD_CHOICES}, got {choice!r}")
    if choice == "no":
        return None
    from recsim_env.world import UserWorld, WorldConfig

    matches = (
        tuple(UserWorld.signals) == simulator.schema.signals and simulator.n_items == WorldConfig().n_items
    )
    if choice == "yes" and not matches:
        raise ValueError("option '--world yes': the simulator was not trained on logs of the default world")
    return "default" if matches else None


@config_options(
    SimulatorConfig, aliases={"learning_rate": ("--lr",), "max_train_minutes": ("--max-minutes",)}
)
def train_simulator_command(
    data: Annotated[
        str, typer.Option(help="Logs: a path (RecBole, MovieLens, CSV/Parquet) or a fetched data set name.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the simulator and its fidelity report to.")],
    config: SimulatorConfig,
    world: Annotated[
        str, typer.Option(help="World section of the report: auto (if trained on world logs), yes, no.")
    ] = "auto",
    episodes: Annotated[
        int, typer.Option(help="Simulated episodes for the report's session statistics.")
    ] = 512,
    threads: Annotated[
        int, typer.Option(help="torch threads (1 suits small models on a shared CPU; 0: torch's default).")
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    num_workers: NumWorkersOption = None,
    ray_storage_path: RayStoragePathOption = None,
) -> None:
    """Train a learned user simulator on logs and save it (config, weights, id maps, calibration, report).

    Every `SimulatorConfig` field is an option (`--field-name`), with the config's default.
    """
    workers = None
    try:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        from recsim_env.checkpoint import check_replaceable
        from recsim_env.ray_address import ray_train_choice
        from simulators.checkpoint import save
        from simulators.env import load_dataset
        from simulators.report import write_report
        from simulators.train import fit

        on_ray, ray_address = ray_train_choice(num_workers)
        check_replaceable(out)  # before training, not after
        logs = load_dataset(data)
        if on_ray:
            from simulators.distributed import fit_distributed

            run = fit_distributed(
                logs,
                config,
                num_workers=num_workers,
                ray_address=ray_address,
                progress=progress,
                num_threads=threads or None,
                storage_path=ray_storage_path,
            )
            result, workers = run.result, run.workers
        else:
            result = fit(logs, config, progress=progress, num_threads=threads or None)
        save(result.simulator, out)
        metrics = write_report(
            result, out, world=_world_for(result.simulator, world), episodes=episodes, seed=config.seed
        )
    except (ValueError, RuntimeError) as error:  # DataError included; RuntimeError: a Ray worker failed
        _fail(error)
    summary = {
        "out": str(out),
        "train_seconds": round(result.seconds, 1),
        "click_auc": metrics["logs"]["click"]["auc"],
        "click_ece": metrics["logs"]["click"]["ece"],
        "best_valid_loss": min(row["valid_loss"] for row in result.history),
    }
    if workers is not None:
        summary["ray_train_workers"] = workers
    typer.echo(json.dumps(summary))


def simulator_report_command(
    directory: Annotated[Path, typer.Argument(help="A saved simulator (from train-simulator).")],
    world: Annotated[
        str, typer.Option(help="World section: auto (if trained on world logs), yes, no.")
    ] = "auto",
    episodes: Annotated[int, typer.Option(help="Simulated episodes for the session statistics.")] = 512,
    world_steps: Annotated[int, typer.Option(help="World steps for the ground-truth comparison.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 1,
    panel: Annotated[
        bool,
        typer.Option(
            help="With the world section: each world-reference policy's mean return in the world and in the "
            "simulator (uniform, popularity, greedy, the filter policies, the oracles)."
        ),
    ] = True,
    panel_episodes: Annotated[int, typer.Option(help="Episodes per panel policy and environment.")] = 500,
    panel_log_steps: Annotated[
        int, typer.Option(help="Uniform world-log steps the panel's popularity and greedy are fitted on.")
    ] = 50_000,
) -> None:
    """Write the fidelity report (fidelity.md, fidelity.json, PNG plots) of a saved simulator into DIR."""
    try:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        from simulators.checkpoint import load
        from simulators.report import write_report
        from simulators.train import config_user_split

        simulator = load(directory)
        pool = simulator.start_pool
        _, _, test_users = config_user_split(pool, simulator.config)  # the users held out at training time
        world_section = _world_for(simulator, world)
        policies = None
        if panel and world_section is not None:
            from recsim_env.checks import check_integer
            from recsim_env.policies import LoggedItemStats
            from recsim_env.world.logging import log_world
            from simulators.policy_values import world_panel

            steps = check_integer("panel_log_steps", panel_log_steps, 1)
            logs = log_world(
                "uniform", steps=steps, seed=seed, progress=False
            )  # as `seqrec evaluate` fits them
            policies = world_panel(LoggedItemStats.from_logs(logs))
        write_report(
            (simulator, pool.select(test_users)),
            directory,
            world=world_section,
            episodes=episodes,
            world_steps=world_steps,
            seed=seed,
            panel=policies,
            panel_episodes=panel_episodes,
        )
    except ValueError as error:
        _fail(error)
    typer.echo(str(Path(directory) / "fidelity.md"))
