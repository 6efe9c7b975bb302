"""Train / validation / test splits of `LoggedInteractions`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recsim_env.checks import check_real
from recsim_env.data.interactions import LoggedInteractions
from recsim_env.errors import ArgumentError


def _check_data(data: object) -> None:
    if not isinstance(data, LoggedInteractions):
        raise ArgumentError(f"data: expected LoggedInteractions, got {type(data).__name__}")


class LeaveOneOut(NamedTuple):
    """Per-user leave-one-out split (the SASRec / BERT4Rec protocol)."""

    train: LoggedInteractions
    """Every user's events except the last two; users with fewer than 3 events keep all of them here."""
    valid: LoggedInteractions
    """Each user's second-to-last event (users with at least 3 events)."""
    test: LoggedInteractions
    """Each user's last event (users with at least 3 events)."""


class TemporalSplit(NamedTuple):
    """Global temporal split at timestamp quantiles."""

    train: LoggedInteractions
    """Events with timestamp < t_valid."""
    valid: LoggedInteractions
    """Events with t_valid <= timestamp < t_test."""
    test: LoggedInteractions
    """Events with timestamp >= t_test."""


def leave_one_out(data: LoggedInteractions) -> LeaveOneOut:
    """Hold out each user's last event for test and second-to-last for validation.

    Users with fewer than 3 events are kept whole in `train` and appear in neither `valid` nor `test`, so every
    evaluated user has at least one training event. All three parts share the id maps and catalogue.
    """
    _check_data(data)
    seqs = data.sequences()
    lengths = seqs.lengths()
    users = data.frame["user_id"].to_numpy()
    # Position of each row counted from the user's last event (0 = last).
    from_end = seqs.offsets[users + 1] - 1 - np.arange(len(users))
    evaluated = lengths[users] >= 3
    test = evaluated & (from_end == 0)
    valid = evaluated & (from_end == 1)
    train = ~(test | valid)
    frame = data.frame
    return LeaveOneOut(
        train=data._with_frame(frame.loc[train]),
        valid=data._with_frame(frame.loc[valid]),
        test=data._with_frame(frame.loc[test]),
    )


def temporal_split(
    data: LoggedInteractions, *, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> TemporalSplit:
    """Split at global cut points on the timestamp quantiles.

    `t_valid` is the `1 - valid_fraction - test_fraction` quantile and `t_test` the `1 - test_fraction` quantile
    of all timestamps; train holds `timestamp < t_valid`, valid `t_valid <= timestamp < t_test`, test
    `timestamp >= t_test` (so ties at a cut point go to the later part).
    """
    _check_data(data)
    valid_fraction = check_real("valid_fraction", valid_fraction, 0.0, 1.0, high_open=True)
    test_fraction = check_real("test_fraction", test_fraction, 0.0, 1.0, high_open=True)
    if valid_fraction + test_fraction >= 1.0:
        raise ArgumentError("valid_fraction: valid_fraction + test_fraction must be < 1")
    if data.n_interactions == 0:
        raise ArgumentError("data: cannot split a log with no interactions")
    ts = data.frame["timestamp"].to_numpy()
    t_valid, t_test = np.quantile(ts, [1.0 - valid_fraction - test_fraction, 1.0 - test_fraction])
    if test_fraction == 0.0:
        t_test = np.inf
    if valid_fraction == 0.0:
        t_valid = t_test
    frame = data.frame
    return TemporalSplit(
        train=data._with_frame(frame.loc[ts < t_valid]),
        valid=data._with_frame(frame.loc[(ts >= t_valid) & (ts < t_test)]),
        test=data._with_frame(frame.loc[ts >= t_test]),
    )
