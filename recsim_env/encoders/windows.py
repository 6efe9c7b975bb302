"""The leave-one-out split and the training windows `recsim_env.encoders.trainer.train` reads.

For every user with at least 3 events, the last event is the test target, the second-to-last the
validation target, and the rest is training data; users with fewer events only train.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Windows(NamedTuple):
    """Left-padded training windows of `max_len + 1` events."""

    item_ids: np.ndarray  # [W, L + 1] int64
    timestamps: np.ndarray  # [W, L + 1] float64
    feedback: np.ndarray  # [W, L + 1, F] float32
    first_target: np.ndarray  # [W] int64: target positions (0..L-1) before this one are another window's
    users: np.ndarray  # [W] int64 user of each window


class EvalSet(NamedTuple):
    """Histories to encode, their targets, and the items each history has seen (CSR)."""

    users: np.ndarray  # [U] user indices
    item_ids: np.ndarray  # [U, L] int64, left-padded last max_len events of the history
    timestamps: np.ndarray  # [U, L] float64
    feedback: np.ndarray  # [U, L, F] float32
    targets: np.ndarray  # [U] int64
    seen_offsets: np.ndarray  # [U + 1] int64
    seen_items: np.ndarray  # [S] int64, every item of each full history (not only the last max_len)


class Split(NamedTuple):
    """Leave-one-out split of per-user sequences."""

    train_lengths: np.ndarray  # [n_users] events of each user used for training
    valid: EvalSet
    test: EvalSet


def feedback_width(sequences) -> int:
    fb = sequences.feedback
    return int(fb.shape[1]) if fb is not None and fb.ndim == 2 else 0


def left_pad(
    sequences, users: np.ndarray, ends: np.ndarray, *, max_len: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded `[U, max_len]` items, timestamps and feedback of events `max(0, end - max_len):end` per user."""
    n_rows, width = len(users), feedback_width(sequences)
    items = np.full((n_rows, max_len), pad_id, dtype=np.int64)
    times = np.zeros((n_rows, max_len), dtype=np.float64)
    feedback = np.zeros((n_rows, max_len, width), dtype=np.float32)
    starts = sequences.offsets[users]
    for row, (start, end) in enumerate(zip(starts, starts + ends, strict=True)):
        lo = max(int(start), int(end) - max_len)
        n = int(end) - lo
        if n <= 0:
            continue
        items[row, max_len - n :] = sequences.item_ids[lo:end]
        times[row, max_len - n :] = sequences.timestamps[lo:end]
        if width:
            feedback[row, max_len - n :] = sequences.feedback[lo:end]
    return items, times, feedback


def leave_one_out_split(sequences, *, max_len: int, pad_id: int) -> Split:
    """Leave-one-out split (see the module docstring) of per-user chronological sequences.

    Args:
        sequences: `recsim_env.data.UserSequences` (offsets `[n_users + 1]`, item_ids, timestamps, feedback).
        max_len: history length kept for evaluation.
        pad_id: padding id (N).
    """
    lengths = np.diff(sequences.offsets).astype(np.int64)
    evaluated = np.flatnonzero(lengths >= 3)
    if evaluated.size == 0:
        raise ValueError("leave-one-out: no user has the 3 events needed for a validation and a test target")
    train_lengths = np.where(lengths >= 3, lengths - 2, lengths)

    def eval_set(history_lengths: np.ndarray) -> EvalSet:
        items, times, feedback = left_pad(
            sequences, evaluated, history_lengths, max_len=max_len, pad_id=pad_id
        )
        starts = sequences.offsets[evaluated]
        targets = sequences.item_ids[starts + history_lengths]
        seen = [sequences.item_ids[s : s + n] for s, n in zip(starts, history_lengths, strict=True)]
        seen_offsets = np.concatenate([[0], np.cumsum(history_lengths)]).astype(np.int64)
        return EvalSet(
            evaluated, items, times, feedback, targets.astype(np.int64), seen_offsets, np.concatenate(seen)
        )

    valid = eval_set(train_lengths[evaluated])
    test = eval_set(train_lengths[evaluated] + 1)
    return Split(train_lengths, valid, test)


def select_eval_users(eval_set: EvalSet, users: np.ndarray) -> EvalSet:
    """The rows of `eval_set` whose user is in `users` (indices), in their order in `eval_set`."""
    keep = np.flatnonzero(np.isin(eval_set.users, users))
    counts = np.diff(eval_set.seen_offsets)[keep]
    seen = [eval_set.seen_items[eval_set.seen_offsets[r] : eval_set.seen_offsets[r + 1]] for r in keep]
    return EvalSet(
        eval_set.users[keep],
        eval_set.item_ids[keep],
        eval_set.timestamps[keep],
        eval_set.feedback[keep],
        eval_set.targets[keep],
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64),
    )


def window_copies(weights: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """`[W]` int64 times each window enters an epoch for window weights `weights` `[W]` (>= 0):
    `floor(w)`, plus one more with probability `w - floor(w)` (drawn from `generator`), so the expected
    count is `w` and an integer weight is exact."""
    weights = torch.from_numpy(np.asarray(weights, dtype=np.float64))
    whole = torch.floor(weights)
    extra = torch.rand(weights.shape, generator=generator, dtype=torch.float64) < (weights - whole)
    return whole.to(torch.int64) + extra.to(torch.int64)


def training_windows(
    sequences,
    train_lengths: np.ndarray,
    *,
    max_len: int,
    pad_id: int,
    mode: str,
    stride: int | None = None,
) -> Windows:
    """Windows of `max_len + 1` events over each user's first `train_lengths[u]` events.

    "sliding" cuts each training sequence, from its end backwards, into windows ending every `stride`
    events (default `max_len`: windows that overlap by one event). Every event after a user's first is a
    target exactly once: in the window where it is among the last `stride` targets, or in the user's
    earliest window, which counts all of its targets. "last" keeps the final window.
    """
    stride = max_len if stride is None else min(int(stride), max_len)
    users, ends, first = [], [], []
    for user, n in enumerate(train_lengths):
        if n < 2:
            continue
        cuts = list(range(int(n), 1, -stride)) if mode == "sliding" else [int(n)]
        users.extend([user] * len(cuts))
        ends.extend(cuts)
        first.extend([max_len - stride] * (len(cuts) - 1) + [0])  # the earliest window counts every target
    if not users:
        raise ValueError("training windows: no user has the 2 training events needed for one target")
    items, times, feedback = left_pad(
        sequences, np.asarray(users), np.asarray(ends), max_len=max_len + 1, pad_id=pad_id
    )
    return Windows(
        items, times, feedback, np.asarray(first, dtype=np.int64), np.asarray(users, dtype=np.int64)
    )
