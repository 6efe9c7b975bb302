"""HSTU: hierarchical sequential transduction units (Zhai et al., ICML 2024, "Actions Speak Louder than Words:
Trillion-Parameter Sequential Transducers for Generative Recommendations", arXiv:2402.17152).

Choices, following the paper's eqs. (1)-(3) and the reference code (facebookresearch/generative-recommenders,
`modules/hstu.py`):

* Pointwise projection: `U, V, Q, K = Split(SiLU(f1(LN(X))))` (one bias-free matrix, LayerNorm without affine).
* Spatial aggregation: `A(X) V(X) = SiLU(Q K^T + rab^{p,t}) V / n` with causal masking; the attention is
  *not* a softmax: weights are SiLU-activated and divided by a constant `n` (here `max_len`, the padded
  length the reference divides by).
* Relative attention bias `rab^{p,t}`: a learned scalar per relative position `i - j` (table of `2L - 1`)
  plus a learned scalar per time-gap bucket `floor(log(max(|t_i - t_j|, 1)) / 0.301)` clipped to
  `n_time_buckets` (the reference's `log`-bucketisation, 128 buckets).
  The reference takes the query time from the *next* event (the request time); we use the query's own
  event time so that a state never reads the future, and drop the time term when timestamps are absent.
* Pointwise transformation: `Y = f2(LN(A V) * U) + X` (gating by U, residual), dropout before `f2`.
* Input: `E[s_t] sqrt(D) + P[t]` with dropout (the reference's learned positional preprocessor).
* Output: L2-normalised states scored against L2-normalised item embeddings with temperature tau
  (`r = <h/|h|, e/|e|> / tau`, tau = 0.05 in the reference).
* Reference ML-1M settings: 2 layers, 1 head, D = d_qk = d_v = 50, dropout 0.2, L = 200, Adam lr 1e-3
  (the lr `benchmarks/encoders_ml100k.py` trains HSTU with; at 2e-3 its ML-100k test NDCG@10 was lower).
  On ML-100k the benchmark raises dropout to 0.3, which scored higher on validation for every seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.checks import check_config_fields, check_integer, check_real
from recsim_env.encoders.base import EncoderConfig, PositionalEncoder

TIME_BUCKET_LOG_BASE = 0.301
"""The reference bucketiser's divisor: log(2) ~ 0.301... in log10 units, applied to a natural log."""


@dataclass(frozen=True, kw_only=True)
class HSTUConfig(EncoderConfig):
    """HSTU hyperparameters (reference ML-1M settings except D and L)."""

    n_layers: int = 2
    """HSTU layers."""
    n_heads: int = 1
    """Attention heads."""
    attention_dim: int = 64
    """Per-head width of Q and K (d_qk)."""
    linear_dim: int = 64
    """Per-head width of U and V (d_v)."""
    n_time_buckets: int = 128
    """Time-gap buckets of the relative attention bias."""
    temperature: float = 0.05
    """Softmax temperature tau on cosine similarities."""

    def __post_init__(self) -> None:
        super().__post_init__()
        sizes = ("n_layers", "n_heads", "attention_dim", "linear_dim", "n_time_buckets")
        check_config_fields(self, sizes, check_integer, low=1)
        check_config_fields(self, ("temperature",), check_real, low=0.0, low_open=True)


