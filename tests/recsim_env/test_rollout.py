"""`recsim_env.rollout`: the one rollout loop, its per-episode records and its summary."""

from __future__ import annotations

import numpy as np

from recsim_env.policies import UniformPolicy
from recsim_env.rollout import rollout, rollout_episodes


def test_records_hold_every_episode_session_and_shown_item():
    records = rollout_episodes(UniformPolicy(500), n_episodes=40, seed=1, num_envs=8, sessions_per_episode=3)
    assert len(records.returns) == len(records.first_items) == 40
    assert [len(items) for items in records.first_items] == records.steps.astype(int).tolist()
    assert len(records.session_lengths) == len(records.return_gaps) == int(records.sessions.sum())
    assert records.session_lengths.sum() <= records.steps.sum()
    assert (records.return_gaps >= 0).all()
    assert records.n_items == 500
    assert all(((items >= 0) & (items < 500)).all() for items in records.first_items)


def test_rollout_is_the_summary_of_the_records():
    kwargs = dict(n_episodes=30, seed=4, num_envs=6, sessions_per_episode=2)
    stats = rollout(UniformPolicy(500), **kwargs)
    records = rollout_episodes(UniformPolicy(500), **kwargs)
    assert stats == records.stats("uniform")
    assert np.isclose(stats.mean_return, records.returns.mean())
    assert np.isclose(stats.session_length, records.steps.sum() / records.sessions.sum())
