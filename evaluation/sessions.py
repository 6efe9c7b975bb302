"""Logged sessions as episode arrays for the sequential estimators, FQE and the risk section.

A session (`recsim_env.data.sessions`: a `session_id` change, or an inactivity gap) is one episode; its rows,
in time order, are its steps. Episodes are `[E, H]` arrays (sessions, steps) with a mask that is True on the
steps a session has; sessions longer than the horizon H keep their first H steps.

FQE needs a state. A log carries no context beyond its history, so the state is built from what the log
shows before each row (`session_state_features`): the session so far, the user's recent history window and,
when the item table has a `category` column, the categories recently shown and rewarded (what satiation and
interest act on in a recommender).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recsim_env.checks import check_integer
from recsim_env.data.interactions import LoggedInteractions
from recsim_env.errors import ArgumentError

MAX_CATEGORIES = 64
"""Item categories used as state features at most (more would make the state wider than it is informative)."""
RECENT_ITEMS = 5
"""Items of the history window whose categories enter the state (the recent, satiating ones)."""


def session_index(log: LoggedInteractions, *, gap_s: float | None) -> np.ndarray | None:
    """`[n]` int64: the session of every row (0, 1, ... in row order), or None when the log has no sessions.

    Sessions come from `session_id`, or without it from inactivity gaps of more than `gap_s` seconds
    (`recsim_env.data.sessions.session_starts`); None when neither is available.
    """
    from recsim_env.data.sessions import session_starts

    if len(log.frame) == 0:
        return None
    starts = session_starts(log, gap_s=gap_s)
    if starts is None:
        return None
    return np.cumsum(starts, dtype=np.int64) - 1


def sample_sessions(session: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Sorted rows of whole sessions drawn at random (seeded) until adding one more would pass `max_rows`.

    Whole sessions are kept, so every sampled episode has all its steps. When the first drawn session alone
    is longer than `max_rows`, its first `max_rows` rows are returned.
    """
    max_rows = check_integer("max_rows", max_rows, low=1)
    n_sessions = int(session[-1]) + 1
    lengths = np.bincount(session, minlength=n_sessions)
    order = np.random.default_rng(seed).permutation(n_sessions)
    kept = order[np.cumsum(lengths[order]) <= max_rows]
    if kept.size == 0:
        first = np.flatnonzero(session == order[0])
        return first[:max_rows]
    return np.flatnonzero(np.isin(session, kept))


