"""Risk of the return distribution (SNTIS CDF, CVaR, quantiles) and the ranking rule."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.ope.base import Estimate
from evaluation.ope.risk import (
    ReturnDistribution,
    conditional_value_at_risk,
    estimate_risk,
    weighted_mean,
    weighted_quantile,
)
from evaluation.ranking import Candidate, rank_candidates


def _one(fn, returns, weights, *args):
    return float(fn(np.asarray(returns, float)[None], np.asarray(weights, float)[None], *args)[0])


def test_hand_case_cdf_cvar_and_quantiles():
    returns, weights = [3.0, 0.0, 2.0, 1.0], [0.0, 2.0, 1.0, 1.0]  # masses 0.5 at 0, 0.25 at 1 and 2, 0 at 3
    dist = ReturnDistribution.from_weights(np.array(returns), np.array(weights))
    np.testing.assert_allclose(dist.support, [0, 1, 2, 3])
    np.testing.assert_allclose(dist.cdf, [0.5, 0.75, 1.0, 1.0])
    np.testing.assert_allclose(dist.at([-1.0, 0.0, 0.5, 2.0, 9.0]), [0.0, 0.5, 0.5, 1.0, 1.0])
    assert _one(weighted_mean, returns, weights) == pytest.approx(0.75)
    assert _one(conditional_value_at_risk, returns, weights, 0.5) == pytest.approx(0.0)
    # The worst 75%: all of the mass at 0 and the mass at 1: (0.5 * 0 + 0.25 * 1) / 0.75.
    assert _one(conditional_value_at_risk, returns, weights, 0.75) == pytest.approx(1 / 3)
    assert _one(conditional_value_at_risk, returns, weights, 1.0) == pytest.approx(0.75)  # the mean
    assert _one(weighted_quantile, returns, weights, 0.25) == 0.0
    assert _one(weighted_quantile, returns, weights, 0.5) == 0.0
    assert _one(weighted_quantile, returns, weights, 0.6) == 1.0
    # The atom straddling alpha contributes only its share below alpha: worst 75% of {0, 10} is 0 and half of 10.
    assert _one(conditional_value_at_risk, [0.0, 10.0], [1.0, 1.0], 0.75) == pytest.approx(2.5 / 0.75)


def test_cdf_is_a_distribution_and_cvar_never_exceeds_the_mean():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        returns = rng.integers(0, 6, n).astype(float)
        weights = rng.exponential(size=n) * (rng.random(n) < 0.7)
        weights[0] += 0.1  # not all zero
        dist = ReturnDistribution.from_weights(returns, weights)
        assert np.all(np.diff(dist.cdf) >= 0) and dist.cdf[-1] == 1.0 and dist.cdf[0] >= 0.0
        mean = _one(weighted_mean, returns, weights)
        for a in (0.05, 0.1, 0.3, 0.7):
            cvar = _one(conditional_value_at_risk, returns, weights, a)
            assert returns.min() - 1e-12 <= cvar <= mean + 1e-9
            assert cvar <= _one(weighted_quantile, returns, weights, a) + 1e-9  # the tail lies below VaR


def test_sntis_recovers_the_evaluation_policys_distribution():
    """One-step episodes of a two-armed bandit: the truth of P(G = 0) under pi_e is known exactly."""
    rng = np.random.default_rng(1)
    n, pay = 10_000, np.array([0.2, 0.6])
    logger, target = np.array([0.5, 0.5]), np.array([0.1, 0.9])
    action = rng.choice(2, size=n, p=logger)
    returns = rng.binomial(1, pay[action]).astype(float)
    weights = target[action] / logger[action]
    result = estimate_risk(returns, weights, n_bootstrap_samples=50)
    truth_zero = float(target @ (1 - pay))  # 0.44
    assert result.policy.at(0.0) == pytest.approx(truth_zero, abs=0.02)  # 3 standard errors
    assert result.logged.at(0.0) == pytest.approx(float(logger @ (1 - pay)), abs=0.02)
    mean = result.measure("mean").policy
    assert mean.lower <= float(target @ pay) <= mean.upper
    assert result.measure("CVaR 30%").policy.value == pytest.approx(0.0)  # 44% of the returns are 0
    assert result.measure("median").policy.value == 1.0
    assert result.measure("lower quartile").logged.value == 0.0
    assert result.ess == pytest.approx(n / float(target**2 @ (1 / logger) / 1.0), rel=0.05)


def test_estimate_risk_refuses_bad_input_naming_it():
    with pytest.raises(
        ValueError, match=r"weights\[1\] = -1.0 is not a finite non-negative number \(trajectory 1"
    ):
        estimate_risk(np.array([1.0, 2.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"returns\[0\] = nan"):
        estimate_risk(np.array([np.nan, 2.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="weights are all zero"):
        estimate_risk(np.array([1.0, 2.0]), np.zeros(2))
    with pytest.raises(ValueError, match="shape mismatch"):
        estimate_risk(np.array([1.0, 2.0]), np.ones(3))
    with pytest.raises(ValueError, match="cvar_alphas"):
        estimate_risk(np.array([1.0, 2.0]), np.ones(2), cvar_alphas=(0.0,))


def _estimate(value: float, lower: float, upper: float) -> Estimate:
    return Estimate(name="seq-Switch-DR", value=value, lower=lower, upper=upper, alpha=0.05)


def test_ranking_orders_by_the_lower_bound_and_recommends_only_a_trusted_winner():
    logged = Estimate(name="logged", value=1.0, lower=0.9, upper=1.1, alpha=0.05)
    # B has the best point estimate but a wide interval; A is surely better than the logger.
    a = Candidate(name="A", estimate=_estimate(1.4, 1.2, 1.6))
    b = Candidate(name="B", estimate=_estimate(1.8, 0.7, 2.9))
    c = Candidate(name="C", estimate=_estimate(0.8, 0.6, 1.0))
    ranking = rank_candidates([c, b, a], logged=logged, estimator="seq-Switch-DR", reason="test")
    assert [x.name for x in ranking.candidates] == ["A", "B", "C"]
    assert ranking.recommended == "A" and ranking.recommendation.startswith("Deploy A")
    # A distrusted winner is never recommended; the next trusted one above the logger would be.
    a_bad = Candidate(name="A", estimate=a.estimate, issues=("effective sample size 3 < 100",))
    ranking = rank_candidates([a_bad, b, c], logged=logged, estimator="seq-Switch-DR", reason="test")
    assert ranking.recommended is None and "does not trust" in ranking.recommendation
    ranking = rank_candidates([b, c], logged=logged, estimator="seq-Switch-DR", reason="test")
    assert ranking.recommended is None and ranking.recommendation.startswith("Deploy none: no candidate")
    with pytest.raises(ValueError, match="names must be unique"):
        rank_candidates([a, a], logged=logged, estimator="x", reason="")
    with pytest.raises(ValueError, match="non-empty"):
        rank_candidates([], logged=logged, estimator="x", reason="")
