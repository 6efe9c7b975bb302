"""Sequential estimators, FQE and `evaluate_sessions` on a sparse action distribution: the same estimates as its
dense form, without `[E, H, N]` arrays.

The FQE fits are short: over thousands of Adam steps the fit amplifies float32 rounding (the sparse targets are
summed in another order than the dense ones) as it would any 1e-6 perturbation of its inputs, so only a short
fit can be compared at a tight tolerance; the expectation itself is compared exactly for one fitted Q."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from evaluation.ope.checks import FeedbackError
from evaluation.ope.sequential import (
    PerDecisionImportanceSampling,
    SequentialDoublyRobust,
    WeightedDoublyRobust,
    WeightedPerDecisionImportanceSampling,
)
from evaluation.ope.sparse import SparseActionDist


def _episodes(n_episodes: int, horizon: int, n_actions: int, top: int, seed: int, state_dim: int = 4):
    """Random episodes of different lengths and a sparse policy with one row per step (episode-major)."""
    rng = np.random.default_rng(seed)
    rows = n_episodes * horizon
    items = np.argsort(rng.random((rows, n_actions)), axis=1)[:, :top]
    mass = rng.dirichlet(np.ones(top + 1), size=rows)
    dist = SparseActionDist.checked(items, mass[:, :top], mass[:, top], n_actions=n_actions)
    length = rng.integers(1, horizon + 1, size=n_episodes)
    mask = np.arange(horizon)[None, :] < length[:, None]
    # Half the logged actions are listed ones, so the listed and the rest branches both carry weight.
    listed = items.reshape(n_episodes, horizon, top)[:, :, 0]
    action = np.where(
        rng.random((n_episodes, horizon)) < 0.5, listed, rng.integers(0, n_actions, listed.shape)
    )
    episodes = {
        "reward": np.where(mask, rng.binomial(1, 0.1 + 0.05 * (action % 7)), 0).astype(float),
        "pscore": np.full((n_episodes, horizon), 1.0 / n_actions),
        "mask": mask,
        "action": action,
    }
    state = rng.normal(size=(n_episodes, horizon, state_dim))
    return episodes, dist, state


def _dense(dist: SparseActionDist, n_episodes: int) -> np.ndarray:
    return dist.dense()[:, :, 0].reshape(n_episodes, -1, dist.n_actions)


ESTIMATORS = (
    PerDecisionImportanceSampling(gamma=0.9),
    WeightedPerDecisionImportanceSampling(gamma=0.9),
    SequentialDoublyRobust(gamma=0.9),
    WeightedDoublyRobust(gamma=0.9),
    SequentialDoublyRobust(gamma=0.9, max_weight=20.0),
    SequentialDoublyRobust(gamma=0.9, horizon=3),
)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: f"{e.estimator_name}-{e.horizon}")
def test_sequential_estimators_read_a_sparse_dist_like_its_dense_form(estimator):
    episodes, dist, _ = _episodes(120, 5, 30, 4, seed=0)
    dense = _dense(dist, 120)
    q = np.random.default_rng(1).normal(size=dense.shape)
    boot = {"n_bootstrap_samples": 50, "random_state": 3}
    reference = estimator.estimate(**episodes, action_dist=dense, state_action_value_prediction=q, **boot)
    # The sparse rows with the dense Q, and with the two [E, H] values DR needs instead of Q.
    with_q = estimator.estimate(**episodes, action_dist=dist, state_action_value_prediction=q, **boot)
    q_logged = np.take_along_axis(q, episodes["action"][..., None], axis=2)[..., 0]
    pair = {"logged_action_value_prediction": q_logged, "state_value_prediction": (dense * q).sum(axis=2)}
    with_pair = estimator.estimate(**episodes, action_dist=dist, **pair, **boot)
    for got in (with_q, with_pair):
        for field in ("value", "lower", "upper"):
            assert getattr(got, field) == pytest.approx(getattr(reference, field), rel=1e-10, abs=1e-12)
    assert reference.value != pytest.approx(0.0)


def test_sparse_episode_inputs_are_checked():
    episodes, dist, _ = _episodes(10, 4, 12, 3, seed=2)
    dr = SequentialDoublyRobust()
    pair = {"logged_action_value_prediction": np.zeros((10, 4)), "state_value_prediction": np.zeros((10, 4))}
    with pytest.raises(FeedbackError, match=r"action_dist: .*one row per step, n \* H = 10 \* 4 = 40 rows"):
        dr.estimate_policy_value(**episodes, action_dist=dist.take(np.arange(39)), **pair)
    with pytest.raises(FeedbackError, match="given together"):
        dr.estimate_policy_value(
            **episodes, action_dist=dist, state_value_prediction=pair["state_value_prediction"]
        )
    with pytest.raises(FeedbackError, match="not both"):
        dr.estimate_policy_value(
            **episodes, action_dist=dist, state_action_value_prediction=np.zeros((10, 4, 12)), **pair
        )
    bad = episodes["action"].copy()
    bad[2, 0] = 12
    with pytest.raises(FeedbackError, match=r"action\[2, 0\].*outside the catalogue \[0, 12\)"):
        dr.estimate_policy_value(**{**episodes, "action": bad}, action_dist=dist, **pair)
    nan = pair["state_value_prediction"].copy()
    nan[3, 0] = np.nan
    with pytest.raises(FeedbackError, match=r"state_value_prediction\[3, 0\]"):
        dr.estimate_policy_value(**episodes, action_dist=dist, **{**pair, "state_value_prediction": nan})
    with pytest.raises(FeedbackError, match="state_action_value_prediction is required"):
        dr.estimate_policy_value(**episodes, action_dist=dist)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("factorised", [False, True], ids=["one-hot-head", "factorised-head"])
def test_fqe_sparse_expectation_is_exact_and_fits_like_dense(torch, factorised):
    from evaluation.ope.fqe import FittedQEvaluation, FQEConfig

    n_episodes, n_actions = 80, 25
    episodes, dist, state = _episodes(n_episodes, 4, n_actions, 3, seed=4)
    dense = _dense(dist, n_episodes)
    features = np.random.default_rng(5).normal(size=(n_actions, 3)) if factorised else None
    config = FQEConfig(gamma=0.9, n_iterations=4, n_steps_per_iteration=30, seed=0)
    sparse_fqe = FittedQEvaluation(config, action_features=features).fit(
        state=state, **episodes, action_dist=dist
    )
    dense_fqe = FittedQEvaluation(config, action_features=features).fit(
        state=state, **episodes, action_dist=dense
    )

    # For one fitted Q: the sparse expectation is sum_a pi(a) Q(s, a) over the whole catalogue.
    q = sparse_fqe.predict_q(state)
    q_logged, v_policy = sparse_fqe.predict_values(state, action=episodes["action"], action_dist=dist)
    np.testing.assert_allclose(v_policy, (q * dense).sum(axis=2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        q_logged, np.take_along_axis(q, episodes["action"][..., None], axis=2)[..., 0], rtol=1e-5, atol=1e-6
    )
    assert np.abs(v_policy).max() > 1e-3
    dense_values = sparse_fqe.predict_values(state, action=episodes["action"], action_dist=dense)
    np.testing.assert_allclose(dense_values[1], v_policy, rtol=1e-5, atol=1e-6)
    # Fitted on the sparse rows or the dense array: the same Q up to float32 rounding of the targets.
    assert sparse_fqe.estimate_policy_value() == pytest.approx(dense_fqe.estimate_policy_value(), rel=1e-5)
    np.testing.assert_allclose(q, dense_fqe.predict_q(state), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("factorised", [False, True], ids=["one-hot-head", "factorised-head"])
def test_evaluate_sessions_gives_a_sparse_dist_the_dense_estimates(torch, factorised):
    from evaluation.session_ope import evaluate_sessions

    n_episodes, n_actions = 150, 30
    episodes, dist, state = _episodes(n_episodes, 5, n_actions, 4, seed=6)
    features = np.random.default_rng(7).normal(size=(n_actions, 3)) if factorised else None
    run = {"state": state, **episodes, "item_features": features, "gamma": 0.95, "max_weight": 50.0}
    run |= {"fqe_steps": 30, "n_bootstrap_samples": 100}
    dense = evaluate_sessions(**run, action_dist=_dense(dist, n_episodes))
    sparse = evaluate_sessions(**run, action_dist=dist)
    assert [e.name for e in sparse.estimates] == [e.name for e in dense.estimates]
    assert len(dense.estimates) == 6
    for a, b in zip(sparse.estimates, dense.estimates, strict=True):
        for field in ("value", "lower", "upper"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-5, abs=1e-6), (a.name, field)
    assert sparse.ess == pytest.approx(dense.ess, rel=1e-12)
    assert sparse.risk is not None and dense.risk is not None
    for a, b in zip(sparse.risk.measures, dense.risk.measures, strict=True):
        assert a.name == b.name
        assert a.policy.value == pytest.approx(b.policy.value, rel=1e-12)
        assert a.policy.lower == pytest.approx(b.policy.lower, rel=1e-12)


def test_evaluate_sessions_at_100k_items_builds_no_episode_by_catalogue_array(torch):
    from evaluation.session_ope import evaluate_sessions

    n_episodes, horizon, n_actions = 200, 5, 100_000
    episodes, _, state = _episodes(n_episodes, horizon, 50, 10, seed=8)
    rng = np.random.default_rng(9)
    items = np.stack([rng.choice(n_actions, 10, replace=False) for _ in range(n_episodes * horizon)])
    dist = SparseActionDist.checked(items, np.full(items.shape, 0.08), n_actions=n_actions)
    episodes["action"] = np.where(
        rng.random(items.shape[0]) < 0.5, items[:, 0], rng.integers(0, n_actions, len(items))
    )
    episodes["action"] = episodes["action"].reshape(n_episodes, horizon)
    features = rng.normal(size=(n_actions, 3))
    dense_bytes = n_episodes * horizon * n_actions * 8  # one [E, H, N] float64 array: 800 MB
    tracemalloc.start()
    try:
        result = evaluate_sessions(
            state=state,
            **episodes,
            action_dist=dist,
            item_features=features,
            fqe_steps=10,
            n_bootstrap_samples=50,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(np.isfinite(e.value) for e in result.estimates) and len(result.estimates) == 6
    # numpy's allocations are traced (torch's are not; benchmarks/ope_report_large.py measures the RSS).
    assert peak < dense_bytes / 20, peak
