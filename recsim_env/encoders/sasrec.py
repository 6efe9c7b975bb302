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

    def encode_last(self, embedded: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """`[B, D]` hidden state at the last position, `forward(...)[:, -1]`, from the embedded inputs
        `embed_inputs(item_ids, feedback, padding_mask)` `[B, L, D]` (a caller stepping a batch of
        sequences keeps them and embeds only each step's new events). The last block runs its query,
        output map and feed-forward network at the last position only."""
        keep = padding_mask.unsqueeze(-1)
        x = self.positioned(embedded, padding_mask)
        *inner, last = self.blocks
        if inner:
            mask = attention_mask(padding_mask, causal=True)
            for block in inner:
                x = block(x, mask) * keep
        return self.final_norm(last(x, last_query_mask(padding_mask), last_only=True) * keep[:, -1:])[:, 0]
