"""World logs: exact propensities, sessions and the LoggedInteractions format."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from recsim_env.data import LoggedInteractions
from recsim_env.world import UserWorld
from recsim_env.world.cli import app
from recsim_env.world.logging import LoggingPolicy, log_world


def test_uniform_logs_record_exact_propensities_and_the_full_catalogue():
    data = log_world("uniform", steps=3000, seed=0, progress=False)
    assert data.n_interactions == 3000 and data.n_items == 500
    np.testing.assert_allclose(data.frame["propensity"], 1 / 500)
    assert set(data.feedback_columns) == {"click", "watch_time", "like", "follow", "share", "hate"}
    assert {"session_id", "position", "slate_id"} <= set(data.frame.columns)
    assert list(data.items.columns) == ["category", "duration_s"]


def test_epsilon_greedy_propensities_match_the_observed_frequencies():
    world = UserWorld()
    policy = LoggingPolicy.for_world("epsilon-greedy", world, epsilon=0.3)
    data = log_world("epsilon-greedy", steps=20_000, seed=1, epsilon=0.3, progress=False)
    best = int(np.argmax(policy.scores))
    shown_best = data.frame["item_id"].to_numpy() == data.item_ids.to_index([best])[0]
    expected = 0.7 + 0.3 / 500
    np.testing.assert_allclose(data.frame["propensity"][shown_best], expected)
    np.testing.assert_allclose(data.frame["propensity"][~shown_best], 0.3 / 500)
    assert shown_best.mean() == pytest.approx(expected, abs=0.01)


def test_slate_propensity_is_the_product_of_the_position_propensities():
    data = log_world("softmax", steps=500, seed=2, slate_size=3, progress=False)
    frame = data.frame
    product = frame.groupby("slate_id")["position_propensity"].prod()
    np.testing.assert_allclose(frame.groupby("slate_id")["propensity"].first(), product)
    assert (frame.groupby("slate_id")["position"].apply(sorted).map(tuple) == (0, 1, 2)).all()
    assert (frame.groupby("slate_id")["click"].sum() <= 1).all()  # at most one item consumed per slate


def test_logs_span_sessions_with_gaps_and_are_reproducible(tmp_path):
    a = log_world("popularity", steps=4000, seed=3, sessions_per_user=3, progress=False)
    b = log_world("popularity", steps=4000, seed=3, sessions_per_user=3, progress=False)
    assert a.frame.equals(b.frame)
    per_user = a.frame.groupby("user_id")["session_id"].nunique()
    assert per_user.max() == 3
    first_user = a.frame[a.frame["user_id"] == per_user.idxmax()]
    starts = first_user.groupby("session_id")["timestamp"].min().sort_values().to_numpy()
    assert np.all(np.diff(starts) > 30.0)  # sessions are separated by return gaps
    path = tmp_path / "logs.parquet"
    a.to_parquet(path)
    assert LoggedInteractions.read_parquet(path).frame.equals(a.frame)


def test_world_log_command_writes_parquet(tmp_path):
    out = tmp_path / "logs.parquet"
    result = CliRunner().invoke(
        app, ["log", "--policy", "epsilon-greedy", "--steps", "1000", "--seed", "0", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "1000 interactions" in result.output
    assert LoggedInteractions.read_parquet(out).n_interactions == 1000
    bad = CliRunner().invoke(app, ["log", "--policy", "greedy", "--steps", "10", "--out", str(out)])
    assert bad.exit_code != 0 and "--policy" in bad.output
