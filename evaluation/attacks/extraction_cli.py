"""`seqrec attack extract`: few-shot model extraction of a trained encoder, with a report.

A plain function with typer-annotated parameters (every `ExtractionConfig` field is an option); the
`attack` group registers it. torch is imported inside the command so that `seqrec --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from evaluation.attacks.extraction_config import ExtractionConfig
from recsim_env.config_cli import config_options

SURROGATE_DIR = "surrogate"


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code=1)


@config_options(ExtractionConfig, aliases={"num_threads": ("--threads",)})
def extract_command(
    victim: Annotated[
        Path, typer.Option(help="Victim checkpoint directory (written by `seqrec train-encoder`).")
    ],
    data: Annotated[str, typer.Option(help="Data with the real users (the victim's item catalogue).")],
    out: Annotated[Path, typer.Option(help="Report folder: report.md, report.json, plots, surrogate/.")],
    config: ExtractionConfig,
) -> None:
    """Extract a surrogate of a black-box victim from a few-shot share of the users and a query budget,
    against plain distillation on the same budget; write the report and the surrogate checkpoint."""
    try:
        if not victim.is_dir():
            raise FileNotFoundError(f"--victim {victim}: no such checkpoint directory")
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"--out {out}: exists and is not a directory")
        from evaluation.attacks.extraction import run_extraction
        from evaluation.attacks.extraction_report import write_report
        from recsim_env import data as data_module
        from recsim_env import encoders
        from recsim_env.checkpoint import check_replaceable

        check_replaceable(out / SURROGATE_DIR)  # before the attack runs, not after
        logs = data_module.load(data)
        checkpoint = encoders.load_checkpoint(victim, item_ids=logs.item_ids)  # catalogue mismatch: DataError
        result = run_extraction(checkpoint.encoder, logs, config)
        summary = {**result.summary(), "victim_path": str(victim), "data": str(data)}
        encoders.save(
            out / SURROGATE_DIR,
            result.surrogate,
            item_ids=logs.item_ids,
            metadata={"attack": "few-shot extraction", "victim": str(victim), "budget": config.budget},
        )
        write_report(out, summary)
    except (ValueError, OSError, RuntimeError) as err:
        _fail(err)
    typer.echo(
        json.dumps(
            {
                "out": str(out),
                "overlap10_surrogate": summary["overlap10_surrogate"],
                "overlap10_distillation": summary["overlap10_distillation"],
                "budget": config.budget,
            }
        )
    )
