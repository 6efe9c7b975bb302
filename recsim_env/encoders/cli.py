"""`seqrec train-encoder` and `seqrec recommend`.

Plain functions with typer-annotated parameters, registered through the `seqrec.commands` entry points.
torch is imported inside the commands so that `seqrec --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from recsim_env.config_cli import config_options, given_options
from recsim_env.encoders.trainer_config import TrainerConfig
from recsim_env.ray_cli import NumWorkersOption, RayStoragePathOption


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code=1)


@config_options(TrainerConfig, param="trainer_config", aliases={"num_threads": ("--threads",)})
def train_encoder_command(
    context: typer.Context,
    data: Annotated[
        str, typer.Option(help="Data path (RecBole, MovieLens, CSV/Parquet) or a fetched data set name.")
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    trainer_config: TrainerConfig,
    model: Annotated[
        str, typer.Option(help="A registered encoder: sasrec, bert4rec, hstu, gru4rec, ...")
    ] = "sasrec",
    max_len: Annotated[int, typer.Option(help="History length L.")] = 50,
    d_model: Annotated[int, typer.Option(help="Embedding / hidden width D.")] = 64,
    loss: Annotated[str, typer.Option(help="ce (full softmax), bce or sampled_softmax.")] = "ce",
    use_feedback: Annotated[
        bool, typer.Option(help="Feed the per-event feedback columns to the encoder.")
    ] = False,
    item_text: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated item table columns (ml-100k: movie_title,class) embedded once by the "
            "packaged all-MiniLM-L6-v2 (the `text` extra) into every item's representation; items with no "
            "training event are then ranked by their text."
        ),
    ] = None,
    item_id_dropout: Annotated[
        float,
        typer.Option(
            help="With --item-text: chance a seen item's ID embedding is dropped in a training pass."
        ),
    ] = 0.0,
    cold_item_map: Annotated[
        str,
        typer.Option(
            help="With --item-text: ID-space stand-in for items with no training event: none, or ridge (a "
            "ridge map from text to the seen items' ID rows, fitted after training; docs/item_text.md)."
        ),
    ] = "none",
    cold_item_map_ridge: Annotated[
        float | None,
        typer.Option(
            help="With --cold-item-map ridge: the ridge strength lambda (default: EncoderConfig's)."
        ),
    ] = None,
    item_text_cache: Annotated[
        Path | None,
        typer.Option(help="Folder caching the text embeddings (default: ~/.cache/recsim_env/item_text)."),
    ] = None,
    num_workers: NumWorkersOption = None,
    ray_storage_path: RayStoragePathOption = None,
) -> None:
    """Train a sequential encoder on next-item prediction (leave-one-out split, full-ranking metrics).

    Every `TrainerConfig` field is an option (`--field-name`); `--lr` defaults to the encoder's own.
    """
    try:
        from recsim_env import data as data_module
        from recsim_env import encoders
        from recsim_env.checkpoint import check_replaceable
        from recsim_env.encoders.trainer import seed_everything, train
        from recsim_env.ray_address import ray_train_choice

        on_ray, ray_address = ray_train_choice(num_workers)
        check_replaceable(out)  # before training, not after
        if "lr" not in given_options(context, TrainerConfig):  # each encoder's own default
            trainer_config = dataclasses.replace(
                trainer_config, lr=encoders.encoder_class(model).learning_rate
            )
        base = {"max_len": max_len, "d_model": d_model, "loss": loss}
        workers = None
        if item_text is not None and on_ray:
            raise ValueError("--item-text is not supported with Ray Train (--num-workers) yet")
        if on_ray:
            encoder, result, item_ids, user_ids, workers = _train_on_ray(
                model, base, data, trainer_config, num_workers, ray_address, use_feedback, ray_storage_path
            )
        else:
            logs = data_module.load(data)
            sequences = logs.sequences()
            base["n_items"] = logs.n_items
            if use_feedback:
                base["feedback_dim"] = int(sequences.feedback.shape[1])
            from recsim_env.encoders.item_text import build_encoder, item_text_embeddings, item_texts

            text = None
            if item_text is not None:
                text = item_text_embeddings(item_texts(logs, item_text), cache_dir=item_text_cache)
                base.update(item_id_dropout=item_id_dropout, cold_item_map=cold_item_map)
                if cold_item_map_ridge is not None:
                    base["cold_item_map_ridge"] = cold_item_map_ridge
            seed = trainer_config.seed
            seed_everything(seed)
            encoder = build_encoder(model, base, text)
            result = train(encoder, sequences, trainer_config)
            item_ids, user_ids = logs.item_ids, logs.user_ids
        metadata = {
            "data": str(data),
            "trainer": {k: v for k, v in vars(trainer_config).items()},
            "result": {k: v for k, v in result.to_dict().items() if k != "history"},
        }
        if item_text is not None:
            metadata["item_text_columns"] = item_text
        if workers is not None:
            metadata["ray_train_workers"] = workers
        encoders.save(out, encoder, item_ids=item_ids, user_ids=user_ids, metadata=metadata)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        _fail(err)
    summary = {
        "model": model,
        "out": str(out),
        "best_epoch": result.best_epoch,
        "valid": result.valid[trainer_config.selection_protocol],
        "test": result.test,
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
    }
    typer.echo(json.dumps(summary))


def _train_on_ray(model, base, data, trainer_config, num_workers, ray_address, use_feedback, storage_path):
    """`train_distributed`'s encoder, result, id maps and workers."""
    from recsim_env.encoders.distributed import train_distributed

    run = train_distributed(
        model,
        base,
        data,
        trainer_config,
        num_workers=num_workers,
        ray_address=ray_address,
        use_feedback=use_feedback,
        storage_path=storage_path,
    )
    return run.encoder, run.result, run.item_ids, run.user_ids, run.workers


def recommend_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory written by train-encoder.")],
    data: Annotated[str, typer.Option(help="Data whose users get recommendations (same item catalogue).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write (user_id, rank, item_id, score).")],
    k: Annotated[int, typer.Option(help="Recommendations per user.")] = 100,
    holdout_last: Annotated[int, typer.Option(help="Drop each user's last N events from the history.")] = 1,
    include_seen: Annotated[bool, typer.Option(help="Allow items already in the history.")] = False,
    batch_size: Annotated[int, typer.Option(help="Users per forward pass.")] = 1024,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Write the top-K next items of every user, predicted from the chronological history."""
    try:
        if k < 1:
            raise ValueError(f"--k must be >= 1, got {k}")
        if holdout_last < 0:
            raise ValueError(f"--holdout-last must be >= 0, got {holdout_last}")
        from recsim_env import data as data_module
        from recsim_env.encoders.recommend import recommend

        logs = data_module.load(data)
        frame = recommend(
            checkpoint,
            logs,
            k=k,
            holdout_last=holdout_last,
            include_seen=include_seen,
            batch_size=batch_size,
            device=device,
        )
        _write_parquet_atomic(frame, out)
        summary = {"out": str(out), "users": int(frame["user_id"].nunique()), "rows": len(frame)}
        if holdout_last > 0:  # RecSys Challenge 2018 measures of the lists against the held-out events
            from recsim_env.encoders.metrics import held_out_list_metrics

            summary["held_out"] = held_out_list_metrics(frame, logs, holdout_last)
    except (ValueError, OSError, RuntimeError) as err:
        _fail(err)
    typer.echo(json.dumps(summary))


def _write_parquet_atomic(frame, out: Path) -> None:
    from recsim_env.io import atomic_write

    atomic_write(out, lambda tmp: frame.to_parquet(tmp, index=False))
