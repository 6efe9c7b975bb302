"""TSCAC's networks: the softmax actor over items (`Actor`, one or several heads on a SASRec trunk)
and the critic with one value head per signal (`Critic`)."""

from __future__ import annotations

import torch
from torch import nn

from agents.tscac.config import SIGNALS, TSCACConfig


def _encoder(config: TSCACConfig, n_items: int) -> nn.Module:
    from recsim_env.encoders import build

    return build(
        "sasrec",
        {
            "n_items": n_items,
            "max_len": config.history_len,
            "d_model": config.d_model,
            "n_layers": config.n_layers,
            "dropout": config.dropout,
            "feedback_dim": len(SIGNALS),
        },
    )


class Actor(nn.Module):
    """Softmax policies over items on one SASRec trunk: `logits_h = score(head_h(encoder(s))) + b_h`.

    `n_heads` policies share the state encoder (stage one's pi_i are the heads of one actor, so the
    five of them cost one forward pass); each head has its own projection and item bias and is
    trained only by its own loss. Logits are [B, H, N], or [B, H, C] over candidates.
    """

    def __init__(self, config: TSCACConfig, n_items: int, n_heads: int = 1) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.encoder = _encoder(config, n_items)
        self.head = nn.Linear(config.d_model, config.d_model * n_heads)
        self.item_bias = nn.Parameter(torch.zeros(n_heads, n_items))
        self.register_buffer("feedback_scale", torch.as_tensor(config.reward_scale))

    def state(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """[B, L], [B, L, 6] -> [B, H, D]."""
        state = self.encoder.user_state(item_ids, feedback=feedback * self.feedback_scale)
        return self.head(state).view(len(state), self.n_heads, -1)

    def logits(self, item_ids: torch.Tensor, feedback: torch.Tensor, items: torch.Tensor | None = None):
        """[B, H, N] logits, or [B, H, C] of the candidates `items` [B, C]."""
        state = self.state(item_ids, feedback)
        if items is None:
            return self.encoder.score(state) + self.item_bias
        heads = torch.arange(self.n_heads, device=items.device)[:, None]
        return (
            self.encoder.score(state, items[:, None].expand(-1, self.n_heads, -1))
            + self.item_bias[heads, items[:, None]]
        )

    def log_prob(self, item_ids, feedback, action, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """[B, H] log pi_h(a|s): full softmax, or sampled softmax over (a, candidates [C]) when given."""
        if candidates is None:
            logits = self.logits(item_ids, feedback)  # [B, H, N]
            return torch.log_softmax(logits, -1).gather(2, action[:, None, None].expand(-1, self.n_heads, 1))[
                ..., 0
            ]
        items = torch.cat([action[:, None], candidates.expand(len(action), -1)], dim=1)  # [B, 1 + C]
        logits = self.logits(item_ids, feedback, items)  # [B, H, 1 + C]
        # A candidate equal to the logged item would be counted twice: mask the duplicate out.
        duplicate = torch.cat(
            [torch.zeros_like(action[:, None], dtype=torch.bool), items[:, 1:] == action[:, None]], 1
        )
        return torch.log_softmax(logits.masked_fill(duplicate[:, None], float("-inf")), -1)[..., 0]


class Critic(nn.Module):
    """V_i(s) of every signal i: one encoder, one linear head per signal -> [B, 6]."""

    def __init__(self, config: TSCACConfig, n_items: int) -> None:
        super().__init__()
        self.encoder = _encoder(config, n_items)
        self.values = nn.Linear(config.d_model, len(SIGNALS))
        self.register_buffer("feedback_scale", torch.as_tensor(config.reward_scale))

    def forward(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        return self.values(self.encoder.user_state(item_ids, feedback=feedback * self.feedback_scale))
