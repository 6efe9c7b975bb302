"""The warm-start samplers: the default world's draws are unchanged, the catalogue-size-independent
rejection sampler draws from the documented distribution, and a 10^6-item world starts users
without a users x items table."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import stats

from recsim_env.errors import ArgumentError
from recsim_env.world import UserWorld, WorldConfig, warm_start
from recsim_env.world.config import MAX_ITEMS


def _exact_probabilities(world: UserWorld, user: int) -> np.ndarray:
    """P(i) ∝ exp(w_aff <u, e_i> + w_cb b_i) for the user's base interest (docs/world.md)."""
    cfg = world.config
    logits = cfg.affinity_weight * (world.user_interest[user] @ world.item_embeddings.T)
    logits = logits + cfg.clickbait_weight * world.item_clickbait
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _draw(world: UserWorld, user: int, n: int, seed: int = 0) -> np.ndarray:
    uniforms = np.random.default_rng(seed).random((n, world.n_start_uniforms))
    return world.initial_state(np.full(n, user), uniforms).history_items.ravel()


def _chi_square_p_value(items: np.ndarray, p: np.ndarray) -> float:
    observed = np.bincount(items, minlength=len(p))
    return stats.chisquare(observed, p * len(items)).pvalue


def test_the_default_world_keeps_the_table_sampler_and_its_draws():
    world = UserWorld()
    assert world.warm_start_sampler == "table"
    assert world.n_start_uniforms == world.config.history_len_at_start
    start = world.initial_state(np.arange(3), np.random.default_rng(0).random((3, 10)))
    # The draws of the code before the rejection sampler existed (the recorded figures' draws).
    assert start.history_items.tolist() == [
        [309, 130, 30, 16, 393, 454, 291, 358, 265, 465],
        [393, 1, 410, 22, 353, 81, 416, 277, 142, 219],
        [24, 71, 338, 317, 283, 171, 496, 491, 351, 320],
    ]


def test_auto_switches_to_rejection_above_the_documented_size():
    limit = warm_start.TABLE_SAMPLER_MAX_ITEMS
    assert UserWorld(WorldConfig(n_items=limit, n_users=10)).warm_start_sampler == "table"
    large = UserWorld(WorldConfig(n_items=limit + 1, n_users=10))
    assert large.warm_start_sampler == "rejection"
    assert large.start_values_per_user == large.n_start_uniforms < large.n_items
    forced = UserWorld(WorldConfig(n_items=50, n_users=10, warm_start_sampler="rejection"))
    assert forced.warm_start_sampler == "rejection"


def test_an_unknown_sampler_is_refused_naming_the_field():
    with pytest.raises(ArgumentError, match="warm_start_sampler"):
        WorldConfig(warm_start_sampler="gumbel")


@pytest.mark.parametrize(
    ("fields", "max_groups"),
    [
        ({"n_items": 120, "n_categories": 4}, warm_start.MAX_GROUPS),  # one item per group or so
        ({"n_items": 200, "n_categories": 2}, 8),  # 4 utility bands of one shell: 25 items per group
        ({"n_items": 200, "n_categories": 2}, 16),  # 2 shells x 4 bands
        ({"n_items": 150, "n_categories": 3, "affinity_weight": -3.0}, 12),  # the lower bound
    ],
)
def test_the_rejection_sampler_draws_the_documented_distribution(monkeypatch, fields, max_groups):
    monkeypatch.setattr(warm_start, "MAX_GROUPS", max_groups)
    world = UserWorld(WorldConfig(n_users=20, warm_start_sampler="rejection", **fields))
    for user in (0, 7):
        items = _draw(world, user, 20_000, seed=user)
        assert _chi_square_p_value(items, _exact_probabilities(world, user)) > 1e-3
    assert world.warm_start_fallbacks == 0


@pytest.mark.parametrize("affinity_weight", [4.0, -3.0, 12.0])
def test_the_proposal_times_the_acceptance_is_the_exact_distribution(monkeypatch, affinity_weight):
    """Rejection sampling is exact when q(i) >= p(i) for every item (up to one constant) and the
    tables hold the catalogue: checked item by item against P(i | u) for ten users."""
    monkeypatch.setattr(warm_start, "MAX_GROUPS", 24)
    world = UserWorld(
        WorldConfig(
            n_items=300,
            n_categories=3,
            n_users=30,
            affinity_weight=affinity_weight,
            warm_start_sampler="rejection",
        )
    )
    proposal = world._proposal
    group = np.repeat(np.arange(proposal.n_groups), np.diff(proposal.starts))
    for user in range(0, 30, 3):
        u = world.user_interest[user]
        phi = np.arccos(np.clip(proposal.anchors @ u, -1.0, 1.0))[proposal.shell_category]
        if affinity_weight >= 0:
            closest = np.maximum(0.0, np.maximum(phi - proposal.shell_high, proposal.shell_low - phi))
            bound = affinity_weight * np.cos(closest)
        else:
            bound = affinity_weight * np.cos(np.minimum(np.pi, phi + proposal.shell_high))
        log_q = proposal.group_top[group] + bound[proposal.group_shell[group]]
        dim = len(u)
        log_p = affinity_weight * (proposal.items[:, :dim] @ u) + proposal.items[:, dim]
        assert (log_p - log_q).max() <= 1e-9  # every acceptance probability is at most 1
        implied = np.zeros(world.n_items)
        implied[proposal.order] = np.exp(log_p - log_p.max())  # q * (p / q)
        np.testing.assert_allclose(implied / implied.sum(), _exact_probabilities(world, user), rtol=1e-9)


