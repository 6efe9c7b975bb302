"""From `LoggedInteractions` to what a response model learns from: exposure sequences with labels.

Every logged row is an *exposure*: an item shown to a user, with the user's feedback to it. Three
labels are derived per exposure:

- **leave**: 1 on the last exposure of a session, 0 elsewhere. Sessions come from the `session_id`
  column; data without one (MovieLens) is cut into sessions at inactivity gaps longer than
  `SimulatorConfig.session_gap_hours`. A session whose length equals the data's longest session is
  taken as cut by a step limit (the world's `max_steps`): its last exposure gets no leave label.
- **return gap**: on the last exposure of a session, days from its timestamp to the start of the
  user's next session (none after the user's last session).
- **gap before**: days since the previous session for the first exposure of a session, 0 elsewhere
  (an input feature of the history).

Positive-only data (no `click` column, e.g. MovieLens ratings) is handled as documented in
docs/simulators.md: each observed row becomes an exposure with `click = 1` and its feedback, and
`negative_rate` unobserved items per observed one are inserted as exposures with `click = 0` and
zero feedback, at a random side of the observed row.

User and item features come from the data's users and items tables (`simulators.features.FeatureSpec`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from recsim_env.data import LoggedInteractions
from recsim_env.data.sessions import SECONDS_PER_HOUR, session_starts
from recsim_env.data.validate import SECONDS_PER_DAY
from simulators.features import FeatureSpec

__all__ = [
    "DataSchema",
    "ExposureLog",
    "ExposureWindows",
    "FeatureSpec",
    "build_schema",
    "exposures",
    "model_inputs",
    "split_users",
    "window_users",
    "windows",
]

NEGATIVE_SIGNAL_NAMES = frozenset({"hate", "dislike", "skip", "report"})
"""Feedback column names that express displeasure (costs in the environment)."""


@dataclass(frozen=True, kw_only=True)
class DataSchema:
    """What a simulator knows about the data it was trained on (saved in `schema.json`)."""

    signals: tuple[str, ...]
    """Feedback signals the simulator predicts, `click` first."""
    binary: tuple[str, ...]
    """The 0/1 signals (click included)."""
    negative: tuple[str, ...]
    """Signals that count as costs (e.g. hate)."""
    scales: tuple[float, ...]
    """Per signal: the divisor that normalises it for the model (std of non-zero values; 1 for binary)."""
    low: tuple[float, ...]
    """Per signal: smallest value observed on consumed items (samples are clipped to [low, high])."""
    high: tuple[float, ...]
    """Per signal: largest value observed on consumed items."""
    n_items: int
    """Catalogue size of the data."""
    positive_only: bool
    """The data had no `click` column: negatives were sampled (see the module docstring)."""
    has_sessions: bool
    """Sessions came from a `session_id` column (False: from inactivity gaps)."""
    max_session_length: int
    """Longest session in the data (sessions this long are taken as cut by a step limit)."""
    user_features: FeatureSpec = FeatureSpec()
    """How the users table becomes the model's user features (empty: none)."""
    item_features: FeatureSpec = FeatureSpec()
    """How the items table becomes the model's item features (empty: none)."""

    def __post_init__(self) -> None:
        for name in ("binary", "negative"):
            unknown = set(getattr(self, name)) - set(self.signals)
            if unknown:
                raise ValueError(f"schema field {name!r} names unknown signals {sorted(unknown)}")
        if not self.signals or self.signals[0] != "click":
            raise ValueError(f"schema field 'signals' must start with 'click', got {self.signals}")

    def to_dict(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        out["user_features"] = self.user_features.to_dict()
        out["item_features"] = self.item_features.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> DataSchema:
        """Inverse of `to_dict` (every field required; a missing one is a KeyError naming it)."""
        d = dict(d)
        for key in ("signals", "binary", "negative", "scales", "low", "high"):
            if key in d:
                d[key] = tuple(d[key])
        for key in ("user_features", "item_features"):
            d[key] = FeatureSpec.from_dict(d[key])
        return cls(**d)

    @property
    def continuous(self) -> tuple[str, ...]:
        return tuple(s for s in self.signals if s not in self.binary)

    @property
    def other_binary(self) -> tuple[str, ...]:
        """Binary signals other than click, in signal order."""
        return tuple(s for s in self.signals[1:] if s in self.binary)


class ExposureLog(NamedTuple):
    """Per-user exposure sequences in CSR layout (user u: rows `offsets[u]:offsets[u+1]`), with labels."""

    offsets: np.ndarray  # [U + 1] int64
    items: np.ndarray  # [T] int64
    feedback: np.ndarray  # [T, F] float32, raw units, `schema.signals` order
    gap_before: np.ndarray  # [T] float32 days since the previous session (0 inside a session)
    leave: np.ndarray  # [T] float32 1 on the last exposure of a session
    leave_known: np.ndarray  # [T] bool: the leave label is known (not a cut session)
    return_gap: np.ndarray  # [T] float32 days to the next session, 0 where unknown
    return_gap_known: np.ndarray  # [T] bool: the gap is known (a session end the user returns after)
    user_features: np.ndarray  # [U, P] float32 encoded features of each sequence's user (P may be 0)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def select(self, users: np.ndarray) -> ExposureLog:
        """The sequences of `users` (in that order; a user may repeat, as in a bootstrap resample)."""
        starts, ends = self.offsets[users], self.offsets[users + 1]
        rows = (
            np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
            if len(users)
            else np.zeros(0, int)
        )
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        return ExposureLog(
            offsets,
            self.items[rows],
            self.feedback[rows],
            self.gap_before[rows],
            self.leave[rows],
            self.leave_known[rows],
            self.return_gap[rows],
            self.return_gap_known[rows],
            self.user_features[users],
        )


def build_schema(
    data: LoggedInteractions,
    *,
    session_gap_hours: float,
    user_features: bool = True,
    item_features: bool = True,
) -> DataSchema:
    """The simulator's signals and their scales from the data's feedback columns, and (with
    `user_features` / `item_features`) how its users / items tables are encoded."""
    frame = data.frame
    columns = list(data.feedback_columns)
    positive_only = "click" not in columns
    signals = ("click", *columns) if positive_only else ("click", *[c for c in columns if c != "click"])
    binary, scales, low, high = [], [], [], []
    clicked = np.ones(len(frame), dtype=bool) if positive_only else frame["click"].to_numpy() > 0
    for name in signals:
        values = np.ones(len(frame)) if (positive_only and name == "click") else frame[name].to_numpy(float)
        values = np.nan_to_num(values)
        is_binary = bool(np.isin(values, (0.0, 1.0)).all())
        if is_binary:
            binary.append(name)
        consumed = values[clicked] if clicked.any() else values
        nonzero = consumed[consumed != 0]
        scale = float(np.sqrt(np.mean(nonzero**2))) if (not is_binary and nonzero.size) else 1.0
        scales.append(scale if scale > 0 else 1.0)
        low.append(float(consumed.min()) if consumed.size else 0.0)
        high.append(float(consumed.max()) if consumed.size else 1.0)
    session_lengths = _session_lengths(data, session_gap_hours)
    return DataSchema(
        signals=tuple(signals),
        binary=tuple(binary),
        negative=tuple(s for s in signals if s in NEGATIVE_SIGNAL_NAMES and s in binary),
        scales=tuple(scales),
        low=tuple(low),
        high=tuple(high),
        n_items=data.n_items,
        positive_only=positive_only,
        has_sessions="session_id" in frame.columns,
        max_session_length=int(session_lengths.max()) if session_lengths.size else 1,
        user_features=FeatureSpec.fit(data.users) if user_features else FeatureSpec(),
        item_features=FeatureSpec.fit(data.items) if item_features else FeatureSpec(),
    )


def _session_breaks(data: LoggedInteractions, session_gap_hours: float) -> np.ndarray:
    """[rows] bool: the row starts a new session of its user (`recsim_env.data.sessions.session_starts`)."""
    return session_starts(data, gap_s=session_gap_hours * SECONDS_PER_HOUR)


def _session_lengths(data: LoggedInteractions, session_gap_hours: float) -> np.ndarray:
    starts = np.flatnonzero(_session_breaks(data, session_gap_hours))
    return np.diff(np.r_[starts, len(data.frame)])


def exposures(
    data: LoggedInteractions,
    schema: DataSchema,
    *,
    session_gap_hours: float,
    negative_rate: float,
    seed: int,
) -> ExposureLog:
    """Turn logs into labelled exposure sequences (negatives sampled for positive-only data; seeded)."""
    frame = data.frame
    users = frame["user_id"].to_numpy(np.int64)
    items = frame["item_id"].to_numpy(np.int64)
    ts = frame["timestamp"].to_numpy(np.float64)
    if schema.positive_only:
        feedback = np.column_stack([np.ones(len(frame)), data.feedback_matrix()])
    else:
        feedback = frame[list(schema.signals)].to_numpy(np.float64)
    feedback = np.nan_to_num(feedback).astype(np.float32)
    breaks = _session_breaks(data, session_gap_hours)
    if schema.positive_only and negative_rate > 0:
        users, items, ts, feedback, breaks = _insert_negatives(
            users, items, ts, feedback, breaks, data.n_items, negative_rate, seed
        )
    n = len(items)
    starts = np.flatnonzero(breaks)
    ends = np.r_[starts[1:], n] - 1
    leave = np.zeros(n, dtype=np.float32)
    leave[ends] = 1.0
    # A session as long as the longest logged one is taken as cut by a step limit; count the logged rows
    # only (sampled negatives make positive-only sessions longer than any logged one).
    logged_rows = np.add.reduceat((feedback[:, 0] > 0) if schema.positive_only else np.ones(n), starts)
    cut = logged_rows >= schema.max_session_length
    leave_known = np.ones(n, dtype=bool)
    leave_known[ends[cut]] = False
    leave[ends[cut]] = 0.0
    # Return gap: the user's next session start minus this session's last exposure.
    next_start = np.r_[starts[1:], n]
    same_user = np.zeros(len(starts), dtype=bool)
    has_next = next_start < n
    same_user[has_next] = users[next_start[has_next]] == users[ends[has_next]]
    return_gap = np.zeros(n, dtype=np.float32)
    return_gap_known = np.zeros(n, dtype=bool)
    gap_days = (ts[np.minimum(next_start, n - 1)] - ts[ends]) / SECONDS_PER_DAY
    return_gap[ends[same_user]] = np.maximum(gap_days[same_user], 0.0)
    return_gap_known[ends[same_user]] = True
    gap_before = np.zeros(n, dtype=np.float32)
    gap_before[next_start[same_user]] = return_gap[ends[same_user]]
    counts = np.bincount(users, minlength=data.n_users)
    offsets = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    features = schema.user_features.encode(data.users, data.n_users)
    return ExposureLog(
        offsets, items, feedback, gap_before, leave, leave_known, return_gap, return_gap_known, features
    )


def _insert_negatives(users, items, ts, feedback, breaks, n_items, rate, seed):
    """Insert `rate` unobserved items per observed row (click 0, zero feedback) into the same user's
    sequence, at positions that make each user's sequence a uniformly random interleaving of their
    observed rows (in their order) and their negatives.

    Placing each negative next to the row it was drawn for would give every consecutive pair exactly one
    click: a sequence model reads that alternation (a click is likelier after a non-click) and the
    window positions' parity, and its held-out click AUC measures the sampling (docs/simulators.md).
    Negatives that fall between two sessions are split at a random point of the gap: the first ones end
    the earlier session, the rest start the later one. `users` must be sorted (as the logs are: by user,
    then time)."""
    rng = np.random.default_rng(seed)
    n = len(items)
    counts = np.floor(rate).astype(int) + (rng.random(n) < rate - np.floor(rate))
    owner = np.repeat(np.arange(n), counts)  # observed row each negative belongs to
    negatives = rng.integers(0, n_items, size=len(owner))
    # Resample negatives the user did interact with (a few rounds; what remains is rare and kept).
    seen = set(zip(users.tolist(), items.tolist()))
    for _ in range(5):
        clash = np.array([(u, i) in seen for u, i in zip(users[owner].tolist(), negatives.tolist())], bool)
        if not clash.any():
            break
        negatives[clash] = rng.integers(0, n_items, size=int(clash.sum()))
    # A uniformly random interleaving: each user's observed rows take that user's sorted uniform draws as
    # keys (so they keep their order), each negative an independent uniform draw; sorting merges them.
    draws = rng.random(n)
    observed_key = users + draws[np.lexsort((draws, users))]
    negative_key = users[owner] + rng.random(len(owner))
    # The observed row a negative sits before (after, past the user's last row): its time and session.
    anchor = np.searchsorted(observed_key, negative_key)
    past_end = (anchor == n) | (users[np.minimum(anchor, n - 1)] != users[owner])
    anchor = np.where(past_end, anchor - 1, anchor)
    # Negatives between two of a user's sessions split at a random point of the gap: those before it end
    # the earlier session (so a session can end on a non-click), the rest start the later one.
    follows = np.r_[False, users[1:] == users[:-1]]  # the row has an observed predecessor of its user
    previous_key = np.r_[observed_key[:1], observed_key[:-1]]
    split = np.where(breaks & follows, previous_key + rng.random(n) * (observed_key - previous_key), -np.inf)
    ends_earlier = ~past_end & (negative_key < split[anchor])
    anchor = np.where(ends_earlier, anchor - 1, anchor)
    order = np.argsort(np.concatenate([observed_key, negative_key]), kind="stable")
    all_users = np.concatenate([users, users[owner]])[order]
    all_items = np.concatenate([items, negatives])[order]
    all_ts = np.concatenate([ts, ts[anchor]])[order]
    neg_feedback = np.zeros((len(owner), feedback.shape[1]), dtype=np.float32)
    all_feedback = np.concatenate([feedback, neg_feedback])[order]
    # A negative placed before a session's first row takes over the session start.
    row_of = np.concatenate([np.arange(n), anchor])[order]
    first_of_row = np.r_[True, row_of[1:] != row_of[:-1]]
    all_breaks = first_of_row & breaks[row_of]
    return all_users, all_items, all_ts, all_feedback, all_breaks


def split_users(n_users: int, lengths: np.ndarray, *, valid_fraction: float, test_fraction: float, seed: int):
    """Disjoint train / valid / test user index arrays (users with at least 2 exposures; seeded)."""
    eligible = np.flatnonzero(lengths >= 2)
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible)
    n_valid = max(1, int(round(valid_fraction * len(order)))) if valid_fraction > 0 else 0
    n_test = max(1, int(round(test_fraction * len(order)))) if test_fraction > 0 else 0
    if n_valid + n_test >= len(order):
        raise ValueError(f"too few users with 2+ exposures ({len(order)}) to split off valid and test users")
    return (
        np.sort(order[n_valid + n_test :]),
        np.sort(order[:n_valid]),
        np.sort(order[n_valid : n_valid + n_test]),
    )


