"""Policies for the `SeqRec` environments: the one `Policy` contract and the reference policies.

- `contract`: the `Policy` Protocol every policy implements (reference policies, oracles, filters and
  every trained agent in `agents`), `act_slates` (how rollout loops call a policy), and the batching
  and slate helpers (`as_batch`, `top_k`, `sample_without_replacement`, ...).
- `baselines`: `ReferencePolicy`, the base of the reference policies, `ScoreRankingPolicy`, the base
  of those that show the K best items of a score array, and the log-based ones:
  `UniformPolicy`, `PopularityPolicy` and `GreedyPolicy` (the last two learn from logs).
- `oracles`: `MyopicOracle` and `FarsightedOracle` read the world's hidden state (`needs_user_state`).
- `filter`: `FilterMyopicPolicy` and `FilterFarsightedPolicy` see only the observation but know the
  world's equations and catalogue; their belief over the hidden state is `belief.WorldFilter`.
  `reference_policy(name, world)` builds a world-knowing policy by name.

`agents.baselines` adds persistence to the log-based ones (`agents.policy.SavablePolicy`).
"""

from recsim_env.policies.baselines import (
    GreedyPolicy,
    LoggedItemStats,
    PopularityPolicy,
    ReferencePolicy,
    ScoreRankingPolicy,
    UniformPolicy,
)
from recsim_env.policies.belief import Belief, BeliefConfig, WorldFilter
from recsim_env.policies.contract import (
    Policy,
    act_slates,
    as_batch,
    check_policy,
    one_hot,
    reads_user_state,
    sample_slates,
    sample_without_replacement,
    top_k,
    unbatch_action,
    unbatch_probabilities,
)
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
    "ReferencePolicy",
    "ScoreRankingPolicy",
    "UniformPolicy",
    "WorldFilter",
    "act_slates",
    "as_batch",
    "check_policy",
    "one_hot",
    "reads_user_state",
    "reference_policy",
    "sample_slates",
    "sample_without_replacement",
    "top_k",
    "unbatch_action",
    "unbatch_probabilities",
]
