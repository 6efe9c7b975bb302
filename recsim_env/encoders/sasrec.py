"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018, arXiv:1808.09781).

Choices, following the paper and the authors' code (kang205/SASRec):

* Input: `E[s_t] * sqrt(D) + P[t]` (learned positions), dropout, padding rows zeroed.
* Blocks are pre-LN as in the paper's eq. (4): `x <- x + Dropout(SA(LN(x)))`, `x <- x + Dropout(FFN(LN(x)))`,
  with a final LayerNorm. Attention is causal (position t sees 1..t) and never sees padding.
  The authors' code normalises only the queries (keys and values read the un-normalised stream) and
  adds each residual to the normalised stream: `q = LN(x)`, `x <- q + Dropout(SA(q, x, x))`,
  `x <- LN(x) + Dropout(FFN(LN(x)))`. `block="paper"` (default) follows the paper, `block="reference"`
  the authors' code (benchmarks/RESULTS.md compares them on ML-100k).
* FFN: `ReLU(x W1 + b1) W2 + b2`, width D (the paper's point-wise two-layer network).
* Output: tied item embeddings, `r_{i,t} = F_t . E_i` (the paper's shared-embedding variant).
* Loss: the paper uses BCE with one negative; we default to the full softmax cross-entropy (`loss="ce"`),
  which is markedly better on small catalogues; `loss="bce"` reproduces the paper's objective.
* Paper settings for ML-1M: 2 blocks, 1 head, D=50, dropout 0.2, Adam lr 1e-3 (betas 0.9, 0.98), L=200.
  Our ML-100k defaults: 2 blocks, 1 head, D=64, dropout 0.2, L=50.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.checks import check_choice, check_config_fields, check_integer
from recsim_env.encoders.base import EncoderConfig, PositionalEncoder, attention_mask, last_query_mask

SASREC_BLOCKS = ("paper", "reference")


@dataclass(frozen=True, kw_only=True)
class SelfAttentionConfig(EncoderConfig):
    """Layer and head counts of an encoder built from `MultiHeadSelfAttention` blocks (SASRec, BERT4Rec)."""

    n_layers: int = 2
    """Self-attention blocks."""
    n_heads: int = 1
    """Attention heads per block (must divide d_model)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("n_layers", "n_heads"), check_integer, low=1)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"{type(self).__name__}.n_heads ({self.n_heads}) must divide d_model ({self.d_model})"
            )


@dataclass(frozen=True, kw_only=True)
class SASRecConfig(SelfAttentionConfig):
    """SASRec hyperparameters (defaults tuned for ML-100k; see the module docstring for the paper's)."""

    block: str = "paper"
    """Block layout: "paper" (pre-LN, eq. 4) or "reference" (the authors' code: LayerNorm on the queries
    only, residuals on the normalised stream); see the module docstring."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("block",), check_choice, choices=SASREC_BLOCKS)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product multi-head self-attention `softmax(Q K^T / sqrt(d_h) + mask) V` with an output map."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        keys: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Attention of queries from `x` over keys and values from `keys` (default: `x` itself); with
        `last_only`, of the last position's query alone (`[B, 1, D]`; `mask` [B, 1, L, L] as for all, or
        its last row [B, 1, 1, L])."""
        b, length, d = x.shape
        heads, width = self.n_heads, d // self.n_heads
        if last_only:  # one query; keys and values of every position in one map
            keys = x if keys is None else keys
            weight, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, -1:], weight[:d], bias[:d]).view(b, 1, heads, width).transpose(1, 2)
            k, v = (
                F.linear(keys, weight[d:], bias[d:]).view(b, length, 2, heads, width).permute(2, 0, 3, 1, 4)
            )
            mask = mask[..., -1:, :]
        elif keys is None:
            q, k, v = self.qkv(x).view(b, length, 3, heads, width).permute(2, 0, 3, 1, 4)  # [B, H, L, Dh]
        else:
            weights, biases = self.qkv.weight.chunk(3), self.qkv.bias.chunk(3)
            q, k, v = (
                F.linear(source, w, bias).view(b, length, heads, width).transpose(1, 2)
                for source, w, bias in zip((x, keys, keys), weights, biases, strict=True)
            )
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, q.shape[2], d))


