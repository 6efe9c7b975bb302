"""The click model's loss and validation metrics, as pure functions."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def click_loss(logits: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the logged clicks `[B]` (0 / 1) under click `logits` `[B]`, in float32:

    L = -mean_i [c_i log sigma(z_i) + (1 - c_i) log(1 - sigma(z_i))].
    """
    return F.binary_cross_entropy_with_logits(logits.float(), clicks.float())


def click_auc(clicks: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` `[M]` against binary `clicks` `[M]` (ties count one half); NaN with one class only."""
    clicks = np.asarray(clicks, dtype=bool)
    positives = int(clicks.sum())
    negatives = len(clicks) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    # 1-based ranks of the scores, the mean rank of its group for tied scores (so a tie counts one half)
    _, group, counts = np.unique(
        np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True
    )
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[group.reshape(-1)]
    return float((ranks[clicks].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def mean_click_loss(clicks: np.ndarray, logits: np.ndarray) -> float:
    """`click_loss` on numpy arrays (float64), for validation."""
    z = np.asarray(logits, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - c * z))
