"""DT4IER's losses as pure functions: the return-balancing loss L_bal, the action cross-entropy L_ce
and the contrastive InfoNCE L_contra of L = L_ce + alpha L_contra (package docstring)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def balancing_loss(weights: torch.Tensor, returns: torch.Tensor, gamma: float) -> torch.Tensor:
    """L_bal: the mean over rows of `-(w_s R_s + w_l R_l) + gamma |w_s R_s - w_l R_l|` (weights, returns: [B, 2])."""
    weighted = weights * returns
    return (-weighted.sum(-1) + gamma * (weighted[..., 0] - weighted[..., 1]).abs()).mean()


def action_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_ce: the cross-entropy of the logged actions `targets` [M] under item `logits` [M, N] (in float32)."""
    return F.cross_entropy(logits.float(), targets)


def contrastive_loss(
    predicted: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    same: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_contra: InfoNCE with cosine similarities: -log softmax([cos(y, e+), cos(y, e-_1..Q)] / tau)[0].

    Args:
        predicted: [M, D] predicted action embeddings; positive: [M, D] embeddings of the logged actions;
        negatives: [M, Q, D] (per row) or [1, Q, D] (shared) negative embeddings; same: optional [M, Q],
        True where a negative is the positive item itself (left out).
    """
    pos = F.cosine_similarity(predicted, positive, dim=-1)[:, None]
    neg = F.cosine_similarity(predicted[:, None], negatives, dim=-1)
    if same is not None:
        neg = neg.masked_fill(same, float("-inf"))
    logits = torch.cat([pos, neg.expand(len(pos), -1)], dim=1).float() / tau
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
