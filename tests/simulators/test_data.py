"""Exposure sequences and labels from logs: sessions, leave, return gaps, sampled negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsim_env.data import LoggedInteractions
from simulators.data import DataSchema, FeatureSpec, build_schema, exposures, split_users, windows

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
    # The mask, not a NaN, marks where the gap is unknown: every value is a number, 0 there.
    np.testing.assert_array_equal(log.return_gap_known, [0, 1, 0, 0, 0, 0, 0, 0])
    assert log.return_gap_known.dtype == bool and np.isfinite(log.return_gap).all()
    assert (log.return_gap[~log.return_gap_known] == 0).all()
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


def test_sampled_negatives_interleave_with_clicks_at_random():
    """A click must not predict the next exposure's label: a negative placed next to the row it was drawn
    for gives every pair exactly one click, and a model then learns to alternate (docs/simulators.md)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(40), 50),
            "item_id": np.concatenate([rng.choice(400, 50, replace=False) for _ in range(40)]),
            # 5 sessions of 7-12 ratings (the longest counts as cut by a step limit: no leave label)
            "timestamp": np.tile(
                np.arange(50) * 60.0 + np.searchsorted([7, 18, 30, 41], np.arange(50), "right") * DAY, 40
            ),
            "rating": rng.integers(1, 6, 2000).astype(float),
        }
    )
    data = LoggedInteractions.from_frame(frame, item_catalogue=np.arange(400))
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=1.0, seed=0)
    click = log.feedback[:, 0] > 0
    previous, current = click[:-1], click[1:]
    same_user = np.ones(len(previous), bool)
    same_user[log.offsets[1:-1] - 1] = False
    after_click = current[previous & same_user].mean()
    after_skip = current[~previous & same_user].mean()
    assert abs(after_click - after_skip) < 0.1  # adjacent placement gives about 0.25 against 0.75
    # Negatives between two sessions split at a random point: sessions end on non-clicks too (expected
    # share 1 - ln 2 of the session ends that have a later session of the user), not on clicks only.
    final = np.zeros(len(click), bool)
    final[log.offsets[1:] - 1] = True
    ends = (log.leave > 0) & ~final
    assert ends.sum() >= 40 and 0.15 < (~click[ends]).mean() < 0.5


def test_inactivity_sessions_without_session_id():
    data = _logs(with_click=False)
    schema = build_schema(data, session_gap_hours=1.0)
    assert not schema.has_sessions
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    assert log.return_gap_known.sum() == 1 and log.return_gap[log.return_gap_known] >= 1.0  # user 10's pause


def test_windows_are_left_padded_and_cover_every_exposure():
    data = _logs()
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, length=3)
    targets = (w.items[:, :-1] != schema.n_items) & (w.items[:, 1:] != schema.n_items)
    # Every exposure except each user's first is a target exactly once.
    assert targets.sum() == w.target_mask().sum() == len(log.items) - log.n_users
    assert (w.items[:, 0][w.items[:, 1] == schema.n_items] == schema.n_items).all()
    # Return-gap targets: known only where the log knows the gap (never at padding), a number everywhere.
    known_rows = w.rows[w.log_gap_known]
    assert w.log_gap_known.dtype == bool and np.isfinite(w.log_gap).all()
    assert len(known_rows) and (known_rows >= 0).all() and log.return_gap_known[known_rows].all()
    np.testing.assert_allclose(w.log_gap[w.log_gap_known], np.log(log.return_gap[known_rows]), rtol=1e-6)
    assert (w.log_gap[~w.log_gap_known] == 0).all()
    real = w.rows >= 0
    assert w.log_gap_known.sum() == log.return_gap_known[w.rows[real]].sum()


@pytest.mark.parametrize("stride", [1, 2])
def test_every_target_is_scored_from_the_last_positions_of_a_right_aligned_window(stride):
    data = _logs()
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    length = 3
    w = windows(log, schema, length=length, stride=stride)
    mask = w.target_mask()
    assert mask.sum() == len(log.items) - log.n_users  # each target once
    # Targets only in the last `stride` positions; a window ends with a real exposure (right-aligned) but
    # for a user's newest window at a stride above 1, right-padded by its phase (fewer than `stride`).
    assert not mask[:, : length - stride].any()
    trailing = np.argmax(w.items[:, ::-1] != schema.n_items, axis=1)
    assert (trailing == 0).all() if stride == 1 else (trailing < stride).all()
    history = (w.items[:, :-1] != schema.n_items).cumsum(axis=1)
    if stride == 1:
        # As a simulator step sees it: the newest exposure last, the history all before it, at most L.
        assert (mask.sum(axis=1) == 1).all() and mask[:, -1].all()
        # User 10 (5 exposures) has targets with 1, 2, 3, 3 exposures of history; user 20 (3) 1, 2.
        assert sorted(history[:, -1].tolist()) == [1, 1, 2, 2, 3, 3]
    else:  # a full window gives each of its targets at least length - stride + 1 exposures of history
        full = w.items[:, 0] != schema.n_items
        assert full.any() and (history[mask & full[:, None]] >= length - stride + 1).all()
    assert len(w.items) >= len(windows(log, schema, length=length).items)


