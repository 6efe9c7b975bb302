"""Inference fast path: SASRec's state at the last position only (what a simulator step needs).

Causal attention means the state at the last position needs every position's keys and values from
the last block, but the last block's queries, output map, feed-forward network and final norm only
at the last position: for one block that skips most of the work on the `[N, L, D]` activations.
Checked against `SequenceEncoder.forward(...)[:, -1]` with `torch.testing.assert_close` in
tests/simulators/test_fast_path.py. Other encoders, SASRec's `block="reference"` layout and training mode
use the plain forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsim_env.encoders.base import attention_mask
from recsim_env.encoders.sasrec import SASRec


def last_state(encoder, items: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """`[N, D]` hidden state at the last position of left-padded `items` `[N, L]` (feedback `inputs`)."""
    # The shortcut below is the paper's pre-LN block; other layouts (block="reference") take the plain forward.
    if not isinstance(encoder, SASRec) or encoder.training or encoder.config.block != "paper":
        return encoder(items, feedback=inputs)[:, -1]
    padding_mask = encoder.padding_mask(items)
    keep = padding_mask.unsqueeze(-1)
    x = encoder.embed_inputs(items, inputs, padding_mask) * encoder.embedding_scale
    x = x + encoder.position_embedding(encoder.positions_from_end(items.shape[1], items.device))
    x = x * keep
    blocks = list(encoder.blocks)
    if len(blocks) > 1:
        mask = attention_mask(padding_mask, causal=True)
        for block in blocks[:-1]:
            x = block(x, mask) * keep
    block = blocks[-1]
    attention = block.attention
    n, length, d = x.shape
    heads = attention.n_heads
    qkv = attention.qkv(block.attention_norm(x)).view(n, length, 3, heads, d // heads)
    q = qkv[:, -1:, 0].transpose(1, 2)  # [N, H, 1, Dh]
    k = qkv[:, :, 1].transpose(1, 2)  # [N, H, L, Dh]
    v = qkv[:, :, 2].transpose(1, 2)
    allowed = padding_mask.clone()
    allowed[:, -1] = True  # a query always sees itself (as `attention_mask` does)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None, None, :])
    last = x[:, -1] + attention.out(y.reshape(n, d))
    last = last + block.ffn(block.ffn_norm(last))
    return encoder.final_norm(last * keep[:, -1])
