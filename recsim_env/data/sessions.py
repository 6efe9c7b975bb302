"""Sessions of logged interactions: the one definition every package reads.

A session is a run of one user's consecutive rows (rows are sorted by user, then time). Data with a
`session_id` column says where sessions start: a row whose `session_id` differs from the previous row's, or
the user's first row. Data without one is cut at inactivity gaps: a row more than `gap_s` seconds after its
user's previous row starts a session. Gaps are seconds, as timestamps are; durations reported to users
(return gaps, days since the last session) are days (`SECONDS_PER_DAY`).
"""

from __future__ import annotations

import numpy as np

from recsim_env.checks import check_real
from recsim_env.data.interactions import LoggedInteractions
from recsim_env.data.validate import SECONDS_PER_DAY

SECONDS_PER_HOUR = 3600.0
"""For configs that give a session gap in hours."""


def session_starts(data: LoggedInteractions, *, gap_s: float | None) -> np.ndarray | None:
    """`[rows]` bool: the row starts a session of its user, from `session_id` when `data` has it, else
    where more than `gap_s` seconds pass since the user's previous row.

    Args:
        data: the logs.
        gap_s: inactivity gap (seconds) that starts a session in data without `session_id`; None: such
            data has no sessions, and the result is None.

    Raises:
        ArgumentError: if `gap_s` is not a positive number (or None).
    """
    if gap_s is not None:
        check_real("gap_s", gap_s, 0.0, low_open=True)
    frame = data.frame
    users = frame["user_id"].to_numpy()
    new_user = np.r_[True, users[1:] != users[:-1]]
    if "session_id" in frame.columns:
        sessions = frame["session_id"].to_numpy()
        return new_user | np.r_[True, sessions[1:] != sessions[:-1]]
    if gap_s is None:
        return None
    times = frame["timestamp"].to_numpy(np.float64)
    return new_user | np.r_[True, np.diff(times) > gap_s]


def session_position(data: LoggedInteractions, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`[rows]` int64 step of each row within its session (0 at the start) and `[rows]` float32 days from the
    end of the user's previous session to the start of this one (0 in a user's first session), for session
    starts `starts` (`session_starts`)."""
    frame = data.frame
    n = len(frame)
    users = frame["user_id"].to_numpy()
    times = frame["timestamp"].to_numpy(np.float64)
    session_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    step = np.arange(n) - session_start
    first_of_user = np.r_[True, users[1:] != users[:-1]]
    gap_at_start = np.where(starts & ~first_of_user, np.r_[0.0, np.diff(times)] / SECONDS_PER_DAY, 0.0)
    return step.astype(np.int64), gap_at_start[session_start].astype(np.float32)
