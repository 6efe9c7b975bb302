"""`SimulatorGreedyPolicy`: the simulator's most probable clicks, in the world and in the simulator."""

from __future__ import annotations

import numpy as np
import pytest


def _world_obs(simulator, n: int = 16, seed: int = 0):
    from recsim_env.envs.seqrec import SeqRecVectorEnv

    env = SeqRecVectorEnv(num_envs=n, history_len=simulator.history_len, user_features=True)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        obs, *_ = env.step(rng.integers(0, simulator.n_items, size=n))
    return obs


def test_scores_are_the_simulators_click_probabilities_with_history_items_skipped(tiny_fit):
    from simulators.data import model_inputs
    from simulators.greedy import SimulatorGreedyPolicy

    simulator = tiny_fit.simulator
    policy = SimulatorGreedyPolicy(simulator)
    obs = _world_obs(simulator)
    scores = policy.scores(obs)
    items = obs["item_ids"]
    assert scores.shape == (len(items), simulator.n_items)
    in_history = np.zeros_like(scores, dtype=bool)
    rows, cols = np.nonzero(items < simulator.n_items)
    in_history[rows, items[rows, cols]] = True
    assert np.isneginf(scores[in_history]).all()
    assert ((scores[~in_history] > 0) & (scores[~in_history] < 1)).all()
    # The same numbers as predict() on the observation's history (gap feature on the session's first step).
    gaps = np.zeros(items.shape, np.float32)
    step = obs["session_step"][:, 0]
    rows = np.flatnonzero(step >= 1)
    gaps[rows, items.shape[1] - step[rows]] = obs["gap_days"][rows, 0]
    inputs = (
        model_inputs(obs["feedback"], gaps, np.asarray(simulator.schema.scales))
        * (items < simulator.n_items)[..., None]
    )
    features = simulator.schema.user_features.encode_numeric(obs["user_features"])
    candidates = np.broadcast_to(np.arange(simulator.n_items), scores.shape).copy()
    expected = simulator.predict(items, inputs.astype(np.float32), candidates, user_features=features)[
        "click"
    ]
    np.testing.assert_allclose(scores[~in_history], expected[~in_history], rtol=1e-6)
    np.testing.assert_array_equal(policy.act(obs), scores.argmax(axis=1))


def test_runs_in_the_world_and_in_its_simulator_reproducibly(tiny_fit):
    from recsim_env.rollout import rollout
    from simulators.greedy import SimulatorGreedyPolicy

    simulator = tiny_fit.simulator
    common = dict(n_episodes=8, seed=1, num_envs=8, history_len=simulator.history_len, user_features=True)
    world = rollout(SimulatorGreedyPolicy(simulator), **common)
    assert world == rollout(SimulatorGreedyPolicy(simulator), **common)
    simulated = rollout(
        SimulatorGreedyPolicy(simulator, encode_user_features=False), user_model=simulator, **common
    )
    assert simulated.episodes == 8 and 0.0 <= simulated.click_rate <= 1.0


def test_needs_the_user_features_the_simulator_reads(tiny_fit):
    from recsim_env.envs.seqrec import SeqRecVectorEnv
    from recsim_env.errors import ArgumentError
    from simulators.greedy import SimulatorGreedyPolicy

    obs, _ = SeqRecVectorEnv(num_envs=2, history_len=tiny_fit.simulator.history_len).reset(seed=0)
    with pytest.raises(ArgumentError, match="user_features=True"):
        SimulatorGreedyPolicy(tiny_fit.simulator).act(obs)
