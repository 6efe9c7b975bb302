"""BERT4Rec: bidirectional encoder representations from Transformer for sequential recommendation
(Sun et al., CIKM 2019, arXiv:1904.06690).

Choices, following the paper and the authors' code (FeiSun/BERT4Rec):

* Input: `E[s_t] + P[t]` (learned positions), LayerNorm and dropout, as in BERT.
* Blocks are post-LN Transformer layers: `x <- LN(x + Dropout(MHA(x)))`, `x <- LN(x + Dropout(FFN(x)))`,
  with a GELU FFN of width 4D. Attention is bidirectional (every real item sees every real item).
* Cloze objective: each real item is replaced by the mask token `[mask] = N + 1` with probability rho and
  predicted from both sides (the authors' code always uses the mask token, unlike BERT's 80/10/10).
  As in the paper, some training sequences mask only their last item, matching the inference task
  (`last_item_mask_prob` of them).
* Inference: the mask token is appended after the history (the oldest item drops out when the history
  fills the window) and its output scores the next item.
* Output: `P(v) = softmax(GELU(h W^P + b^P) E^T + b^O)` (eq. 7): a projection with GELU, the tied item
  table and an output bias.
* Paper settings: D=64, 2 layers, 2 heads, dropout 0.1, rho=0.2 on ML-1M (0.4-0.6 on sparser data),
  L=200 on ML-1M; we default to L=50 (the benchmark's length) and rho=0.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recsim_env.checks import check_config_fields, check_real
from recsim_env.encoders.base import (
    IGNORE_TARGET,
    SequenceEncoder,
    TrainingBatch,
    _keep_last,
    attention_mask,
)
from recsim_env.encoders.sasrec import MultiHeadSelfAttention, SelfAttentionConfig


@dataclass(frozen=True, kw_only=True)
class BERT4RecConfig(SelfAttentionConfig):
    """BERT4Rec hyperparameters (paper defaults for ML-1M except max_len)."""

    dropout: float = 0.1
    """Dropout rate on embeddings, attention and the FFN (paper: 0.1)."""
    n_heads: int = 2
    """Attention heads per layer (must divide d_model; paper: 2)."""
    mask_prob: float = 0.2
    """Cloze masking proportion rho: each real item is masked with this probability."""
    last_item_mask_prob: float = 0.1
    """Fraction of training sequences that mask only their last item instead (the inference task)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(
            self, ("mask_prob",), check_real, low=0.0, high=1.0, low_open=True, high_open=True
        )
        check_config_fields(self, ("last_item_mask_prob",), check_real, low=0.0, high=1.0)

    @property
    def mask_id(self) -> int:
        """The Cloze mask token: N + 1."""
        return self.n_items + 1


class BERT4RecLayer(nn.Module):
    """Post-LN Transformer layer: `LN(x + Dropout(MHA(x)))`, then `LN(x + Dropout(FFN_GELU(x)))`."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(d_model, n_heads, dropout)
        self.attention_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class BERT4Rec(SequenceEncoder):
    """BERT4Rec (Sun et al. 2019): bidirectional self-attention trained with the Cloze task.

    `h^0 = Dropout(LN(E[s] + P))`; `h^{l+1} = Trm(h^l)` (bidirectional); output state
    `o_t = GELU(h^L_t W^P + b^P)`; `P(v | o_t) = softmax(o_t E^T + b^O)`.
    """

    name = "bert4rec"
    config_class = BERT4RecConfig
    n_special_tokens = 2  # padding N, mask N + 1

    def __init__(self, config: BERT4RecConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.position_embedding = nn.Embedding(config.max_len, d)
        self.input_norm = nn.LayerNorm(d)
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            BERT4RecLayer(d, config.n_heads, config.dropout) for _ in range(config.n_layers)
        )
        self.output_projection = nn.Sequential(nn.Linear(d, d), nn.GELU())
        self.output_bias = nn.Parameter(torch.zeros(config.n_items))
        # BERT's truncated-normal(0.02) initialisation, as in the authors' code.
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_embedding.weight[config.pad_id].zero_()

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps
        x = self.embed_inputs(item_ids, feedback, padding_mask)
        x = x + self.position_embedding(self.positions_from_end(item_ids.shape[1], item_ids.device))
        x = self.input_dropout(self.input_norm(x))
        mask = attention_mask(padding_mask, causal=False)
        for layer in self.layers:
            x = layer(x, mask)
        return self.output_projection(x) * padding_mask.unsqueeze(-1)

    def user_state(self, item_ids, *, timestamps=None, feedback=None, padding_mask=None):
        """State at a mask token appended after the history (the oldest item drops out of a full window)."""
        b = item_ids.shape[0]
        if padding_mask is None:
            padding_mask = self.padding_mask(item_ids)
        item_ids, timestamps, feedback, padding_mask = _keep_last(
            self.config.max_len - 1, item_ids, timestamps, feedback, padding_mask
        )
        mask_column = torch.full((b, 1), self.mask_id, dtype=item_ids.dtype, device=item_ids.device)
        item_ids = torch.cat([item_ids, mask_column], dim=1)
        padding_mask = torch.cat([padding_mask, torch.ones_like(mask_column, dtype=torch.bool)], dim=1)
        if feedback is not None:  # the next event's feedback is unknown: zeros at the mask
            feedback = torch.cat([feedback, feedback.new_zeros(b, 1, feedback.shape[-1])], dim=1)
        hidden = self(item_ids, timestamps=None, feedback=feedback, padding_mask=padding_mask)
        return hidden[:, -1]

    def training_batch(self, item_ids, timestamps, feedback, *, generator=None):
        """Cloze masking of the last `max_len` events of each window (`[B, L + 1]` -> `[B, L]`).

        Each real item is replaced by `[mask]` with probability `mask_prob` and becomes a target; a
        fraction `last_item_mask_prob` of the rows mask only their last item. Masked feedback is zeroed
        (it belongs to the event being predicted).
        """
        inputs = item_ids[:, 1:]
        fb = feedback[:, 1:] if feedback is not None else None
        real = inputs != self.pad_id
        device = inputs.device
        draws = torch.rand(inputs.shape, generator=generator, device=_gen_device(generator, device)).to(
            device
        )
        masked = (draws < self.config.mask_prob) & real
        last_only = (
            torch.rand((inputs.shape[0], 1), generator=generator, device=_gen_device(generator, device)).to(
                device
            )
            < self.config.last_item_mask_prob
        )
        last_column = torch.zeros_like(masked)
        last_column[:, -1] = True
        masked = torch.where(last_only, last_column & real, masked)
        targets = torch.where(masked, inputs, torch.full_like(inputs, IGNORE_TARGET))
        inputs = torch.where(masked, torch.full_like(inputs, self.mask_id), inputs)
        if fb is not None:
            fb = fb * (~masked).unsqueeze(-1)
        return TrainingBatch(inputs, None, fb, targets)


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device
