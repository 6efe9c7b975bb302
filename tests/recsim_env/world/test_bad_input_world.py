"""Hostile input to the world, its config, the reference policies and `rollout`: refused with
`ArgumentError` naming the argument, before anything is allocated or changed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from recsim_env.errors import ArgumentError
from recsim_env.policies import FarsightedOracle, GreedyPolicy, MyopicOracle, ReferencePolicy, UniformPolicy
from recsim_env.rollout import rollout
from recsim_env.world import UserWorld, WorldConfig

WORLD_CONFIG_BAD_FIELDS = [
    ({"seed": True}, r"^seed must be an integer, got True"),
    ({"seed": -1}, r"^seed must be at least 0"),
    ({"n_items": 2**63}, r"^n_items must be between 1 and 1,000,000"),
    ({"n_items": 1.5}, r"^n_items must be an integer"),
    ({"n_items": "500"}, r"^n_items must be an integer"),
    ({"n_categories": 0}, r"^n_categories must be between 1 and 500"),
    ({"n_users": 0}, r"^n_users must be between"),
    ({"embedding_dim": 0}, r"^embedding_dim must be between 1 and 1,024"),
    ({"history_len_at_start": -1}, r"^history_len_at_start must be between 0 and 10,000"),
    ({"history_len_at_start": 10**6}, r"^history_len_at_start must be between"),
    ({"satiation_step_decay": math.nan}, r"^satiation_step_decay must be finite"),
    ({"satisfaction_memory": 1.01}, r"^satisfaction_memory must lie in \[0, 1\]"),
    ({"satisfaction_carry_over": -0.5}, r"^satisfaction_carry_over must lie in \[0, 1\]"),
    ({"completion_noise": -1.0}, r"^completion_noise must lie in \[0, inf\]"),
    ({"category_spread": math.inf}, r"^category_spread must be finite"),
    ({"mean_duration_s": 0.0}, r"^mean_duration_s must lie in \(0, inf\]"),
    ({"click_bias": "high"}, r"^click_bias must be a real number"),
    ({"hate_penalty": None}, r"^hate_penalty must be a real number"),
    ({"n_items": 1_000_000, "embedding_dim": 1024}, r"^n_items, embedding_dim: the catalogue would hold"),
    ({"n_users": 10_000_000, "embedding_dim": 64}, r"^n_users, embedding_dim, n_categories: the population"),
]


@pytest.mark.parametrize("fields,match", WORLD_CONFIG_BAD_FIELDS, ids=[m for _, m in WORLD_CONFIG_BAD_FIELDS])
def test_world_config_refuses_bad_fields_naming_them(fields, match):
    with pytest.raises(ArgumentError, match=match):
        WorldConfig(**fields)


def test_world_config_stores_plain_numbers_and_validates_replace():
    config = WorldConfig(n_items=np.int64(50), affinity_weight=np.float32(3.0), clickbait_weight=2)
    assert type(config.n_items) is int and type(config.affinity_weight) is float
    assert config.clickbait_weight == 2.0 and WorldConfig(**dataclasses.asdict(config)) == config
    with pytest.raises(ArgumentError, match=r"^position_bias"):
        config.replace(position_bias=2.0)


def test_world_config_from_a_mapping_names_the_field_under_its_argument():
    with pytest.raises(ArgumentError, match=r"^world_config: unknown field\(s\) \['n_itemz'\]"):
        WorldConfig.from_mapping({"n_itemz": 3})
    with pytest.raises(ArgumentError, match=r"^cfg\.n_items must be"):
        WorldConfig.from_mapping({"n_items": -3}, name="cfg")
    with pytest.raises(ArgumentError, match=r"^world_config must be a WorldConfig or a dict"):
        WorldConfig.from_mapping([("n_items", 3)])


@pytest.fixture(scope="module")
def world():
    return UserWorld(WorldConfig(n_items=50, n_categories=5, n_users=20))


def _start(world, n=2):
    rng = np.random.default_rng(0)
    return world.initial_state(np.arange(n), rng.random((n, world.n_start_uniforms))).state


def test_user_world_refuses_a_config_that_is_not_one():
    with pytest.raises(ArgumentError, match=r"^config must be a WorldConfig or None"):
        UserWorld({"n_items": 3})


@pytest.mark.parametrize(
    "slates,match",
    [
        (np.array([[0, 50]]), r"^slates must have shape \[N, K\] with N = 2"),
        (np.array([[0], [50]]), r"^slates must hold item ids in \[0, 50\)"),
        (np.array([[0], [-1]]), r"^slates must hold item ids in \[0, 50\)"),
        (np.array([[0], [2**40]]), r"^slates must hold item ids"),
        (np.array([[0.0], [1.0]]), r"^slates must be a \[N, K\] integer array"),
        (np.array([0, 1]), r"^slates must be a \[N, K\] integer array"),
        (np.zeros((2, 51), dtype=np.int64), r"^slates must have shape \[N, K\] with N = 2 users and K <= 50"),
    ],
)
def test_respond_refuses_bad_slates_and_changes_nothing(world, slates, match):
    """The compiled step reads no bounds: an id outside the catalogue must never reach it."""
    state = _start(world)
    before = dataclasses.replace(
        state, **{f.name: getattr(state, f.name).copy() for f in dataclasses.fields(state)}
    )
    with pytest.raises(ArgumentError, match=match):
        world.respond(state, slates, np.full((2, world.n_step_uniforms), 0.5))
    for field in dataclasses.fields(state):
        np.testing.assert_array_equal(getattr(state, field.name), getattr(before, field.name))


def test_respond_refuses_uniforms_of_the_wrong_shape(world):
    with pytest.raises(ArgumentError, match=r"^uniforms must have shape \(2, 8\)"):
        world.respond(_start(world), np.array([[0], [1]]), np.full((2, 3), 0.5))


@pytest.mark.parametrize(
    "user_ids,match",
    [
        (np.array([0, 20]), r"^user_ids must lie in \[0, 20\)"),
        (np.array([-1, 0]), r"^user_ids must lie in \[0, 20\)"),
        (np.array([0.0, 1.0]), r"^user_ids must be a \[N\] integer array"),
    ],
)
def test_initial_state_refuses_users_outside_the_population(world, user_ids, match):
    with pytest.raises(ArgumentError, match=match):
        world.initial_state(user_ids, np.full((2, world.n_start_uniforms), 0.5))


# ---------------------------------------------------------------------------------------------------
# Reference policies and rollout
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: UniformPolicy(0), r"^n_items must be between"),
        (lambda: UniformPolicy(True), r"^n_items must be an integer"),
        (lambda: UniformPolicy(10, slate_size=11), r"^slate_size must be between 1 and 10"),
        (lambda: ReferencePolicy(10, slate_size=1.0), r"^slate_size must be an integer"),
        (lambda: MyopicOracle("world"), r"^world must be a recsim_env.world.UserWorld"),
        (lambda: FarsightedOracle(UserWorld(), weight=math.nan), r"^weight must be finite"),
    ],
)
def test_reference_policies_refuse_bad_arguments(make, match):
    with pytest.raises(ArgumentError, match=match):
        make()


def test_greedy_policy_refuses_a_negative_prior():
    from recsim_env.policies import LoggedItemStats

    stats = LoggedItemStats(np.ones(5), np.ones(5), None, None, None)
    with pytest.raises(ArgumentError, match=r"^prior_strength must lie in \[0, inf\]"):
        GreedyPolicy(stats, prior_strength=-1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_episodes": 0}, r"^n_episodes must be at least 1"),
        ({"n_episodes": 2.0}, r"^n_episodes must be an integer"),
        ({"n_episodes": 2, "seed": -1}, r"^seed must be at least 0"),
        ({"n_episodes": 2, "num_envs": 0}, r"^num_envs must be between"),
        ({"n_episodes": 2, "on_episode": 3}, r"^on_episode must be callable or None"),
        ({"n_episodes": 2, "deterministic": 1}, r"^deterministic must be a bool"),
    ],
)
def test_rollout_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        rollout(UniformPolicy(500), **kwargs)


def test_rollout_refuses_a_policy_outside_the_contract():
    with pytest.raises(
        ArgumentError, match=r"^policy must implement the recsim_env Policy contract.*lacks n_items"
    ):
        rollout(object(), n_episodes=1)


def test_item_popularity_of_a_large_population_is_summed_in_bounded_blocks(monkeypatch):
    import recsim_env.world.world as world_module

    world = UserWorld(WorldConfig(n_items=40, n_categories=4, n_users=300))
    whole = world.item_popularity()
    monkeypatch.setattr(world_module, "_POPULARITY_CHUNK", 1000)  # 25 users a block
    np.testing.assert_allclose(world.item_popularity(), whole, rtol=1e-12)
