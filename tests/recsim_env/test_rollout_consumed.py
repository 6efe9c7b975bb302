"""`EpisodeRecords.first_consumed`: per step, whether the first slate item was consumed."""

from __future__ import annotations

import numpy as np

from recsim_env.policies import UniformPolicy
from recsim_env.rollout import rollout_episodes


def test_consumed_first_items_are_the_episodes_clicks_with_slates_of_one():
    records = rollout_episodes(UniformPolicy(500), n_episodes=40, seed=2, num_envs=8, sessions_per_episode=2)
    assert [len(c) for c in records.first_consumed] == [len(i) for i in records.first_items]
    assert [int(c.sum()) for c in records.first_consumed] == records.clicks.astype(int).tolist()


def test_with_slates_only_the_first_position_counts():
    records = rollout_episodes(UniformPolicy(500, 3), n_episodes=24, seed=3, num_envs=8, slate_size=3)
    consumed = np.array([c.sum() for c in records.first_consumed])
    assert (consumed <= records.clicks).all() and consumed.sum() < records.clicks.sum()
