"""The DQN ranker: one Q-value per retrieved candidate from the shared per-candidate scorer (SB3 DQN).

    Q(s, j) = w_s <q(u), e_j> + MLP_s([x_j, u])                    (`agents.retrieval.ranker`)
    y       = sum_{t<n} gamma^t r_t + gamma^n Q_target(s_n, argmax_j Q(s_n, j))       (double DQN)
    loss    = Huber(Q(s, a) - y)

Double DQN (van Hasselt, Guez & Silver 2016, Eq. 4): the online network picks the next candidate and
the target network evaluates it; `double_q=False` is SB3's DQN target `max_j Q_target(s_n, j)`.
n-step returns come from SB3's `NStepReplayBuffer`, which does not take Dict observations, so the
DQN sees the ranker's observation flattened to one Box (`flatten_observation`: `candidates` [k, C]
row-major, then `user` [U], the layout of gymnasium's `FlattenObservation` of the Dict) and
`CandidateQExtractor` takes it apart again. The Q-network's last scoring layer starts at zero and
w_s at `score_prior`, so the first greedy policy is the retrieval order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn
from torch.nn import functional as F

from agents.retrieval.ranker import CandidateScorerMixin
from recsim_env.errors import ArgumentError


def flat_space(space: spaces.Dict) -> spaces.Box:
    """The Box of `flatten_observation`'s output for the ranker's Dict `space`."""
    k, width = space["candidates"].shape
    size = k * width + space["user"].shape[0]
    return spaces.Box(-np.inf, np.inf, (size,), np.float32)


def flatten_observation(ranker_obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """`[B, k C + U]`: the batched ranker observation, `candidates` row-major then `user`."""
    candidates = np.asarray(ranker_obs["candidates"], np.float32)
    return np.concatenate([candidates.reshape(len(candidates), -1), ranker_obs["user"]], axis=1)


class CandidateQExtractor(CandidateScorerMixin, BaseFeaturesExtractor):
    """`[B, k C + U] -> [B, k]` Q-values of the candidates (the observation's layout: `flat_space`).

    Args:
        observation_space: `flat_space` of the ranker's Dict space.
        n_candidates: k.
        user_width: U.
        hidden: the scorer's width.
        score_prior: initial weight w_s of the retrieval score.
        learned_query: add the query actor (a learned query).
        query_radius: r, the learned query's largest distance from the heuristic one.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        n_candidates: int,
        user_width: int,
        hidden: int = 64,
        score_prior: float = 0.0,
        learned_query: bool = False,
        query_radius: float = 0.5,
    ) -> None:
        super().__init__(observation_space, n_candidates)
        size = observation_space.shape[0] - user_width
        if size <= 0 or size % n_candidates:
            raise ArgumentError(
                f"observation_space {observation_space.shape}: not k C + U for k={n_candidates}"
            )
        self.n_candidates = int(n_candidates)
        self.width = size // self.n_candidates
        self.user_width = int(user_width)
        self.build_scorer(self.width, user_width, hidden, score_prior, learned_query, query_radius)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        flat = observations.float()
        split = self.n_candidates * self.width
        candidates = flat[:, :split].reshape(len(flat), self.n_candidates, self.width)  # [B, k, C]
        return self.logits(candidates, flat[:, split:])


class CandidateDQNPolicy(DQNPolicy):
    """SB3's `DQNPolicy` whose Q-network is `CandidateQExtractor` (no MLP after it)."""

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        lr_schedule,
        user_width: int,
        hidden: int = 64,
        score_prior: float = 0.0,
        learned_query: bool = False,
        query_radius: float = 0.5,
        **kwargs,
    ) -> None:
        kwargs.setdefault("net_arch", [])
        kwargs.setdefault("features_extractor_class", CandidateQExtractor)
        kwargs.setdefault(
            "features_extractor_kwargs",
            {
                "n_candidates": int(action_space.n), "user_width": user_width, "hidden": hidden,
                "score_prior": score_prior, "learned_query": learned_query, "query_radius": query_radius,
            },
        )  # fmt: skip
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_q_net(self):
        q_net = super().make_q_net()
        q_net.q_net = nn.Identity()  # the extractor's output is already the k Q-values
        return q_net

    @property
    def scorer_module(self) -> CandidateScorerMixin:
        """The module holding the query and the candidate scores (the online Q-network's)."""
        return self.q_net.features_extractor


class CandidateDQN(DQN):
    """SB3 DQN with an optional double-DQN target (`double_q`); everything else is SB3's `DQN.train`."""

    def __init__(self, *args, double_q: bool = True, **kwargs) -> None:
        self.double_q = bool(double_q)
        super().__init__(*args, **kwargs)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            replay = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            discounts = replay.discounts if replay.discounts is not None else self.gamma
            with torch.no_grad():
                target_q = self.q_net_target(replay.next_observations)  # [b, k]
                if self.double_q:
                    best = self.q_net(replay.next_observations).argmax(dim=1, keepdim=True)
                    next_q = torch.gather(target_q, 1, best)
                else:
                    next_q = target_q.max(dim=1, keepdim=True).values
                target = replay.rewards + (1 - replay.dones) * discounts * next_q
            current = torch.gather(self.q_net(replay.observations), 1, replay.actions.long())
            loss = F.smooth_l1_loss(current, target)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
