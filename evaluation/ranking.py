"""Rank candidate policies by the lower confidence bound of one estimator and recommend one to deploy, if any.

The rule: sort the candidates by the lower end of the chosen estimator's (1 - alpha) interval (ties by the
point estimate); recommend the first candidate whose lower bound exceeds the logged policy's value (the
on-policy mean of the log) and whose estimates the report trusts (no low-ESS, missing-support or propensity
failure); if none does, recommend deploying none. Ranking by the lower bound rather than the point estimate
prefers a candidate that is surely good over one that is perhaps better but poorly covered by the log
(Thomas, Theocharous & Ghavamzadeh 2015, "High Confidence Off-Policy Evaluation").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evaluation.ope.base import Estimate
from recsim_env.errors import ArgumentError


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One candidate policy's estimate by the ranking estimator."""

    name: str
    """The candidate's display name."""
    estimate: Estimate
    """Its value by the ranking estimator, with the interval whose lower end ranks it."""
    issues: tuple[str, ...] = ()
    """Why its estimates are not to be trusted (empty: none); such a candidate is never recommended."""

    @property
    def eligible(self) -> bool:
        """Whether the candidate may be recommended."""
        return not self.issues


@dataclass(frozen=True, kw_only=True)
class Ranking:
    """Candidates ranked by a lower confidence bound, with the deployment recommendation."""

    estimator: str
    """Name of the ranking estimator."""
    reason: str
    """Why this estimator ranks the candidates."""
    logged: Estimate
    """The logged policy's value on the same scale (per row, or per session)."""
    candidates: tuple[Candidate, ...]
    """Best first: descending lower bound, then descending value."""
    recommended: str | None
    """The candidate to deploy, or None (deploy none)."""

    @property
    def recommendation(self) -> str:
        """One sentence: which candidate to deploy and why, or why none."""
        pct = f"{100 * (1 - self.logged.alpha):g}%"
        if self.recommended is not None:
            chosen = next(c for c in self.candidates if c.name == self.recommended)
            return (
                f"Deploy {chosen.name}: its {self.estimator} {pct} lower bound {chosen.estimate.lower:.4f} is above "
                f"the logged policy's value {self.logged.value:.4f}."
            )
        above = [c for c in self.candidates if c.estimate.lower > self.logged.value]
        if above:
            names = ", ".join(c.name for c in above)
            return (
                f"Deploy none: {names} beat(s) the logged value {self.logged.value:.4f} at the lower bound, but "
                "the report does not trust those estimates (see the candidate's warnings)."
            )
        return (
            f"Deploy none: no candidate's {self.estimator} {pct} lower bound is above the logged policy's "
            f"value {self.logged.value:.4f}."
        )


def rank_candidates(
    candidates: Sequence[Candidate], *, logged: Estimate, estimator: str, reason: str
) -> Ranking:
    """Rank `candidates` by `estimate.lower` (then `estimate.value`), best first, and pick the one to deploy.

    Args:
        candidates: One entry per candidate, all estimated by `estimator` (names unique).
        logged: The logged policy's value on the estimator's scale.
        estimator: The ranking estimator's name.
        reason: Why it was chosen, shown in the report.

    Raises:
        ArgumentError: for no candidates, duplicate names, or estimates at different significance levels.
    """
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
        raise ArgumentError("candidates: expected a non-empty sequence of Candidate")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ArgumentError(f"candidates: names must be unique, got {names}")
    levels = {c.estimate.alpha for c in candidates} | {logged.alpha}
    if len(levels) != 1:
        raise ArgumentError(f"candidates: every interval must have the same alpha, got {sorted(levels)}")
    ranked = tuple(sorted(candidates, key=lambda c: (-c.estimate.lower, -c.estimate.value)))
    recommended = next((c.name for c in ranked if c.eligible and c.estimate.lower > logged.value), None)
    return Ranking(
        estimator=estimator, reason=reason, logged=logged, candidates=ranked, recommended=recommended
    )
