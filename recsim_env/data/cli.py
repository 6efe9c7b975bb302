"""`seqrec data`: inspect and fetch logged-interaction data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from recsim_env.errors import ArgumentError, DataError

app = typer.Typer(help="Inspect and fetch logged-interaction data sets (MovieLens, RecBole, CSV, Parquet).")


def _fail(err: Exception) -> None:
    """Print the refusal (no traceback) and exit: 2 for a bad argument, 1 for bad data or a failed download."""
    Console(stderr=True).print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2 if isinstance(err, ArgumentError) else 1)


@app.command()
def info(
    path_or_name: Annotated[
        str, typer.Argument(help="A data set name (ml-100k, ...), a directory or a file.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Print users, items, interactions, sparsity, sequence-length quantiles, time span and feedback columns.

    A Parquet file written by `LoggedInteractions.to_parquet` is read by row groups (memory independent
    of its rows); other layouts are loaded whole."""
    from recsim_env.data.loaders import summarize

    try:
        stats = summarize(path_or_name)
    except (DataError, ArgumentError) as err:
        _fail(err)
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
        return
    table = Table(title=f"data set {stats.name}", show_header=True)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("users", str(stats.n_users))
    table.add_row("items", str(stats.n_items))
    table.add_row("interactions", str(stats.n_interactions))
    table.add_row("sparsity", f"{stats.sparsity:.4%}")
    for key, value in stats.sequence_length.items():
        table.add_row(f"sequence length {key}", f"{value:.1f}" if key == "mean" else f"{value:.0f}")
    table.add_row("time span (days)", f"{stats.time_span_days:.1f}")
    table.add_row("first / last timestamp", f"{stats.time_start:.0f} / {stats.time_end:.0f}")
    table.add_row("feedback columns", ", ".join(stats.feedback_columns) or "(none)")
    Console(width=120).print(table)


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Registered data set name: ml-100k, ml-1m or ml-20m.")],
    url: Annotated[
        str | None, typer.Option(help="Archive URL overriding the registry (file:// works).")
    ] = None,
    checksum: Annotated[str | None, typer.Option(help="Expected MD5 of the archive.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Target root (default: $SEQREC_DATA or the user cache).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Download again even if present (replaces only <data-dir>/NAME).")
    ] = False,
) -> None:
    """Download, verify (MD5) and extract a data set; prints its directory."""
    from recsim_env.data.datasets import fetch as fetch_dataset

    try:
        path = fetch_dataset(name, url=url, checksum=checksum, data_dir=data_dir, force=force)
    except (DataError, ArgumentError) as err:
        _fail(err)
    typer.echo(str(path))
