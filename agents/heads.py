"""Action heads tied to the encoder's item embeddings, and the SB3 policies that use them.

An untied head learns one output row per item from scratch: with N = 500 items and a few hundred
thousand steps, each row sees a few hundred updates. A tied head scores item i by the match of a
projected state with the item's embedding, the same table the encoder reads histories with, so what
is learnt about one item carries over to items with similar embeddings (SASRec's output layer, Kang &
McAuley 2018, applied to the policy and Q-heads):

    logits_i = <W h, e_i> + b_i          h: the head's input [B, H]; e_i: item i's embedding [D]

`W` starts small (gain 0.01, as SB3 initialises its action head) so the first policy is near uniform.
"""

from __future__ import annotations

import torch
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.dqn.policies import MultiInputPolicy as MultiInputQPolicy
from torch import nn

from recsim_env.encoders.base import SequenceEncoder

ACTION_HEADS = ("tied", "mlp")
"""`tied`: `TiedItemHead` on the encoder's item table; `mlp`: SB3's own linear layer per item."""


class TiedItemHead(nn.Module):
    """`[B, H] -> [B, N]` item logits `<W h, e_i> + b_i` over the encoder's item table.

    The encoder is referenced, not registered: its parameters belong to the features extractor (a
    second registration would save every item embedding twice and share memory across checkpoint keys).
    """

    def __init__(self, in_dim: int, encoder: SequenceEncoder) -> None:
        super().__init__()
        d_model = int(encoder.item_table().shape[1])
        self.projection = nn.Linear(in_dim, d_model, bias=False)
        nn.init.orthogonal_(self.projection.weight, gain=0.01)
        self.bias = nn.Parameter(torch.zeros(encoder.n_items))
        object.__setattr__(self, "_encoder", encoder)  # not a submodule (see the class docstring)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        items = self._encoder.item_table()  # [N, D]
        return self.projection(hidden) @ items.T + self.bias


class TiedActorCriticPolicy(MultiInputActorCriticPolicy):
    """SB3's actor-critic for Dict observations (PPO, A2C) with a `TiedItemHead` as its action head."""

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        extractor = self.features_extractor if self.share_features_extractor else self.pi_features_extractor
        self.action_net = TiedItemHead(self.mlp_extractor.latent_dim_pi, extractor.encoder)
        # The optimiser was built over the untied head: build it again over the policy's parameters now.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


class TiedQPolicy(MultiInputQPolicy):
    """SB3's DQN policy for Dict observations whose Q-network (and target) ends in a `TiedItemHead`."""

    def make_q_net(self):
        q_net = super().make_q_net()
        last = q_net.q_net[-1]
        q_net.q_net[-1] = TiedItemHead(last.in_features, q_net.features_extractor.encoder).to(
            last.weight.device
        )
        return q_net


def sb3_policy_class(algo: str, action_head: str) -> str | type:
    """The SB3 policy for `algo` with `action_head` ("MultiInputPolicy" for the untied head)."""
    if action_head == "mlp":
        return "MultiInputPolicy"
    return TiedQPolicy if algo == "dqn" else TiedActorCriticPolicy
