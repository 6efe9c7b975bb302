"""Full-ranking metrics for next-item prediction: HR@K, NDCG@K, MRR@K and the RecSys Challenge 2018 measures.

With one held-out target per user, each metric is a function of the target's 0-based rank r among all
ranked items (r = number of items scored strictly higher than the target):

* `HR@K = 1[r < K]`
* `NDCG@K = 1[r < K] / log2(r + 2)` (the ideal DCG of a single relevant item is 1)
* `MRR@K = 1[r < K] / (r + 1)`
* R-precision (RecSys Challenge 2018, Chen et al., "Recommender systems challenge 2018"):
  `|G ∩ top_|G|| / |G|` for the relevant set G; with one relevant item (leave-one-out, |G| = 1) it is
  `1[r < 1]`, i.e. HR@1. The challenge also credits artist matches (0.25 each); items here have no
  artist, so only exact item matches count.
* Recommended songs clicks (same challenge): the pages of 10 a user refreshes before the first relevant
  item appears, `floor(r / 10)` (= `floor((rank - 1) / 10)` with the 1-based rank) when it is in the top
  500, else 51 (one more than the 50 pages a 500-item list has). Lower is better.

Ties count in the target's favour (only strictly higher scores push it down), the convention of the
SASRec and HSTU reference evaluators.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

METRIC_NAMES = ("hr", "ndcg", "mrr")
CHALLENGE_METRICS = ("r_precision", "clicks")
"""Keys of the RecSys Challenge 2018 measures in `ranking_metrics` (not per cutoff)."""
CLICKS_PAGE = 10
"""Items per refresh of the recommended songs list."""
CLICKS_LIST = 500
"""Length of the challenge's submitted list; a target below it costs `CLICKS_MISS` clicks."""
CLICKS_MISS = CLICKS_LIST // CLICKS_PAGE + 1


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


def r_precision(ranks: torch.Tensor) -> torch.Tensor:
    """`[B]` R-precision per row with one relevant item: 1 when it is ranked first (HR@1)."""
    return (ranks < 1).float()


def recommended_songs_clicks(ranks: torch.Tensor) -> torch.Tensor:
    """`[B]` recommended songs clicks per row: `floor(rank / 10)` inside the top 500, else 51."""
    return torch.where(ranks < CLICKS_LIST, ranks // CLICKS_PAGE, CLICKS_MISS).float()


def ranking_metrics(ranks: torch.Tensor, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Means over rows: `{"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "hr@20": ..., "r_precision": ...,
    "clicks": ...}`."""
    if ranks.numel() == 0:
        raise ValueError("ranking_metrics: no rows to evaluate")
    functions = {"hr": hit_rate, "ndcg": ndcg, "mrr": mrr}
    out = {f"{name}@{k}": float(functions[name](ranks, k).mean()) for k in ks for name in METRIC_NAMES}
    out["r_precision"] = float(r_precision(ranks).mean())
    out["clicks"] = float(recommended_songs_clicks(ranks).mean())
    return out


def list_metrics(recommended: Sequence[Sequence], relevant: Sequence[set]) -> dict[str, float | None]:
    """Mean R-precision and recommended songs clicks of ranked lists against relevant sets (challenge form).

    Args:
        recommended: per row, the recommended items, best first.
        relevant: per row, the set G of relevant items; rows with an empty G are skipped.

    Returns:
        `{"r_precision": ..., "clicks": ..., "rows": ...}`; "clicks" is None when some evaluated list is
        shorter than 500 items and holds none of its relevant items (its clicks are then unknown).
    """
    if len(recommended) != len(relevant):
        raise ValueError(f"list_metrics: {len(recommended)} lists but {len(relevant)} relevant sets")
    precision, clicks, known = [], [], True
    for items, truth in zip(recommended, relevant, strict=True):
        if not truth:
            continue
        items = list(items)
        precision.append(len(truth.intersection(items[: len(truth)])) / len(truth))
        first = next((i for i, item in enumerate(items[:CLICKS_LIST]) if item in truth), None)
        if first is None:
            known = known and len(items) >= CLICKS_LIST
            clicks.append(CLICKS_MISS)
        else:
            clicks.append(first // CLICKS_PAGE)
    if not precision:
        raise ValueError("list_metrics: no row has a relevant item")
    return {
        "r_precision": float(np.mean(precision)),
        "clicks": float(np.mean(clicks)) if known else None,
        "rows": len(precision),
    }


def held_out_list_metrics(frame, logs, holdout_last: int) -> dict[str, float | None]:
    """`list_metrics` of `seqrec recommend`'s output against each user's last `holdout_last` events.

    Args:
        frame: recommendations with columns `user_id`, `rank`, `item_id` (raw tokens).
        logs: the `recsim_env.data.LoggedInteractions` the recommendations were made from.
        holdout_last: events held out at the end of each history (users with no event left before
            them are skipped).
    """
    if holdout_last < 1:
        raise ValueError(f"holdout_last must be >= 1 to have held-out items, got {holdout_last}")
    sequences = logs.sequences()
    item_tokens = np.asarray(logs.item_ids.tokens, dtype=object)
    ordered = frame.sort_values(["user_id", "rank"], kind="stable")
    lists = {user: group["item_id"].tolist() for user, group in ordered.groupby("user_id", sort=False)}
    recommended, relevant = [], []
    for user, start, end in zip(
        logs.user_ids.tokens, sequences.offsets[:-1], sequences.offsets[1:], strict=True
    ):
        if end - start <= holdout_last:
            continue
        recommended.append(lists.get(user, []))
        relevant.append(set(item_tokens[sequences.item_ids[end - holdout_last : end]].tolist()))
    return list_metrics(recommended, relevant)
