"""The logs of a data-parallel encoder run: a Ray Data dataset on the driver, one user shard per worker.

See `recsim_env.encoders.distributed` for how the shards are used. Importing this module does not
import ray (`open_logs` does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsim_env.data import IdMap, LoggedInteractions, UserSequences
from recsim_env.data.interactions import IdMapSizes
from recsim_env.errors import ArgumentError, DataError

# -- the logs, seen from the driver ------------------------------------------------------------------


@dataclass(frozen=True)
class LogSource(IdMapSizes):
    """The logs as a Ray Data dataset, and what the driver needs of them without reading their rows."""

    dataset: Any
    """`ray.data.Dataset` with columns `user_id`, `item_id`, `timestamp` and the feedback columns, rows
    sorted by (user_id, timestamp) as `LoggedInteractions.frame` holds them."""
    source: str
    """What errors about the rows name (the file, or the data set)."""
    user_ids: IdMap
    """User tokens of the user indices."""
    item_ids: IdMap
    """Item tokens of the item indices (the catalogue)."""
    feedback_columns: tuple[str, ...]
    """Feedback columns, in order."""

    @property
    def columns(self) -> list[str]:
        return ["user_id", "item_id", "timestamp", *self.feedback_columns]


def open_logs(data: str | os.PathLike | LoggedInteractions) -> LogSource:
    """The logs `data` as a Ray Data dataset (needs a connected or startable Ray).

    Args:
        data: a Parquet file written by `LoggedInteractions.to_parquet` (streamed with
            `ray.data.read_parquet`; the driver reads only its metadata), any other path or data set name
            `recsim_env.data.load` accepts (loaded on the driver), or a `LoggedInteractions`.
    """
    import ray.data

    from recsim_env.data import load
    from recsim_env.data.parquet import has_logged_interactions_metadata, read_parquet_parts

    if not isinstance(data, str | os.PathLike | LoggedInteractions):
        raise ArgumentError(
            f"data: expected a path, a data set name or LoggedInteractions, got {type(data).__name__}"
        )
    if not isinstance(data, LoggedInteractions):
        path = Path(data)
        if path.suffix.lower() == ".parquet" and path.is_file() and has_logged_interactions_metadata(path):
            parts = read_parquet_parts(path)
            columns = ["user_id", "item_id", "timestamp", *parts["feedback_columns"]]
            dataset = ray.data.read_parquet(str(path.resolve()), columns=columns)
            return LogSource(
                dataset=dataset,
                source=str(path),
                user_ids=parts["user_ids"],
                item_ids=parts["item_ids"],
                feedback_columns=parts["feedback_columns"],
            )
        data = load(data)
    columns = ["user_id", "item_id", "timestamp", *data.feedback_columns]
    return LogSource(
        dataset=ray.data.from_pandas(data.frame[columns]),
        source=data.name,
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        feedback_columns=data.feedback_columns,
    )


# -- the logs, seen from a worker --------------------------------------------------------------------


def user_shard(
    batches, *, rank: int, world_size: int, columns: Sequence[str], n_users: int, n_items: int, source: str
) -> UserSequences:
    """The sequences of the users `u` with `u % world_size == rank`, from row batches in file order.

    Args:
        batches: dicts of numpy columns (`DataIterator.iter_batches(batch_format="numpy")`).
        rank, world_size: this worker and the number of workers.
        columns: `user_id`, `item_id`, `timestamp`, then the feedback columns.
        n_users, n_items: the sizes of the id maps (the rows are checked against them).
        source: what errors name.

    Returns:
        The shard's users in ascending user index (users with no rows are left out), each user's events
        in file order, feedback as float32 (as `LoggedInteractions.sequences` gives them).
    """
    from recsim_env.data.parquet import check_stored_rows
    from recsim_env.ray_train import shard_rows

    kept = shard_rows(batches, rank=rank, world_size=world_size, columns=columns, user_column="user_id")
    if kept is None:
        raise DataError(f"{source}: no rows")
    frame = pd.DataFrame(kept)
    feedback_columns = tuple(columns[3:])
    check_stored_rows(
        frame, feedback_columns, n_users=n_users, n_items=n_items, source=f"{source} (worker {rank}'s users)"
    )
    users = frame["user_id"].to_numpy()
    _, counts = np.unique(users, return_counts=True)  # rows are sorted by user: runs in ascending order
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    feedback = (
        frame[list(feedback_columns)].to_numpy(dtype=np.float64).astype(np.float32)
        if feedback_columns
        else np.zeros((len(frame), 0), dtype=np.float32)
    )
    return UserSequences(
        offsets=offsets,
        item_ids=frame["item_id"].to_numpy(dtype=np.int64),
        timestamps=frame["timestamp"].to_numpy(dtype=np.float64),
        feedback=feedback,
    )
