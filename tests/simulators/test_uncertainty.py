"""Ensemble disagreement: reported in info, and penalising the reward where the members disagree."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

import recsim_env  # noqa: F401  (registers the environments)

DISPUTED = (7, 42, 99)


def _disputed_simulator(saved_simulator):
    """The tiny ensemble with member 1 made to disagree strongly about the click on DISPUTED items."""
    import simulators

    sim = simulators.load(saved_simulator)
    with torch.no_grad():
        for item in DISPUTED:
            sim.members[1].click_bias.weight[item] += 6.0
    return sim


def test_reward_drops_most_for_disputed_items(saved_simulator):
    sim = _disputed_simulator(saved_simulator)
    items = sorted(set(DISPUTED) | set(range(0, sim.n_items, 10)))
    drops = np.full(sim.n_items, np.nan)
    for item in items:
        rewards = []
        for penalty in (0.0, 1.0):
            env = (
                gym.make("SeqRec-v0", simulator=sim, uncertainty_penalty=penalty)
                if penalty
                else gym.make("SeqRec-v0", simulator=sim)
            )
            env.reset(seed=item)
            _, reward, _, _, info = env.step(item)
            rewards.append(reward)
            if penalty:
                disagreement = info["feedback"][env.unwrapped.signals.index("disagreement")]
                assert disagreement >= 0
        drops[item] = rewards[0] - rewards[1]
    # The penalty changes the reward only (the same seed gives the same response).
    drops = drops[items]
    assert (drops >= 0).all()
    top = {items[i] for i in np.argsort(-drops)[: len(DISPUTED)]}
    assert top == set(DISPUTED), drops
    disputed = np.isin(items, DISPUTED)
    assert drops[disputed].min() > 3 * np.median(drops[~disputed])


def test_disagreement_is_reported_in_info_and_costs(saved_simulator):
    sim = _disputed_simulator(saved_simulator)
    env = gym.make("SeqRec-v0", simulator=sim, uncertainty_penalty=0.5)
    assert env.unwrapped.signals[-1] == "disagreement"
    env.reset(seed=0)
    _, reward, _, _, info = env.step(DISPUTED[0])
    d = info["feedback"][-1]
    assert d > 0.1
    assert info["costs"][-1] == d  # a negative signal: its cost is its value
    assert abs(reward - (info["feedback"][0] - 0.5 * d)) < 1e-5
