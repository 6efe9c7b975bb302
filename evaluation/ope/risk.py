"""Risk of the return distribution under an evaluation policy: CDF, CVaR and quantiles from logged trajectories.

Follows SCOPE-RL's cumulative distribution OPE (Kiyohara et al. 2023; Chandak et al. 2021, "Universal
Off-Policy Evaluation"; Huang et al. 2021, "Off-Policy Risk Assessment in Contextual Bandits"). With
trajectory returns `G_i = sum_t gamma^t r^i_t` and trajectory-wise importance weights
`w_i = prod_t pi_e(a^i_t | s^i_t) / pi_b(a^i_t | s^i_t)`, the self-normalised trajectory-wise importance
sampling (SNTIS) estimate of the return's CDF is

    F_hat(m) = sum_i w_i 1{G_i <= m} / sum_i w_i

evaluated on the logged returns themselves (SCOPE-RL's `use_observations_as_reward_scale`). It is a
distribution by construction: non-decreasing, 0 below the smallest return and 1 at the largest. With every
`w_i = 1` it is the logged policy's empirical CDF. From it:

- the `q`-quantile (value at risk) `VaR_q = min {m : F_hat(m) >= q}`; the lower quartile is `VaR_0.25`;
- the conditional value at risk, the mean of the worst `alpha` share of returns,
  `CVaR_alpha = (1 / alpha) * integral_0^alpha F_hat^{-1}(u) du`, where the atom that straddles `alpha`
  contributes only the part of its mass below `alpha` (so `CVaR_alpha <= mean` always).

SCOPE-RL approximates the integral on a grid of return values; here it is exact for the discrete `F_hat`.
Every function takes a leading replicate axis, so the same code gives the point estimate and each bootstrap
replicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.ope.base import Estimate, bootstrap_interval
from evaluation.ope.checks import FeedbackError, check_bootstrap_arguments, first_index, numeric_array
from recsim_env.checks import check_real
from recsim_env.errors import ArgumentError

DEFAULT_CVAR_ALPHAS = (0.1, 0.3)
"""Tail shares of the CVaR rows a report shows."""
QUANTILE_TOLERANCE = 1e-12
"""Slack on `F_hat(m) >= q`, so rounding in the cumulative sum never skips the atom that reaches q."""


def _sorted_masses(returns: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns sorted along the last axis and their self-normalised masses `w_i / sum_j w_j` `[B, n]`."""
    order = np.argsort(returns, axis=-1, kind="stable")
    sorted_returns = np.take_along_axis(returns, order, axis=-1)
    sorted_weights = np.take_along_axis(weights, order, axis=-1)
    total = sorted_weights.sum(axis=-1, keepdims=True)
    return sorted_returns, sorted_weights / np.where(total > 0, total, 1.0)


