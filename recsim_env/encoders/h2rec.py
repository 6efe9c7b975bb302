"""H2Rec: harmonising semantic IDs and hash IDs ("The Best of the Two Worlds: Harmonizing Semantic and Hash
IDs for Sequential Recommendation", Liu et al., 2025, arXiv:2512.10388), on a SASRec backbone.

The authors' repository (ziwliu8/H2Rec) holds only a README ("code released upon acceptance"), so this
follows the paper's description; docs/h2rec.md lists what is our reading rather than the paper's text.

* Semantic IDs (SID): the frozen content matrix `t_i` (the item text embeddings, `item_text` buffer) is
  quantised once by residual K-means (RQ-KMeans): level 1 clusters `r^1_i = t_i`, level l clusters the
  residual `r^l_i = r^{l-1}_i - mu^{l-1}[c^{l-1}_i]`, giving each item a code tuple `(c^1_i, ..., c^M_i)`.
  The codes are a buffer (`item_codes`), so a checkpoint carries them. Seeded, CPU float64: bit-for-bit.
* Dual-branch item representation: the hash-ID (HID) branch is the item's own embedding `E[i]`, unique
  per item (collaborative identity, what head items need); the SID branch is the multi-granular sum of
  its code embeddings `s_i = sum_l C_l[c^l_i]`, shared between items with common codes (what tail items
  need). Fused by addition, `e_i = seen_i E[i] + s_i`, for the inputs and the tied output scores; an item
  with no training event (never seen, its ID row untrained) is represented and ranked by its codes alone.
* Dual-level alignment:
  item level, `L_item = InfoNCE(E[i], s_i)`, symmetric, over the distinct seen target items of a batch
  (cosine / temperature): pulls each item's HID towards its own SID and away from the other items' SIDs,
  so that collaborative knowledge reaches the shared codes (and through them the tail items);
  sequence level, `L_seq = InfoNCE(h^{fused}_u, h^{SID}_u)` over the rows of a batch: the user state of the
  last position from the fused inputs against the one from the SID inputs alone (the same blocks), so a
  history made of rarely seen items, which the SID view stands for, still lands near its fused state.
* Objective: `L = L_rec + lambda_item L_item + lambda_seq L_seq`, `L_rec` the configured next-item loss
  on the fused states (the full softmax by default), as every encoder here. Both lambdas default to 0:
  that was the best of 0 / 0.01 / 0.1 on ML-100k validation (benchmarks/RESULTS_h2rec.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.checks import check_config_fields, check_integer, check_real
from recsim_env.encoders.base import CONTENT_HINT, IGNORE_TARGET, TrainingBatch, attention_mask
from recsim_env.encoders.sasrec import SASRec, SASRecConfig
from recsim_env.errors import ArgumentError


@dataclass(frozen=True, kw_only=True)
class H2RecConfig(SASRecConfig):
    """H2Rec hyperparameters: SASRec's, plus the semantic-ID quantiser and the alignment weights."""

    n_levels: int = 3
    """M: residual-quantisation levels (code tuple length)."""
    codebook_size: int = 64
    """K: codes per level (fewer when the catalogue has fewer items)."""
    kmeans_iterations: int = 25
    """Lloyd iterations of each level's K-means."""
    code_seed: int = 0
    """Seed of the K-means initialisation (the codes depend on it and on the content matrix only)."""
    item_alignment_weight: float = 0.0
    """lambda_item: weight of the item-level HID/SID InfoNCE (0 skips it; 0 is best on ML-100k validation,
    benchmarks/RESULTS_h2rec.md)."""
    sequence_alignment_weight: float = 0.0
    """lambda_seq: weight of the sequence-level fused/SID-only InfoNCE (0 skips the extra SID-only pass)."""
    alignment_temperature: float = 0.2
    """tau of both alignment terms (cosine similarities divided by tau)."""
    code_init_scale: float = 1.0
    """Code embeddings start as N(0, (scale / sqrt(D))^2), the ID rows' scale times this (0: the SID branch
    starts at zero, so the model starts as SASRec and the codes learn what the IDs miss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("n_levels", "codebook_size", "kmeans_iterations"), check_integer, low=1)
        check_config_fields(self, ("code_seed",), check_integer, low=0)
        check_config_fields(self, ("item_alignment_weight", "sequence_alignment_weight"), check_real, low=0.0)
        check_config_fields(self, ("alignment_temperature",), check_real, low=0.0, low_open=True)
        check_config_fields(self, ("code_init_scale",), check_real, low=0.0)
        if self.item_text_dim == 0:
            raise ArgumentError(
                "H2RecConfig.item_text_dim: h2rec quantises item content embeddings into semantic IDs and "
                f"needs them: {CONTENT_HINT}"
            )


def residual_kmeans(
    content: torch.Tensor, *, n_levels: int, codebook_size: int, iterations: int, seed: int
) -> torch.Tensor:
    """`[N, n_levels]` int64 codes of the rows of `content` `[N, T]` by residual K-means (RQ-KMeans).

    Each level runs Lloyd's algorithm from `min(codebook_size, N)` distinct rows drawn with `seed` on the
    current residuals, assigns each row its nearest centroid and subtracts it. A cluster left empty keeps
    its centroid. Computed on the CPU in float64, so the codes are the same on every machine.
    """
    residual = content.detach().to("cpu", torch.float64).clone()
    n = residual.shape[0]
    k = min(codebook_size, n)
    generator = torch.Generator().manual_seed(seed)
    codes = torch.empty(n, n_levels, dtype=torch.long)
    for level in range(n_levels):
        centroids = residual[torch.randperm(n, generator=generator)[:k]].clone()
        for _ in range(iterations):
            assignment = torch.cdist(residual, centroids).argmin(dim=1)
            sums = torch.zeros_like(centroids).index_add_(0, assignment, residual)
            counts = torch.bincount(assignment, minlength=k).to(residual.dtype)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None]
        assignment = torch.cdist(residual, centroids).argmin(dim=1)
        codes[:, level] = assignment
        residual = residual - centroids[assignment]
    return codes


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row m of `queries` `[M, D]` matches row m of `keys` `[M, D]` against the others
    (cosine similarity / temperature), averaged over both directions."""
    q = F.normalize(queries.float(), dim=-1)
    k = F.normalize(keys.float(), dim=-1)
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0], device=q.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class H2Rec(SASRec):
    """H2Rec (Liu et al. 2025) on SASRec: items are `seen_i E[i] + sum_l C_l[c^l_i]` (hash ID plus
    semantic-ID codes from RQ-KMeans of the item text), trained with the next-item loss plus item- and
    sequence-level HID/SID alignment (module docstring)."""

    name = "h2rec"
    config_class = H2RecConfig
    needs_item_content = True

    def __init__(self, config: H2RecConfig) -> None:
        super().__init__(config)
        # The content reaches the items through the semantic IDs only: no dense text projection. An
        # identity keeps `has_item_text` (the trainer's seen mask, the text buffers) without parameters.
        self.text_projection = nn.Identity()
        self.code_embedding = nn.Embedding(config.n_levels * config.codebook_size, config.d_model)
        nn.init.normal_(self.code_embedding.weight, std=config.code_init_scale * config.d_model**-0.5)
        self.register_buffer(
            "code_offsets", torch.arange(config.n_levels) * config.codebook_size, persistent=False
        )
        # -1 until set_item_text quantises the content (a checkpoint's state_dict restores them).
        self.register_buffer(
            "item_codes", torch.full((config.n_items, config.n_levels), -1, dtype=torch.long)
        )

    # -- semantic IDs ------------------------------------------------------------------------------

    def set_item_text(self, embeddings: torch.Tensor) -> None:
        """Copy the frozen `[N, item_text_dim]` content embeddings and quantise them into the item codes."""
        super().set_item_text(embeddings)
        cfg = self.config
        codes = residual_kmeans(
            self.item_text,
            n_levels=cfg.n_levels,
            codebook_size=cfg.codebook_size,
            iterations=cfg.kmeans_iterations,
            seed=cfg.code_seed,
        )
        self.item_codes.copy_(codes.to(self.item_codes.device))

    def semantic_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """`[..., D]` SID-branch vectors `s_i = sum_l C_l[c^l_i]` of item indices `items` `[...]` (< N)."""
        return self.code_embedding(self.item_codes[items] + self.code_offsets).sum(-2)

    def _check_codes(self) -> None:
        if bool(self.item_codes[0, 0] < 0):
            raise ArgumentError(
                f"h2rec: no item content embeddings attached, so no semantic IDs: {CONTENT_HINT}"
            )

    # -- item representation -----------------------------------------------------------------------

    def item_table(self) -> torch.Tensor:
        """`[N, D]` fused item vectors `seen_i E[i] + s_i` (scores and inputs share them)."""
        self._check_codes()
        ids = self.id_rows()
        return ids + self.semantic_vectors(torch.arange(self.n_items, device=ids.device))

    def item_vectors(self, item_ids: torch.Tensor, *, hash_ids: bool = True) -> torch.Tensor:
        """`[..., D]` input vectors of `item_ids` (special tokens included): fused `E[i] + s_i` for items,
        the ID embedding for padding; with `hash_ids=False` the SID branch alone (`s_i`, zero at padding)."""
        self._check_codes()
        real = item_ids < self.n_items
        items = item_ids.clamp(max=self.n_items - 1)
        semantic = self.semantic_vectors(items) * real.unsqueeze(-1)
        if not hash_ids:
            return semantic
        return self.id_vectors(item_ids) + semantic

    def _encode(self, item_ids, feedback, padding_mask, *, hash_ids: bool) -> torch.Tensor:
        keep = padding_mask.unsqueeze(-1)
        x = self.item_vectors(item_ids, hash_ids=hash_ids)
        if self.feedback_projection is not None and feedback is not None:
            x = x + self.feedback_projection(feedback.to(x.dtype)) * keep
        x = self.positioned(x, padding_mask)
        mask = attention_mask(padding_mask, causal=True)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x)

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps  # SASRec's backbone has no notion of time
        return self._encode(item_ids, feedback, padding_mask, hash_ids=True)

    # -- training ----------------------------------------------------------------------------------

    def loss(self, batch: TrainingBatch, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """`L_rec + lambda_item L_item + lambda_seq L_seq` (module docstring) over the targets of `batch`."""
        cfg = self.config
        padding_mask = self.padding_mask(batch.item_ids)
        hidden = self._encode(batch.item_ids, batch.feedback, padding_mask, hash_ids=True)
        selected = batch.targets != IGNORE_TARGET
        targets = batch.targets[selected]
        if targets.numel() == 0:
            return hidden.sum() * 0.0
        value = self.next_item_loss(hidden[selected], targets, generator=generator)
        if cfg.item_alignment_weight > 0:
            items = torch.unique(targets)
            items = items[self.item_seen[items]]  # an unseen item's ID row has nothing to align
            if items.numel() > 1:
                value = value + cfg.item_alignment_weight * info_nce(
                    self.item_embedding(items), self.semantic_vectors(items), cfg.alignment_temperature
                )
        if cfg.sequence_alignment_weight > 0:
            rows = selected[:, -1]  # one state per window: its last position, the user state
            if int(rows.sum()) > 1:
                semantic = self._encode(
                    batch.item_ids[rows],
                    batch.feedback[rows] if batch.feedback is not None else None,
                    padding_mask[rows],
                    hash_ids=False,
                )
                value = value + cfg.sequence_alignment_weight * info_nce(
                    hidden[rows, -1], semantic[:, -1], cfg.alignment_temperature
                )
        return value