class ExposureWindows(NamedTuple):
    """A simulator's training windows of `L + 1` exposures with their leave and return-gap targets,
    left-padded (pad item = n_items); `windows` cuts them from an `ExposureLog`."""

    items: np.ndarray  # [W, L + 1] int64
    inputs: np.ndarray  # [W, L + 1, F + 1] float32 model inputs: normalised feedback, log1p(gap before)
    feedback: np.ndarray  # [W, L + 1, F] float32 raw feedback
    leave: np.ndarray  # [W, L + 1] float32
    leave_known: np.ndarray  # [W, L + 1] bool
    log_gap: np.ndarray  # [W, L + 1] float32 log(return gap days), 0 where unknown
    log_gap_known: np.ndarray  # [W, L + 1] bool: the return gap is known (never at padding)
    stride: int  # each window's targets are its last `stride` exposures
    pad_id: int
    user_features: np.ndarray  # [W, P] float32 features of the window's user
    rows: np.ndarray  # [W, L + 1] int64 row of the log at each position, -1 at padding

    def target_mask(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """`[W, L]` bool: position t predicts exposure t + 1, both are real, and t + 1 is a target here."""
        items = self.items[rows]
        real = (items[:, :-1] != self.pad_id) & (items[:, 1:] != self.pad_id)
        position = np.arange(items.shape[1] - 1)
        return real & (position[None, :] >= items.shape[1] - 1 - self.stride)


def model_inputs(feedback: np.ndarray, gap_before: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """`[..., F + 1]` encoder input per exposure: feedback / scale and log1p(days since last session)."""
    return np.concatenate([feedback / scales, np.log1p(gap_before)[..., None]], axis=-1).astype(np.float32)


def windows(log: ExposureLog, schema: DataSchema, length: int, stride: int | None = None) -> ExposureWindows:
    """Cut every user's sequence, newest first, into right-aligned windows of up to `length + 1` exposures
    ending every `stride` exposures (default `length`: windows that overlap by one exposure).

    Each window trains on its last `stride` exposures as targets, so every exposure after a user's
    first is a target exactly once, always within the last `stride` positions. Windows near the start
    of a sequence are shorter and left-padded, exactly as a simulator sees a short history: its
    newest exposure in the last position, padding before. (Scoring a user's early exposures from
    inner positions of one full window instead, where the learned position embeddings differ, made a
    simulator's early steps click too often: docs/simulators.md.) With stride 1 (the
    default), every target is scored from the last position, as a simulator step scores the slate; a
    larger stride gives fewer windows per epoch and each target a history of at least
    `length - stride + 1` exposures when the user has them.

    With a stride above 1, each user's windows are shifted by a phase in `[0, stride)` (spread over
    users by a fixed hash of the user's index), so the newest window is right-padded by that many
    positions: a user's final exposure, always a leave because the log ends there, then lands on any
    of the last `stride` positions alike, not always on the last one, which a simulator step reads
    (there, the leave head learned a leave rate several times too high: docs/simulators.md, point 2).
    """
    pad = schema.n_items
    stride = length if stride is None else min(int(stride), length)
    if stride < 1:
        raise ValueError(f"argument 'stride' must be >= 1, got {stride}")
    rows, owner = [], []
    for u in range(log.n_users):
        lo, hi = int(log.offsets[u]), int(log.offsets[u + 1])
        phase = (u * 2654435761) % (2**32) % stride  # Knuth's multiplicative hash: phases spread evenly
        for end in range(hi + phase, lo + 1, -stride):  # each window holds a target: end - lo >= 2
            stop = min(end, hi)  # the newest window ends past the user's last exposure by the phase
            if stop - lo >= 2:
                rows.append((max(lo, end - length - 1), stop, end - stop))
                owner.append(u)
    w = len(rows)
    index = np.full((w, length + 1), -1, dtype=np.int64)
    for j, (start, stop, trailing) in enumerate(rows):
        right = length + 1 - trailing  # the last `trailing` positions stay padding
        index[j, right - (stop - start) : right] = np.arange(start, stop)
    real = index >= 0
    safe = np.maximum(index, 0)
    scales = np.asarray(schema.scales, dtype=np.float32)
    items = np.where(real, log.items[safe], pad)
    inputs = model_inputs(log.feedback[safe], log.gap_before[safe], scales) * real[..., None]
    feedback = log.feedback[safe] * real[..., None]
    gap_known = real & log.return_gap_known[safe]
    log_gap = np.where(gap_known, np.log(np.maximum(log.return_gap[safe], 1e-4)), 0.0).astype(np.float32)
    return ExposureWindows(
        items,
        inputs,
        feedback,
        np.where(real, log.leave[safe], 0.0).astype(np.float32),
        real & log.leave_known[safe],
        log_gap,
        gap_known,
        stride,
        pad,
        log.user_features[np.asarray(owner, dtype=np.int64)],
        index,
    )


def window_users(log: ExposureLog, w: ExposureWindows) -> np.ndarray:
    """[W] int64 the sequence of `log` (its user index) each window of `w` was cut from (`windows(log, ...)`)."""
    first = np.argmax(w.rows >= 0, axis=1)  # every window holds at least two exposures
    return np.searchsorted(log.offsets, w.rows[np.arange(len(w.rows)), first], side="right") - 1
