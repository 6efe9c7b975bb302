"""ICSRec: intent contrastive learning with cross subsequences on a SASRec backbone (Qin et al., WSDM 2024,
"Intent Contrastive Learning with Cross Subsequences for Sequential Recommendation", arXiv:2310.14318).

The model is SASRec (same input, blocks, final LayerNorm and tied scoring; inference is SASRec's); ICSRec
is its training objective. Following the paper and the authors' code (QinHsiu/ICSRec, trainers.py,
datasets.py):

* Cross subsequences. The authors' dynamic segmentation cuts every training sequence into its
  right-truncated prefixes, each a training example whose target is the item that follows it, and pairs
  each prefix with another prefix, of any user, that has the same target (eq. 3-4). In a causal encoder
  the hidden state at position t of a window *is* the representation of the prefix `s_1..s_t`, so every
  position of the trainer's windows that has a target is one such subsequence. The positives are found
  within the batch: among the M positions with a target, every position whose target item also appears
  at another position can anchor; `contrastive_rows` anchors are drawn uniformly (without replacement),
  and each is paired with a uniformly drawn other position of the same target.
* CICL, coarse-grain intent contrastive learning (eq. 6-7): InfoNCE between the states of an anchor
  and its partner, `-log exp(s(h, h+)/tau) / sum_{v in V} exp(s(h, v)/tau)`, over the 2 x rows views
  `V` of the anchors and partners, with the authors' false-negative mask (FNM, their `--f_neg`, on in
  every script): views with the same target as the anchor are left out of its negatives.
* FICL, fine-grain intent contrastive learning (eq. 8-10): each view is pulled towards its intent, the
  centroid `c_k` of its k-means cluster of subsequence states, against the other views and their intents,
  intents equal to its own masked out (FNM). Centroids are constants of the loss (no gradient).
* `L = L_next + lambda * L_CICL + beta * L_FICL` (eq. 11); the next-item loss is over every target
  position (SASRec's), where the authors' code trains the last position of each subsequence only.
* Similarities are dot products with temperature tau = 1, the authors' defaults (`--sim dot`,
  `--temperature 1.0`); lambda = beta = 0.1 and 512 intents are their ML-1M script's settings.

Where the intents come from, and why it differs: the authors run faiss k-means over the states of all
training subsequences before every epoch (in eval mode). The trainer here has no epoch hook, so the
intents are an online (mini-batch) k-means kept in non-persistent buffers: at every training step, the
detached states of all M target positions are assigned to their nearest centroid, and each centroid that
receives points moves to `(m N_k c_k + (1 - m) S_k) / (m N_k + (1 - m) n_k)` (`m = intent_momentum`,
`n_k`/`S_k` the batch's count and sum of its points, `N_k <- m N_k + (1 - m) n_k` the running count), the
exponential-moving-average form of k-means that also tracks a drifting encoder (VQ-VAE's EMA codebook
update). The centroids start from `n_intents` distinct states of the first batch. They are training state
only: not saved, and the weights restored after early stopping do not carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recsim_env.checks import check_config_fields, check_integer, check_real
from recsim_env.encoders.base import IGNORE_TARGET, TrainingBatch
from recsim_env.encoders.sasrec import SASRec, SASRecConfig


@dataclass(frozen=True, kw_only=True)
class ICSRecConfig(SASRecConfig):
    """ICSRec hyperparameters: SASRec's, plus the two intent contrastive terms (module docstring)."""

    cicl_weight: float = 0.1
    """lambda: weight of the coarse-grain intent contrastive loss (same-target subsequences); 0 skips it."""
    ficl_weight: float = 0.1
    """beta: weight of the fine-grain intent contrastive loss (subsequence vs its k-means intent); 0 skips it."""
    temperature: float = 1.0
    """tau: the contrastive losses' logits are dot products of states divided by tau."""
    n_intents: int = 512
    """K: k-means clusters (intents) of the subsequence states."""
    intent_momentum: float = 0.9
    """m: a centroid keeps this share of its running statistics at each step's online k-means update."""
    contrastive_rows: int = 256
    """Anchors per batch for both contrastive terms (each with its partner: 2 x rows views)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("cicl_weight", "ficl_weight"), check_real, low=0.0)
        check_config_fields(self, ("temperature",), check_real, low=0.0, low_open=True)
        check_config_fields(self, ("intent_momentum",), check_real, low=0.0, high=1.0, high_open=True)
        check_config_fields(self, ("n_intents", "contrastive_rows"), check_integer, low=1)


class ICSRec(SASRec):
    """ICSRec (Qin et al. 2024): SASRec trained with `L_next + lambda L_CICL + beta L_FICL` (eq. 11).

    `h_t = SASRec(s_1..s_t)_t` is the state of the subsequence ending at t (its target is `s_{t+1}`);
    CICL contrasts two subsequences with the same target, FICL a subsequence with its intent centroid, both
    `InfoNCE` with dot-product logits over tau and same-target / same-intent negatives masked.
    """

    name = "icsrec"
    config_class = ICSRecConfig

    def __init__(self, config: ICSRecConfig) -> None:
        super().__init__(config)
        d, k = config.d_model, config.n_intents
        # Online k-means state (training only, so not in the state dict).
        self.register_buffer("intent_centroids", torch.zeros(k, d), persistent=False)
        self.register_buffer("intent_counts", torch.zeros(k), persistent=False)
        self.register_buffer("intents_started", torch.zeros((), dtype=torch.bool), persistent=False)

    # -- training ----------------------------------------------------------------------------------

    def loss(self, batch: TrainingBatch, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """`L_next + lambda L_CICL + beta L_FICL` over the positions of `batch` that have a target."""
        cfg = self.config
        hidden = self(batch.item_ids, timestamps=batch.timestamps, feedback=batch.feedback)
        selected = batch.targets != IGNORE_TARGET  # [B, L]
        states, targets = hidden[selected], batch.targets[selected]  # [M, D], [M]
        if targets.numel() == 0:
            return hidden.sum() * 0.0
        value = self.next_item_loss(states, targets, generator=generator)
        if cfg.ficl_weight > 0:
            self.update_intents(states.detach().float(), generator=generator)
        if cfg.cicl_weight == 0 and cfg.ficl_weight == 0:
            return value
        pairs = same_target_pairs(targets, cfg.contrastive_rows, generator=generator)
        if pairs is None:
            return value
        anchors, partners = pairs
        views = states[torch.cat([anchors, partners])].float()  # [2R, D]: anchors, then their partners
        if cfg.cicl_weight > 0:
            cicl = masked_info_nce(
                views[: len(anchors)], views[len(anchors) :], targets[anchors], cfg.temperature
            )
            value = value + cfg.cicl_weight * cicl
        if cfg.ficl_weight > 0:
            intents = self.assign_intents(views.detach())  # [2R]
            ficl = masked_info_nce(views, self.intent_centroids[intents], intents, cfg.temperature)
            value = value + cfg.ficl_weight * ficl
        return value

    # -- the intents (online k-means) --------------------------------------------------------------

    def assign_intents(self, states: torch.Tensor) -> torch.Tensor:
        """`[M]` index of the nearest centroid (squared Euclidean distance) of each of `states` `[M, D]`."""
        centroids = self.intent_centroids
        distances = (centroids * centroids).sum(-1) - 2.0 * states.float() @ centroids.T  # [M, K] + |x|^2
        return distances.argmin(-1)

    @torch.no_grad()
    def update_intents(self, states: torch.Tensor, *, generator: torch.Generator | None = None) -> None:
        """One online k-means step on `states` `[M, D]` (fp32, detached): assign, then move each centroid
        that received points towards their mean by the EMA update of the module docstring."""
        if not bool(self.intents_started):
            self.start_intents(states, generator=generator)
        k = self.config.n_intents
        with torch.autocast(states.device.type, enabled=False):  # fp32 distances under bf16 autocast
            intents = self.assign_intents(states)
        counts = torch.bincount(intents, minlength=k).to(states.dtype)  # [K] n_k
        sums = torch.zeros_like(self.intent_centroids).index_add_(0, intents, states)  # [K, D] S_k
        m = self.config.intent_momentum
        kept = m * self.intent_counts  # [K]
        new_counts = kept + (1.0 - m) * counts
        moved = counts > 0
        updated = kept[:, None] * self.intent_centroids + (1.0 - m) * sums
        updated = updated / new_counts.clamp_min(1e-12)[:, None]
        self.intent_centroids.copy_(torch.where(moved[:, None], updated, self.intent_centroids))
        self.intent_counts.copy_(new_counts)

    @torch.no_grad()
    def start_intents(self, states: torch.Tensor, *, generator: torch.Generator | None = None) -> None:
        """Centroids from `n_intents` rows of `states` `[M, D]` drawn without replacement (with, when M < K)."""
        k, m = self.config.n_intents, states.shape[0]
        if m >= k:
            rows = torch.randperm(m, generator=generator)[:k]
        else:
            rows = torch.randint(m, (k,), generator=generator)
        self.intent_centroids.copy_(states[rows.to(states.device)])
        self.intent_counts.zero_()
        self.intents_started.fill_(True)


def same_target_pairs(
    targets: torch.Tensor, rows: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Up to `rows` anchor positions and, for each, another position with the same target item.

    Args:
        targets: `[M]` target item of each subsequence (position) of the batch.
        rows: most anchors to draw.
        generator: CPU generator of the draws.

    Returns:
        `(anchors, partners)`, two `[R]` int64 index tensors into `targets` (R <= rows,
        `targets[anchors] == targets[partners]`, `anchors != partners`), or None when no target repeats.
        Anchors are drawn uniformly without replacement among the positions whose target repeats, and a
        partner uniformly among the other positions with the anchor's target.
    """
    device = targets.device
    order = torch.sort(targets.cpu(), stable=True).indices  # positions grouped by target
    _, group_sizes = torch.unique_consecutive(targets.cpu()[order], return_counts=True)
    group_starts = torch.cumsum(group_sizes, 0) - group_sizes
    size = torch.repeat_interleave(group_sizes, group_sizes)  # [M] group size at each sorted slot
    start = torch.repeat_interleave(group_starts, group_sizes)
    rank = torch.arange(len(order)) - start  # rank of the slot within its group
    candidates = torch.nonzero(size > 1).squeeze(1)  # sorted slots whose target appears at another position
    if len(candidates) == 0:
        return None
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:rows]]
    # partner: a uniform offset 1..size-1 from the anchor's rank, cyclically within the group
    offset = 1 + (torch.rand(len(chosen), generator=generator) * (size[chosen] - 1)).long()
    partner = start[chosen] + (rank[chosen] + offset) % size[chosen]
    return order[chosen].to(device), order[partner].to(device)


def masked_info_nce(
    anchors: torch.Tensor, positives: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE over the 2R views `[anchors; positives]` (`[R, D]` each, row r of one the positive of row r
    of the other) with dot-product logits over `temperature`; a view's negatives are the views whose label
    differs from its own (the false-negative mask of ICSRec's eq. 7 and 10). Mean over the 2R views."""
    views = torch.cat([anchors, positives])  # [2R, D]
    r = anchors.shape[0]
    logits = views @ views.T / temperature  # [2R, 2R]
    partner = torch.cat([torch.arange(r, 2 * r), torch.arange(r)]).to(views.device)
    positive = logits.gather(1, partner[:, None])  # [2R, 1]
    both = torch.cat([labels, labels])
    same_label = both[:, None] == both[None, :]  # incl. each view itself and its positive: not negatives
    negatives = logits.masked_fill(same_label, float("-inf"))
    return -F.log_softmax(torch.cat([positive, negatives], dim=1), dim=1)[:, 0].mean()
