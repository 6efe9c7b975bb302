"""OPE reports: estimates with intervals, the logged value, importance-weight diagnostics and a verdict.

`build_report` runs a list of bandit estimators on one data set and returns an `OPEReport`
(`evaluation.policy_report`); with a log of sessions the caller attaches the sequential estimates, FQE and
the risk section (`evaluation.session_ope`, `dataclasses.replace(report, sequential=...)`). A report renders
itself to Markdown, to a self-contained HTML page (plots embedded as base64 PNGs) and to a folder (`save`).
`ComparisonReport` (`evaluation.comparison_report`) holds several candidates' reports with their ranking
(`evaluation.ranking`) and renders them as one page. The pieces of a page are in `evaluation.report_markup`,
its figures in `evaluation.report_plots`, the atomic folder writes in `evaluation.report_files`; the names a
caller needs are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from evaluation.comparison_report import ComparisonReport
from evaluation.ope.base import (
    BanditEstimator,
    Estimate,
    bootstrap_interval,
    importance_weight,
    validate_bandit_inputs,
)
from evaluation.ope.checks import (
    FeedbackError,
    check_action_dist,
    check_bootstrap_arguments,
    numeric_array,
)
from evaluation.ope.sparse import SparseActionDist
from evaluation.policy_report import PLOT_FILES, VERDICTS, OPEReport
from evaluation.report_files import write_files_atomically
from evaluation.report_markup import HTML_STYLE, markdown_text
from evaluation.report_plots import figure_png
from recsim_env.checks import check_bool, check_real
from recsim_env.errors import ArgumentError

__all__ = [
    "HTML_STYLE",
    "PLOT_FILES",
    "VERDICTS",
    "ComparisonReport",
    "OPEReport",
    "build_report",
    "effective_sample_size",
    "figure_png",
    "markdown_text",
    "write_files_atomically",
]


def effective_sample_size(weights: np.ndarray) -> float:
    """Kong's effective sample size `(sum_i w_i)^2 / sum_i w_i^2` (0 when every weight is 0)."""
    squares = float(np.sum(weights**2))
    return float(np.sum(weights)) ** 2 / squares if squares > 0 else 0.0


