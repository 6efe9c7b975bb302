"""The world-knowing reference policies: they see only the observation, act deterministically, track
the hidden state, and rank between the log-based greedy policy and the oracles."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.errors import ArgumentError
from recsim_env.policies import (
    REFERENCE_POLICIES,
    BeliefConfig,
    FarsightedOracle,
    FilterFarsightedPolicy,
    FilterMyopicPolicy,
    GreedyPolicy,
    LoggedItemStats,
    MyopicOracle,
    UniformPolicy,
    WorldFilter,
    act_slates,
    reference_policy,
)
from recsim_env.rollout import rollout
from recsim_env.world import UserWorld


@pytest.fixture(scope="module")
def world():
    return UserWorld()


def _play(policy, steps: int, num_envs: int = 8, seed: int = 0, **env_kwargs):
    """(observation, hidden state, live rows) of `policy` acting for `steps` steps. Rows whose episode
    just ended are not live: the env shows their final observation, and their next action is ignored."""
    env = SeqRecVectorEnv(num_envs=num_envs, slate_size=policy.slate_size, **env_kwargs)
    obs, _ = env.reset(seed=seed)
    live = np.ones(num_envs, dtype=bool)
    for _ in range(steps):
        yield obs, env.user_state.rows(np.arange(num_envs)), live  # a copy: the env mutates its own
        slates = act_slates(policy, obs, user_state=env.user_state)
        obs, _, terminated, truncated, _ = env.step(slates[:, 0] if policy.slate_size == 1 else slates)
        live = ~(terminated | truncated)


@pytest.mark.parametrize("policy_class", [FilterMyopicPolicy, FilterFarsightedPolicy])
@pytest.mark.parametrize("slate_size", [1, 3])
def test_slates_distributions_and_probabilities_have_the_documented_shapes(world, policy_class, slate_size):
    policy = policy_class(world, slate_size=slate_size)
    assert policy.name in REFERENCE_POLICIES and not policy.needs_user_state
    for obs, _, _ in _play(policy, 4, num_envs=5):
        slates = act_slates(policy, obs)
        assert slates.shape == (5, slate_size) and slates.dtype.kind == "i"
        assert np.all((slates >= 0) & (slates < world.n_items))
        assert all(len(set(row)) == slate_size for row in slates.tolist())
        distribution = policy.action_distribution(obs)
        assert distribution.shape == (5, world.n_items)
        np.testing.assert_array_equal(distribution.argmax(axis=1), slates[:, 0])
        np.testing.assert_array_equal(distribution.sum(axis=1), 1.0)
        p = policy.click_probabilities(obs)
        assert p.shape == (5, world.n_items) and np.all((p > 0) & (p < 1))


def test_policies_are_deterministic_and_ignore_the_seed(world):
    policy = FilterFarsightedPolicy(world)
    obs, _, _ = next(iter(_play(policy, 1)))
    policy.seed(1)
    a = policy.act(obs)
    policy.seed(2)
    np.testing.assert_array_equal(a, policy.act(obs))
    np.testing.assert_array_equal(a, policy.act(obs, deterministic=True))
    first = rollout(policy, n_episodes=4, seed=3, num_envs=4, max_steps=10)
    again = rollout(FilterFarsightedPolicy(world), n_episodes=4, seed=3, num_envs=4, max_steps=10)
    assert first == again


def test_the_posterior_of_a_row_does_not_depend_on_the_other_rows(world):
    world_filter = WorldFilter(world)
    obs, _, _ = list(_play(FilterMyopicPolicy(world), 12, num_envs=6))[-1]
    together = world_filter.click_probabilities(obs)
    alone = world_filter.click_probabilities({key: value[2:3] for key, value in obs.items()})
    np.testing.assert_allclose(together[2:3], alone, rtol=1e-10)


def test_the_posterior_concentrates_on_the_hidden_interest(world):
    """After 15 steps the posterior mean points at the user's interest far closer than even the best
    category centroid of the prior does."""
    world_filter = WorldFilter(world)
    *_, (obs, state, _) = _play(FilterMyopicPolicy(world), 15, num_envs=32)
    belief = world_filter.posterior(obs)
    starts = np.flatnonzero(np.r_[True, np.diff(belief.owner) != 0])
    mean = np.add.reduceat(belief.weights[:, None] * belief.mean, starts)
    prior = world_filter.prior_mean[np.argmax(world_filter.prior_mean @ state.interest.T, axis=0)]

    def cosine_distance(x):
        return np.median(1.0 - (x * state.interest).sum(axis=1) / np.linalg.norm(x, axis=1))

    assert cosine_distance(mean) < 0.05 < cosine_distance(prior)


@pytest.mark.parametrize("sessions, history_len", [(1, 64), (2, 64)])
def test_satiation_and_satisfaction_are_exact_when_the_window_holds_the_episode(world, sessions, history_len):
    world_filter = WorldFilter(world)
    steps = 0
    for obs, state, live in _play(
        FilterMyopicPolicy(world), 20, sessions_per_episode=sessions, max_steps=6, history_len=history_len
    ):
        belief = world_filter.posterior(obs)
        np.testing.assert_allclose(belief.satiation[live], state.satiation[live], atol=1e-5)
        np.testing.assert_allclose(belief.satisfaction[live], state.satisfaction[live], atol=1e-5)
        steps += live.sum()
    assert steps > 100


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The Mann-Whitney AUC (scores without ties)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores)] = np.arange(1, len(scores) + 1)
    positives = labels > 0
    n_pos = positives.sum()
    return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(labels) - n_pos))


def test_the_click_auc_beats_a_modest_bound_on_uniform_recommendations(world):
    world_filter = WorldFilter(world)
    env = SeqRecVectorEnv(num_envs=100, sessions_per_episode=2, max_steps=15)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    predicted, clicks = [], []
    for _ in range(25):
        action = rng.integers(0, world.n_items, size=100)
        predicted.append(world_filter.predict(world_filter.posterior(obs), action[:, None])[0][:, 0])
        obs, _, _, _, info = env.step(action)
        clicks.append(info["feedback"][:, 0])
    assert _auc(np.concatenate(clicks), np.concatenate(predicted)) > 0.74


@pytest.mark.parametrize(
    "env_kwargs",
    [
        {"user_features": True},
        {"user_features": False},
        {"history_len": 7},
        {"history_len": 50, "slate_size": 2},
        {"sessions_per_episode": 3, "max_steps": 10},
        {"sessions_per_episode": 2, "max_steps": 8, "history_len": 5, "slate_size": 3},
    ],
)
def test_filter_policies_act_in_every_setting_and_beat_uniform(world, env_kwargs):
    env_kwargs = {"max_steps": 20, **env_kwargs}
    slate_size = env_kwargs.get("slate_size", 1)
    runs = {
        policy.name: rollout(policy, n_episodes=8, seed=0, num_envs=8, **env_kwargs)
        for policy in (FilterMyopicPolicy(world, slate_size), UniformPolicy(world.n_items, slate_size))
    }
    assert runs["filter-myopic"].episodes == 8
    assert runs["filter-myopic"].click_rate > runs["uniform"].click_rate + 0.2


def test_user_features_sharpen_the_belief(world):
    world_filter = WorldFilter(world)
    env = SeqRecVectorEnv(num_envs=32, user_features=True)
    obs, _ = env.reset(seed=0)
    without = {key: value for key, value in obs.items() if key != "user_features"}
    with_features = world_filter.posterior(obs)
    plain = world_filter.posterior(without)
    trace = [np.trace(b.cov, axis1=1, axis2=2) @ b.weights / 32 for b in (with_features, plain)]
    assert trace[0] < trace[1]


@pytest.mark.slow
def test_farsighted_beats_myopic_beats_greedy(world):
    from recsim_env.world.logging import log_world

    greedy = GreedyPolicy(
        LoggedItemStats.from_logs(log_world("uniform", steps=20_000, seed=0, progress=False))
    )
    returns = {
        policy.name: rollout(policy, n_episodes=128, seed=1).mean_return
        for policy in (greedy, FilterMyopicPolicy(world), FilterFarsightedPolicy(world))
    }
    assert returns["filter-farsighted"] > returns["filter-myopic"] + 3 > returns["greedy"] + 6


def test_reference_policy_builds_each_known_name(world):
    for name, cls in REFERENCE_POLICIES.items():
        policy = reference_policy(name, world, slate_size=2)
        assert isinstance(policy, cls) and policy.name == name and policy.slate_size == 2
    assert {
        "myopic-oracle": MyopicOracle,
        "farsighted-oracle": FarsightedOracle,
    }.items() <= REFERENCE_POLICIES.items()


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda w: reference_policy("filter-greedy", w),
            r"^name: unknown reference policy 'filter-greedy'.*filter-myopic",
        ),
        (lambda w: reference_policy(3, w), r"^name: unknown reference policy 3"),
        (
            lambda w: reference_policy("filter-myopic", "world"),
            r"^world must be a recsim_env.world.UserWorld",
        ),
        (lambda w: FilterMyopicPolicy(object()), r"^world must be a recsim_env.world.UserWorld"),
        (lambda w: FilterMyopicPolicy(w, slate_size=0), r"^slate_size must be between 1"),
        (lambda w: FilterMyopicPolicy(w, slate_size=1.0), r"^slate_size must be an integer"),
        (lambda w: FilterFarsightedPolicy(w, weight=-1.0), r"^weight must lie in \[0, inf\]"),
        (lambda w: FilterFarsightedPolicy(w, weight="0.5"), r"^weight must be a real number"),
        (lambda w: FilterMyopicPolicy(w, belief={"drift": False}), r"^belief must be a BeliefConfig"),
        (lambda w: BeliefConfig(drift=1), r"^BeliefConfig.drift must be True or False"),
    ],
)
def test_bad_arguments_raise_argument_errors_naming_them(world, build, match):
    with pytest.raises(ArgumentError, match=match):
        build(world)


def test_bad_observations_raise_argument_errors_naming_the_key(world):
    policy = FilterMyopicPolicy(world)
    obs, _, _ = next(iter(_play(policy, 1, num_envs=2)))
    bad = [
        ({k: v for k, v in obs.items() if k != "gap_days"}, r"^obs: missing key 'gap_days'"),
        ({**obs, "feedback": obs["feedback"][:, :, :3]}, r"^obs\['feedback'\] must have shape"),
        ({**obs, "item_ids": obs["item_ids"] + world.n_items}, r"^obs\['item_ids'\] must lie in"),
        (
            {**obs, "item_ids": obs["item_ids"].astype(float)},
            r"^obs\['item_ids'\] must be a \[N, L\] integer",
        ),
        (
            {**obs, "user_features": np.zeros((2, 3), dtype=np.float32)},
            r"^obs\['user_features'\] must have shape",
        ),
        ([obs], r"^obs must be a dict"),
    ]
    for value, match in bad:
        with pytest.raises(ArgumentError, match=match):
            policy.act(value)
