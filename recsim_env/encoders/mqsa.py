"""MQSA-TED: multi-query self-attention with transition-aware embedding distillation (Zhu et al., WSDM 2024,
"Collaboration and Transition: Distilling Item Transitions into Multi-Query Self-Attention for Sequential
Recommendation", arXiv:2311.01056).

Following the paper and the authors' TensorFlow code (zhuty16/MQSA-TED, `MQSA_TED.py`, `utils.py`):

* Input as SASRec: `h^0_t = Dropout(E[s_t] sqrt(D) + P[t])`, zero at padding.
* L-query self-attention: the query at position t is the mean of the stream over the last `query_window`
  (L) real positions `t-L+1..t`, `q_t = mean(h_{t-L+1..t})`; keys and values are the stream at every
  position up to t (causal). L = 1 is SASRec's single-item query.
* Multi-query self-attention: two towers of blocks over the same input, a short-query tower (L = 1,
  SASRec's blocks) and a long-query tower (L = `query_window`, 3 by default), each with its own
  parameters and final LayerNorm; the scores are `alpha * r_short + (1 - alpha) * r_long`. The short query
  follows the user's latest item (low bias, high variance), the long query the last few (the reverse);
  `alpha` (`short_weight`) trades one for the other. The scores are linear in the state (tied embeddings,
  no output bias), so the hidden state is `h_t = alpha * h^short_t + (1 - alpha) * h^long_t` and every
  caller of `score` ranks with the combined logits.
* Transition-aware embedding distillation (TED): a transition graph `A` counts, over the training data,
  how often item j directly follows item i. Its rows give a teacher distribution over next items,
  `p_i = softmax_j(A_ij / max_k A_ik / tau)`, and the item embeddings are the student,
  `q_i = softmax_j(Dropout(E_i sqrt(D)) . E_j / tau)`. The distillation loss is `CE(p_i, q_i)` averaged over
  the input items of the batch, and the objective is `L = L_rec + lambda_TED * L_TED` (lambda_TED =
  `distillation_weight`).
* Block layout: `block="paper"` (default) is SASRec's pre-LN block, the long tower normalising the pooled
  query and the stream for the keys (`x' = mean_L(x) + Dropout(SA(LN(mean_L(x)), LN(x)))`, then the FFN);
  `block="reference"` is the authors' code's (as SASRec's reference layout:
  `q = LN(mean_L(x))`, `x' = LN(q + Dropout(SA(q, x, x)))`, `x' + Dropout(FFN(x'))`).

Where we differ from the authors' code (docs/mqsa.md gives the reasons):

* The graph is built from this project's training windows (every training transition once, with no
  validation or test event), stored as a CSR buffer so that checkpoints carry it; the reference builds it
  from each user's last `max_len` training items.
* The teacher of an item that has no recorded successor is left out (the reference would distill a
  uniform distribution); TED is taken once per distinct input item of the batch, weighted by its count
  (the same expected gradient as once per occurrence, at a fraction of the cost).
* The item-embedding initialisation, loss and optimiser are SASRec's here (std 1/sqrt(D); full softmax;
  AdamW without the reference's L2 term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.checks import check_config_fields, check_integer, check_real
from recsim_env.encoders.base import IGNORE_TARGET, PositionalEncoder, TrainingBatch, attention_mask
from recsim_env.encoders.sasrec import SASRecBlock, SASRecConfig


@dataclass(frozen=True, kw_only=True)
class MQSAConfig(SASRecConfig):
    """MQSA-TED hyperparameters: SASRec's (per tower), plus the long query's window and the TED objective."""

    query_window: int = 3
    """L: items the long query averages (the authors' default, 3); 1 makes both towers SASRec's."""
    short_weight: float = 0.5
    """alpha: weight of the short-query tower in the state (1 - alpha goes to the long-query tower)."""
    distillation_weight: float = 0.1
    """lambda_TED: weight of the transition-aware embedding distillation loss (0 turns TED off)."""
    distillation_temperature: float = 0.1
    """tau: temperature of both the teacher (normalised transition counts) and the student softmax."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("query_window",), check_integer, low=1)
        check_config_fields(self, ("short_weight",), check_real, low=0.0, high=1.0)
        check_config_fields(self, ("distillation_weight",), check_real, low=0.0)
        check_config_fields(self, ("distillation_temperature",), check_real, low=0.0, low_open=True)


def window_mean(x: torch.Tensor, padding_mask: torch.Tensor, window: int) -> torch.Tensor:
    """`[B, L, D]` mean of `x` `[B, L, D]` over each position's last `window` real positions (itself
    included; fewer at the start of a sequence), zero at padding. `x` must be zero at padding."""
    if window == 1:
        return x
    keep = padding_mask.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
    total, count = x.clone(), keep.clone()
    for shift in range(1, window):
        total = total + F.pad(x, (0, 0, shift, 0))[:, : x.shape[1]]
        count = count + F.pad(keep, (0, 0, shift, 0))[:, : x.shape[1]]
    return total / count.clamp(min=1.0)


class LQueryBlock(SASRecBlock):
    """SASRec's block with the L-query: queries from the mean of the last `window` positions' stream.

    `paper`: `x' = m + Dropout(SA(LN(m), LN(x)))`, `x' + Dropout(FFN(LN(x')))` with `m = mean_L(x)`;
    `reference`: `q = LN(m)`, `x' = LN(q + Dropout(SA(q, x)))`, `x' + Dropout(FFN(x'))`. `window=1` is
    `SASRecBlock` exactly.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, *, window: int, reference: bool) -> None:
        super().__init__(d_model, n_heads, dropout, reference=reference)
        self.window = window

    def forward(self, x: torch.Tensor, mask: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """`[B, L, D]` block output of the stream `x` `[B, L, D]` (zero at padding)."""
        pooled = window_mean(x, padding_mask, self.window)
        queries = self.attention_norm(pooled)
        if self.reference:
            attended = self.attention(queries, mask, keys=x)
            x = self.ffn_norm(queries + self.dropout(attended))
            return x + self.dropout(self.ffn(x))
        attended = self.attention(queries, mask, keys=self.attention_norm(x))
        x = pooled + self.dropout(attended)
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class TransitionGraph(nn.Module):
    """Counts of direct item-to-item transitions `A_ij` (item j right after item i), as CSR buffers.

    `offsets` `[N + 1]`, `successors` `[E]` and `counts` `[E]` (float32): row i is
    `successors[offsets[i]:offsets[i+1]]` with its counts. Empty until `fit`; loading a state dict takes
    the stored graph's size.
    """

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.register_buffer("offsets", torch.zeros(n_items + 1, dtype=torch.int64))
        self.register_buffer("successors", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.float32))

    @property
    def n_edges(self) -> int:
        return int(self.successors.shape[0])

    @torch.no_grad()
    def fit(self, sources: torch.Tensor, targets: torch.Tensor) -> None:
        """Replace the graph by the transitions `sources[k] -> targets[k]` (`[T]` item indices each)."""
        device = self.offsets.device
        keys = sources.to(device, torch.int64) * self.n_items + targets.to(device, torch.int64)
        pairs, counts = torch.unique(keys, sorted=True, return_counts=True)
        rows = pairs // self.n_items
        self.offsets = torch.cat(
            [
                torch.zeros(1, dtype=torch.int64, device=device),
                torch.bincount(rows, minlength=self.n_items).cumsum(0),
            ]
        )
        self.successors = pairs % self.n_items
        self.counts = counts.to(torch.float32)

    def rows(self, items: torch.Tensor) -> torch.Tensor:
        """`[K, N]` float32 dense transition counts of the rows `items` `[K]`."""
        starts, ends = self.offsets[items], self.offsets[items + 1]
        lengths = ends - starts
        dense = torch.zeros(items.shape[0], self.n_items, dtype=torch.float32, device=items.device)
        if int(lengths.sum()) == 0:
            return dense
        row = torch.repeat_interleave(torch.arange(items.shape[0], device=items.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths  # where each row's edges start in the gathered list
        edge = torch.arange(row.shape[0], device=items.device) - first[row] + starts[row]
        dense[row, self.successors[edge]] = self.counts[edge]
        return dense

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # The edge buffers' length is the stored graph's: take it before the copy checks shapes.
        for name in ("successors", "counts"):
            stored = state_dict.get(prefix + name)
            if stored is not None and stored.dim() == 1:
                own = self._buffers[name]
                self._buffers[name] = torch.zeros(stored.shape, dtype=own.dtype, device=own.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def transition_distillation_loss(
    student_logits: torch.Tensor, transition_counts: torch.Tensor, weights: torch.Tensor, temperature: float
) -> torch.Tensor:
    """TED: weighted mean over rows of `CE(softmax(A_i / max_j A_ij / tau), softmax(student_i / tau))`.

    Args:
        student_logits: `[K, N]` `Dropout(E_i sqrt(D)) . E_j` of each head item i.
        transition_counts: `[K, N]` transition counts `A_i` of each head (every row has a nonzero count).
        weights: `[K]` weight of each row (its share of the batch's head items).
        temperature: tau.
    """
    counts = transition_counts.float()
    teacher = F.softmax(counts / counts.amax(-1, keepdim=True) / temperature, dim=-1)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return -((teacher * log_student).sum(-1) * weights).sum() / weights.sum()


class MQSA(PositionalEncoder):
    """MQSA-TED (Zhu et al. 2024): a short-query (L = 1) and a long-query (L-item mean) tower of causal
    self-attention blocks, combined with weight alpha, and the transition graph distilled into the items.

    `h_t = alpha LN(Short(h^0)_t) + (1 - alpha) LN(Long_L(h^0)_t)`; score `r_{i,t} = h_t . E_i`; training
    loss `CE(r_t, s_{t+1}) + lambda_TED * L_TED` (module docstring).
    """

    name = "mqsa"
    config_class = MQSAConfig

    def __init__(self, config: MQSAConfig) -> None:
        super().__init__(config)
        d, reference = config.d_model, config.block == "reference"
        self.short_blocks = nn.ModuleList(
            SASRecBlock(d, config.n_heads, config.dropout, reference=reference)
            for _ in range(config.n_layers)
        )
        self.long_blocks = nn.ModuleList(
            LQueryBlock(d, config.n_heads, config.dropout, window=config.query_window, reference=reference)
            for _ in range(config.n_layers)
        )
        self.short_norm = nn.LayerNorm(d, eps=1e-8)
        self.long_norm = nn.LayerNorm(d, eps=1e-8)
        self.distillation_dropout = nn.Dropout(config.dropout)
        self.transitions = TransitionGraph(config.n_items)
        nn.init.normal_(self.item_embedding.weight, std=1.0 / math.sqrt(d))
        with torch.no_grad():
            self.item_embedding.weight[config.pad_id].zero_()

    def tower_states(
        self, item_ids: torch.Tensor, feedback: torch.Tensor | None, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, L, D]` final states of the short-query and the long-query towers."""
        keep = padding_mask.unsqueeze(-1)  # [B, L, 1]
        x = self.block_input(item_ids, feedback, padding_mask)
        mask = attention_mask(padding_mask, causal=True)
        short, long = x, x
        for block in self.short_blocks:
            short = block(short, mask) * keep
        for block in self.long_blocks:
            long = block(long, mask, padding_mask) * keep
        return self.short_norm(short), self.long_norm(long)

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps  # MQSA has no notion of time
        short, long = self.tower_states(item_ids, feedback, padding_mask)
        alpha = self.config.short_weight
        return alpha * short + (1.0 - alpha) * long

    # -- training ----------------------------------------------------------------------------------

    def fit_statistics(self, item_ids: torch.Tensor, own_targets: torch.Tensor) -> None:
        """Build the transition graph from the training windows: `item_ids` `[W, L + 1]`, and `own_targets`
        `[W, L]` True where the window trains on target `item_ids[:, t + 1]`, so that each training
        transition `item_ids[:, t] -> item_ids[:, t + 1]` counts once."""
        sources, targets = item_ids[:, :-1], item_ids[:, 1:]
        real = own_targets & (sources != self.pad_id) & (targets != self.pad_id)
        self.transitions.fit(sources[real], targets[real])

    def loss(self, batch: TrainingBatch, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """`L_rec + lambda_TED * L_TED` over the positions of `batch` that have a target (module docstring)."""
        value = super().loss(batch, generator=generator)
        cfg = self.config
        if cfg.distillation_weight == 0 or self.transitions.n_edges == 0:
            return value
        heads = batch.item_ids[batch.targets != IGNORE_TARGET]  # the input item of every trained position
        items, occurrences = torch.unique(heads, return_counts=True)
        counts = self.transitions.rows(items)
        known = counts.sum(-1) > 0  # items with no recorded successor have nothing to distil
        if not bool(known.any()):
            return value
        items, occurrences, counts = items[known], occurrences[known], counts[known]
        table = self.item_table()
        student = self.distillation_dropout(table[items] * self.embedding_scale) @ table.T  # [K, N]
        distillation = transition_distillation_loss(
            student, counts, occurrences.to(torch.float32), cfg.distillation_temperature
        )
        return value + cfg.distillation_weight * distillation
