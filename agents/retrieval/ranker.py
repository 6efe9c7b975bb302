"""Stage two of retrieve-then-rank: a ranker over the k candidates, as an SB3 actor-critic policy.

Every candidate is scored by one shared network of its features and the user's (so the policy is
equivariant to the candidates' order and its size does not grow with the catalogue):

    logit_j = w_s score_j + MLP_pi([x_j, u]) x_j: candidate j's row of `candidates` [D + 6], u: `user`
    pi(j | s) = softmax_j(logit_j)           over the k candidates
    V(s) = MLP_v([u, mean_j x_j, sum_j pi(j | s) x_j])

`CandidateRankerExtractor` computes `[logits (k), value features (H)]`; `CandidateRankerPolicy` is
SB3's `MultiInputActorCriticPolicy` with no policy MLP, an action head that reads the logits out of
the features, and a value MLP over the features. The last scoring layer starts at zero and the
learned weight w_s of the retrieval score <q, e_j> at `score_prior`, so the first policy is
softmax(score_prior x score) over the candidates: PPO starts from the retrieval stage's order and
learns corrections to it (SB3's orthogonal init is off: it would rescale the zeroed layer).
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class CandidateRankerExtractor(BaseFeaturesExtractor):
    """`{candidates [B, k, C], user [B, U]} -> [B, k + H]`: per-candidate logits and value features.

    Args:
        observation_space: the `RetrievalEnv` observation space.
        hidden: H, the width of the scorer and of the value features.
        score_prior: initial weight w_s of the retrieval score (the first stat after the embedding).
    """

    def __init__(self, observation_space: spaces.Dict, hidden: int = 64, score_prior: float = 0.0) -> None:
        k, width = observation_space["candidates"].shape
        user_width = observation_space["user"].shape[0]
        super().__init__(observation_space, k + hidden)
        self.n_candidates = int(k)
        self.score_column = int(width) - 6  # `candidates` = [embedding (D), score, 5 more stats]
        self.score_weight = nn.Parameter(torch.tensor(float(score_prior)))
        self.scorer = nn.Sequential(
            nn.Linear(width + user_width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip
        nn.init.zeros_(self.scorer[-1].weight)
        nn.init.zeros_(self.scorer[-1].bias)
        self.value_features = nn.Sequential(nn.Linear(user_width + 2 * width, hidden), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        candidates = observations["candidates"].float()  # [B, k, C]
        user = observations["user"].float()  # [B, U]
        paired = torch.cat([candidates, user[:, None, :].expand(-1, candidates.shape[1], -1)], dim=2)
        logits = (
            self.scorer(paired).squeeze(-1) + self.score_weight * candidates[..., self.score_column]
        )  # [B, k]
        chosen = (torch.softmax(logits, dim=1)[..., None] * candidates).sum(dim=1)  # [B, C]
        value = self.value_features(torch.cat([user, candidates.mean(dim=1), chosen], dim=1))
        return torch.cat([logits, value], dim=1)


class CandidateLogits(nn.Module):
    """The action head: the first k features are already the candidates' logits."""

    def __init__(self, n_candidates: int) -> None:
        super().__init__()
        self.n_candidates = n_candidates

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return latent[:, : self.n_candidates]


class CandidateRankerPolicy(MultiInputActorCriticPolicy):
    """SB3 actor-critic (PPO, A2C) whose action logits are `CandidateRankerExtractor`'s scores."""

    def __init__(
        self,
        observation_space,
        action_space,
        lr_schedule,
        hidden: int = 64,
        score_prior: float = 0.0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("net_arch", {"pi": [], "vf": [hidden]})
        kwargs.setdefault("ortho_init", False)
        kwargs.setdefault("features_extractor_class", CandidateRankerExtractor)
        kwargs.setdefault("features_extractor_kwargs", {"hidden": hidden, "score_prior": score_prior})
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = CandidateLogits(int(self.action_space.n))
        # The optimiser was built over SB3's linear action head: build it again over the policy's parameters.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
