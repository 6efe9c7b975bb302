"""Left-padded batches of user sequences for training sequence encoders."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from recsim_env.data.interactions import UserSequences


class SequenceBatch(NamedTuple):
    """A batch of user histories, left-padded so the most recent event is last."""

    item_ids: np.ndarray  # [B, L] int64, pad_id (= n_items) at padding
    timestamps: np.ndarray  # [B, L] float64, 0 at padding
    feedback: np.ndarray  # [B, L, F] float32, 0 at padding
    lengths: np.ndarray  # [B] int64 number of real events (<= L)
    user_ids: np.ndarray  # [B] int64


def pad_sequences(sequences: UserSequences, users, *, max_len: int, pad_id: int, end=None) -> SequenceBatch:
    """The last `max_len` events of each of `users`, left-padded with `pad_id`.

    Args:
        sequences: CSR sequences from `LoggedInteractions.sequences()`.
        users: `[B]` user indices.
        max_len: `L`, the padded length.
        pad_id: padding item id (the project convention is `n_items`).
        end: optional cut per user, indexed by user index: `[n_users]` ints (or one int for everybody); only
            events before position `end[u]` of user u's sequence are used (e.g. `lengths - 2` hides the
            leave-one-out validation and test events). Clipped to `[0, length]`.
    """
    if max_len < 1:
        raise ValueError(f"pad_sequences: max_len must be >= 1, got {max_len}")
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    n_users = sequences.offsets.shape[0] - 1
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"pad_sequences: user index out of range 0..{n_users - 1}")
    begin = sequences.offsets[users]
    stop = sequences.offsets[users + 1]
    if end is not None:
        end = np.asarray(end, dtype=np.int64)
        if end.ndim == 0:
            cut = np.full(users.shape, int(end), dtype=np.int64)
        elif end.shape == (n_users,):
            cut = end[users]
        else:
            raise ValueError(
                f"pad_sequences: end must be an int or have shape [n_users]={n_users}, got {end.shape}"
            )
        stop = begin + np.clip(cut, 0, stop - begin)
    start = np.maximum(begin, stop - max_len)
    lengths = stop - start
    # Row b, column j holds event stop[b] - max_len + j when that is not before start[b].
    pos = stop[:, None] - max_len + np.arange(max_len)[None, :]  # [B, L]
    real = pos >= start[:, None]
    safe = np.where(real, pos, 0)
    n_feedback = sequences.feedback.shape[1]
    if sequences.item_ids.size == 0:
        safe = np.zeros_like(safe)
        items_src = np.zeros(1, dtype=np.int64)
        times_src = np.zeros(1, dtype=np.float64)
        fb_src = np.zeros((1, n_feedback), dtype=np.float32)
    else:
        items_src, times_src, fb_src = sequences.item_ids, sequences.timestamps, sequences.feedback
    return SequenceBatch(
        item_ids=np.where(real, items_src[safe], np.int64(pad_id)).astype(np.int64),
        timestamps=np.where(real, times_src[safe], 0.0).astype(np.float64),
        feedback=np.where(real[:, :, None], fb_src[safe], np.float32(0.0)).astype(np.float32),
        lengths=lengths.astype(np.int64),
        user_ids=users,
    )


class SequenceLoader:
    """Iterable of `SequenceBatch` over users, shuffled with `np.random.default_rng(seed)`.

    The generator is created once, so successive epochs see different orders while two loaders built with the
    same seed yield identical batches. By default it covers every user with at least one event.
    """

    def __init__(
        self,
        sequences: UserSequences,
        *,
        max_len: int,
        batch_size: int,
        pad_id: int,
        shuffle: bool = True,
        seed: int = 0,
        users=None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"SequenceLoader: batch_size must be >= 1, got {batch_size}")
        if max_len < 1:
            raise ValueError(f"SequenceLoader: max_len must be >= 1, got {max_len}")
        self.sequences = sequences
        self.max_len = max_len
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.shuffle = shuffle
        self.drop_last = drop_last
        if users is None:
            users = np.flatnonzero(sequences.lengths() > 0)
        self.users = np.asarray(users, dtype=np.int64)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = self.users.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[SequenceBatch]:
        order = self._rng.permutation(self.users) if self.shuffle else self.users
        for b in range(len(self)):
            batch_users = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield pad_sequences(self.sequences, batch_users, max_len=self.max_len, pad_id=self.pad_id)