class SASRecBlock(nn.Module):
    """One pre-LN block: `x + Dropout(SA(LN(x)))`, then `x + Dropout(FFN(LN(x)))` (`reference=True`: the
    authors' code, `q = LN(x)`, `x = q + Dropout(SA(q, x, x))`, then `LN(x) + Dropout(FFN(LN(x)))`)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, *, reference: bool = False) -> None:
        super().__init__()
        self.reference = reference
        self.attention_norm = nn.LayerNorm(d_model, eps=1e-8)
        self.attention = MultiHeadSelfAttention(d_model, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d_model, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """`[B, L, D]` block output (`[B, 1, D]`, the last position's alone, with `last_only`: causal
        attention makes it `forward(x, mask)[:, -1:]`, computed with the last query only)."""
        if self.reference:
            queries = self.attention_norm(x)
            attended = self.attention(queries, mask, keys=x, last_only=last_only)
            x = self.ffn_norm((queries[:, -1:] if last_only else queries) + self.dropout(attended))
            return x + self.dropout(self.ffn(x))
        attended = self.attention(self.attention_norm(x), mask, last_only=last_only)
        x = (x[:, -1:] if last_only else x) + self.dropout(attended)
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SASRec(PositionalEncoder):
    """SASRec (Kang & McAuley 2018): causal self-attention over the item sequence.

    `h^0_t = E[s_t] sqrt(D) + P[t]`; `h^{b+1} = FFN-block(SA-block(h^b))` with causal masking
    (position t attends to 1..t only); `F_t = LN(h^B_t)`; score of item i after prefix 1..t:
    `r_{i,t} = F_t . E_i`.
    """

    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.blocks = nn.ModuleList(
            SASRecBlock(d, config.n_heads, config.dropout, reference=config.block == "reference")
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        nn.init.normal_(self.item_embedding.weight, std=1.0 / math.sqrt(d))
        with torch.no_grad():
            self.item_embedding.weight[config.pad_id].zero_()

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps  # SASRec has no notion of time
        keep = padding_mask.unsqueeze(-1)  # [B, L, 1]
        x = self.block_input(item_ids, feedback, padding_mask)
        mask = attention_mask(padding_mask, causal=True)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x)

    @property
    def caches_keys(self) -> bool:
        """Whether `cache_events` keeps each event's part of the keys and values: with one block in the
        paper's layout, whose input is the embedded events plus their positions (`last_block_from_cache`)."""
        return len(self.blocks) == 1 and not self.blocks[0].reference

    def cache_events(self, embedded: torch.Tensor, padding_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What a caller stepping a batch of sequences keeps per event for `encode_last`, from the embedded
        inputs `embed_inputs(item_ids, feedback, padding_mask)` `[B, T, D]` of T events: `(embedded,)`, or,
        where `caches_keys`, the terms of eq. (C1) in `last_block_from_cache`: `u = E sqrt(D)` (zero at
        padding), its key and value projections `u G_k^T`, `u G_v^T` (each `[B, T, D]`), and `[B, T, 2]`
        the sum and the squared norm of `u`. None depends on the event's position, so a caller that
        shifts its window by new events computes them once per event."""
        if not self.caches_keys:
            return (embedded,)
        d = self.config.d_model
        u = embedded * self.embedding_scale * padding_mask.unsqueeze(-1).to(embedded.dtype)
        block = self.blocks[0]
        g = block.attention.qkv.weight[d:] * block.attention_norm.weight  # [2D, D]
        return u, u @ g[:d].T, u @ g[d:].T, torch.stack([u.sum(-1), u.square().sum(-1)], dim=-1)

    def encode_last(
        self, events: tuple[torch.Tensor, ...], padding_mask: torch.Tensor, *, start: int = 0
    ) -> torch.Tensor:
        """`[B, D]` hidden state at the last position, `forward(...)[:, -1]`, from `cache_events(...)` of the
        L events of the window (`padding_mask` [B, L], in window order). `start`: the cache is a ring whose
        window begins at slot `start` (its position j at slot `(start + j) % L`), as a caller that
        overwrites its oldest events keeps it. The last block runs its query, output map and feed-forward
        network at the last position only; with `caches_keys`, its keys and values come from the cached
        terms (`last_block_from_cache`), so a step costs O(L D) per sequence, not O(L D^2)."""
        if self.caches_keys:
            if self.training:
                raise RuntimeError("SASRec.encode_last from cached keys needs eval mode (no dropout)")
            return last_block_from_cache(self, events, padding_mask, start=start)
        (embedded,) = events
        if start % embedded.shape[1]:
            embedded = torch.roll(embedded, -start, dims=1)
        keep = padding_mask.unsqueeze(-1)
        x = self.positioned(embedded, padding_mask)
        *inner, last = self.blocks
        if inner:
            mask = attention_mask(padding_mask, causal=True)
            for block in inner:
                x = block(x, mask) * keep
        return self.final_norm(last(x, last_query_mask(padding_mask), last_only=True) * keep[:, -1:])[:, 0]


def last_block_from_cache(
    encoder: SASRec,
    events: tuple[torch.Tensor, ...],
    padding_mask: torch.Tensor,
    *,
    start: int = 0,
    compiled: bool | None = None,
) -> torch.Tensor:
    """`[B, D]` the one-block SASRec's `forward(...)[:, -1]` (eval mode) from `encoder.cache_events(...)`.

    The block reads `x_t = u_t + p_t` at real positions (`u_t = E[s_t] sqrt(D)`, `p_t` the position
    embedding of the event's place from the end) and 0 at padding. LayerNorm then projection splits into
    a per-event part, a per-position part and two scalars per position:

        LN(x_t) W^T + b = (u_t G^T + p_t G^T - mu_t c) / sigma_t + k0,                               (C1)
        G = W diag(gamma),  c = G 1,  k0 = W beta + b,
        mu_t = (sum(u_t) + sum(p_t)) / D,  sigma_t^2 = (|u_t|^2 + 2 u_t.p_t + |p_t|^2) / D - mu_t^2 (+ eps),

    for the key and value rows of the attention's input map W, b and the LayerNorm's gamma, beta. With
    the last position's query q (per head), the attention weights and output are

        a_t = softmax_t((q.(u_t G_k^T) + q.(p_t G_k^T) - mu_t q.c_k) / sigma_t + q.k0_k) / sqrt(d_h))  (C2)
        y = sum_t (a_t / sigma_t) (u_t G_v^T + p_t G_v^T) - (sum_t a_t mu_t / sigma_t) c_v + k0_v,     (C3)

    using sum_t a_t = 1. The per-event terms are cached (`cache_events`); the per-position terms are
    L x D; the rest of the block (output map, residual, feed-forward network, final LayerNorm) runs at
    the last position, as in `SASRecBlock.forward(..., last_only=True)`. Equal to the plain forward up
    to float rounding (tests/simulators/test_incremental.py). `start`: the events are a ring whose window
    begins at slot `start` (`padding_mask` in window order); attention is the same in any slot order once
    the positions and the padding follow the events. `compiled`: eqs. C1-C3 in one compiled pass
    per sequence (`recsim_env.encoders.cached_attention`) rather than in torch; by default for CPU
    float32 tensors outside autograd."""
    u, u_keys, u_values, moments = events
    block = encoder.blocks[0]
    attention, norm = block.attention, block.attention_norm
    batch, length, d = u.shape
    heads = attention.n_heads
    width = d // heads
    weight, bias = attention.qkv.weight, attention.qkv.bias
    g = weight[d:] * norm.weight  # [2D, D]
    c = g.sum(dim=1)
    k0 = weight[d:] @ norm.bias + bias[d:]
    start %= length
    # Positions and padding in the cache's slot order: slot r holds the window's position (r - start) % L.
    p = torch.roll(encoder.position_embedding(encoder.positions_from_end(length, u.device)), start, 0)
    keep = torch.roll(padding_mask.to(u.dtype), start, 1)  # [B, L]
    last = (start - 1) % length  # the newest event's slot
    p_g = p @ g.T  # [L, 2D]
    x_last = u[:, last] + p[last] * keep[:, last : last + 1]  # [B, D]
    q = F.linear(norm(x_last), weight[:d], bias[:d])  # [B, D]
    if compiled is None:
        compiled = u.device.type == "cpu" and u.dtype == torch.float32 and not torch.is_grad_enabled()
    if compiled:
        y = _attend_compiled(events, keep, p, p_g, q, c, k0, heads, norm.eps, last)
    else:
        y = _attend(events, keep, p, p_g, q.view(batch, heads, width), c, k0, norm.eps, last)
    x = x_last + attention.out(y)
    x = x + block.ffn(block.ffn_norm(x))
    return encoder.final_norm(x * keep[:, last : last + 1])


def _attend(events, keep, p, p_g, q, c, k0, eps: float, last: int) -> torch.Tensor:
    """`[B, D]` eqs. C1-C3 in torch (any device): `q` [B, H, w] the last queries, `last` the newest
    event's slot."""
    u, u_keys, u_values, moments = events
    batch, length, d = u.shape
    heads, width = q.shape[1:]
    mu = (moments[..., 0] + p.sum(-1) * keep) / d  # [B, L]
    mean_square = (moments[..., 1] + (2.0 * (u * p).sum(-1) + p.square().sum(-1)) * keep) / d
    inv_sigma = torch.rsqrt((mean_square - mu.square()).clamp_min(0.0) + eps)
    per_head = (batch, length, heads, width)
    q_event = (u_keys.view(per_head) * q[:, None]).sum(-1)  # [B, L, H]
    # Per-position and scalar terms as small matmuls over the heads: [H, B, w] @ [H, w, L] -> [H, B, L].
    p_keys = p_g[:, :d].view(length, heads, width).permute(1, 2, 0)  # [H, w, L]
    q_position = (q.transpose(0, 1) @ p_keys).permute(1, 2, 0)
    q_c = (q * c[:d].view(heads, width)).sum(-1)[:, None]  # [B, 1, H]
    q_k0 = (q * k0[:d].view(heads, width)).sum(-1)[:, None]
    scores = (q_event + q_position * keep[..., None] - mu[..., None] * q_c) * inv_sigma[..., None] + q_k0
    allowed = keep > 0
    allowed[:, last] = True  # as `last_query_mask`: the last query always sees itself
    a = torch.softmax((scores / math.sqrt(width)).masked_fill(~allowed[..., None], float("-inf")), dim=1)
    a_scaled = a * inv_sigma[..., None]  # [B, L, H]
    y = (u_values.view(per_head) * a_scaled[..., None]).sum(1)  # [B, H, w]
    p_values = p_g[:, d:].view(length, heads, width).transpose(0, 1)  # [H, L, w]
    y = y + ((a_scaled * keep[..., None]).permute(2, 0, 1) @ p_values).transpose(0, 1)
    y = (
        y
        - (a_scaled * mu[..., None]).sum(1)[..., None] * c[d:].view(heads, width)
        + k0[d:].view(heads, width)
    )
    return y.reshape(batch, d)


def _attend_compiled(events, keep, p, p_g, q, c, k0, heads: int, eps: float, last: int) -> torch.Tensor:
    """`[B, D]` eqs. C1-C3 in one compiled pass per sequence (CPU tensors outside autograd; float32, so
    that autocast's bfloat16 projections are read as float32)."""
    from recsim_env.encoders.cached_attention import attend_from_cache

    def array(x: torch.Tensor):
        return x.detach().to(torch.float32).contiguous().numpy()

    d = p.shape[-1]
    out = torch.empty(q.shape[0], d, dtype=torch.float32)
    attend_from_cache(
        *(array(e) for e in events),
        array(keep),
        array(p),
        array(p_g[:, :d]),
        array(p_g[:, d:]),
        array(q),
        array(c[:d]),
        array(c[d:]),
        array(k0[:d]),
        array(k0[d:]),
        heads,
        eps,
        last,
        out.numpy(),
    )
    return out