def build_report(
    estimators: Sequence[BanditEstimator],
    *,
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    position: np.ndarray | None = None,
    estimated_rewards_by_reg_model: np.ndarray | None = None,
    behaviour_action_dist: np.ndarray | None = None,
    policy_name: str = "evaluation policy",
    primary: str | None = None,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int = 0,
    min_ess: float = 100.0,
    support_tolerance: float = 1e-3,
    extra_warnings: Sequence[str] = (),
    progress: bool = False,
) -> OPEReport:
    """Run `estimators` on one log and assemble an `OPEReport`.

    Diagnostics: ESS = (sum w)^2 / sum w^2 with w = action_dist[i, a_i, k_i] / pscore_i; a warning when
    ESS < `min_ess`. Support: with `behaviour_action_dist` `[n, N, K]`, the mean evaluation mass on actions the
    logger gives probability 0; without it, the mean mass on (action, position) pairs that never occur in the
    log (an empirical proxy); a warning when it exceeds `support_tolerance`.

    Propensity check: with correct pscores the mean importance weight is 1 minus the evaluation mass
    outside the logger's support (between 1 minus the never-logged mass and 1 without
    `behaviour_action_dist`); a warning when the sample mean is further from that than 10% and four
    standard errors.

    Verdict: the `primary` estimator's interval (default DR, else SNIPS, else the first) against the logged
    value: "better" if its lower end is above it, "worse" if its upper end is below it, else "undecided";
    always "undecided" when the ESS is too small, (judged from `behaviour_action_dist`) support is
    missing, or the propensity check fails, since the interval is then not trustworthy.

    Args:
        estimators: Bandit estimators to run (model-based ones need `estimated_rewards_by_reg_model`).
        reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model: OBP-named log arrays;
            `action_dist` may be a `SparseActionDist` and the predictions a `RewardTable`
            (`evaluation.ope.sparse`), for which the support check is the same expectation, computed sparsely.
        behaviour_action_dist: The logger's full distribution, when known, for an exact support check.
        policy_name: Shown in the title.
        primary: Name of the estimator that decides the verdict.
        alpha: Significance level of all intervals.
        n_bootstrap_samples: Bootstrap replicates per interval.
        random_state: Seed of every bootstrap.
        min_ess: Warn (and withhold a verdict) below this effective sample size.
        support_tolerance: Warn (and withhold a verdict) above this much evaluation mass outside the support.
        extra_warnings: Caller-side warnings to show (e.g. estimated propensities).
        progress: Show a progress bar over the estimators.
    """
    if isinstance(estimators, str) or not isinstance(estimators, Sequence):
        raise ArgumentError(
            f"estimators: expected a sequence of bandit estimators, got {type(estimators).__name__}"
        )
    if not estimators:
        raise ArgumentError("estimators is empty: pass at least one estimator")
    for k, est in enumerate(estimators):
        if not isinstance(est, BanditEstimator):
            raise ArgumentError(f"estimators[{k}]: expected a bandit estimator, got {type(est).__name__}")
    check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
    min_ess = check_real("min_ess", min_ess, low=0.0)
    support_tolerance = check_real("support_tolerance", support_tolerance, low=0.0, high=1.0)
    if not isinstance(policy_name, str):
        raise ArgumentError(f"policy_name: expected a string, got {type(policy_name).__name__}")
    if primary is not None and not isinstance(primary, str):
        raise ArgumentError(f"primary: expected an estimator name, got {type(primary).__name__}")
    if isinstance(extra_warnings, str) or not all(isinstance(w, str) for w in extra_warnings):
        raise ArgumentError("extra_warnings: expected a sequence of strings")
    check_bool("progress", progress)
    data = validate_bandit_inputs(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        position=position,
        estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
        require=("reward", "action", "pscore"),
    )
    n, n_actions, n_positions = data.action_dist.shape
    kwargs = data._asdict()  # the estimators' keyword arguments, validated
    boot = dict(alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state)
    estimates = tuple(
        est.estimate(**boot, **kwargs) for est in tqdm(estimators, desc="estimators", disable=not progress)
    )
    names = [e.name for e in estimates]
    if len(set(names)) != len(names):
        raise ArgumentError(f"estimators: estimator names must be unique, got {names}")

    behaviour_ci = bootstrap_interval({"reward": data.reward}, lambda t: t["reward"].mean(axis=-1), **boot)
    behaviour = Estimate(
        name="logged",
        value=float(data.reward.mean()),
        lower=behaviour_ci["lower"],
        upper=behaviour_ci["upper"],
        alpha=alpha,
    )

    rows = np.arange(n)
    weights = importance_weight(data)
    ess = effective_sample_size(weights)
    weight_stats = {
        "min": float(weights.min()),
        "mean": float(weights.mean()),
        "median": float(np.median(weights)),
        "p99": float(np.quantile(weights, 0.99)),
        "max": float(weights.max()),
        "share_zero": float(np.mean(weights == 0)),
    }

    if isinstance(data.action_dist, SparseActionDist):
        support_deficit = _sparse_support_deficit(
            data.action_dist, data.action, data.position, behaviour_action_dist
        )
    else:
        support_deficit = _support_deficit(data, rows, behaviour_action_dist)

    warnings = list(extra_warnings)
    unreliable = []
    if ess < min_ess:
        unreliable.append(f"effective sample size {ess:.1f} < {min_ess:g}")
        warnings.append(
            f"Effective sample size is {ess:.1f} of {n:,} rounds (< {min_ess:g}): the evaluation policy rarely "
            "takes the logged actions, so importance-weighted estimates rest on a handful of rounds."
        )
    if support_deficit > support_tolerance:
        if behaviour_action_dist is not None:
            unreliable.append(f"{support_deficit:.1%} of the policy's mass lacks support")
            warnings.append(
                f"Missing support: the evaluation policy puts {support_deficit:.2%} of its mass on actions the "
                "logger never takes; IPS-type estimators cannot see that mass and DM/DR extrapolate there."
            )
        else:
            # Never-logged is only evidence of missing support: a rare action may simply not have come up,
            # so this warns without withholding the verdict.
            warnings.append(
                f"Possible missing support: the evaluation policy puts {support_deficit:.2%} of its mass on "
                "(action, position) pairs that never occur in the log; if the logger cannot take them, IPS-type "
                "estimators miss that mass and DM/DR extrapolate there (pass the logger's distribution as "
                "behaviour_action_dist for an exact check)."
            )

    # With the logger's true propensities E_b[w] = 1 - (mass outside its support): a sample mean far from
    # that (beyond sampling noise) says the pscores do not describe how the logged actions were chosen.
    # Without the logger's distribution the never-logged mass only bounds the support deficit from above.
    low = 1.0 - support_deficit
    high = low if behaviour_action_dist is not None else 1.0
    mean_weight = weight_stats["mean"]
    mean_error = max(low - mean_weight, mean_weight - high, 0.0)
    if mean_error > max(0.1 * high, 4.0 * weights.std() / np.sqrt(n)):
        expected = f"{low:.3g}" if low == high else f"between {low:.3g} and {high:.3g}"
        unreliable.append(f"mean importance weight {mean_weight:.3g}, expected {expected}")
        warnings.append(
            f"Propensities inconsistent with the log: the mean importance weight is {mean_weight:.3g}, but with "
            f"the logging policy's true pscores it would be {expected}. The pscores do not describe how the "
            "logged actions were chosen (estimated propensities, or logs where the user, not a recommender, "
            "chose the item), so IPS, DR and their variants are biased."
        )

    if primary is None:
        primary = next((p for p in ("DR", "SNIPS") if p in names), names[0])
    if primary not in names:
        raise ArgumentError(f"primary estimator {primary!r} is not among the estimators {names}")
    chosen = estimates[names.index(primary)]
    pct = f"{100 * (1 - alpha):g}%"
    if unreliable:
        verdict = "undecided"
        verdict_line = f"No verdict: {'; '.join(unreliable)}."
    elif chosen.lower > behaviour.value:
        verdict = "better"
        verdict_line = (
            f"{primary}'s {pct} interval [{chosen.lower:.4f}, {chosen.upper:.4f}] lies above the logged value "
            f"{behaviour.value:.4f}."
        )
    elif chosen.upper < behaviour.value:
        verdict = "worse"
        verdict_line = (
            f"{primary}'s {pct} interval [{chosen.lower:.4f}, {chosen.upper:.4f}] lies below the logged value "
            f"{behaviour.value:.4f}."
        )
    else:
        verdict = "undecided"
        verdict_line = (
            f"{primary}'s {pct} interval [{chosen.lower:.4f}, {chosen.upper:.4f}] contains the logged value "
            f"{behaviour.value:.4f}."
        )
    return OPEReport(
        policy_name=policy_name,
        estimates=estimates,
        behaviour=behaviour,
        n_rounds=n,
        ess=ess,
        weight_stats=weight_stats,
        support_deficit=support_deficit,
        warnings=tuple(warnings),
        verdict=verdict,
        verdict_line=verdict_line,
        primary=primary,
        alpha=alpha,
        weights=weights,
        reliability_issues=tuple(unreliable),
    )


