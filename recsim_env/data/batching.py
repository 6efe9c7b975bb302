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


class HistoryWindows(NamedTuple):
    """Each logged row's observed history, as `SeqRec-v0` would show it before that step.

    A user with n rows has n + 1 states: before each row, and after the last one. `item_ids[before[i]]`
    is the window of the `history_len` rows of row i's user that precede it (left-padded with the pad
    id `n_items`); `item_ids[after[i]]` is the window that follows row i.
    """

    item_ids: np.ndarray  # [S, L] int64
    feedback: np.ndarray  # [S, L, F] float32, the feedback columns' values (0 at padding)
    before: np.ndarray  # [n] int64 state index before each row
    after: np.ndarray  # [n] int64 state index after each row


def history_windows(data, *, history_len: int, feedback_columns=None) -> HistoryWindows:
    """The observed-history window before and after every row of `data` (a `LoggedInteractions`).

    Args:
        data: the log; its rows are per-user chronological, as `LoggedInteractions` keeps them.
        history_len: L, the window length.
        feedback_columns: the feedback columns in the window, in order (default: all of the log's).
    """
    if history_len < 1:
        raise ValueError(f"argument 'history_len' must be positive, got {history_len}")
    columns = list(data.feedback_columns if feedback_columns is None else feedback_columns)
    frame = data.frame
    users = frame["user_id"].to_numpy(np.int64)
    items = frame["item_id"].to_numpy(np.int64)
    feedback = frame[columns].to_numpy(np.float32) if columns else np.zeros((len(frame), 0), np.float32)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(users)].astype(np.int64)
    window_items, window_feedback, before, after = [], [], [], []
    n_states = 0
    for start, end in zip(starts, ends):
        n = end - start
        padded_items = np.concatenate([np.full(history_len, data.n_items), items[start:end]])
        padded_feedback = np.concatenate(
            [np.zeros((history_len, len(columns)), np.float32), feedback[start:end]]
        )
        window_items.append(np.lib.stride_tricks.sliding_window_view(padded_items, history_len))  # [n + 1, L]
        window_feedback.append(
            np.lib.stride_tricks.sliding_window_view(padded_feedback, history_len, axis=0).transpose(0, 2, 1)
        )
        before.append(n_states + np.arange(n))
        after.append(n_states + np.arange(1, n + 1))
        n_states += n + 1
    if not window_items:
        empty = np.zeros(0, np.int64)
        return HistoryWindows(
            np.zeros((0, history_len), np.int64),
            np.zeros((0, history_len, len(columns)), np.float32),
            empty,
            empty,
        )
    return HistoryWindows(
        item_ids=np.concatenate(window_items).astype(np.int64),
        feedback=np.ascontiguousarray(np.concatenate(window_feedback), dtype=np.float32),
        before=np.concatenate(before),
        after=np.concatenate(after),
    )
