"""The direct method (DM): the regression model's prediction averaged over the evaluation policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evaluation.ope.base import BanditEstimator, BanditInputs, policy_weighted_prediction


@dataclass(frozen=True, kw_only=True)
class DirectMethod(BanditEstimator):
    """Direct method (Beygelzimer & Langford 2009; Dudik et al. 2011, section 2).

    With a reward model `q_hat(x, a, k)` (`estimated_rewards_by_reg_model[i, a, k]`):

        V_DM = (1 / n) * sum_i sum_a pi_e(a | x_i, k_i) * q_hat(x_i, a, k_i)

    Low variance; biased exactly as much as the reward model is wrong.
    Needs `action_dist` and `estimated_rewards_by_reg_model` (and `position` for slates); ignores the rest.
    """

    estimator_name: str = "DM"
    required: ClassVar[tuple[str, ...]] = ("estimated_rewards_by_reg_model",)

    def _terms(self, data: BanditInputs) -> dict[str, np.ndarray]:
        return {"predicted_value": policy_weighted_prediction(data)}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        return terms["predicted_value"].mean(axis=-1)
