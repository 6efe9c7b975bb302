"""Policy-value fidelity: each panel policy's mean return in the world and in a simulator."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_env.policies import GreedyPolicy, LoggedItemStats, MyopicOracle, PopularityPolicy, UniformPolicy
from recsim_env.world import UserWorld


class _WorldAsSimulator:
    """The world itself presented as a simulator: a perfect one, whose values must equal the world's."""

    def __init__(self, history_len: int) -> None:
        self.world = UserWorld()
        self.history_len = history_len

    def __getattr__(self, name):
        return getattr(self.world, name)


@pytest.fixture(scope="module")
def stats(world_logs):
    return LoggedItemStats.from_logs(world_logs)


def test_rollout_sessions_agrees_with_rollout(stats):
    """Same protocol as `recsim_env.rollout.rollout`: the same mean return, session length and gap."""
    from recsim_env.rollout import rollout
    from simulators.policy_values import rollout_sessions

    for policy in (UniformPolicy(500), GreedyPolicy(stats)):
        kwargs = {"n_episodes": 40, "seed": 5, "num_envs": 16, "sessions_per_episode": 2, "max_steps": 10}
        mine = rollout_sessions(policy, item_category=UserWorld().item_category, **kwargs)
        theirs = rollout(policy, **kwargs)
        assert len(mine.returns) == 40 and mine.item_counts.sum() == mine.session_lengths.sum()
        assert len(mine.session_lengths) == len(mine.return_gaps) >= 40
        np.testing.assert_allclose(mine.returns.mean(), theirs.mean_return)
        np.testing.assert_allclose(mine.session_lengths.mean(), theirs.session_length)
        np.testing.assert_allclose(mine.return_gaps.mean(), theirs.return_gap_days)
        assert 0.0 <= mine.category_repeat_rate <= 1.0


def test_a_perfect_simulator_has_no_value_error(stats):
    """The world as its own simulator: every relative error and KS distance is 0, the ranks agree."""
    from simulators.policy_values import policy_values

    panel = {
        "uniform": UniformPolicy(500),
        "popularity": PopularityPolicy(stats),
        "greedy": GreedyPolicy(stats),
    }
    values = policy_values(_WorldAsSimulator(20), panel, episodes=48, seed=1, num_envs=16)
    assert values["compared"] == list(panel)
    for entry in values["policies"].values():
        assert entry["relative_error"] == 0.0
        assert entry["session_length_ks"] == 0.0 and entry["return_gap_ks"] == 0.0
        assert entry["world"] == entry["simulator"]
    assert values["spearman"] == pytest.approx(1.0) and values["max_abs_relative_error"] == 0.0


def test_policy_values_of_a_learned_simulator(tiny_fit, stats, world_logs):
    from simulators.policy_values import NO_SIMULATED_VALUE, policy_values

    simulator = tiny_fit.simulator
    world = UserWorld()
    panel = {
        "uniform": UniformPolicy(500),
        "greedy": GreedyPolicy(stats),
        "myopic-oracle": MyopicOracle(world),
    }
    logged = np.bincount(world_logs.frame["item_id"].to_numpy(), minlength=500)
    kwargs = {
        "episodes": 32,
        "seed": 2,
        "num_envs": 16,
        "item_category": world.item_category,
        "logged_items": logged,
    }
    values = policy_values(simulator, panel, **kwargs)
    assert values["compared"] == ["uniform", "greedy"]
    assert values["env_kwargs"]["history_len"] == simulator.history_len
    oracle = values["policies"]["myopic-oracle"]
    assert oracle["simulator"] is None and oracle["note"] == NO_SIMULATED_VALUE
    assert oracle["world"]["mean_return"] > 0
    for name in values["compared"]:
        entry = values["policies"][name]
        world_value, sim_value = entry["world"]["mean_return"], entry["simulator"]["mean_return"]
        assert entry["relative_error"] == pytest.approx((sim_value - world_value) / world_value)
        assert 0.0 <= entry["session_length_ks"] <= 1.0 and 0.0 <= entry["return_gap_ks"] <= 1.0
    # Uniform shows items as uniform logs do; greedy concentrates on few items and repeats categories.
    uniform, greedy = values["policies"]["uniform"], values["policies"]["greedy"]
    assert uniform["item_kl_to_logs"] + 1.0 < greedy["item_kl_to_logs"]  # (few episodes: uniform is not 0)
    assert uniform["category_repeat_rate"] < greedy["category_repeat_rate"]
    assert -1.0 <= values["spearman"] <= 1.0
    assert values["max_abs_relative_error"] == max(
        abs(values["policies"][n]["relative_error"]) for n in values["compared"]
    )
    assert policy_values(simulator, panel, **kwargs) == values  # seeded


def test_item_kl():
    from simulators.policy_values import item_kl

    assert item_kl(np.full(10, 7.0), np.full(10, 3.0)) == pytest.approx(0.0, abs=1e-12)
    one_item = np.zeros(10)
    one_item[3] = 5
    assert item_kl(one_item, np.full(10, 3.0)) == pytest.approx(np.log(10))


def test_bad_panels_are_refused(tiny_fit):
    from simulators.policy_values import policy_values

    with pytest.raises(ValueError, match="non-empty mapping"):
        policy_values(tiny_fit.simulator, {}, episodes=4)
    with pytest.raises(ValueError, match=r"policies\['x'\]"):
        policy_values(tiny_fit.simulator, {"x": object()}, episodes=4)


def test_world_panel_names_every_reference():
    from recsim_env.policies import REFERENCE_POLICIES
    from simulators.policy_values import world_panel

    logs_stats = LoggedItemStats(np.ones(500), np.full(500, 4.0), None, None, None)
    panel = world_panel(logs_stats)
    assert list(panel) == ["uniform", "popularity", "greedy", *REFERENCE_POLICIES]
    assert [name for name, p in panel.items() if p.needs_user_state] == ["myopic-oracle", "farsighted-oracle"]