def test_a_users_final_exposure_lands_on_any_of_the_last_stride_positions(world_logs):
    """The log's end is always a leave; at a stride above 1 it must not always sit on the last position,
    the one a simulator step reads, or the leave head learns to leave there (docs/simulators.md, point 2)."""
    schema = build_schema(world_logs, session_gap_hours=1.0)
    log = exposures(world_logs, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    w = windows(log, schema, length=20, stride=4)
    assert w.target_mask().sum() == (log.lengths() - 1).sum()
    trailing = np.argmax(w.items[:, ::-1] != schema.n_items, axis=1)  # padding after the newest exposure
    counts = np.bincount(trailing, minlength=4)
    assert len(counts) == 4 and (counts[1:] >= log.n_users // 8).all()
    # the leave rate at the last position is close to the rate over all target positions
    mask = w.target_mask()
    leave = w.leave[:, 1:]
    assert abs(leave[:, -1][mask[:, -1]].mean() - leave[mask].mean()) < 0.5 * leave[mask].mean()


def test_split_users_is_disjoint_and_seeded():
    lengths = np.array([5] * 50 + [1] * 5)
    a = split_users(55, lengths, valid_fraction=0.1, test_fraction=0.2, seed=1)
    b = split_users(55, lengths, valid_fraction=0.1, test_fraction=0.2, seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    together = np.concatenate(a)
    assert len(np.unique(together)) == len(together) == 50
    assert len(a[2]) == 10


def test_user_features_standardise_numbers_one_hot_categories_and_skip_ids():
    users = pd.DataFrame(
        {
            "world_user_id": [7, 8, 9, 10],
            "age": ["20", "30", None, "50"],  # numbers stored as text, as RecBole token columns are
            "gender": ["F", "M", "M", None],
            "zip_code": ["T8H1N", "V3N4P", "E2A4H", "L9G2B"],
        }
    )
    spec = FeatureSpec.fit(users)
    assert spec.names == ("age", "gender=F", "gender=M", "zip_code=E2A4H", "zip_code=L9G2B",
                          "zip_code=T8H1N", "zip_code=V3N4P")  # fmt: skip
    x = spec.encode(users, 4)
    age = np.array([20.0, 30.0, 50.0])
    np.testing.assert_allclose(x[[0, 1, 3], 0], (age - age.mean()) / age.std(), rtol=1e-6)
    assert x[2, 0] == 0.0  # missing: the mean
    np.testing.assert_array_equal(x[:, 1:3], [[1, 0], [0, 1], [0, 1], [0, 0]])  # missing: no category
    # Unseen categories and absent columns give zeros; a high-cardinality column is left out.
    other = spec.encode(pd.DataFrame({"gender": ["X"], "age": ["30"]}), 1)
    assert other[0, 1:].sum() == 0.0
    many = FeatureSpec.fit(pd.DataFrame({"zip_code": [f"K{i:04d}" for i in range(100)]}))
    assert many.width == 0
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_exposures_carry_each_users_features_and_the_schema_round_trips():
    logs = _logs()
    users = pd.DataFrame({"user_id": [20, 10], "activity": [2.0, 4.0]})
    data = LoggedInteractions.from_frame(logs.frame.assign(
        user_id=np.asarray(logs.user_ids.tokens)[logs.frame["user_id"]],
        item_id=np.asarray(logs.item_ids.tokens)[logs.frame["item_id"]],
    ), item_catalogue=np.arange(8), users=users)  # fmt: skip
    schema = build_schema(data, session_gap_hours=1.0)
    log = exposures(data, schema, session_gap_hours=1.0, negative_rate=0.0, seed=0)
    # Users 10 and 20 are indices 0 and 1; standardised activity 4 -> +1, 2 -> -1.
    np.testing.assert_allclose(log.user_features[:, 0], [1.0, -1.0])
    w = windows(log, schema, 2, 1)
    owners = np.repeat([0, 1], [4, 2])  # one window per target: user 10 has 5 exposures, user 20 has 3
    np.testing.assert_array_equal(w.user_features[:, 0], log.user_features[owners, 0])
    assert DataSchema.from_dict(schema.to_dict()) == schema
    assert build_schema(data, session_gap_hours=1.0, user_features=False).user_features.width == 0


def test_item_features_one_hot_integer_codes_and_multi_hot_genres():
    """An integer category is a code, not a number; RecBole token sequences (MovieLens genres) are multi-hot;
    whole numbers held as floats or text stay numeric; titles have too many tokens and are left out."""
    titles = [f"Title {i} Part {i % 7}" for i in range(40)]
    genres = ["Action Comedy", "Drama", "Comedy Drama Romance", None] * 10
    items = pd.DataFrame({
        "item_id": range(40), "category": np.arange(40) % 3, "year": [str(1990 + i % 35) for i in range(40)],
        "activity": np.arange(40, dtype=float) % 4, "genres": [*genres[:-1], "Action"], "title": titles,
    })  # fmt: skip
    spec = FeatureSpec.fit(items)
    assert spec.names == ("year", "activity", "category=0", "category=1", "category=2",
                          "genres:Action", "genres:Comedy", "genres:Drama", "genres:Romance")  # fmt: skip
    x = spec.encode(items, 40)
    np.testing.assert_array_equal(x[:5, 2:5], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(x[:4, 5:], [[1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]])
    # A side table with missing rows holds the codes as floats: they still find their one-hot column.
    sparse = items.reindex(range(41))
    np.testing.assert_array_equal(spec.encode(sparse, 41)[:40], x)
    assert not spec.encode(sparse, 41)[40].any()
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    # A typo in a numeric column (MovieLens has "unkonwn" among its release years) counts as missing; a
    # column with more non-numbers (zip codes with letters) stays text.
    years = pd.DataFrame(
        {"year": ["1995"] * 199 + ["unkonwn"], "zip": [f"{i:05d}" for i in range(196)] + ["T8H1N"] * 4}
    )
    dirty = FeatureSpec.fit(years)
    assert dirty.names == ("year",)
    assert dirty.encode(years, 200)[-1, 0] == 0.0


def test_feature_spec_handles_the_side_tables_real_data_brings():
    """Lists of tokens, infinities, dates with gaps, booleans, category names with spaces, and integer codes
    of a side table that misses some ids (its rows are filled with missing values)."""
    rows = 200
    table = pd.DataFrame({
        "tags": [["Action", "Comedy"], ["Drama"], ("Action",), ["Drama", "Romance"]] * 50,
        "score": [1.0, 2.0, 3.0, 4.0] * 49 + [np.inf, 1.0, 2.0, 3.0],
        "joined": pd.to_datetime(["2020-01-01", None, "2020-01-03", "2020-01-05"] * 50),
        "premium": [True, False, True, True] * 50,
        "occupation": ["health care", "doctor", "lawyer", "doctor"] * 50,
    })  # fmt: skip
    spec = FeatureSpec.fit(table)
    assert spec.names == ("score", "joined", "premium", "occupation=doctor", "occupation=health care",
                          "occupation=lawyer", "tags:Action", "tags:Comedy", "tags:Drama", "tags:Romance")  # fmt: skip
    x = spec.encode(table, rows)
    assert np.isfinite(x).all()
    assert x[196, 0] == 0.0  # the infinity counts as missing: the mean
    assert x[1, 1] == 0.0 and x[0, 1] < x[2, 1] < x[3, 1]  # dates in order, the gap at the mean
    np.testing.assert_array_equal(x[:4, 6:], [[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="the table has 200 rows, expected 201"):
        spec.encode(table, rows + 1)

    # Integer codes stay codes when the items table lacks an item of the logs.
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [10, 11, 12],
            "timestamp": [0.0, 1.0, 2.0],
            "click": [1.0, 0.0, 1.0],
        }
    )
    items = pd.DataFrame({"item_id": [10, 11], "category": [3, 4], "tags": [["a", "b"], ["b"]]})
    data = LoggedInteractions.from_frame(frame, feedback_cols=["click"], items=items)
    codes = FeatureSpec.fit(data.items)
    assert codes.names == ("category=3", "category=4", "tags:a", "tags:b")
    np.testing.assert_array_equal(codes.encode(data.items, 3), [[1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
