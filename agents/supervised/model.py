"""The click model: a sequence encoder over the history window and an item-tied scoring head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agents.supervised.config import SupervisedConfig


class ClickModel(nn.Module):
    """`logit p(click | history, item) = <h, E_item> + b_item`, h = encoder(history) (package docstring).

    The history is a `SeqRec-v0` observation window: item ids `[B, L]` left-padded with the pad id N,
    and the raw feedback `[B, L, F]` of those items, scaled inside by `feedback_scale` (fixed, saved
    with the weights). E is the encoder's item table, the same table that embeds the history's items.

    Args:
        config: the run's config (encoder name and fields, history length).
        n_items: N, the catalogue size.
        feedback_scale: `[F]` multiplier of each feedback signal in the encoder's input.
    """

    def __init__(self, config: SupervisedConfig, n_items: int, feedback_scale: Sequence[float]) -> None:
        super().__init__()
        from recsim_env.encoders import build

        self.n_items = int(n_items)
        self.n_feedback = len(feedback_scale)
        self.encoder = build(config.encoder, config.encoder_fields(self.n_items, self.n_feedback))
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.register_buffer("feedback_scale", torch.as_tensor(feedback_scale, dtype=torch.float32))

    def user_state(self, item_ids: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """`[B, L]` item ids (pad id N at padding), `[B, L, F]` raw feedback -> `[B, D]` history states."""
        scaled = feedback * self.feedback_scale if self.n_feedback else None
        timestamps = (
            torch.zeros(item_ids.shape, dtype=torch.float64, device=item_ids.device)
            if self.encoder.uses_timestamps  # observations carry no clock (as `EncoderPolicy`)
            else None
        )
        return self.encoder.user_state(item_ids, timestamps=timestamps, feedback=scaled)

    def logits(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Click logits in float32: of `items` `[B]` (one candidate per row) -> `[B]`, or of every item -> `[B, N]`."""
        table = self.encoder.item_table().float()
        state = state.float()
        if items is None:
            return state @ table.T + self.item_bias
        return (state * table[items]).sum(-1) + self.item_bias[items]

    def forward(self, item_ids: torch.Tensor, feedback: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """`[B]` click logits of candidate `items` after the histories (`item_ids`, `feedback`)."""
        return self.logits(self.user_state(item_ids, feedback), items)
