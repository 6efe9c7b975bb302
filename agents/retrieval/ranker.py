"""Stage two of retrieve-then-rank: a ranker over the k candidates, as SB3 policies (PPO and DQN).

Every candidate is scored by one shared network of its features and the user's (so the policy is
equivariant to the candidates' order and its size does not grow with the catalogue):

    s_j     = w_s <q(u), e_j> + MLP_s([x_j, u])   x_j: candidate j's row of `candidates` [D + 6], u: `user`
    PPO     pi(j | s) = softmax_j(s_j);  V(s) = MLP_v([u, mean_j x_j, sum_j pi(j | s) x_j])
    DQN     Q(s, j) = s_j                          (`agents.retrieval.dqn`)

The query q(u) is the heuristic query h (the first D user features; then <q, e_j> is the retrieval
score column of `candidates`) or, with a learned query, the Wolpertinger proto-action (Dulac-Arnold
et al. 2015, "Deep Reinforcement Learning in Large Discrete Action Spaces", Sec. 4):

    q(u) = normalize(h + r tanh(MLP_q(u)) / sqrt(D))     ||q_raw - h|| <= r = `query_radius`

whose last layer starts at zero, so q starts at h. The environment retrieves the candidates with the
current q (`LiveScorer`), and the ranker's loss trains q through the score term: the paper trains its
actor with the critic's gradient (DDPG); here PPO's policy gradient raises <q, e_j> for candidates of
positive advantage and DQN's TD loss moves q toward candidates whose value it underestimated.

`CandidateRankerExtractor` computes `[logits (k), value features (H)]`; `CandidateRankerPolicy` is
SB3's `MultiInputActorCriticPolicy` with no policy MLP, an action head that reads the logits out of
the features, and a value MLP over the features. The last scoring layer starts at zero and the
learned weight w_s at `score_prior`, so the first policy is softmax(score_prior x score): RL starts
from the retrieval stage's order and learns corrections to it (SB3's orthogonal init is off: it
would rescale the zeroed layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.retrieval.candidates import CANDIDATE_STATS


class CandidateScorerMixin:
    """The shared per-candidate scorer `s_j` and the query `q(u)` of an SB3 features extractor."""

    def build_scorer(
        self,
        width: int,
        user_width: int,
        hidden: int,
        score_prior: float,
        learned_query: bool,
        query_radius: float,
    ) -> None:
        self.dim = int(width) - len(CANDIDATE_STATS)  # `candidates` = [embedding (D), score, 5 more stats]
        self.score_column = self.dim
        self.query_radius = float(query_radius)
        self.score_weight = nn.Parameter(torch.tensor(float(score_prior)))
        self.scorer = nn.Sequential(
            nn.Linear(width + user_width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip
        nn.init.zeros_(self.scorer[-1].weight)
        nn.init.zeros_(self.scorer[-1].bias)
        self.query_actor = None
        if learned_query:
            self.query_actor = nn.Sequential(
                nn.Linear(user_width, hidden), nn.ReLU(), nn.Linear(hidden, self.dim)
            )
            nn.init.zeros_(self.query_actor[-1].weight)
            nn.init.zeros_(self.query_actor[-1].bias)

    def query(self, user: torch.Tensor) -> torch.Tensor:
        """`[B, D]` retrieval queries for the user features `[B, U]` (the heuristic h without an actor)."""
        heuristic = user[:, : self.dim]
        if self.query_actor is None:
            return heuristic
        step = self.query_radius * torch.tanh(self.query_actor(user)) / math.sqrt(self.dim)
        return nn.functional.normalize(heuristic + step, dim=1)

    def logits(self, candidates: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """`[B, k]` scores `s_j` of the candidates `[B, k, C]` for the users `[B, U]`."""
        if self.query_actor is None:
            score = candidates[..., self.score_column]
        else:
            score = torch.einsum("bkd,bd->bk", candidates[..., : self.dim], self.query(user))
        paired = torch.cat([candidates, user[:, None, :].expand(-1, candidates.shape[1], -1)], dim=2)
        return self.scorer(paired).squeeze(-1) + self.score_weight * score


class CandidateRankerExtractor(CandidateScorerMixin, BaseFeaturesExtractor):
    """`{candidates [B, k, C], user [B, U]} -> [B, k + H]`: per-candidate logits and value features.

    Args:
        observation_space: the `RetrievalEnv` observation space.
        hidden: H, the width of the scorer and of the value features.
        score_prior: initial weight w_s of the retrieval score.
        learned_query: add the query actor (a learned query).
        query_radius: r, the learned query's largest distance from the heuristic one.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        hidden: int = 64,
        score_prior: float = 0.0,
        learned_query: bool = False,
        query_radius: float = 0.5,
    ) -> None:
        k, width = observation_space["candidates"].shape
        user_width = observation_space["user"].shape[0]
        super().__init__(observation_space, k + hidden)
        self.n_candidates = int(k)
        self.build_scorer(width, user_width, hidden, score_prior, learned_query, query_radius)
        self.value_features = nn.Sequential(nn.Linear(user_width + 2 * width, hidden), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        candidates = observations["candidates"].float()  # [B, k, C]
        user = observations["user"].float()  # [B, U]
        logits = self.logits(candidates, user)  # [B, k]
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
        learned_query: bool = False,
        query_radius: float = 0.5,
        **kwargs,
    ) -> None:
        kwargs.setdefault("net_arch", {"pi": [], "vf": [hidden]})
        kwargs.setdefault("ortho_init", False)
        kwargs.setdefault("features_extractor_class", CandidateRankerExtractor)
        kwargs.setdefault(
            "features_extractor_kwargs",
            {
                "hidden": hidden,
                "score_prior": score_prior,
                "learned_query": learned_query,
                "query_radius": query_radius,
            },
        )
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = CandidateLogits(int(self.action_space.n))
        # The optimiser was built over SB3's linear action head: build it again over the policy's parameters.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    @property
    def scorer_module(self) -> CandidateScorerMixin:
        """The module holding the query and the candidate scores."""
        return self.features_extractor


class LiveScorer:
    """The environment's view of the ranker being trained (or a trained one): its query and its
    candidate scores, in numpy, without gradients.

    Args:
        module: the ranker's `CandidateScorerMixin` (its weights are read at every call).
    """

    def __init__(self, module: CandidateScorerMixin) -> None:
        self.module = module

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, np.float32), device=self.module.score_weight.device)

    @property
    def learned_query(self) -> bool:
        return self.module.query_actor is not None

    def query(self, user: np.ndarray) -> np.ndarray:
        """`[B, D]` queries for the user features `[B, U]`."""
        with torch.no_grad():
            return self.module.query(self._tensor(user)).cpu().numpy()

    def scores(self, ranker_obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """`[B, k]` scores of the candidates (logits for PPO, Q-values for DQN)."""
        with torch.no_grad():
            logits = self.module.logits(
                self._tensor(ranker_obs["candidates"]), self._tensor(ranker_obs["user"])
            )
            return logits.double().cpu().numpy()