def _support_deficit(data, rows: np.ndarray, behaviour_action_dist) -> float:
    """Mean evaluation mass at the logged position on actions outside the support (dense `action_dist`):
    where `behaviour_action_dist` is 0, else on (action, position) pairs the log never shows."""
    _, n_actions, n_positions = data.action_dist.shape
    pi_at_position = data.action_dist[rows, :, data.position]  # [n, N]
    if behaviour_action_dist is not None:
        behaviour_dist = numeric_array("behaviour_action_dist", behaviour_action_dist)
        if behaviour_dist.shape != data.action_dist.shape:
            raise FeedbackError(
                f"behaviour_action_dist has shape {behaviour_dist.shape} but action_dist has "
                f"{data.action_dist.shape} (shape mismatch)"
            )
        check_action_dist("behaviour_action_dist", behaviour_dist)
        unsupported = behaviour_dist[rows, :, data.position] <= 0  # [n, N]
    else:
        logged = np.zeros((n_actions, n_positions), dtype=bool)
        logged[data.action, data.position] = True
        unsupported = ~logged.T[data.position]  # [n, N]
    return float((pi_at_position * unsupported).sum(axis=1).mean())


def _sparse_support_deficit(
    dist: SparseActionDist, action: np.ndarray, position: np.ndarray, behaviour
) -> float:
    """`_support_deficit` for a `SparseActionDist`: the never-logged indicator's expectation under it, exact
    (`SparseActionDist.expectation`). The logger's full distribution is a dense array, not accepted here."""
    if behaviour is not None:
        raise ArgumentError(
            "behaviour_action_dist: not supported with a SparseActionDist action_dist (pass None: the support is "
            "then judged from the logged (action, position) pairs)"
        )
    logged = np.zeros((dist.n_actions, dist.n_positions), dtype=bool)
    logged[action, position] = True
    unsupported = (~logged).astype(np.float64)  # [N, K]
    listed = unsupported[dist.items, position[:, None]]  # [n, T]
    return float(dist.expectation(listed, unsupported.sum(axis=0)[position]).mean())
