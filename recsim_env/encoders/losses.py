"""Next-item losses over tied item embeddings: full softmax, sampled BCE and sampled softmax.

All take states `[M, D]` and target item indices `[M]` (one row per training position) and a `score`
callable with `SequenceEncoder.score`'s signature, so that an output bias or a temperature is applied
the same way in training and in ranking.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def full_softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the targets under a softmax over all N items.

    `-mean_m log softmax(logits_m)[y_m]` with logits `[M, N]`; the default loss, exact and cheap for
    catalogues of thousands of items.
    """
    return F.cross_entropy(logits.float(), targets)


def sampled_bce(
    score: ScoreFn,
    states: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_items: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with one uniform negative per target (the SASRec paper's loss, Kang & McAuley 2018).

    `-mean_m [log sigma(s(h_m, y_m)) + log(1 - sigma(s(h_m, j_m)))]`, `j_m ~ U{0..N-1}` resampled when it
    equals the target.
    """
    negatives = _uniform(targets.shape, n_items, targets.device, generator)
    clash = negatives == targets
    negatives[clash] = (negatives[clash] + 1) % n_items  # a negative is never the target itself
    logits = score(states, torch.stack([targets, negatives], dim=-1)).float()  # [M, 2]
    pos = F.logsigmoid(logits[:, 0])
    neg = F.logsigmoid(-logits[:, 1])
    return -(pos + neg).mean()


def sampled_softmax(
    score: ScoreFn,
    states: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_items: int,
    n_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over the target and `K` uniform negatives shared by the batch.

    `-mean_m log [exp s(h_m, y_m) / (exp s(h_m, y_m) + sum_k exp s(h_m, j_k))]`; a negative that happens to
    equal the row's target is removed from that row (accidental hit). Uniform sampling needs no logQ
    correction. For catalogues too large for the full softmax.
    """
    negatives = _uniform((n_negatives,), n_items, targets.device, generator)  # [K]
    pos = score(states, targets[:, None])  # [M, 1]
    neg = score(states, negatives)  # [M, K]: one shared candidate list, a single matrix product
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=-1).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))


def _uniform(shape, n_items: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    if generator is not None and generator.device != device:
        return torch.randint(n_items, shape, generator=generator).to(device)
    return torch.randint(n_items, shape, generator=generator, device=device)
