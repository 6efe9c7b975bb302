"""DT4IER's networks: the multi-reward embedding, the balancing network (and the user attributes it
reads), and the decision transformer over (R_t, s_t, a_t) tokens."""

from __future__ import annotations

import torch
from torch import nn

from agents.dt4ier.config import DT4IERConfig
from recsim_env.encoders.base import attention_mask
from recsim_env.encoders.sasrec import SASRecBlock


class RewardEmbedding(nn.Module):
    """DT4IER's multi-reward embedding: soft buckets over B learned meta embeddings.

    `beta(R) = softmax(h + W_r h)`, `h = LeakyReLU(W R)` (a small network of the 2-D return R), and
    `e_R = sum_b beta_b(R) M_b` with `M` the [B, D] meta embeddings.
    """

    def __init__(self, d_model: int, n_buckets: int, n_rewards: int = 2) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(n_rewards, n_buckets), nn.LeakyReLU())
        self.residual = nn.Linear(n_buckets, n_buckets, bias=False)
        self.meta = nn.Parameter(torch.randn(n_buckets, d_model) / d_model**0.5)
        # Returns come normalised to about [0, 1]: start with buckets that tell such values apart.
        nn.init.normal_(self.score[0].weight, std=4.0)
        nn.init.uniform_(self.score[0].bias, -2.0, 2.0)

    def bucket_weights(self, returns: torch.Tensor) -> torch.Tensor:
        """[..., 2] -> [..., B] bucket weights (a softmax: non-negative, sum 1)."""
        h = self.score(returns)
        return torch.softmax(h + self.residual(h), dim=-1)

    def forward(self, returns: torch.Tensor) -> torch.Tensor:
        """[..., 2] -> [..., D]."""
        return self.bucket_weights(returns) @ self.meta


class BalancingNet(nn.Module):
    """Adaptive return balancing: user attributes [..., A] -> (w_s, w_l) = softmax(f(u)) [..., 2]."""

    def __init__(self, n_attributes: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_attributes, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, attributes: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(attributes), dim=-1)


def user_attributes(item_ids: torch.Tensor, feedback: torch.Tensor, pad_id: int) -> torch.Tensor:
    """[..., F + 1] observable profile of a state window [..., L] / [..., L, F] (scaled feedback): the
    mean of each signal over the window's real items (0 if none) and the fraction of real items."""
    real = (item_ids != pad_id).to(feedback.dtype)  # [..., L]
    count = real.sum(-1, keepdim=True)
    mean = (feedback * real[..., None]).sum(-2) / count.clamp(min=1.0)
    return torch.cat([mean, count / item_ids.shape[-1]], dim=-1)


class DecisionTransformer(nn.Module):
    """States by SASRec, actions by its item table, returns by `RewardEmbedding` (or a linear map);
    a strictly causal transformer over (R_t, s_t, a_t) tokens; y_t read at s_t's token."""

    def __init__(self, config: DT4IERConfig, n_items: int, n_feedback: int) -> None:
        super().__init__()
        from recsim_env.encoders import build

        d = config.d_model
        self.config = config
        self.n_items = n_items
        self.encoder = build(
            "sasrec",
            {
                "n_items": n_items,
                "max_len": config.history_len,
                "d_model": d,
                "n_layers": config.encoder_layers,
                "n_heads": config.n_heads,
                "dropout": config.dropout,
                "feedback_dim": n_feedback,
            },
        )
        self.tokens_per_step = 3 if config.return_conditioned else 2
        if not config.return_conditioned:
            self.return_embedding = None
        elif config.reward_encoder:
            self.return_embedding = RewardEmbedding(d, config.n_buckets)
        else:
            self.return_embedding = nn.Linear(2, d)
        self.balancing = BalancingNet(n_feedback + 1) if config.adaptive_weights else None
        self.type_embedding = nn.Embedding(self.tokens_per_step, d)
        self.step_embedding = nn.Embedding(config.context_len, d)
        self.embed_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(d, config.n_heads, config.dropout) for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, d)
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def encode_states(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """[M, L], [M, L, F] (scaled) -> [M, D] state embeddings."""
        return self.encoder.user_state(item_ids, feedback=feedback)

    def return_prompt(self, rtg: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """[..., 2] normalised return-to-go -> the prompt fed to the return embedding: 2 w(u) * R~
        with adaptive balancing, else R~."""
        if self.balancing is None:
            return rtg
        return 2.0 * self.balancing(attributes).detach() * rtg

    def predict(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        prompts: torch.Tensor | None,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted action embeddings y_t [B, K, D] at every step's state token.

        Args:
            states: [B, K, D] state embeddings.
            actions: [B, K] items (the pad id N where unknown: padding, or the step being predicted).
            prompts: [B, K, 2] return prompts (None for `bc`).
            valid: [B, K] bool, False at left padding.
        """
        b, k, d = states.shape
        parts = [states, self.encoder.item_embedding(actions)]
        if self.return_embedding is not None:
            parts.insert(0, self.return_embedding(prompts.to(states.dtype)))
        t = self.tokens_per_step
        tokens = torch.stack([part.to(states.dtype) for part in parts], dim=2)  # [B, K, T, D]
        steps = self.step_embedding(torch.arange(k - 1, -1, -1, device=states.device))  # counted from the end
        tokens = tokens + self.type_embedding.weight[None, None] + steps[None, :, None]
        x = self.dropout(self.embed_norm(tokens.reshape(b, k * t, d)))
        keep = valid.repeat_interleave(t, dim=1)  # [B, K T]
        mask = attention_mask(keep, causal=True)  # token i sees tokens j <= i, never padding
        x = x * keep[..., None]
        for block in self.blocks:
            x = block(x, mask) * keep[..., None]
        hidden = self.final_norm(x).view(b, k, t, d)[:, :, t - 2]  # the state tokens
        return self.action_head(hidden)

    def logits(self, predicted: torch.Tensor) -> torch.Tensor:
        """[..., D] predicted action embeddings -> [..., N] item logits (tied item table + bias)."""
        return self.encoder.score(predicted) + self.item_bias