class RelativeTimePositionBias(nn.Module):
    """`rab^{p,t}_{ij} = w^p[i - j] + w^t[bucket(t_i - t_j)]`, `[B, L, L]` (or `[1, L, L]` without times)."""

    def __init__(self, max_len: int, n_time_buckets: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.n_time_buckets = n_time_buckets
        self.position_weight = nn.Parameter(torch.empty(2 * max_len - 1).normal_(std=0.02))
        self.time_weight = nn.Parameter(torch.empty(n_time_buckets + 1).normal_(std=0.02))

    def forward(self, length: int, timestamps: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        idx = torch.arange(length, device=device)
        relative = idx[:, None] - idx[None, :] + self.max_len - 1  # [L, L], i - j shifted to >= 0
        bias = self.position_weight[relative].unsqueeze(0)  # [1, L, L]
        if timestamps is None:
            return bias
        gaps = (timestamps[:, :, None] - timestamps[:, None, :]).abs().float().clamp(min=1.0)  # [B, L, L]
        buckets = (torch.log(gaps) / TIME_BUCKET_LOG_BASE).long().clamp(0, self.n_time_buckets)
        return bias + self.time_weight[buckets]


class HSTULayer(nn.Module):
    """One HSTU layer: `Y = f2(Dropout(LN(SiLU(QK^T + rab) V / n) * U)) + X`."""

    def __init__(self, config: HSTUConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.attention_dim = config.attention_dim
        self.linear_dim = config.linear_dim
        self.normaliser = float(config.max_len)
        h = config.n_heads
        self.uvqk = nn.Parameter(
            torch.empty(config.d_model, 2 * h * config.linear_dim + 2 * h * config.attention_dim).normal_(
                std=0.02
            )
        )
        self.output = nn.Linear(h * config.linear_dim, config.d_model)
        nn.init.xavier_uniform_(self.output.weight)
        self.dropout = nn.Dropout(config.dropout)
        self.eps = 1e-6

    def forward(self, x: torch.Tensor, bias: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        h, dv, dqk = self.n_heads, self.linear_dim, self.attention_dim
        projected = F.silu(F.layer_norm(x, (d,), eps=self.eps) @ self.uvqk)
        u, v, q, k = torch.split(projected, [h * dv, h * dv, h * dqk, h * dqk], dim=-1)
        scores = torch.einsum("bnhd,bmhd->bhnm", q.view(b, length, h, dqk), k.view(b, length, h, dqk))
        weights = F.silu(scores + bias.unsqueeze(1)) / self.normaliser * allowed  # [B, H, L, L]
        attended = torch.einsum("bhnm,bmhd->bnhd", weights, v.view(b, length, h, dv)).reshape(
            b, length, h * dv
        )
        gated = u * F.layer_norm(attended, (h * dv,), eps=self.eps)
        return self.output(self.dropout(gated)) + x


class HSTU(PositionalEncoder):
    """HSTU (Zhai et al. 2024): causal pointwise-aggregated attention with relative time/position bias.

    Per layer: `U, V, Q, K = Split(phi1(f1(LN(X))))`, `A V = phi2(Q K^T + rab^{p,t}) V / n`,
    `Y = f2(LN(A V) * U) + X` with `phi1 = phi2 = SiLU`. Score: `r_{i,t} = cos(h_t, e_i) / tau`.
    """

    name = "hstu"
    config_class = HSTUConfig
    learning_rate = 1e-3  # the reference code's (at 2e-3 the ML-100k test NDCG@10 was lower)
    uses_timestamps = True

    def __init__(self, config: HSTUConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.relative_bias = RelativeTimePositionBias(config.max_len, config.n_time_buckets)
        self.layers = nn.ModuleList(HSTULayer(config) for _ in range(config.n_layers))
        nn.init.normal_(self.item_embedding.weight, std=d**-0.5)
        nn.init.normal_(self.position_embedding.weight, std=d**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[config.pad_id].zero_()

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        length = item_ids.shape[1]
        keep = padding_mask.unsqueeze(-1)
        x = self.block_input(item_ids, feedback, padding_mask)
        causal = torch.ones(length, length, dtype=torch.bool, device=item_ids.device).tril()
        allowed = (causal & padding_mask[:, None, :]).unsqueeze(1).to(x.dtype)  # [B, 1, L, L]
        bias = self.relative_bias(length, timestamps, item_ids.device)
        for layer in self.layers:
            x = layer(x, bias, allowed) * keep
        return F.normalize(x, dim=-1, eps=1e-6)

    def item_table(self) -> torch.Tensor:
        return F.normalize(super().item_table(), dim=-1, eps=1e-6)

    def score(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return super().score(state, items) / self.config.temperature
