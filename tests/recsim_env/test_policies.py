"""Reference policies: slates are valid, sampling is Plackett-Luce, greedy uses only what it observes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsim_env.data import LoggedInteractions
from recsim_env.policies import GreedyPolicy, LoggedItemStats, sample_without_replacement, top_k


def test_top_k_orders_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 2], [0, 1, 2]])
    np.testing.assert_array_equal(top_k(scores, 1), [[1], [0]])


def test_gumbel_top_k_first_position_follows_the_weights():
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    rng = np.random.default_rng(0)
    slates = sample_without_replacement(np.log(np.tile(weights, (40_000, 1))), 2, rng)
    assert np.all(slates[:, 0] != slates[:, 1])
    np.testing.assert_allclose(np.bincount(slates[:, 0], minlength=4) / 40_000, weights, atol=0.01)


def _logs():
    # Two users; item 2 is always clicked after a click in category 0, item 3 never.
    frame = pd.DataFrame(
        {
            "user_id": [0, 0, 0, 1, 1, 1],
            "item_id": [0, 2, 3, 0, 3, 2],
            "timestamp": [1, 2, 3, 1, 2, 3],
            "click": [1, 1, 0, 1, 0, 1],
        }
    )
    items = pd.DataFrame({"item_id": [0, 1, 2, 3], "category": [0, 1, 0, 1]})
    return LoggedInteractions.from_frame(frame, items=items, item_catalogue=[0, 1, 2, 3])


def test_logged_stats_count_clicks_per_item_and_previous_click_category():
    stats = LoggedItemStats.from_logs(_logs())
    np.testing.assert_array_equal(stats.clicks, [2, 0, 2, 0])
    np.testing.assert_array_equal(stats.impressions, [2, 0, 2, 2])
    # After a click in category 0: item 2 shown twice, clicked twice; item 3 shown twice, never clicked.
    np.testing.assert_array_equal(stats.context_impressions[0], [0, 0, 2, 2])
    np.testing.assert_array_equal(stats.context_clicks[0], [0, 0, 2, 0])


def test_greedy_picks_the_best_rate_in_context_and_skips_seen_items():
    policy = GreedyPolicy(LoggedItemStats.from_logs(_logs()), prior_strength=1.0)
    obs = {
        "item_ids": np.array([[4, 0], [4, 2]]),  # pad id 4; user 0 consumed item 0, user 1 item 2
        "feedback": np.array([[[0.0], [1.0]], [[0.0], [1.0]]]),
    }
    scores = policy.scores(obs)
    assert np.isneginf(scores[0, 0]) and np.isneginf(scores[1, 2])
    assert policy.act(obs)[0] == 2


def test_rollout_is_not_biased_toward_short_episodes():
    """With more envs than episodes, "the first to finish" would be the shortest: each env owes a quota."""
    from recsim_env.policies import UniformPolicy
    from recsim_env.rollout import rollout

    few = rollout(UniformPolicy(500), n_episodes=16, seed=0, num_envs=64)
    many = rollout(UniformPolicy(500), n_episodes=400, seed=0, num_envs=16)
    assert few.episodes == 16 and many.episodes == 400
    assert few.session_length > 0.6 * many.session_length
