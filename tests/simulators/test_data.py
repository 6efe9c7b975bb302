"""Exposure sequences and labels from logs: sessions, leave, return gaps, sampled negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsim_env.data import LoggedInteractions
from simulators.data import build_schema, exposures, split_users, windows

DAY = 86_400.0


def _logs(with_click: bool = True) -> LoggedInteractions:
    # User 10: sessions of 2 and 3 exposures (1 day apart); user 20: one session of 3.
    frame = pd.DataFrame(
        {
            "user_id": [10, 10, 10, 10, 10, 20, 20, 20],
            "item_id": [1, 2, 3, 4, 5, 1, 2, 3],
            "timestamp": [0, 30, DAY + 60, DAY + 90, DAY + 120, 0, 30, 60],
            "session_id": [0, 0, 1, 1, 1, 2, 2, 2],
            "click": [1, 0, 1, 1, 0, 0, 1, 1],
            "watch_time": [10.0, 0, 20, 30, 0, 0, 5, 6],
        }
    )
    if not with_click:
        frame = frame.drop(columns=["click", "session_id"]).rename(columns={"watch_time": "rating"})
    return LoggedInteractions.from_frame(frame, item_catalogue=np.arange(8))


def test_schema_orders_click_first_and_finds_binary_and_scales():
    schema = build_schema(_logs(), session_gap_hours=1.0)
    assert schema.signals == ("click", "watch_time")
    assert schema.binary == ("click",)
    assert schema.continuous == ("watch_time",)
    assert schema.max_session_length == 3
    assert not schema.positive_only and schema.has_sessions
    consumed = np.array([10.0, 20, 30, 5, 6])
    assert schema.scales[1] == pytest.approx(np.sqrt(np.mean(consumed**2)))


def test_leave_return_gap_and_cut_sessions():
    data = _logs()
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    # User 10's first session (2 steps) ends with a leave; the 3-step sessions have the maximum
    # length and are taken as cut by a step limit: no leave label on their last step.
    np.testing.assert_array_equal(log.leave, [0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(log.leave_known, [1, 1, 1, 1, 0, 1, 1, 0])
    assert log.return_gap[1] == pytest.approx((DAY + 60 - 30) / DAY)
    assert np.isnan(log.return_gap[[0, 2, 3, 4, 5, 6, 7]]).all()
    assert log.gap_before[2] == pytest.approx(log.return_gap[1])
    assert log.gap_before.sum() == pytest.approx(log.return_gap[1])


def test_positive_only_data_gets_sampled_negatives():
    data = _logs(with_click=False)
    schema = build_schema(data, session_gap_hours=1.0)
    assert schema.positive_only and schema.signals == ("click", "rating")
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=1.0, seed=3)
    assert len(log.items) == 2 * data.n_interactions
    negatives = log.feedback[:, 0] == 0
    assert negatives.sum() == data.n_interactions
    assert (log.feedback[negatives, 1] == 0).all()
    # No negative is an item the same user interacted with.
    for u in range(log.n_users):
        rows = slice(log.offsets[u], log.offsets[u + 1])
        items, clicked = log.items[rows], log.feedback[rows, 0] > 0
        assert not set(items[~clicked]) & set(items[clicked])
    again = exposures(data, schema, session_gap_hours=1.0, negative_rate=1.0, seed=3)
    np.testing.assert_array_equal(log.items, again.items)  # seeded


def test_inactivity_sessions_without_session_id():
    data = _logs(with_click=False)
    schema = build_schema(data, session_gap_hours=1.0)
    assert not schema.has_sessions
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    assert np.isfinite(log.return_gap).sum() == 1  # user 10's day-long pause


def test_windows_are_left_padded_and_cover_every_exposure():
    data = _logs()
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, length=3)
    targets = (w.items[:, :-1] != schema.n_items) & (w.items[:, 1:] != schema.n_items)
    # Every exposure except each user's first is a target exactly once.
    assert targets.sum() == w.target_mask().sum() == len(log.items) - log.n_users
    assert (w.items[:, 0][w.items[:, 1] == schema.n_items] == schema.n_items).all()


def test_overlapping_windows_count_each_target_once_with_a_longer_history():
    data = _logs()
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    length, stride = 2, 1
    w = windows(log, schema, length=length, stride=stride)
    mask = w.target_mask()
    assert mask.sum() == len(log.items) - log.n_users
    # Each target's (window, position) is unique, and it sees length - stride exposures of history
    # unless the window reaches back to the user's first exposure.
    history = (w.items[:, :-1] != schema.n_items).cumsum(axis=1)
    reaches_first = w.first_target == 0
    assert (history[mask & ~reaches_first[:, None]] >= length - stride + 1).all()
    assert len(w.items) > len(windows(log, schema, length=length).items)
    # Stride 1 (the default): outside a user's earliest window, the one target is the window's last
    # position, the one a simulator step scores from.
    later = ~reaches_first
    assert later.any() and (mask[later].sum(axis=1) == 1).all() and mask[later, -1].all()


def test_split_users_is_disjoint_and_seeded():
    lengths = np.array([5] * 50 + [1] * 5)
    a = split_users(55, lengths, valid_fraction=0.1, test_fraction=0.2, seed=1)
    b = split_users(55, lengths, valid_fraction=0.1, test_fraction=0.2, seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    together = np.concatenate(a)
    assert len(np.unique(together)) == len(together) == 50
    assert len(a[2]) == 10
