"""`seqrec train-simulator` and `seqrec simulator-report`.

Plain functions with typer-annotated parameters, registered through the `seqrec.commands` entry
points. torch is imported inside the commands so that `seqrec --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from simulators.config import SimulatorConfig

WORLD_CHOICES = ("auto", "yes", "no")
DEFAULTS = SimulatorConfig()
"""The command's defaults are the config's."""


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


def train_simulator_command(
    data: Annotated[
        str, typer.Option(help="Logs: a path (RecBole, MovieLens, CSV/Parquet) or a fetched data set name.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the simulator and its fidelity report to.")],
    encoder: Annotated[
        str, typer.Option(help="Backbone encoder (sasrec, bert4rec, hstu, gru4rec).")
    ] = DEFAULTS.encoder,
    history_len: Annotated[int, typer.Option(help="History length L.")] = DEFAULTS.history_len,
    window_stride: Annotated[
        int | None,
        typer.Option(help="Training windows end every this many exposures (smaller: longer histories)."),
    ] = DEFAULTS.window_stride,
    user_features: Annotated[
        bool, typer.Option(help="Read the users table's features (numbers, low-cardinality categories).")
    ] = DEFAULTS.user_features,
    item_features: Annotated[
        bool, typer.Option(help="Read the items table's features (categories, genres, numbers).")
    ] = DEFAULTS.item_features,
    click_pooling: Annotated[
        bool,
        typer.Option(help="Add recency-weighted means of clicked / unclicked history items to the state."),
    ] = DEFAULTS.click_pooling,
    interest_filter: Annotated[
        bool,
        typer.Option(
            help="Add a learned Bayesian filter of the user's interest and satiation (docs/simulators.md)."
        ),
    ] = DEFAULTS.interest_filter,
    filter_dim: Annotated[
        int, typer.Option(help="Dimension K of the filter's interest.")
    ] = DEFAULTS.filter_dim,
    d_model: Annotated[int, typer.Option(help="Width D.")] = DEFAULTS.d_model,
    n_layers: Annotated[int, typer.Option(help="Encoder blocks.")] = DEFAULTS.n_layers,
    ensemble_size: Annotated[
        int, typer.Option(help="K bootstrap members (>= 2 for uncertainty penalties).")
    ] = DEFAULTS.ensemble_size,
    epochs: Annotated[int, typer.Option(help="Most epochs per member.")] = DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(help="Windows per step.")] = DEFAULTS.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = DEFAULTS.learning_rate,
    click_loss_weight: Annotated[
        float, typer.Option(help="Weight of the click head's loss (the other heads weigh 1).")
    ] = DEFAULTS.click_loss_weight,
    early_stopping: Annotated[
        str,
        typer.Option(help="Validation loss early stopping watches: all (the training objective) or click."),
    ] = DEFAULTS.early_stopping,
    negative_rate: Annotated[
        float, typer.Option(help="Positive-only data: sampled negatives per observed row.")
    ] = DEFAULTS.negative_rate,
    session_gap_hours: Annotated[
        float, typer.Option(help="No session_id: inactivity that starts a session.")
    ] = DEFAULTS.session_gap_hours,
    max_minutes: Annotated[
        float, typer.Option(help="Training time budget (minutes).")
    ] = DEFAULTS.max_train_minutes,
    world: Annotated[
        str, typer.Option(help="World section of the report: auto (if trained on world logs), yes, no.")
    ] = "auto",
    episodes: Annotated[
        int, typer.Option(help="Simulated episodes for the report's session statistics.")
    ] = 512,
    seed: Annotated[int, typer.Option(help="Random seed (CPU runs are bit-for-bit reproducible).")] = 0,
    threads: Annotated[
        int, typer.Option(help="torch threads (1 suits small models on a shared CPU; 0: torch's default).")
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a learned user simulator on logs and save it (config, weights, id maps, calibration, report)."""
    try:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        from simulators.checkpoint import save
        from simulators.env import load_dataset
        from simulators.report import write_report
        from simulators.train import fit

        config = SimulatorConfig(
            encoder=encoder,
            history_len=history_len,
            window_stride=window_stride,
            user_features=user_features,
            item_features=item_features,
            click_pooling=click_pooling,
            interest_filter=interest_filter,
            filter_dim=filter_dim,
            d_model=d_model,
            n_layers=n_layers,
            ensemble_size=ensemble_size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            click_loss_weight=click_loss_weight,
            early_stopping=early_stopping,
            negative_rate=negative_rate,
            session_gap_hours=session_gap_hours,
            max_train_minutes=max_minutes,
            seed=seed,
        )
        logs = load_dataset(data)
        result = fit(logs, config, progress=progress, num_threads=threads or None)
        save(result.simulator, out)
        metrics = write_report(
            result, out, world=_world_for(result.simulator, world), episodes=episodes, seed=seed
        )
    except ValueError as error:  # DataError included
        _fail(error)
    summary = {
        "out": str(out),
        "train_seconds": round(result.seconds, 1),
        "click_auc": metrics["logs"]["click"]["auc"],
        "click_ece": metrics["logs"]["click"]["ece"],
    }
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
) -> None:
    """Write the fidelity report (fidelity.md, fidelity.json, PNG plots) of a saved simulator into DIR."""
    try:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        from simulators.checkpoint import load
        from simulators.data import split_users
        from simulators.report import write_report

        simulator = load(directory)
        config = simulator.config
        pool = simulator.start_pool
        # The same user split as at training time (a function of the pool and the seed).
        _, _, test_users = split_users(
            pool.n_users,
            pool.lengths(),
            valid_fraction=config.valid_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed,
        )
        write_report(
            (simulator, pool.select(test_users)),
            directory,
            world=_world_for(simulator, world),
            episodes=episodes,
            world_steps=world_steps,
            seed=seed,
        )
    except ValueError as error:
        _fail(error)
    typer.echo(str(Path(directory) / "fidelity.md"))