def weighted_mean(returns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`sum_i w_i G_i / sum_i w_i` over the last axis (the mean of `F_hat`; trajectory-wise weighted IS)."""
    total = weights.sum(axis=-1)
    return (weights * returns).sum(axis=-1) / np.where(total > 0, total, 1.0)


def weighted_quantile(returns: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """`VaR_q = min {G_j : F_hat(G_j) >= q}` over the last axis, for q in (0, 1]."""
    sorted_returns, mass = _sorted_masses(returns, weights)
    reached = np.cumsum(mass, axis=-1) >= q - QUANTILE_TOLERANCE
    reached[..., -1] = True  # F_hat ends at 1
    return np.take_along_axis(sorted_returns, np.argmax(reached, axis=-1)[..., None], axis=-1)[..., 0]


def conditional_value_at_risk(returns: np.ndarray, weights: np.ndarray, alpha: float) -> np.ndarray:
    """`CVaR_alpha = (1 / alpha) * sum_j min(p_j, max(alpha - F_{j-1}, 0)) G_(j)` over the last axis.

    `G_(j)` are the sorted returns, `p_j` their masses and `F_{j-1}` the mass below atom j: the worst
    `alpha` of the probability mass, averaged.
    """
    sorted_returns, mass = _sorted_masses(returns, weights)
    below = np.cumsum(mass, axis=-1) - mass
    taken = np.clip(alpha - below, 0.0, mass)
    return (taken * sorted_returns).sum(axis=-1) / alpha


@dataclass(frozen=True, kw_only=True, eq=False)
class ReturnDistribution:
    """A discrete distribution of trajectory returns: its atoms and their cumulative probabilities."""

    support: np.ndarray
    """`[m]` distinct returns, ascending."""
    cdf: np.ndarray
    """`[m]` `F(support[j])`: non-decreasing, the last entry 1."""

    @classmethod
    def from_weights(cls, returns: np.ndarray, weights: np.ndarray) -> ReturnDistribution:
        """The SNTIS distribution of `returns` `[n]` under `weights` `[n]` (not all zero)."""
        support, inverse = np.unique(returns, return_inverse=True)
        mass = np.bincount(inverse.ravel(), weights=weights, minlength=len(support))
        cdf = np.cumsum(mass / mass.sum())
        cdf[-1] = 1.0  # exact, despite rounding
        return cls(support=support, cdf=np.minimum(cdf, 1.0))

    def at(self, m: np.ndarray | float) -> np.ndarray:
        """`F(m)` for any return values `m` (a right-continuous step function, 0 below the support)."""
        index = np.searchsorted(self.support, m, side="right")
        return np.where(index > 0, self.cdf[np.maximum(index - 1, 0)], 0.0)


@dataclass(frozen=True, kw_only=True, eq=False)
class RiskMeasure:
    """One risk function of the return (e.g. CVaR at 10%) for the evaluation and the logged policy."""

    name: str
    """"mean", "CVaR 10%", "lower quartile", "median"."""
    policy: Estimate
    """The evaluation policy's SNTIS estimate with its bootstrap interval over trajectories."""
    logged: Estimate
    """The logged policy's empirical value with its bootstrap interval."""


@dataclass(frozen=True, kw_only=True, eq=False)
class RiskResult:
    """The return distribution of an evaluation policy estimated from logged trajectories, and the logger's."""

    policy: ReturnDistribution
    """SNTIS estimate of the evaluation policy's return distribution."""
    logged: ReturnDistribution
    """Empirical distribution of the logged returns."""
    measures: tuple[RiskMeasure, ...]
    """Mean, CVaR at each alpha, lower quartile and median."""
    ess: float
    """Effective sample size of the trajectory-wise weights, (sum w)^2 / sum w^2."""
    n_trajectories: int
    """Trajectories (sessions) in the data."""
    max_weight_share: float
    """The largest single trajectory's share of the total weight."""

    def measure(self, name: str) -> RiskMeasure:
        """The measure called `name`."""
        for m in self.measures:
            if m.name == name:
                return m
        raise ArgumentError(f"name: no risk measure {name!r}; known: {[m.name for m in self.measures]}")


def _label(alpha: float) -> str:
    return f"CVaR {100 * alpha:g}%"


def estimate_risk(
    returns: np.ndarray,
    weights: np.ndarray,
    *,
    cvar_alphas: Sequence[float] = DEFAULT_CVAR_ALPHAS,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int = 0,
) -> RiskResult:
    """Estimate the return distribution and its risk functions under the evaluation policy (SNTIS).

    Args:
        returns: Trajectory returns `[n]`, finite.
        weights: Trajectory-wise importance weights `[n]`, finite, non-negative, not all zero.
        cvar_alphas: Tail shares of the CVaR rows, each in (0, 1].
        alpha: Significance level of the bootstrap intervals (over trajectories).
        n_bootstrap_samples: Bootstrap replicates per interval.
        random_state: Seed of the bootstrap.

    Raises:
        FeedbackError: for bad `returns` / `weights` (named, with the first bad trajectory, 0-based).
        ArgumentError: for a bad hyperparameter.
    """
    check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
    if isinstance(cvar_alphas, str) or not isinstance(cvar_alphas, Sequence) or not cvar_alphas:
        raise ArgumentError("cvar_alphas: expected a non-empty sequence of tail shares in (0, 1]")
    alphas = tuple(check_real("cvar_alphas", a, low=0.0, high=1.0, low_open=True) for a in cvar_alphas)
    g = numeric_array("returns", returns, allow_bool=True)
    w = numeric_array("weights", weights)
    if g.ndim != 1 or g.shape[0] == 0:
        raise FeedbackError(f"returns must be a non-empty 1-dimensional array [n], got shape {g.shape}")
    if w.shape != g.shape:
        raise FeedbackError(f"weights has shape {w.shape} but returns has {g.shape} (shape mismatch)")
    for name, arr, bad in (
        ("returns", g, ~np.isfinite(g)),
        ("weights", w, ~(np.isfinite(w) & (w >= 0))),
    ):
        if bad.any():
            (i,) = first_index(bad)
            raise FeedbackError(
                f"{name}[{i}] = {float(arr[i])!r} is not a finite{' non-negative' if name == 'weights' else ''} "
                f"number (trajectory {i}, 0-based)"
            )
    if not w.sum() > 0:
        raise FeedbackError(
            "weights are all zero: the evaluation policy gives probability 0 to every logged trajectory"
        )
    ones = np.ones_like(g)
    functions = [("mean", weighted_mean)]
    functions += [(_label(a), lambda r, v, a=a: conditional_value_at_risk(r, v, a)) for a in alphas]
    functions += [
        ("lower quartile", lambda r, v: weighted_quantile(r, v, 0.25)),
        ("median", lambda r, v: weighted_quantile(r, v, 0.5)),
    ]
    boot = dict(alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state)
    measures = []
    for name, fn in functions:
        pair = []
        for kind, v in (("policy", w), ("logged", ones)):
            ci = bootstrap_interval(
                {"returns": g, "weights": v}, lambda t, fn=fn: fn(t["returns"], t["weights"]), **boot
            )
            value = float(fn(g[None], v[None])[0])
            # A percentile interval of a quantile may exclude the full-data value; widen to contain it.
            pair.append(
                Estimate(
                    name=f"{name} ({kind})",
                    value=value,
                    lower=min(ci["lower"], value),
                    upper=max(ci["upper"], value),
                    alpha=alpha,
                )
            )
        measures.append(RiskMeasure(name=name, policy=pair[0], logged=pair[1]))
    squares = float((w**2).sum())
    return RiskResult(
        policy=ReturnDistribution.from_weights(g, w),
        logged=ReturnDistribution.from_weights(g, ones),
        measures=tuple(measures),
        ess=float(w.sum()) ** 2 / squares,
        n_trajectories=len(g),
        max_weight_share=float(w.max() / w.sum()),
    )


__all__ = [
    "DEFAULT_CVAR_ALPHAS",
    "ReturnDistribution",
    "RiskMeasure",
    "RiskResult",
    "conditional_value_at_risk",
    "estimate_risk",
    "weighted_mean",
    "weighted_quantile",
]
