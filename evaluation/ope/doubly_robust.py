"""Doubly robust bandit estimators: DR, self-normalised DR, Switch-DR and DR with optimistic shrinkage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evaluation.ope.base import (
    BanditEstimator,
    BanditInputs,
    factual_prediction,
    importance_weight,
    policy_weighted_prediction,
)
from recsim_env.checks import check_real

_DR_INPUTS = ("reward", "action", "pscore", "estimated_rewards_by_reg_model")


@dataclass(frozen=True, kw_only=True)
class DoublyRobust(BanditEstimator):
    """Doubly robust estimator (Dudik, Langford & Li 2011, "Doubly Robust Policy Evaluation and Learning").

    With `w_i = action_dist[i, a_i, k_i] / pscore_i` and a reward model `q_hat`:

        V_DR = (1 / n) * sum_i [ q_hat(x_i, pi_e, k_i) + w_i * (r_i - q_hat(x_i, a_i, k_i)) ],
        q_hat(x, pi_e, k) = sum_a pi_e(a | x, k) * q_hat(x, a, k)

    Unbiased if either the propensities or the reward model are right.
    Needs `reward`, `action`, `pscore`, `action_dist`, `estimated_rewards_by_reg_model` (and `position`).
    """

    estimator_name: str = "DR"
    required: ClassVar[tuple[str, ...]] = _DR_INPUTS

    def _shrunk_weight(self, weight: np.ndarray) -> np.ndarray:
        """The weight applied to the residual; plain DR uses the importance weight itself."""
        return weight

    def _terms(self, data: BanditInputs) -> dict[str, np.ndarray]:
        residual = data.reward - factual_prediction(data)
        correction = self._shrunk_weight(importance_weight(data)) * residual
        return {"per_round": policy_weighted_prediction(data) + correction}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        return terms["per_round"].mean(axis=-1)


@dataclass(frozen=True, kw_only=True)
class SelfNormalizedDoublyRobust(BanditEstimator):
    """Self-normalised doubly robust estimator (Kallus & Uehara 2019; OBP's `SelfNormalizedDoublyRobust`).

        V_SNDR = (1 / n) * sum_i [ q_hat(x_i, pi_e, k_i) + (w_i / mean_j w_j) * (r_i - q_hat(x_i, a_i, k_i)) ]
               = mean_i q_hat(x_i, pi_e, k_i) + sum_i w_i (r_i - q_hat(x_i, a_i, k_i)) / sum_i w_i

    Needs `reward`, `action`, `pscore`, `action_dist`, `estimated_rewards_by_reg_model` (and `position`).
    """

    estimator_name: str = "SNDR"
    required: ClassVar[tuple[str, ...]] = _DR_INPUTS

    def _terms(self, data: BanditInputs) -> dict[str, np.ndarray]:
        weight = importance_weight(data)
        return {
            "predicted_value": policy_weighted_prediction(data),
            "weighted_residual": weight * (data.reward - factual_prediction(data)),
            "weight": weight,
        }

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        total_weight = terms["weight"].sum(axis=-1)
        safe = np.where(total_weight > 0, total_weight, 1.0)
        correction = np.where(total_weight > 0, terms["weighted_residual"].sum(axis=-1) / safe, 0.0)
        return terms["predicted_value"].mean(axis=-1) + correction


@dataclass(frozen=True, kw_only=True)
class SwitchDoublyRobust(DoublyRobust):
    """Switch doubly robust estimator (Wang, Agarwal & Dudik 2017, "Optimal and Adaptive Off-policy Evaluation
    in Contextual Bandits"), in OBP's form: DR where the weight is at most `lambda_`, DM where it is larger.

        V_SwitchDR = (1 / n) * sum_i [ q_hat(x_i, pi_e, k_i) + 1{w_i <= lambda_} * w_i * (r_i - q_hat(x_i, a_i, k_i)) ]

    `lambda_ = inf` gives DR, `lambda_ = 0` gives DM.
    """

    lambda_: float = math.inf
    """Switching threshold on the importance weight, >= 0."""
    estimator_name: str = "Switch-DR"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real("lambda_", self.lambda_, low=0.0, allow_inf=True)  # bools, strings, NaN and < 0 refused

    def _shrunk_weight(self, weight: np.ndarray) -> np.ndarray:
        return np.where(weight <= self.lambda_, weight, 0.0)


@dataclass(frozen=True, kw_only=True)
class DoublyRobustWithShrinkage(DoublyRobust):
    """Doubly robust with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy & Dudik 2020, "Doubly Robust
    Off-policy Evaluation with Shrinkage"), OBP's `DoublyRobustWithShrinkage`.

        w_hat_i = lambda_ * w_i / (w_i ** 2 + lambda_)
        V_DRos = (1 / n) * sum_i [ q_hat(x_i, pi_e, k_i) + w_hat_i * (r_i - q_hat(x_i, a_i, k_i)) ]

    `lambda_ = inf` gives DR (no shrinkage), `lambda_ = 0` gives DM.
    """

    lambda_: float = math.inf
    """Shrinkage hyperparameter, >= 0."""
    estimator_name: str = "DRos"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real("lambda_", self.lambda_, low=0.0, allow_inf=True)  # bools, strings, NaN and < 0 refused

    def _shrunk_weight(self, weight: np.ndarray) -> np.ndarray:
        if math.isinf(self.lambda_):
            return weight
        if self.lambda_ == 0.0:
            return np.zeros_like(weight)
        if self.lambda_ > 1e200:
            # lambda_ * w could overflow (w <= 1 / MIN_PSCORE = 1e100): the same value, divided through.
            return weight / (weight * (weight / self.lambda_) + 1.0)
        return self.lambda_ * weight / (weight**2 + self.lambda_)
