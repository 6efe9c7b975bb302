"""Sequential off-policy evaluation of one policy on logged sessions: PDIS, WPDIS, DR, WDR, Switch-DR, FQE, risk.

`evaluate_sessions` fits FQE (Le, Voloshin & Yue 2019) on the episodes, uses its Q as the model of the
doubly robust estimators (Jiang & Li 2016; Thomas & Brunskill 2016) and estimates the return distribution
(`evaluation.ope.risk`). Values are the expected discounted return of the first H steps of a session,
`E[sum_{t < H} gamma^t r_t]`, with each session's start state as logged. torch is imported only when FQE is fitted.

A large catalogue's policy is a `SparseActionDist` with one row per step (episode-major): the importance weights
read `pi_e(a_t | s_t)` from its rows, and FQE and the DR family take `E_{a ~ pi_e}[Q(s_t, a)]` from FQE's
linear head exactly (`evaluation.ope.fqe`), so nothing is `[E, H, N]`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.ope.base import Estimate, bootstrap_interval
from evaluation.ope.checks import FeedbackError
from evaluation.ope.risk import DEFAULT_CVAR_ALPHAS, RiskResult, estimate_risk
from evaluation.ope.sequential import (
    PerDecisionImportanceSampling,
    SequentialDoublyRobust,
    WeightedDoublyRobust,
    WeightedPerDecisionImportanceSampling,
    validate_episode_inputs,
)
from evaluation.ope.sparse import SparseActionDist
from recsim_env.checks import check_integer, check_real

SEQUENTIAL_NAMES = ("PDIS", "WPDIS", "seq-DR", "WDR", "seq-Switch-DR", "FQE")
"""Names of the sequential estimates in a report (distinct from the bandit estimators')."""


@dataclass(frozen=True, kw_only=True, eq=False)
class SequentialResult:
    """Sequential estimates of one policy's session return, the logged return, diagnostics and risk."""

    estimates: tuple[Estimate, ...]
    """One estimate per sequential estimator (`SEQUENTIAL_NAMES`), with its bootstrap interval over sessions."""
    behaviour: Estimate
    """The logged policy's value: the mean logged session return, with its bootstrap interval."""
    n_episodes: int
    """Sessions evaluated."""
    horizon: int
    """Steps of each session evaluated (its first H)."""
    gamma: float
    """Discount factor of the return."""
    max_weight: float
    """Switch-DR's threshold M on the cumulative importance weight."""
    ess: float
    """Effective sample size of the trajectory-wise importance weights (0 when they overflow)."""
    truncated_share: float
    """Share of sessions longer than the horizon (their later steps are not evaluated)."""
    warnings: tuple[str, ...]
    """Diagnostics the reader must see (few effective sessions, an estimator that could not run, ...)."""
    risk: RiskResult | None
    """The return distribution and its risk functions, or None when the trajectory weights are unusable."""

    def estimate(self, name: str) -> Estimate | None:
        """The estimate called `name`, or None."""
        return next((e for e in self.estimates if e.name == name), None)


def evaluate_sessions(
    *,
    state: np.ndarray,
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray | SparseActionDist,
    mask: np.ndarray,
    item_features: np.ndarray | None = None,
    gamma: float = 1.0,
    max_weight: float = 100.0,
    fqe_iterations: int | None = None,
    fqe_steps: int = 200,
    cvar_alphas: Sequence[float] = DEFAULT_CVAR_ALPHAS,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int = 0,
    min_ess: float = 100.0,
    truncated_share: float = 0.0,
    progress: bool = False,
) -> SequentialResult:
    """Run the sequential estimators, FQE and the risk estimates on episodes `[E, H]`.

    Args:
        state: State features `[E, H, D]` (`evaluation.sessions.session_state_features`).
        reward, action, pscore, mask: Logged episodes `[E, H]`.
        action_dist: The evaluation policy's probabilities `[E, H, N]`, or a `SparseActionDist` with one row
            per step, episode-major (`E * H` rows: row `e * H + t` is episode e's step t).
        item_features: `[N, F]` features for FQE's factorised head (`evaluation.sessions.item_features`).
        gamma: Discount factor.
        max_weight: Switch-DR's threshold M (`SequentialDoublyRobust(max_weight=M)`).
        fqe_iterations: FQE's Bellman backups (default: the horizon, exact for a finite horizon).
        fqe_steps: FQE's gradient steps per backup.
        cvar_alphas: Tail shares of the CVaR rows.
        alpha: Significance level of all intervals.
        n_bootstrap_samples: Bootstrap replicates per interval.
        random_state: Seed of FQE and every bootstrap.
        min_ess: Warn below this effective number of sessions.
        truncated_share: Share of sessions longer than H, for the report.
        progress: Show FQE's progress bar.
    """
    from evaluation.ope.fqe import FittedQEvaluation, FQEConfig

    gamma = check_real("gamma", gamma, low=0.0, high=1.0)
    max_weight = check_real("max_weight", max_weight, low=0.0, low_open=True, allow_inf=True)
    n_episodes, horizon = np.shape(reward)
    if fqe_iterations is None:
        fqe_iterations = horizon
    fqe_iterations = check_integer("fqe_iterations", fqe_iterations, low=1)
    kw = dict(reward=reward, pscore=pscore, mask=mask, action=action, action_dist=action_dist)
    boot = dict(alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state)
    data = validate_episode_inputs(**kw)
    discount = gamma ** np.arange(horizon, dtype=np.float64)
    returns = (data.reward * discount).sum(axis=1)  # [E]
    ci = bootstrap_interval({"return": returns}, lambda t: t["return"].mean(axis=-1), **boot)
    behaviour = Estimate(
        name="logged", value=float(returns.mean()), lower=ci["lower"], upper=ci["upper"], alpha=alpha
    )

    warnings: list[str] = []
    fqe = FittedQEvaluation(
        FQEConfig(
            gamma=gamma,
            n_iterations=fqe_iterations,
            n_steps_per_iteration=fqe_steps,
            seed=random_state,
            progress=progress,
        ),
        action_features=item_features,
    )
    fqe_estimate = fqe.estimate(state=state, **kw, **boot)
    if isinstance(action_dist, SparseActionDist):
        q_logged, v_policy = fqe.predict_values(state, action=action, action_dist=action_dist)  # [E, H] each
        values = {"logged_action_value_prediction": q_logged, "state_value_prediction": v_policy}
    else:
        values = {"state_action_value_prediction": fqe.predict_q(state)}  # [E, H, N]
    estimators = [
        (PerDecisionImportanceSampling(gamma=gamma), {}),
        (WeightedPerDecisionImportanceSampling(gamma=gamma), {}),
        (
            SequentialDoublyRobust(gamma=gamma, estimator_name="seq-DR"),
            values,
        ),
        (WeightedDoublyRobust(gamma=gamma), values),
        (
            SequentialDoublyRobust(gamma=gamma, max_weight=max_weight, estimator_name="seq-Switch-DR"),
            values,
        ),
    ]
    estimates = []
    for est, extra in estimators:
        try:
            estimates.append(est.estimate(**kw, **extra, **boot))
        except FeedbackError as err:  # cumulative weights overflow on long horizons
            warnings.append(f"{est.estimator_name} could not be computed: {err}")
    estimates.append(
        Estimate(
            name="FQE",
            value=fqe_estimate.value,
            lower=fqe_estimate.lower,
            upper=fqe_estimate.upper,
            alpha=alpha,
        )
    )

    with np.errstate(over="ignore", invalid="ignore"):
        weights = np.prod(data.ratio, axis=1)  # [E] trajectory-wise weight (ratio = 1 after the end)
    risk = None
    ess = 0.0
    if not np.isfinite(weights).all():
        warnings.append(
            "The trajectory-wise importance weights overflow float64: the risk section is omitted "
            "(evaluate a shorter --horizon)."
        )
    elif not weights.sum() > 0:
        warnings.append(
            "Every logged session has trajectory weight 0 (the policy never takes some logged action of it): "
            "the risk section is omitted."
        )
    else:
        ess = float(weights.sum()) ** 2 / float((weights**2).sum())
        risk = estimate_risk(returns, weights, cvar_alphas=cvar_alphas, **boot)
        if ess < min_ess:
            warnings.append(
                f"The trajectory-wise importance weights have an effective sample size of {ess:.1f} of "
                f"{n_episodes:,} sessions (< {min_ess:g}): PDIS and the risk estimates (CDF, CVaR, quartiles) "
                f"rest on a handful of sessions; the largest carries {risk.max_weight_share:.0%} of the weight."
            )
    return SequentialResult(
        estimates=tuple(estimates),
        behaviour=behaviour,
        n_episodes=int(n_episodes),
        horizon=int(horizon),
        gamma=gamma,
        max_weight=max_weight if math.isfinite(max_weight) else math.inf,
        ess=ess,
        truncated_share=float(truncated_share),
        warnings=tuple(warnings),
        risk=risk,
    )
