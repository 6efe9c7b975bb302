"""Off-policy estimators with Open Bandit Pipeline's argument names.

Bandit: `DirectMethod`, `InverseProbabilityWeighting`, `SelfNormalizedInverseProbabilityWeighting`,
`DoublyRobust`, `SelfNormalizedDoublyRobust`, `SwitchDoublyRobust`, `DoublyRobustWithShrinkage`, with
`RegressionModel` for the reward predictions. Each has `estimate_policy_value`, `estimate_interval` and
`estimate` (an `Estimate`). Sequential: `PerDecisionImportanceSampling`, `WeightedPerDecisionImportanceSampling`,
`SequentialDoublyRobust`, `WeightedDoublyRobust`; fitted Q evaluation lives in `evaluation.ope.fqe` (torch).
Importing this package does not import torch or scikit-learn.
"""

from evaluation.ope.base import BanditEstimator, BanditInputs, Estimate, Estimator, validate_bandit_inputs
from evaluation.ope.direct import DirectMethod
from evaluation.ope.doubly_robust import (
    DoublyRobust,
    DoublyRobustWithShrinkage,
    SelfNormalizedDoublyRobust,
    SwitchDoublyRobust,
)
from evaluation.ope.ips import InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting
from evaluation.ope.sequential import (
    PerDecisionImportanceSampling,
    SequentialDoublyRobust,
    SequentialEstimator,
    WeightedDoublyRobust,
    WeightedPerDecisionImportanceSampling,
)

__all__ = [
    "BanditEstimator",
    "BanditInputs",
    "DirectMethod",
    "DoublyRobust",
    "DoublyRobustWithShrinkage",
    "Estimate",
    "Estimator",
    "InverseProbabilityWeighting",
    "PerDecisionImportanceSampling",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedInverseProbabilityWeighting",
    "SequentialDoublyRobust",
    "SequentialEstimator",
    "SwitchDoublyRobust",
    "WeightedDoublyRobust",
    "WeightedPerDecisionImportanceSampling",
    "validate_bandit_inputs",
]
