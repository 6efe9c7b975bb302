"""The ground-truth world: determinism, the documented equations, and a world where RL has work to do."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_env.policies import (
    FarsightedOracle,
    GreedyPolicy,
    LoggedItemStats,
    MyopicOracle,
    PopularityPolicy,
    UniformPolicy,
)
from recsim_env.rollout import rollout
from recsim_env.world import SIGNALS, UserWorld, WorldConfig
from recsim_env.world.logging import log_world


def _start(world, users=(0, 1, 2)):
    users = np.asarray(users)
    rng = np.random.default_rng(0)
    return world.initial_state(users, rng.random((len(users), world.n_start_uniforms)))


def test_the_world_is_a_function_of_its_seed():
    a, b, c = UserWorld(WorldConfig(seed=1)), UserWorld(WorldConfig(seed=1)), UserWorld(WorldConfig(seed=2))
    np.testing.assert_array_equal(a.item_embeddings, b.item_embeddings)
    np.testing.assert_array_equal(a.user_interest, b.user_interest)
    assert not np.array_equal(a.item_embeddings, c.item_embeddings)


def test_one_item_click_probability_is_the_documented_sigmoid():
    world = UserWorld()
    start = _start(world)
    state = start.state
    state.satiation[:, 3] = 1.7  # some satiation, so that term is exercised
    slates = np.array([[5], [17], [250]])
    expected = world.click_probabilities(state)[np.arange(3), slates[:, 0]]
    cfg = world.config
    aff = np.einsum("nd,nd->n", world.item_embeddings[slates[:, 0]], state.interest)
    by_hand = 1 / (
        1
        + np.exp(
            -(
                cfg.affinity_weight * aff
                + cfg.clickbait_weight * world.item_clickbait[slates[:, 0]]
                + cfg.click_bias
                - cfg.satiation_weight * state.satiation[np.arange(3), world.item_category[slates[:, 0]]]
            )
        )
    )
    np.testing.assert_allclose(expected, by_hand)
    response = world.respond(state, slates, np.full((3, world.n_step_uniforms), 0.5))
    np.testing.assert_allclose(response.info["choice_probability"][:, 0], by_hand)


def test_slate_choice_follows_the_position_biased_logit():
    world = UserWorld()
    state = _start(world, users=[4]).state
    slate = np.array([[10, 20, 30]])
    p1 = world.click_probabilities(state)[0, slate[0]]
    attraction = p1 / (1 - p1) * world.config.position_bias ** np.arange(3)  # exp(utility) * theta_k
    expected = attraction / (1 + attraction.sum())
    got = world.respond(state, slate, np.full((1, world.n_step_uniforms), 0.99)).info["choice_probability"][0]
    np.testing.assert_allclose(got, expected)


def test_consumption_raises_satiation_and_pulls_interest_toward_the_item():
    world = UserWorld()
    state = _start(world, users=[0]).state
    item = int(np.argmax(world.click_probabilities(state)[0]))
    category = world.item_category[item]
    before_aff = float(state.interest[0] @ world.item_embeddings[item])
    uniforms = np.full((1, world.n_step_uniforms), 0.5)
    uniforms[0, 0] = 1e-9  # certainly consumed
    p_before = world.click_probabilities(state)[0, item]
    response = world.respond(state, np.array([[item]]), uniforms)
    assert response.chosen_position[0] == 0 and response.feedback[0, 0, SIGNALS.index("click")] == 1
    assert state.satiation[0, category] == pytest.approx(1.0)
    assert float(state.interest[0] @ world.item_embeddings[item]) > before_aff
    assert world.click_probabilities(state)[0, item] < p_before  # satiation outweighs the drift


def test_clickbait_lowers_satisfaction_which_shortens_sessions_and_lengthens_gaps():
    world = UserWorld()
    bait = int(np.argmax(world.item_clickbait - world.item_quality))
    good = int(np.argmax(world.item_quality))
    results = {}
    for name, item in (("bait", bait), ("good", good)):
        state = _start(world, users=np.arange(200)).state
        uniforms = np.full((200, world.n_step_uniforms), 0.5)
        uniforms[:, 0] = 1e-9
        for _ in range(5):
            world.respond(state, np.full((200, 1), item), uniforms)
        results[name] = (state.satisfaction.mean(), world.mean_return_gap(state).mean())
    assert results["good"][0] > results["bait"][0]
    assert results["good"][1] < results["bait"][1]


def test_satiation_decays_between_sessions():
    world = UserWorld()
    state = _start(world, users=[0, 1]).state
    state.satiation[:] = 2.0
    gap = world.end_session(state, np.array([True, False]), np.full((2, world.n_step_uniforms), 0.5))
    assert gap[0] > 0 and gap[1] == 0
    assert state.satiation[0, 0] == pytest.approx(2.0 * np.exp(-world.config.satiation_daily_decay * gap[0]))
    assert state.satiation[1, 0] == 2.0


def test_bad_world_config_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="n_items"):
        WorldConfig(n_items=0)
    with pytest.raises(ValueError, match="position_bias"):
        WorldConfig(position_bias=1.5)


def test_the_default_world_gives_rl_something_to_learn():
    """Acceptance: myopic oracle >= 1.3x popularity; far-sighted beats myopic per session."""
    logs = log_world("uniform", steps=20_000, seed=0, progress=False)
    stats = LoggedItemStats.from_logs(logs)
    world = UserWorld()
    results = {
        policy.name: rollout(policy, n_episodes=400, seed=1)
        for policy in (
            UniformPolicy(world.n_items),
            PopularityPolicy(stats),
            GreedyPolicy(stats),
            MyopicOracle(world),
            FarsightedOracle(world),
        )
    }
    myopic, farsighted = results["myopic-oracle"], results["farsighted-oracle"]
    assert myopic.mean_return >= 1.3 * results["popularity"].mean_return
    assert farsighted.return_per_session > myopic.return_per_session
    assert farsighted.session_length > myopic.session_length
    assert farsighted.return_gap_days < myopic.return_gap_days
    # The oracle-free greedy policy learned from logs beats the non-personalised ones.
    assert results["greedy"].mean_return > results["popularity"].mean_return > results["uniform"].mean_return
