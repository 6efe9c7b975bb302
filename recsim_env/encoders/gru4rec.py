"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016, arXiv:1511.06939;
and the improved losses of Hidasi & Karatzoglou, CIKM 2018, arXiv:1706.03847).

Choices, following the paper and the authors' PyTorch code (hidasib/GRU4Rec_PyTorch_Official):

* One GRU layer over item embeddings, hidden size = D, dropout on the embeddings and on the GRU output.
* "Constrained embedding" (the reference's recommended setting): the input and output item tables are
  the same matrix, so `score = h_t . E_i` as for the attention models.
* Loss: the 2018 paper's best results use cross-entropy over a softmax (there over the mini-batch plus
  sampled negatives); with a few thousand items we use the full softmax (`loss="ce"`).
* Sequences are fed to the GRU right-aligned and packed so that left padding never reaches the state:
  a history gives the same state however much padding precedes it.
* Where the reference trains with session-parallel mini-batches, we train on fixed windows of `max_len`
  events with a target at every step, the same data the attention models see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recsim_env.checks import check_config_fields, check_integer
from recsim_env.encoders.base import EncoderConfig, SequenceEncoder


@dataclass(frozen=True, kw_only=True)
class GRU4RecConfig(EncoderConfig):
    """GRU4Rec hyperparameters."""

    n_layers: int = 1
    """Stacked GRU layers (the reference uses one)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("n_layers",), check_integer, low=1)


class GRU4Rec(SequenceEncoder):
    """GRU4Rec: `h_t = GRU(E[s_t], h_{t-1})`, score of item i after step t: `r_{i,t} = h_t . E_i`.

    GRU update: `z = sigma(W_z x + U_z h)`, `r = sigma(W_r x + U_r h)`,
    `h' = tanh(W x + U (r * h))`, `h_t = (1 - z) h_{t-1} + z h'`.
    """

    name = "gru4rec"
    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.input_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(d, d, num_layers=config.n_layers, batch_first=True)
        self.output_dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.item_embedding.weight, std=d**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[config.pad_id].zero_()

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps
        b, length = item_ids.shape
        lengths = padding_mask.sum(1)  # [B]
        # Left-padded -> right-padded: column t of the result is column (t + pad_b) mod L of the input.
        shift = (length - lengths)[:, None]  # [B, 1]
        columns = torch.arange(length, device=item_ids.device)[None, :]
        to_right = (columns + shift) % length  # [B, L]
        x = self.input_dropout(self.embed_inputs(item_ids, feedback, padding_mask))
        x = torch.gather(x, 1, to_right[..., None].expand(-1, -1, x.shape[-1]))
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(
            out, batch_first=True, total_length=length
        )  # [B, L, D], zeros after the end
        to_left = (columns - shift) % length
        out = torch.gather(out, 1, to_left[..., None].expand(-1, -1, out.shape[-1]))
        return self.output_dropout(out) * padding_mask.unsqueeze(-1)