class SessionEpisodes(NamedTuple):
    """Where each step of each episode sits among the scored rows."""

    index: np.ndarray  # [E, H] int64 position in the scored rows (0 on masked steps)
    mask: np.ndarray  # [E, H] bool: the session has this step
    length: np.ndarray  # [E] int64 logged steps of the session before truncation at H

    def gather(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """`values[index]` `[E, H, ...]` for per-row `values` `[n, ...]`, `fill` on masked steps."""
        out = np.asarray(values)[self.index]
        mask = self.mask.reshape(self.mask.shape + (1,) * (out.ndim - 2))
        return np.where(mask, out, fill)


def session_episodes(session: np.ndarray, *, horizon: int) -> SessionEpisodes:
    """Lay the scored rows out as episodes `[E, H]`.

    Args:
        session: `[n]` session of each scored row, non-decreasing (rows are in (user, time) order, and a
            session's rows are consecutive).
        horizon: H, the steps kept per session (its first H).
    """
    horizon = check_integer("horizon", horizon, low=1)
    session = np.asarray(session, dtype=np.int64)
    if session.ndim != 1 or session.size == 0:
        raise ArgumentError(f"session: expected a non-empty [n] array, got shape {session.shape}")
    if np.any(np.diff(session) < 0):
        raise ArgumentError("session: rows of a session must be consecutive, in row order")
    new = np.r_[True, session[1:] != session[:-1]]
    episode = np.cumsum(new) - 1  # [n] 0..E-1
    first = np.flatnonzero(new)
    step = np.arange(len(session)) - first[episode]
    n_episodes = len(first)
    length = np.bincount(episode, minlength=n_episodes).astype(np.int64)
    steps = int(min(horizon, length.max()))
    index = np.zeros((n_episodes, steps), np.int64)
    mask = np.zeros((n_episodes, steps), bool)
    keep = step < steps
    index[episode[keep], step[keep]] = np.flatnonzero(keep)
    mask[episode[keep], step[keep]] = True
    return SessionEpisodes(index=index, mask=mask, length=length)


def item_categories(log: LoggedInteractions) -> np.ndarray | None:
    """`[N]` int64 category of every item from the item table's `category` column, or None when the table
    has none, it is not a small set of non-negative integers (at most `MAX_CATEGORIES`), or some item lacks one."""
    items = log.items
    if items is None or "category" not in items.columns or len(items) != log.n_items:
        return None
    values = items["category"].to_numpy()
    if values.dtype.kind not in "iuf":
        return None
    values = values.astype(np.float64)
    if not np.isfinite(values).all() or np.any(values < 0) or np.any(values != np.round(values)):
        return None
    if values.max() >= MAX_CATEGORIES:
        return None
    return values.astype(np.int64)


def session_state_features(
    log: LoggedInteractions, reward: np.ndarray, session: np.ndarray, *, history_len: int = 10
) -> np.ndarray:
    """`[n, D]` float64 state before every row of the log, from what the log shows up to that row.

    Columns: log(1 + days since the user's previous session) at the session's start, the mean reward of
    the session so far, the previous step's reward in the session, the mean reward and the filled share of
    the user's last `history_len` rows (any session); with item categories (`item_categories`), the
    category shares of the last `RECENT_ITEMS` items shown and of the rewarded items among the last
    `history_len`.

    Args:
        log: The whole log (history before a scored row may lie outside the scored rows).
        reward: `[n]` reward of every row of the log.
        session: `[n]` session of every row (`session_index`).
        history_len: Rows of the user's history window.
    """
    from recsim_env.data.batching import history_windows
    from recsim_env.data.sessions import session_position

    history_len = check_integer("history_len", history_len, low=1, high=1 << 16)
    n = len(log.frame)
    reward = np.asarray(reward, dtype=np.float64)
    starts = np.r_[True, session[1:] != session[:-1]]
    _, gap_days = session_position(log, starts)
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    step = np.arange(n) - first
    before = np.r_[0.0, np.cumsum(reward)[:-1]]  # reward of all earlier rows
    session_so_far = before - before[first]
    mean_so_far = np.where(step > 0, session_so_far / np.maximum(step, 1), 0.0)
    previous = np.where(step > 0, np.r_[0.0, reward[:-1]], 0.0)

    windows = history_windows(log, history_len=history_len, feedback_columns=[])
    items = windows.item_ids[windows.before]  # [n, L], pad id n_items
    filled = items < log.n_items
    # The window's rewards: the reward of the rows it shows (the user's previous rows, in order).
    offsets = np.arange(history_len, 0, -1)  # window slot j holds the row `offsets[j]` rows earlier
    source = np.arange(n)[:, None] - offsets[None, :]
    window_reward = np.where(filled, reward[np.maximum(source, 0)], 0.0)
    n_filled = filled.sum(axis=1)
    columns = [
        np.log1p(np.maximum(gap_days.astype(np.float64), 0.0)),
        mean_so_far,
        previous,
        np.where(n_filled > 0, window_reward.sum(axis=1) / np.maximum(n_filled, 1), 0.0),
        n_filled / history_len,
    ]
    category = item_categories(log)
    if category is not None:
        n_cat = int(category.max()) + 1
        padded = np.append(category, -1)[items]  # [n, L], -1 at padding
        recent = padded[:, -RECENT_ITEMS:]
        for j in range(n_cat):
            columns.append((recent == j).sum(axis=1) / RECENT_ITEMS)
        for j in range(n_cat):
            columns.append(((padded == j) * (window_reward > 0)).sum(axis=1) / history_len)
    return np.stack(columns, axis=1)


def item_features(log: LoggedInteractions, reward: np.ndarray) -> np.ndarray:
    """`[N, F]` features of every item for FQE's factorised head: its category (one-hot, when known), and the
    standardised log impression count and shrunken mean reward in the log, so that Q generalises to items
    the log shows rarely."""
    reward = np.asarray(reward, dtype=np.float64)
    items = log.frame["item_id"].to_numpy(np.int64)
    counts = np.bincount(items, minlength=log.n_items).astype(np.float64)
    sums = np.bincount(items, weights=reward, minlength=log.n_items)
    prior = 10.0  # pseudo-impressions at the log's mean reward
    rate = (sums + prior * reward.mean()) / (counts + prior)

    def standardised(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + 1e-8)

    columns = [standardised(np.log1p(counts))[:, None], standardised(rate)[:, None]]
    category = item_categories(log)
    if category is not None:
        columns.insert(0, np.eye(int(category.max()) + 1)[category])
    return np.concatenate(columns, axis=1)
