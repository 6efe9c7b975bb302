"""Left-padded batches of user sequences for training sequence encoders."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from recsim_env.checks import check_bool, check_integer
from recsim_env.data.checks import MAX_BATCH_CELLS, MAX_SEQUENCE_LEN, int_array_argument
from recsim_env.data.interactions import UserSequences
from recsim_env.errors import ArgumentError


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
    if not isinstance(sequences, UserSequences):
        raise ArgumentError(f"sequences: expected UserSequences, got {type(sequences).__name__}")
    max_len = check_integer("max_len", max_len, low=1, high=MAX_SEQUENCE_LEN)
    pad_id = check_integer("pad_id", pad_id, low=0, high=np.iinfo(np.int64).max)
    users = int_array_argument(users, "users")
    n_users = sequences.offsets.shape[0] - 1
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ArgumentError(f"users: user index out of range 0..{n_users - 1}")
    if users.size * max_len > MAX_BATCH_CELLS:
        raise ArgumentError(
            f"max_len: a batch of {users.size} users x {max_len} events exceeds {MAX_BATCH_CELLS} cells"
        )
    cut = None
    if end is not None:
        shape = np.shape(end)
        if shape not in ((), (n_users,)):
            raise ArgumentError(f"end: must be an int or have shape [n_users]={n_users}, got {shape}")
        end = int_array_argument(end, "end")
        cut = np.full(users.shape, end[0], dtype=np.int64) if shape == () else end[users]
    batch = _pad(sequences, users, max_len=max_len, pad_id=pad_id, cut=cut)
    # Every cell past a row's real events is padding; one more means a real item carries the pad id.
    if np.count_nonzero(batch.item_ids == pad_id) != batch.item_ids.size - int(batch.lengths.sum()):
        raise ArgumentError(
            f"pad_id: {pad_id} is a real item id in these sequences (the convention is n_items)"
        )
    return batch


def _pad(
    sequences: UserSequences, users: np.ndarray, *, max_len: int, pad_id: int, cut: np.ndarray | None
) -> SequenceBatch:
    """`pad_sequences` on checked arguments (`users` int64 in range, `cut` the per-user cut or None)."""
    begin = sequences.offsets[users]
    stop = sequences.offsets[users + 1]
    if cut is not None:
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


def _check_sequences(sequences: UserSequences) -> None:
    """Refuse CSR sequences whose offsets do not describe their arrays (once per loader, not per batch)."""
    offsets = np.asarray(sequences.offsets)
    n = sequences.item_ids.shape[0]
    if (
        offsets.ndim != 1
        or offsets.size == 0
        or offsets.dtype.kind not in "iu"
        or offsets[0] != 0
        or offsets[-1] != n
        or np.any(np.diff(offsets) < 0)
        or sequences.timestamps.shape[0] != n
        or sequences.feedback.ndim != 2
        or sequences.feedback.shape[0] != n
    ):
        raise ArgumentError(
            "sequences: offsets must rise from 0 to the number of events, with one timestamp and one "
            "feedback row per event"
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
        if not isinstance(sequences, UserSequences):
            raise ArgumentError(f"sequences: expected UserSequences, got {type(sequences).__name__}")
        self.max_len = check_integer("max_len", max_len, low=1, high=MAX_SEQUENCE_LEN)
        self.batch_size = check_integer("batch_size", batch_size, low=1, high=MAX_BATCH_CELLS // self.max_len)
        self.pad_id = check_integer("pad_id", pad_id, low=0, high=np.iinfo(np.int64).max)
        self.shuffle = check_bool("shuffle", shuffle)
        self.drop_last = check_bool("drop_last", drop_last)
        seed = None if seed is None else check_integer("seed", seed, low=0)
        _check_sequences(sequences)
        if np.any(sequences.item_ids == self.pad_id):
            raise ArgumentError(
                f"pad_id: {self.pad_id} is a real item id in these sequences (the convention is n_items)"
            )
        self.sequences = sequences
        n_users = sequences.offsets.shape[0] - 1
        if users is None:
            users = np.flatnonzero(sequences.lengths() > 0)
        self.users = int_array_argument(users, "users")
        if self.users.size and (self.users.min() < 0 or self.users.max() >= n_users):
            raise ArgumentError(f"users: user index out of range 0..{n_users - 1}")
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = self.users.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[SequenceBatch]:
        order = self._rng.permutation(self.users) if self.shuffle else self.users
        for b in range(len(self)):
            batch_users = order[b * self.batch_size : (b + 1) * self.batch_size]
            # Arguments were checked once in __init__ (users in range, pad id no real item): no per-batch checks.
            yield _pad(self.sequences, batch_users, max_len=self.max_len, pad_id=self.pad_id, cut=None)


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
    history_len = check_integer("history_len", history_len, low=1, high=MAX_SEQUENCE_LEN)
    if isinstance(feedback_columns, str):
        raise ArgumentError(
            f"feedback_columns: expected a sequence of column names, got the string {feedback_columns!r}"
        )
    columns = list(data.feedback_columns if feedback_columns is None else feedback_columns)
    frame = data.frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArgumentError(f"feedback_columns: {missing[0]!r} is not a column of the log {data.name!r}")

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
