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


def _minari_recorder(minari_id: str, slate_size: int):
    """An episode recorder for `--minari-id`, after checking that the id is free (before logging)."""
    try:
        import minari  # noqa: F401
    except ImportError:
        raise typer.BadParameter(
            "--minari-id needs the 'minari' package: pip install 'recsim-env[minari]'"
        ) from None
    from recsim_env.data.minari import EpisodeRecorder, check_new_dataset_id
    from recsim_env.world import SIGNALS

    try:
        check_new_dataset_id(minari_id)
    except ValueError as error:
        raise typer.BadParameter(str(error).replace("minari_id", "--minari-id", 1)) from None
    return EpisodeRecorder(SIGNALS, slate_size)


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
    minari_id: Annotated[
        str | None,
        typer.Option(
            "--minari-id",
            help="Also write the episodes as this Minari dataset (NAMESPACE/NAME-vN) under "
            "MINARI_DATASETS_PATH (needs the 'minari' extra).",
        ),
    ] = None,
) -> None:
    """Log a policy's recommendations and the world's responses, with exact propensities."""
    from recsim_env.world.logging import LOGGING_POLICIES, log_world

    if policy not in LOGGING_POLICIES:
        raise typer.BadParameter(f"--policy must be one of {list(LOGGING_POLICIES)}, got {policy!r}")
    config = _world_config(world_config)
    recorder = None
    if minari_id is not None:
        recorder = _minari_recorder(minari_id, slate_size)
    try:
        data = log_world(
            policy,
            steps=steps,
            seed=seed,
            world_config=config,
            epsilon=epsilon,
            temperature=temperature,
            slate_size=slate_size,
            sessions_per_user=sessions_per_user,
            on_step=recorder,
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
    if recorder is not None:
        from recsim_env.world.minari_suite import write_world_minari

        settings = {"policy": policy, "epsilon": epsilon, "temperature": temperature, "seed": seed}
        try:
            dataset = write_world_minari(
                minari_id, recorder, config, slate_size, sessions_per_user, settings=settings
            )
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(
            f"wrote Minari dataset {minari_id}: {dataset.total_episodes} episodes, "
            f"{dataset.total_steps} steps"
        )


@app.command("minari-suite")
def minari_suite_command(
    steps: Annotated[int, typer.Option("--steps", min=1, help="Logged steps per dataset.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    episodes: Annotated[
        int, typer.Option("--episodes", min=2, help="Episodes per policy for the reference scores.")
    ] = 500,
    sessions_per_user: Annotated[int, typer.Option("--sessions-per-user", min=1)] = 3,
) -> None:
    """Write the Minari suite seqrec/world-{random,popularity,egreedy}-v0 with reference scores."""
    try:
        import minari  # noqa: F401
    except ImportError:
        raise typer.BadParameter(
            "minari-suite needs the 'minari' package: pip install 'recsim-env[minari]'"
        ) from None
    from recsim_env.world.minari_suite import build_suite

    try:
        build_suite(
            steps=steps, seed=seed, episodes=episodes, sessions_per_user=sessions_per_user, echo=typer.echo
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
