"""Importance-sampling bandit estimators: IPS and self-normalised IPS (SNIPS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evaluation.ope.base import BanditEstimator, BanditInputs, importance_weight


@dataclass(frozen=True, kw_only=True)
class InverseProbabilityWeighting(BanditEstimator):
    """Inverse probability weighting (Horvitz & Thompson 1952; Precup et al. 2000; Strehl et al. 2010).

    With per-position weights `w_i = pi_e(a_i | x_i, k_i) / pi_b(a_i | x_i, k_i)` (`action_dist / pscore`):

        V_IPS = (1 / n) * sum_i w_i * r_i

    Unbiased when the logging policy covers the evaluation policy's support; variance grows with the weights.
    Needs `reward`, `action`, `pscore`, `action_dist` (and `position` for slates).
    """

    estimator_name: str = "IPS"
    required: ClassVar[tuple[str, ...]] = ("reward", "action", "pscore")

    def _terms(self, data: BanditInputs) -> dict[str, np.ndarray]:
        return {"weighted_reward": importance_weight(data) * data.reward}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        return terms["weighted_reward"].mean(axis=-1)


@dataclass(frozen=True, kw_only=True)
class SelfNormalizedInverseProbabilityWeighting(BanditEstimator):
    """Self-normalised IPS (Swaminathan & Joachims 2015, "The Self-Normalized Estimator for Counterfactual Learning").

        V_SNIPS = sum_i w_i * r_i / sum_i w_i,   w_i = action_dist[i, a_i, k_i] / pscore_i

    Biased but consistent; bounded by the reward range, so far less variable than IPS.
    Needs `reward`, `action`, `pscore`, `action_dist` (and `position` for slates).
    """

    estimator_name: str = "SNIPS"
    required: ClassVar[tuple[str, ...]] = ("reward", "action", "pscore")

    def _terms(self, data: BanditInputs) -> dict[str, np.ndarray]:
        weight = importance_weight(data)
        return {"weighted_reward": weight * data.reward, "weight": weight}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        total_weight = terms["weight"].sum(axis=-1)
        # All-zero weights (no logged action the policy would take) leave the estimator undefined; report 0
        # like OBP rather than NaN so the bootstrap quantiles stay finite.
        safe = np.where(total_weight > 0, total_weight, 1.0)
        return np.where(total_weight > 0, terms["weighted_reward"].sum(axis=-1) / safe, 0.0)
