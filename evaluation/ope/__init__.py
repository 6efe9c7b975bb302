"""Off-policy estimators with Open Bandit Pipeline's argument names.

Bandit: `DirectMethod`, `InverseProbabilityWeighting`, `SelfNormalizedInverseProbabilityWeighting`,
`DoublyRobust`, `SelfNormalizedDoublyRobust`, `SwitchDoublyRobust`, `DoublyRobustWithShrinkage`, with
`RegressionModel` for the reward predictions; for large action spaces, `MarginalizedInverseProbabilityWeighting`
(MIPS) and its self-normalised form over action embeddings. Each has `estimate_policy_value`, `estimate_interval` and
`estimate` (an `Estimate`). Sequential: `PerDecisionImportanceSampling`, `WeightedPerDecisionImportanceSampling`,
`SequentialDoublyRobust`, `WeightedDoublyRobust`; fitted Q evaluation lives in `evaluation.ope.fqe` (torch).
Importing this package does not import torch or scikit-learn.
"""

from evaluation.ope.base import BanditEstimator, BanditInputs, Estimate, Estimator, validate_bandit_inputs
from evaluation.ope.checks import FeedbackError
from evaluation.ope.direct import DirectMethod
from evaluation.ope.doubly_robust import (
    DoublyRobust,
    DoublyRobustWithShrinkage,
    SelfNormalizedDoublyRobust,
    SwitchDoublyRobust,
)
from evaluation.ope.ips import InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting
from evaluation.ope.mips import (
    ActionEmbedding,
    MarginalizedInverseProbabilityWeighting,
    SelfNormalizedMarginalizedInverseProbabilityWeighting,
    deterministic_p_e_a,
    embedding_marginal,
)
from evaluation.ope.sequential import (
    PerDecisionImportanceSampling,
    SequentialDoublyRobust,
    SequentialEstimator,
    WeightedDoublyRobust,
    WeightedPerDecisionImportanceSampling,
)


def bandit_estimators(lambda_: float = 100.0) -> list[BanditEstimator]:
    """The seven bandit estimators a report runs: DM, IPS, SNIPS, DR, SNDR, Switch-DR and DRos.

    MIPS is not among them: it needs the catalogue's action embedding; `seqrec ope-report
    --action-embedding` adds MIPS and SNMIPS in their embedded form (`ActionEmbedding`).

    Args:
        lambda_: Switch-DR's weight threshold and DRos's shrinkage.
    """
    return [
        DirectMethod(),
        InverseProbabilityWeighting(),
        SelfNormalizedInverseProbabilityWeighting(),
        DoublyRobust(),
        SelfNormalizedDoublyRobust(),
        SwitchDoublyRobust(lambda_=lambda_),
        DoublyRobustWithShrinkage(lambda_=lambda_),
    ]


__all__ = [
    "ActionEmbedding",
    "bandit_estimators",
    "BanditEstimator",
    "BanditInputs",
    "DirectMethod",
    "DoublyRobust",
    "DoublyRobustWithShrinkage",
    "Estimate",
    "Estimator",
    "FeedbackError",
    "InverseProbabilityWeighting",
    "MarginalizedInverseProbabilityWeighting",
    "PerDecisionImportanceSampling",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedInverseProbabilityWeighting",
    "SelfNormalizedMarginalizedInverseProbabilityWeighting",
    "SequentialDoublyRobust",
    "SequentialEstimator",
    "SwitchDoublyRobust",
    "WeightedDoublyRobust",
    "WeightedPerDecisionImportanceSampling",
    "deterministic_p_e_a",
    "embedding_marginal",
    "validate_bandit_inputs",
]