def test_a_user_whose_pool_runs_out_gets_the_exact_inverse_cdf():
    world = UserWorld(WorldConfig(n_items=150, n_categories=3, n_users=5, warm_start_sampler="rejection"))
    n, history_len = 20_000, world.config.history_len_at_start
    interest = np.repeat(world.user_interest[[2]], n, axis=0)
    reserve_only = np.random.default_rng(1).random((n, history_len))  # a pool of zero proposals
    draw = world._proposal.prepare(
        interest, reserve_only, history_len, world.config.affinity_weight, copy_rows=True
    ).run()
    assert draw.fallbacks == n and draw.proposals == draw.accepted == 0
    assert _chi_square_p_value(draw.items.ravel(), _exact_probabilities(world, 2)) > 1e-3
    # The copied rows are the drawn items' (the fallback path copies them too).
    np.testing.assert_array_equal(draw.embeddings, world.item_embeddings[draw.items])
    np.testing.assert_array_equal(draw.payload[0], world.item_quality[draw.items])
    np.testing.assert_array_equal(draw.payload[1], world.item_duration_s[draw.items])


def test_a_biased_sampler_would_fail_the_distribution_check():
    """The check above has power: the proposal alone (no acceptance step) is rejected."""
    world = UserWorld(WorldConfig(n_items=200, n_categories=2, n_users=5, warm_start_sampler="rejection"))
    proposal = world._proposal
    rng = np.random.default_rng(0)
    items = proposal.order[rng.integers(0, len(proposal.order), 20_000)]  # uniform over the catalogue
    assert _chi_square_p_value(items, _exact_probabilities(world, 0)) < 1e-6


def test_the_rejection_sampler_is_a_function_of_its_uniforms():
    world = UserWorld(WorldConfig(n_items=5_000, n_users=50))
    uniforms = np.random.default_rng(3).random((8, world.n_start_uniforms))
    users = np.arange(8)
    a = world.initial_state(users, uniforms)
    b = world.initial_state(users, uniforms)
    np.testing.assert_array_equal(a.history_items, b.history_items)
    np.testing.assert_array_equal(a.history_feedback, b.history_feedback)
    # Each user's draws use only that user's uniforms: a batch of one gives the same row.
    one = world.initial_state(users[5:6], uniforms[5:6])
    np.testing.assert_array_equal(one.history_items[0], a.history_items[5])
    assert ((a.history_items >= 0) & (a.history_items < world.n_items)).all()
    np.testing.assert_array_equal(a.history_feedback[..., 0], 1.0)  # warm-start items were clicked


def test_the_rejection_sampler_copies_out_the_rows_of_the_items_it_drew():
    world = UserWorld(WorldConfig(n_items=5_000, n_users=50))
    interest = world.user_interest[:16]
    uniforms = np.random.default_rng(4).random((16, world.n_start_uniforms))
    args = (interest, uniforms, world.config.history_len_at_start, world.config.affinity_weight)
    plain, copied = world._proposal.prepare(*args).run(), world._proposal.prepare(*args, copy_rows=True).run()
    np.testing.assert_array_equal(plain.items, copied.items)
    assert plain.embeddings is None and plain.proposals == copied.proposals
    np.testing.assert_array_equal(copied.embeddings, world.item_embeddings[copied.items])
    np.testing.assert_array_equal(copied.payload[0], world.item_quality[copied.items])
    np.testing.assert_array_equal(copied.payload[1], world.item_duration_s[copied.items])


def test_a_million_item_world_starts_users_without_a_users_by_items_table():
    world = UserWorld(WorldConfig(n_items=MAX_ITEMS, n_users=1_000))
    assert world.warm_start_sampler == "rejection"
    uniforms = np.random.default_rng(0).random((256, world.n_start_uniforms))
    world.initial_state(np.arange(2), uniforms[:2])  # compile
    tracemalloc.start()
    start = world.initial_state(np.arange(256), uniforms)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 * 2**20  # a [256, 10^6] float64 table alone would be 2 GiB
    assert start.history_items.shape == (256, world.config.history_len_at_start)
    assert world.warm_start_fallbacks == 0
