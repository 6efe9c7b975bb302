"""The surrogate's distillation losses: Yue et al.'s ranking distillation and the few-shot paper's
bidirectional repair loss (small pure functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------------------------------ losses
def ranking_distillation_loss(
    scores: torch.Tensor,
    lists: torch.Tensor,
    negatives: torch.Tensor,
    *,
    margin_topk: float,
    margin_negative: float,
) -> torch.Tensor:
    """Yue et al. (2021)'s ranking loss: the surrogate keeps the victim's order and puts it above the rest.

    With the victim's list `v_1..v_k` (best first), surrogate scores `s` and uniform unlisted negatives
    `n_1..n_k`:
    `mean_i max(0, s(v_{i+1}) - s(v_i) + lambda_1) + mean_i max(0, s(n_i) - s(v_i) + lambda_2)`
    (their code's two `MarginRankingLoss` terms).

    Args:
        scores: `[B, N]` surrogate scores.
        lists: `[B, k]` victim lists, best first.
        negatives: `[B, k]` items outside each row's list.
    """
    listed = scores.gather(1, lists)  # [B, k]
    order = (
        F.relu(listed[:, 1:] - listed[:, :-1] + margin_topk).mean()
        if lists.shape[1] > 1
        else listed.sum() * 0
    )
    against = F.relu(scores.gather(1, negatives) - listed + margin_negative).mean()
    return order + against


def bidirectional_repair_loss(
    scores: torch.Tensor, lists: torch.Tensor, seen: torch.Tensor, *, k: int, margin: float
) -> torch.Tensor:
    """Repair the surrogate's top-k where it disagrees with the victim's list, in both directions.

    With `V` the victim's top-k, `W` its whole list, `S` the surrogate's top-k (items of the history
    excluded, as the victim serves), `t_S` the surrogate's k-th best score and `t_V` the surrogate's
    lowest score over `V` (both held constant):

    * victim -> surrogate, items the surrogate misses, `v in V \\ S`: `max(0, t_S - s(v) + m)`, raises them;
    * surrogate -> victim, items the victim does not list, `u in S \\ W`: `max(0, s(u) - t_V + m)`,
      lowers them below every item of `V`.

    The sum of both over the flagged items, divided by k, averaged over rows; 0 when `S = V`.

    Args:
        scores: `[B, N]` surrogate scores.
        lists: `[B, k_list]` victim lists, best first (`k_list >= k`).
        seen: `[B, N]` bool, True at the history's items.
    """
    visible = scores.masked_fill(seen, float("-inf"))
    surrogate_top = visible.topk(k, dim=1).indices  # [B, k]
    victim_top = lists[:, :k]
    in_victim_top = torch.zeros_like(seen).scatter_(1, victim_top, True)
    in_victim_list = torch.zeros_like(seen).scatter_(1, lists, True)
    in_surrogate_top = torch.zeros_like(seen).scatter_(1, surrogate_top, True)
    surrogate_threshold = visible.gather(1, surrogate_top[:, -1:]).detach()  # [B, 1]
    victim_threshold = scores.gather(1, victim_top).min(1, keepdim=True).values.detach()  # [B, 1]
    missed = in_victim_top & ~in_surrogate_top
    intruding = in_surrogate_top & ~in_victim_list
    raise_missed = F.relu(surrogate_threshold - scores + margin) * missed
    lower_intruding = F.relu(scores - victim_threshold + margin) * intruding
    return (raise_missed + lower_intruding).sum(1).mean() / k
