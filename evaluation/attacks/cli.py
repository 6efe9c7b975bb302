"""`seqrec attack`: `poison`, `defend`, `world` (evaluation/attacks/world_cli.py) and `extract`
(evaluation/attacks/extraction_cli.py).

    seqrec attack poison --data PATH --kind insertion --fraction 0.01 --target 1272 --out DIR
    seqrec attack defend --data PATH --poisoned DIR --out DIR2
    seqrec attack world --out DIR --fraction 0.01

`poison` writes DIR/poisoned.parquet (the logs with the fake users appended), DIR/fake_users.json (who
they are: the attacker's knowledge) and a report; `defend` trains an encoder on the clean logs, on the
poisoned logs and on the poisoned logs with LoRec's defence (which reads only poisoned.parquet; the
fake users' list only scores the result), and writes report.json / report.md with plots. Every output
is written atomically, and `--out` may not be the data's own folder or lie inside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from evaluation.attacks.defence import DefenceConfig
from evaluation.attacks.extraction_cli import extract_command
from evaluation.attacks.poisoning import PoisonConfig
from evaluation.attacks.world_cli import world_command
from recsim_env.config_cli import config_options
from recsim_env.encoders.trainer_config import TrainerConfig
from recsim_env.errors import ArgumentError, RecsimError

app = typer.Typer(
    help="Poisoning attacks on sequential recommenders, and LoRec's defence.", no_args_is_help=True
)

POISONED_FILE = "poisoned.parquet"
FAKE_USERS_FILE = "fake_users.json"


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code=2 if isinstance(err, ArgumentError) else 1)


def check_out(out: Path, *inputs: str | os.PathLike) -> Path:
    """`out` resolved, refused when it is one of `inputs`, lies inside one (a folder), or holds a file that
    is one of them (writing there could overwrite the clean data)."""
    target = out.resolve()
    for given in inputs:
        source = Path(given)
        if not source.exists():
            continue  # a registered data set name: its folder is `data_dir()`'s, never a new --out
        source = source.resolve()
        if target == source or source in target.parents or (source.is_file() and source.parent == target):
            raise ArgumentError(f"--out: {out} is the data path {given} or inside it; give another folder")
    if target.exists() and not target.is_dir():
        raise ArgumentError(f"--out: {out} exists and is not a folder")
    return target


def _parquet_bytes(logs) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / POISONED_FILE
        logs.to_parquet(path)
        return path.read_bytes()


@app.command("poison")
@config_options(PoisonConfig, exclude=("targets",))
def poison_command(
    data: Annotated[
        str, typer.Option(help="Clean logs: a path (RecBole, MovieLens, CSV/Parquet) or a data set name.")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write poisoned.parquet, fake_users.json and the report to.")
    ],
    config: PoisonConfig,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="A target item id as in the data (repeat for several)."),
    ] = None,
) -> None:
    """Inject fake users promoting the target items into the logs."""
    try:
        from evaluation.attacks.poisoning import poison
        from evaluation.attacks.report import poison_files, poison_summary
        from evaluation.report import write_files_atomically
        from recsim_env import data as data_module

        out_dir = check_out(out, data)
        config = dataclasses.replace(config, targets=tuple(target or ()))
        logs = data_module.load(data)
        poisoned = poison(logs, config)
        fake_tokens = poisoned.data.user_ids.to_token(
            poisoned.data.n_users - poisoned.n_fake + _arange(poisoned.n_fake)
        )
        summary = poison_summary(
            logs, poisoned, {**dataclasses.asdict(config), "targets": list(config.targets)}
        )
        fake_users = {
            "n_real_users": logs.n_users,
            "fake_user_indices": list(range(logs.n_users, poisoned.data.n_users)),
            "fake_user_tokens": [t.item() if hasattr(t, "item") else t for t in fake_tokens],
            "target_indices": poisoned.target_items.tolist(),
            "targets": summary["targets"],
        }
        files = {
            POISONED_FILE: _parquet_bytes(poisoned.data),
            FAKE_USERS_FILE: (json.dumps(fake_users, indent=2) + "\n").encode("utf-8"),
            **poison_files(logs, poisoned, summary),
        }
        write_files_atomically(out_dir, files)
    except (RecsimError, ValueError, OSError) as err:
        _fail(err)
    typer.echo(
        json.dumps({"out": str(out), "n_fake_users": poisoned.n_fake, "fake_events": summary["fake_events"]})
    )


def _arange(n: int):
    import numpy as np

    return np.arange(n)


def read_poisoned(directory: Path, clean):
    """The `PoisonedLogs` that `seqrec attack poison` wrote to `directory`, checked against the clean logs
    (the real users and the catalogue must be the clean data's)."""
    import numpy as np

    from evaluation.attacks.poisoning import PoisonedLogs
    from recsim_env.data import DataError, LoggedInteractions

    logs = LoggedInteractions.read_parquet(directory / POISONED_FILE)
    try:
        meta = json.loads((directory / FAKE_USERS_FILE).read_text())
        fake_indices = np.asarray(meta["fake_user_indices"], dtype=np.int64)
        targets = np.asarray(meta["target_indices"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{directory / FAKE_USERS_FILE}: not a fake-user list written by `attack poison` ({err})"
        ) from None
    n_real = clean.n_users
    real_match = logs.n_users >= n_real and np.array_equal(
        logs.user_ids.tokens[:n_real], clean.user_ids.tokens
    )
    if not real_match or logs.item_ids != clean.item_ids:
        raise DataError(
            f"{directory / POISONED_FILE}: its real users or catalogue are not those of the clean data"
        )
    if fake_indices.size and (fake_indices.min() < n_real or fake_indices.max() >= logs.n_users):
        raise DataError(
            f"{directory / FAKE_USERS_FILE}: fake user indices outside {n_real}..{logs.n_users - 1}"
        )
    fake = np.zeros(logs.n_users, dtype=bool)
    fake[fake_indices] = True
    return PoisonedLogs(data=logs, fake_users=fake, target_items=targets)


@app.command("defend")
@config_options(DefenceConfig, param="defence_config", exclude=("seed",))
@config_options(TrainerConfig, param="trainer_config", aliases={"num_threads": ("--threads",)})
def defend_command(
    data: Annotated[str, typer.Option(help="The clean logs the poisoned ones were made from.")],
    poisoned: Annotated[Path, typer.Option(help="Folder written by `seqrec attack poison`.")],
    out: Annotated[Path, typer.Option(help="Folder to write report.json, report.md and the plots to.")],
    trainer_config: TrainerConfig,
    defence_config: DefenceConfig,
    model: Annotated[str, typer.Option(help="A registered encoder: sasrec, gru4rec, hstu, ...")] = "sasrec",
    model_config: Annotated[
        str, typer.Option(help="Encoder settings as JSON, e.g. '{\"d_model\": 64}'.")
    ] = "{}",
) -> None:
    """Train on clean, poisoned and defended logs; report target exposure and recommendation quality."""
    try:
        from evaluation.attacks.measure import poisoning_experiment
        from evaluation.attacks.report import defence_files
        from evaluation.report import write_files_atomically
        from recsim_env import data as data_module

        out_dir = check_out(out, data, poisoned)
        try:
            settings = json.loads(model_config)
        except json.JSONDecodeError as err:
            raise ArgumentError(f"--model-config: not valid JSON ({err})") from None
        if not isinstance(settings, dict):
            raise ArgumentError("--model-config: expected a JSON object")
        clean = data_module.load(data)
        attack = read_poisoned(poisoned, clean)
        defence_config = dataclasses.replace(defence_config, seed=trainer_config.seed)
        result, weights = poisoning_experiment(
            clean,
            attack,
            model=model,
            model_config=settings,
            trainer_config=trainer_config,
            defence_config=defence_config,
        )
        write_files_atomically(out_dir, defence_files(result, weights, attack.fake_users))
    except (RecsimError, ValueError, OSError, RuntimeError) as err:
        _fail(err)
    keys = (
        "target_hr10_clean",
        "target_hr10_poisoned",
        "target_hr10_defended",
        "ndcg10_clean",
        "ndcg10_defended",
    )
    typer.echo(json.dumps({"out": str(out), **{k: result[k] for k in keys}}))


app.command("world")(world_command)
app.command("extract")(extract_command)
