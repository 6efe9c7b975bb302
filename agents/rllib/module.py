"""RLModules over a project sequence encoder: a shared trunk with policy and value heads (PPO), or Q-heads (DQN).

The trunk is `agents.sb3.SequenceFeaturesExtractor` (one implementation for both backends):
`f(s) = concat(encoder.user_state(item_ids, feedback), g(log1p(session_step)), g(log1p(gap_days)))`.

`model_config` keys (a plain dict, as RLlib passes it to every runner and learner):
`encoder` (name), `encoder_config` (dict), `encoder_checkpoint` (directory or None), `freeze_encoder`,
`mask_history` (logits of items in the observed history set to the minimum float), `hidden_dim`.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN
from torch import nn

from agents.sb3 import SequenceFeaturesExtractor

DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "encoder": "sasrec",
    "encoder_config": {},
    "encoder_checkpoint": None,
    "freeze_encoder": False,
    "mask_history": False,
    "hidden_dim": 128,
}


def model_config(**changes: Any) -> dict[str, Any]:
    """`DEFAULT_MODEL_CONFIG` with `changes`; an unknown key is an error."""
    unknown = sorted(set(changes) - set(DEFAULT_MODEL_CONFIG))
    if unknown:
        raise ValueError(f"unknown RLModule config key(s) {unknown}; known: {sorted(DEFAULT_MODEL_CONFIG)}")
    return {**DEFAULT_MODEL_CONFIG, **changes}


def build_trunk(observation_space, config: dict[str, Any]) -> SequenceFeaturesExtractor:
    return SequenceFeaturesExtractor(
        observation_space,
        encoder=config["encoder"],
        encoder_config=dict(config["encoder_config"]),
        checkpoint=config["encoder_checkpoint"],
        freeze=config["freeze_encoder"],
    )


def mask_history(logits: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
    """`[B, N]` logits with the items of `item_ids` `[B, L]` (pad id N ignored) set to the minimum float."""
    n_items = logits.shape[-1]
    seen = torch.zeros(logits.shape[0], n_items + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, item_ids.long().clamp(0, n_items), True)
    return logits.masked_fill(seen[:, :n_items], FLOAT_MIN)


def _head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def check_discrete(action_space) -> int:
    """N for a `Discrete(N)` action space; a `ValueError` for slates (independent per-position sampling would
    repeat items)."""
    import gymnasium as gym

    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"the RLlib modules recommend one item (slate_size=1, a Discrete action space), got {action_space}"
        )
    return int(action_space.n)


class SequenceActorCriticModule(TorchRLModule, ValueFunctionAPI):
    """Actor-critic over a sequence encoder (for PPO; Schulman et al. 2017, arXiv:1707.06347).

    `pi(a | s) = softmax(W_pi2 ReLU(W_pi1 f(s)))` over the N items (history items masked to the minimum
    logit with `mask_history`) and `V(s) = W_v2 ReLU(W_v1 f(s))`, both on the shared trunk `f`.
    """

    def setup(self) -> None:
        config = {**DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        n_items = check_discrete(self.action_space)
        self.mask_history = bool(config["mask_history"])
        self.trunk = build_trunk(self.observation_space, config)
        self.pi = _head(self.trunk.features_dim, config["hidden_dim"], n_items)
        self.vf = _head(self.trunk.features_dim, config["hidden_dim"], 1)

    def logits(self, obs: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        """`[B, N]` policy logits."""
        logits = self.pi(features)
        return mask_history(logits, obs["item_ids"]) if self.mask_history else logits

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        features = self.trunk(batch[Columns.OBS])  # [B, D + 2S]
        return {
            Columns.ACTION_DIST_INPUTS: self.logits(batch[Columns.OBS], features),
            Columns.EMBEDDINGS: features,
        }

    def compute_values(self, batch: dict[str, Any], embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self.trunk(batch[Columns.OBS])
        return self.vf(embeddings).squeeze(-1)  # [B]

    def action_probabilities(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`[B, N]` pi(a | s)."""
        return torch.softmax(self.logits(obs, self.trunk(obs)), dim=-1)


class _TrunkEncoder(nn.Module):
    """The trunk in the shape RLlib's DQN expects of an encoder: a batch in, `{ENCODER_OUT: features}` out."""

    def __init__(self, trunk: SequenceFeaturesExtractor) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {ENCODER_OUT: self.trunk(batch[Columns.OBS])}


class SequenceQModule(DefaultDQNTorchRLModule):
    """Q-network over a sequence encoder (for DQN; Mnih et al. 2015, with double Q-learning).

    `Q(s, a) = W_q2 ReLU(W_q1 f(s))_a` on the trunk `f`; RLlib's DQN module supplies the target
    network (a copy of trunk and head), epsilon-greedy exploration and the TD loss
    `(r + gamma Q_target(s', argmax_a Q(s', a)) - Q(s, a))^2`. `mask_history` is applied to the
    Q-values of items already in the history, so they are never the argmax.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["catalog_class"] = (
            None  # the trunk replaces the catalog's encoder (it cannot read Dict spaces)
        )
        TorchRLModule.__init__(self, *args, **kwargs)

    def setup(self) -> None:
        config = {**DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        n_items = check_discrete(self.action_space)
        from ray.rllib.utils.schedules.scheduler import Scheduler

        self.uses_dueling = False
        self.uses_double_q = bool(config.get("double_q", True))
        self.num_atoms = 1
        self.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=config.get("epsilon", [(0, 1.0), (10_000, 0.05)]), framework="torch"
        )
        self.mask_history = bool(config["mask_history"])
        trunk = build_trunk(self.observation_space, config)
        self.encoder = _TrunkEncoder(trunk)
        self.af = _head(trunk.features_dim, config["hidden_dim"], n_items)

    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = super().compute_q_values(batch)
        if self.mask_history:
            out["qf_preds"] = mask_history(out["qf_preds"], batch[Columns.OBS]["item_ids"])
        return out

    def forward_target(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = super().forward_target(batch)
        if self.mask_history:
            out["qf_preds"] = mask_history(out["qf_preds"], batch[Columns.OBS]["item_ids"])
        return out

    def action_probabilities(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`[B, N]` the greedy policy: one-hot on argmax_a Q(s, a) (exploration is training-only)."""
        q_values = self.compute_q_values({Columns.OBS: obs})["qf_preds"]
        return nn.functional.one_hot(q_values.argmax(dim=-1), q_values.shape[-1]).float()


MODULES: dict[str, type[TorchRLModule]] = {"ppo": SequenceActorCriticModule, "dqn": SequenceQModule}
"""RLModule class by algorithm."""
