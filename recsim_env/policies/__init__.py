"""Reference policies for the `SeqRec` environments.

All act on batched observations (each value with a leading N axis) and return `[N, K]` slates.
- `baselines`: `UniformPolicy`, `PopularityPolicy` and `GreedyPolicy` (the last two learn from logs).
- `oracles`: `MyopicOracle` and `FarsightedOracle` read the world's hidden state.
- `filter`: `FilterMyopicPolicy` and `FilterFarsightedPolicy` see only the observation but know the
  world's equations and catalogue; their belief over the hidden state is `belief.WorldFilter`.
  `reference_policy(name, world)` builds a world-knowing policy by name.

`agents.baselines` exposes the log-based ones through the `agents.Policy` contract.
"""

from recsim_env.policies.baselines import (
    GreedyPolicy,
    LoggedItemStats,
    Policy,
    PopularityPolicy,
    UniformPolicy,
    one_hot,
    sample_without_replacement,
    top_k,
)
from recsim_env.policies.belief import Belief, BeliefConfig, WorldFilter
from recsim_env.policies.filter import (
    REFERENCE_POLICIES,
    FilterFarsightedPolicy,
    FilterMyopicPolicy,
    reference_policy,
)
from recsim_env.policies.oracles import FarsightedOracle, MyopicOracle

__all__ = [
    "REFERENCE_POLICIES",
    "Belief",
    "BeliefConfig",
    "FarsightedOracle",
    "FilterFarsightedPolicy",
    "FilterMyopicPolicy",
    "GreedyPolicy",
    "LoggedItemStats",
    "MyopicOracle",
    "Policy",
    "PopularityPolicy",
    "UniformPolicy",
    "WorldFilter",
    "reference_policy",
    "sample_without_replacement",
    "one_hot",
    "top_k",
]
