"""DT4IER's offline data: the immediate signal, `Trajectories` (states, actions, 2-D rewards,
returns-to-go, negative sessions) from logs, the `DataStats` a policy keeps, and the items of
negative sessions (package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from agents.dt4ier.config import _THRESHOLD, DT4IERConfig
from recsim_env.data.batching import history_windows
from recsim_env.data.sessions import session_starts
from recsim_env.data.validate import SECONDS_PER_DAY
from recsim_env.errors import DataError


class ImmediateSignal(NamedTuple):
    """The immediate reward: a feedback column, or the indicator column >= threshold."""

    column: str
    threshold: float | None

    @classmethod
    def parse(cls, text: str, columns: tuple[str, ...]) -> ImmediateSignal:
        if text == "auto":
            if "click" in columns:
                text = "click"
            elif "rating" in columns:
                text = "rating>=4"
            else:
                raise DataError(
                    f"no 'click' or 'rating' feedback column (columns: {list(columns)}); "
                    "set DT4IERConfig.immediate_signal to a column or 'column>=value'"
                )
        match = _THRESHOLD.match(text)
        signal = cls(match["column"], float(match["value"])) if match else cls(text, None)
        if signal.column not in columns:
            raise DataError(
                f"immediate signal {text!r}: no feedback column {signal.column!r} (columns: {list(columns)})"
            )
        return signal

    def __str__(self) -> str:
        return self.column if self.threshold is None else f"{self.column}>={self.threshold:g}"

    def of(self, feedback: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
        """[...] immediate reward from raw feedback [..., F] in `columns` order."""
        values = np.asarray(feedback)[..., columns.index(self.column)].astype(np.float64)
        return values if self.threshold is None else (values >= self.threshold).astype(np.float64)


class Trajectories(NamedTuple):
    """Logged trajectories, one per user; states are rows of the shared windows (`item_ids`, `feedback`)."""

    item_ids: np.ndarray  # [S, L] int64 state windows, left-padded with N
    feedback: np.ndarray  # [S, L, F] float32 raw feedback of the windows' items
    state: np.ndarray  # [T] int64 window row of s_t
    action: np.ndarray  # [T] int64 logged item
    reward: np.ndarray  # [T, 2] float64 (immediate, retention)
    rtg: np.ndarray  # [T, 2] float64 undiscounted return-to-go
    start: np.ndarray  # [T] int64 step index of the trajectory's first step
    first: np.ndarray  # [T] bool: first step of a return horizon (a session, or a trajectory)
    negative: np.ndarray  # [T] bool: the step belongs to a negative session
    n_items: int
    feedback_columns: tuple[str, ...]
    immediate: ImmediateSignal

    def __len__(self) -> int:
        return len(self.action)

    def initial_returns(self) -> np.ndarray:
        """[H, 2] return of each return horizon (session or trajectory): its first return-to-go."""
        return self.rtg[self.first]


def trajectories_from_logs(data, config: DT4IERConfig) -> Trajectories:
    """Trajectories (module docstring) from a `LoggedInteractions` of one-item slates.

    Raises:
        DataError: no feedback columns, no usable immediate signal, or slates of several items.
    """
    frame = data.frame
    columns = data.require_feedback("DT4IER needs an immediate reward signal")
    data.require_single_item_slates("DT4IER")
    immediate = ImmediateSignal.parse(config.immediate_signal, columns)
    windows = history_windows(data, history_len=config.history_len, feedback_columns=columns)
    raw = frame[list(columns)].to_numpy(np.float64)
    if not np.isfinite(raw).all():
        row = int(np.flatnonzero(~np.isfinite(raw).all(axis=1))[0]) + 1
        raise DataError(f"{data.name}: non-finite feedback at row {row}")
    users = frame["user_id"].to_numpy(np.int64)
    times = frame["timestamp"].to_numpy(np.float64)
    n = len(frame)

    new_user = np.r_[True, users[1:] != users[:-1]]
    new_session = session_starts(data, gap_s=config.session_gap_s)
    last_of_user = np.r_[new_user[1:], True]
    session_end = np.r_[new_session[1:], True]
    known = session_end & ~last_of_user  # the user came back: the gap is observed
    rows = np.flatnonzero(known)
    gap_days = np.maximum(times[np.minimum(rows + 1, n - 1)] - times[rows], 0.0) / SECONDS_PER_DAY
    reward = np.zeros((n, 2))
    reward[:, 0] = immediate.of(raw, columns)
    reward[rows, 1] = 1.0 / (1.0 + gap_days)
    censored = session_end & last_of_user
    reward[censored, 1] = reward[rows, 1].mean() if len(rows) else 0.0  # unknown gap: the mean retention

    # Undiscounted returns-to-go within each horizon (session or user): total - cumulative + own reward.
    new_group = new_session if config.return_horizon == "session" else new_user
    group = np.cumsum(new_group) - 1
    cumulative = np.cumsum(reward, axis=0)
    totals = cumulative[np.r_[new_group[1:], True]]
    before = np.vstack([np.zeros((1, 2)), totals[:-1]])  # cumulative sum before each group's first row
    rtg = (totals - before)[group] - (cumulative - before[group]) + reward
    user_index = np.cumsum(new_user) - 1
    start = np.flatnonzero(new_user)[user_index]

    # Negative sessions: both the session's clicks and its retention in the bottom quantile.
    session_index = np.cumsum(new_session) - 1
    session_clicks = np.bincount(session_index, weights=reward[:, 0])
    session_known = known[session_end]
    session_retention = reward[session_end, 1]
    negative_session = np.zeros(len(session_clicks), dtype=bool)
    if session_known.any():
        q = config.negative_quantile
        click_cut = np.quantile(session_clicks[session_known], q)
        retention_cut = np.quantile(session_retention[session_known], q)
        negative_session = (
            session_known & (session_clicks <= click_cut) & (session_retention <= retention_cut)
        )
    return Trajectories(
        item_ids=windows.item_ids,
        feedback=windows.feedback,
        state=windows.before,
        action=frame["item_id"].to_numpy(np.int64),
        reward=reward,
        rtg=rtg,
        start=start,
        first=new_group,
        negative=negative_session[session_index],
        n_items=int(data.n_items),
        feedback_columns=columns,
        immediate=immediate,
    )


class DataStats(NamedTuple):
    """What a trained policy keeps from its training data (saved as `stats.json`)."""

    n_items: int
    feedback_columns: tuple[str, ...]
    feedback_scale: tuple[float, ...]
    """Multiplier of each feedback column in the encoder's input (1 / its 99th percentile, at most 1)."""
    immediate: str
    rtg_scale: tuple[float, float]
    """Divisor of each return component (95th percentile of the initial returns)."""
    return_quantiles: tuple[tuple[float, float], ...]
    """Initial returns at quantiles 0, 0.01, ..., 1 (101 rows): the targets `set_target` reads."""

    @classmethod
    def of(cls, data: Trajectories) -> DataStats:
        high = np.quantile(np.abs(data.feedback.reshape(-1, data.feedback.shape[-1])), 0.99, axis=0)
        initial = data.initial_returns()
        rtg_scale = np.quantile(initial, 0.95, axis=0)
        rtg_scale = np.where(rtg_scale > 1e-6, rtg_scale, np.maximum(initial.max(axis=0), 1.0))
        grid = np.quantile(initial, np.linspace(0.0, 1.0, 101), axis=0)
        return cls(
            n_items=data.n_items,
            feedback_columns=data.feedback_columns,
            feedback_scale=tuple(float(1.0 / max(h, 1.0)) for h in high),
            immediate=str(data.immediate),
            rtg_scale=tuple(float(s) for s in rtg_scale),
            return_quantiles=tuple((float(a), float(b)) for a, b in grid),
        )

    def normalise(self, rtg: np.ndarray) -> np.ndarray:
        """[..., 2] returns-to-go -> log(1 + max(R, 0)) / log(1 + scale): about [0, 1], with the
        resolution kept at small returns (one click more or less near the end of a horizon)."""
        return np.log1p(np.maximum(rtg, 0.0)) / np.log1p(np.asarray(self.rtg_scale))

    def target(self, quantile: float) -> np.ndarray:
        """[2] initial return at `quantile` (interpolated on the stored grid)."""
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"target quantile must lie in [0, 1], got {quantile}")
        grid = np.asarray(self.return_quantiles)
        points = np.linspace(0.0, 1.0, len(grid))
        return np.array([np.interp(quantile, points, grid[:, j]) for j in range(2)])

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self._asdict().items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataStats:
        return cls(
            n_items=int(d["n_items"]),
            feedback_columns=tuple(d["feedback_columns"]),
            feedback_scale=tuple(float(x) for x in d["feedback_scale"]),
            immediate=str(d["immediate"]),
            rtg_scale=tuple(float(x) for x in d["rtg_scale"]),
            return_quantiles=tuple(tuple(float(x) for x in row) for row in d["return_quantiles"]),
        )


def negative_actions(data: Trajectories) -> np.ndarray:
    """The distinct items characteristic of negative sessions: shown there more often (as a share of
    their steps) than overall. Items every session shows (the logger's favourite) are left out: as
    negatives they would only teach the model to avoid what good and bad sessions share."""
    if not data.negative.any():
        return np.zeros(0, dtype=np.int64)
    overall = np.bincount(data.action, minlength=data.n_items) / len(data)
    negative = np.bincount(data.action[data.negative], minlength=data.n_items) / data.negative.sum()
    return np.flatnonzero(negative > overall).astype(np.int64)
