"""Full-ranking metrics for next-item prediction: HR@K, NDCG@K and MRR@K from the target's rank.

With one held-out target per user, each metric is a function of the target's 0-based rank r among all
ranked items (r = number of items scored strictly higher than the target):

* `HR@K = 1[r < K]`
* `NDCG@K = 1[r < K] / log2(r + 2)` (the ideal DCG of a single relevant item is 1)
* `MRR@K = 1[r < K] / (r + 1)`

Ties count in the target's favour (only strictly higher scores push it down), the convention of the
SASRec and HSTU reference evaluators.
"""

from __future__ import annotations

import torch

METRIC_NAMES = ("hr", "ndcg", "mrr")


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, *, excluded: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based rank of each row's target among all items.

    Args:
        scores: `[B, N]` item scores.
        targets: `[B]` target item indices.
        excluded: optional `[B, N]` bool, True for items removed from the ranking (e.g. already seen).
            The target itself is never removed, so a re-consumed item can still be ranked.

    Returns:
        `[B]` int64 ranks.
    """
    scores = scores.float()
    target_scores = scores.gather(1, targets[:, None])  # [B, 1]
    above = scores > target_scores
    if excluded is not None:
        above = above & ~excluded
    return above.sum(1)


def hit_rate(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """`[B]` HR@k per row: 1 when the target is in the top k."""
    return (ranks < k).float()


def ndcg(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """`[B]` NDCG@k per row with one relevant item: `1 / log2(rank + 2)` inside the top k."""
    return (ranks < k).float() / torch.log2(ranks.float() + 2.0)


def mrr(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """`[B]` MRR@k per row: `1 / (rank + 1)` inside the top k."""
    return (ranks < k).float() / (ranks.float() + 1.0)


def ranking_metrics(ranks: torch.Tensor, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Means over rows: `{"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "hr@20": ...}`."""
    if ranks.numel() == 0:
        raise ValueError("ranking_metrics: no rows to evaluate")
    functions = {"hr": hit_rate, "ndcg": ndcg, "mrr": mrr}
    return {f"{name}@{k}": float(functions[name](ranks, k).mean()) for k in ks for name in METRIC_NAMES}
