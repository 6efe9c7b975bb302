"""SIGMA: Selective Gated Mamba for sequential recommendation (Liu et al., 2024, arXiv:2408.11451).

Each SIGMA layer mixes three views of the sequence (following the paper and the authors' released code,
`GMambaBlock` / `SIGMALayers` in `gated_mamba.py`, read from its copy in black-doggie/SIGMA `model/`):

* **Forward Mamba**: a Mamba block (Gu & Dao 2023: `in_proj`, causal depthwise conv, SiLU, selective SSM
  `h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t`, `y_t = C_t . h_t + D u_t`, times `SiLU(z_t)`, `out_proj`) over
  the items in order.
* **PF-Mamba** (partially flipped): the same Mamba block over `[e_{t-r}, ..., e_1, e_{t-r+1}, ..., e_t]`: the
  older items reversed and the most recent `r` (`flip_keep`) kept in order, so the state after e_t has also
  read the history from the oldest item back towards the present. The authors' code flips the first 45 of
  50 positions of each right-padded training sequence and trains on its last position only.
* **Feature-Extract GRU** (FE-GRU): a width-3 convolution then a GRU, for short-term patterns.
* **Dense Selective Gate**: `g_1 = Dropout(W_a SiLU(k_1) + W_b sigmoid(k_1))` with `k_1 = x + Dense_1(x)` and
  `g_2 = Dropout(W_a SiLU(k_2) + W_b sigmoid(k_1))` with `k_2 = x + Dense_2(x)` (the released code's terms,
  its cross-path `sigmoid(k_1)` included); `m_f <- m_f (1 + g_1)`, `m_p <- m_p (1 + g_2)`, and the layer output
  `Proj(w_3 m_f + w_2 m_p + w_1 gru)` with learnable weights `w` (starting at 0.8, 0.1, 0.1, used unnormalised
  as in the code), followed by `LN(Dropout(.) + x)` and a GELU feed-forward network `LN(x + FFN(x))`.

What differs from the released code, and why (docs/sigma.md has the details):

* **Every position predicts its next item, causally.** The reference trains one target per sequence (the
  last position) and flips whole training sequences, so the PF branch at an earlier position would read
  later items. Here the hidden state at position t is SIGMA's output for the prefix `e_1..e_t`: the PF
  branch at t runs over the partial flip *of that prefix*, computed for all t at once from two scans:
  `h^PF_t = h_t + W_t (G_{t-r} - h_{t-r})`, where `h` is the forward state, `W_t = prod_{j=t-r+1..t}
  exp(dt_j A)` the decay over the last r steps, and `G_m = sum_{k<=m} (prod_{j<k} exp(dt'_j A)) dt'_k B'_k u'_k`
  the state after reading `e_m, ..., e_1` in reverse (primes: the reversed-order inputs). Stacked layers read
  the previous layer's per-prefix states, so no position ever sees a later item.
* **Convolutions read only the past or their own prefix.** The FE-GRU convolution is causal (width 3 over
  `e_{t-2..t}`; the reference pads both sides, so position t reads e_{t+1}). In the PF branch, each reversed
  item's Mamba convolution reads its `d_conv - 1` successors `e_{k+1..}` (its predecessors in flipped order)
  and the kept items read their true predecessors; at the seam between the two parts this differs from
  convolving the literally flipped sequence (which would mix `e_1` into `e_{t-r+1}`'s window), and it needs
  `flip_keep >= d_conv - 1` so that no reversed item's window reaches past `e_t`.
* Padding never reaches a state (zero SSM inputs and unit decays at padding), so left padding changes nothing.
* The selective scans are plain PyTorch on CPU and CUDA alike: the forward recurrence is one fused
  multiply-add per step (`linear_scan`, with a hand-written backward), the reversed-order state a cumulative
  sum, the rest vectorised over all positions. `mamba_ssm`'s kernels return only `y`, not the per-step
  states the PF read-out needs, so they are not used.
* Narrower by default (`SIGMAConfig`): the released 2 layers, but E = D, N = 8 instead of E = 2D, N = 32, since
  the scans' work grows with layers * E * N and the ML-100k benchmark trains on two shared CPU cores. Two layers
  reach a higher validation NDCG@10 on ML-100k than one (docs/sigma.md).
* Initialisation as in the released model, whose RecBole `_init_weights` re-draws every linear layer
  (Mamba's `dt_proj` too) from N(0, 0.02) with zero biases: dt starts near softplus(0) = 0.69.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.checks import check_config_fields, check_integer
from recsim_env.encoders.base import EncoderConfig, SequenceEncoder


@dataclass(frozen=True, kw_only=True)
class SIGMAConfig(EncoderConfig):
    """SIGMA hyperparameters. Defaults are our ML-100k settings, sized for a CPU (docs/sigma.md); the released
    config is D = 64, 2 layers, d_state 32, d_conv 4, expand 2, dropout 0.2."""

    n_layers: int = 2
    """Stacked SIGMA layers (residual connections when more than one, as in the reference; released: 2)."""
    d_state: int = 8
    """N: SSM state size per channel (released: 32); the scans' cost grows with E * N."""
    d_conv: int = 4
    """Width of Mamba's causal depthwise convolution."""
    expand: int = 1
    """Mamba's inner width E = expand * D (released: 2)."""
    flip_keep: int = 5
    """r: most recent items kept in order by PF-Mamba (the reference flips the first 45 of 50 positions);
    must be at least d_conv - 1 (module docstring)."""
    gru_kernel: int = 3
    """Width of the FE-GRU's causal convolution."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(
            self, ("n_layers", "d_state", "d_conv", "expand", "flip_keep", "gru_kernel"), check_integer, low=1
        )
        if self.flip_keep < self.d_conv - 1:
            raise ValueError(
                f"SIGMAConfig.flip_keep ({self.flip_keep}) must be >= d_conv - 1 ({self.d_conv - 1}): a reversed "
                "item's convolution reads its d_conv - 1 successors, which must lie inside the prefix"
            )

    @property
    def d_inner(self) -> int:
        """E = expand * D."""
        return self.expand * self.d_model

    @property
    def dt_rank(self) -> int:
        """Rank of Mamba's dt projection, ceil(D / 16)."""
        return math.ceil(self.d_model / 16)


# -- the selective scans -----------------------------------------------------------------------------


class _LinearScan(torch.autograd.Function):
    """`h_t = decay_t * h_{t-1} + x_t` (`h_{-1} = 0`) along dim 1 of `[B, L, E, N]` tensors.

    One fused multiply-add per step, forward and backward (`g_t = grad_t + decay_{t+1} g_{t+1}`); autograd
    through the same loop would keep a graph node per step and op.
    """

    @staticmethod
    def forward(ctx, decay: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        states = torch.empty_like(x)
        h = torch.zeros_like(x[:, 0])
        for t in range(x.shape[1]):
            h = torch.addcmul(x[:, t], decay[:, t], h, out=states[:, t])
        ctx.save_for_backward(decay, states)
        return states

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decay, states = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.empty_like(grad)
        g = torch.zeros_like(grad[:, 0])
        length = grad.shape[1]
        for t in range(length - 1, -1, -1):
            g = (
                torch.addcmul(grad[:, t], decay[:, t + 1], g, out=grad_x[:, t])
                if t < length - 1
                else grad_x[:, t].copy_(grad[:, t])
            )
        grad_decay = torch.empty_like(decay)
        grad_decay[:, 0].zero_()
        torch.mul(grad_x[:, 1:], states[:, :-1], out=grad_decay[:, 1:])
        return grad_decay, grad_x


def linear_scan(decay: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """States `[B, L, E, N]` of `h_t = decay_t * h_{t-1} + x_t` from zero (differentiable in both inputs)."""
    return _LinearScan.apply(decay, x)


def selective_scans(
    dt: torch.Tensor,
    u: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    dt_rev: torch.Tensor,
    u_rev: torch.Tensor,
    b_rev: torch.Tensor,
    a: torch.Tensor,
    *,
    keep: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read-outs `[B, L, E]` of the forward SSM and of the partially flipped SSM of every prefix.

    At position t the forward read-out is `c_t . h_t`, with `h_t = exp(dt_t a) h_{t-1} + dt_t u_t b_t` the state
    after `e_1..e_t` in order. The PF read-out is `c_t . h^PF_t`, the state after `e_{t-r}, ..., e_1` (read with
    the reversed-order inputs `dt_rev, u_rev, b_rev`) and then `e_{t-r+1}, ..., e_t` (the forward inputs),
    `r = keep`: `h^PF_t = h_t + W_t (G_{t-r} - h_{t-r})`, where `W_t = exp(a sum_{j=t-r+1..t} dt_j)` and
    `G_m = sum_{k<=m} exp(a sum_{j<k} dt_rev_j) dt_rev_k u_rev_k b_rev_k` (the reversed read of `e_m..e_1`).
    Padding must carry `dt = dt_rev = 0` (a unit decay and no input). Runs in float32 (float64 inputs stay
    float64) whatever the autocast.

    Args:
        dt, u: `[B, L, E]` step sizes (after softplus) and inputs of the forward order.
        b, c: `[B, L, N]` input and read-out maps of the forward order.
        dt_rev, u_rev, b_rev: the same for the reversed order.
        a: `[E, N]` negative state decay rates (`-exp(A_log)`).
        keep: r, the most recent items kept in order.
    """
    with torch.autocast(dt.device.type, enabled=False):
        dtype = torch.promote_types(a.dtype, torch.float32)
        dt, u, b, c, dt_rev, u_rev, b_rev, a = (x.to(dtype) for x in (dt, u, b, c, dt_rev, u_rev, b_rev, a))
        length = dt.shape[1]
        states = linear_scan(torch.exp(dt[..., None] * a), (dt * u)[..., None] * b[:, :, None, :])
        read = c[..., None]  # [B, L, N, 1]
        y = (states @ read)[..., 0]
        before = torch.cumsum(dt_rev, dim=1) - dt_rev  # sum of dt_rev over the earlier items
        reversed_states = torch.cumsum(
            torch.exp(before[..., None] * a) * ((dt_rev * u_rev)[..., None] * b_rev[:, :, None, :]), dim=1
        )
        if keep >= length:  # no prefix is long enough to flip
            return y, y
        cumulative = torch.cumsum(dt, dim=1)
        window = (
            cumulative[:, keep:] - cumulative[:, :-keep]
        )  # [B, L - r, E]: sum of dt over t-r+1..t, t >= r
        older = reversed_states[:, :-keep] - states[:, :-keep]  # G_{t-r} - h_{t-r}
        seam = ((torch.exp(window[..., None] * a) * older) @ read[:, keep:])[..., 0]
        return y, torch.cat([y[:, :keep], y[:, keep:] + seam], dim=1)


# -- the layers ----------------------------------------------------------------------------------------


class PartiallyFlippedMamba(nn.Module):
    """One Mamba block (shared weights) read forward and partially flipped: `[B, L, D] -> 2 x [B, L, D]`."""

    def __init__(self, config: SIGMAConfig) -> None:
        super().__init__()
        d, inner, n_state = config.d_model, config.d_inner, config.d_state
        self.keep = config.flip_keep
        self.dt_rank = config.dt_rank
        self.d_state = n_state
        self.in_proj = nn.Linear(d, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, config.d_conv, groups=inner)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * n_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        self.a_log = nn.Parameter(
            torch.log(torch.arange(1, n_state + 1, dtype=torch.float32)).repeat(inner, 1)
        )
        self.skip = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d, bias=False)

    def _causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise causal convolution of `[B, L, E]` (each step reads itself and its d_conv - 1 predecessors)."""
        width = self.conv.kernel_size[0]
        return self.conv(F.pad(x.transpose(1, 2), (width - 1, 0))).transpose(1, 2)

    def _ssm_inputs(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """u, dt `[B, L, E]` and B, C `[B, L, N]` from the convolved stream, zero at padding."""
        u = F.silu(x) * keep
        dt_low, b, c = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_low)) * keep
        return u, dt, b, c

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = padding_mask.unsqueeze(-1).to(x.dtype)
        stream, z = self.in_proj(x).chunk(2, dim=-1)
        u, dt, b, c = self._ssm_inputs(self._causal_conv(stream), keep)
        # reversed order: each item's convolution reads its successors (its predecessors once flipped)
        u_rev, dt_rev, b_rev, _ = self._ssm_inputs(self._causal_conv(stream.flip(1)).flip(1), keep)
        a = -torch.exp(self.a_log.float())
        y, y_flip = selective_scans(dt, u, b, c, dt_rev, u_rev, b_rev, a, keep=self.keep)
        skip = self.skip * u
        gate = F.silu(z)
        forward = self.out_proj((y.to(u.dtype) + skip) * gate)
        flipped = self.out_proj((y_flip.to(u.dtype) + skip) * gate)
        return forward, flipped


class FeatureExtractGRU(nn.Module):
    """FE-GRU: a causal width-k convolution then a bias-free GRU, `[B, L, D] -> [B, L, D]`."""

    def __init__(self, d_model: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel)
        self.gru = nn.GRU(d_model, d_model, bias=False, batch_first=True)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        features = self.conv(F.pad(x.transpose(1, 2), (self.kernel - 1, 0))).transpose(1, 2)
        # zero input at padding keeps a bias-free GRU's state at zero until the first item
        features = features * padding_mask.unsqueeze(-1).to(features.dtype)
        output, _ = self.gru(features)
        return output


class SIGMALayer(nn.Module):
    """PF-Mamba + Dense Selective Gate + FE-GRU, mixed and projected, then Add & Norm and the FFN."""

    def __init__(self, config: SIGMAConfig) -> None:
        super().__init__()
        d = config.d_model
        self.residual = config.n_layers > 1  # the reference's single layer has no residual connection
        self.mamba = PartiallyFlippedMamba(config)
        self.gru = FeatureExtractGRU(d, config.gru_kernel)
        self.dense_forward = nn.Linear(d, d)
        self.dense_flipped = nn.Linear(d, d)
        self.gate_silu = nn.Linear(d, d)
        self.gate_sigmoid = nn.Linear(d, d)
        self.gate_dropout = nn.Dropout(config.dropout)
        self.mixing = nn.Parameter(torch.tensor([0.1, 0.1, 0.8]))  # GRU, flipped, forward
        self.projection = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.ffn = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(4 * d, d)
        )
        self.ffn_dropout = nn.Dropout(config.dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        forward, flipped = self.mamba(x, padding_mask)
        # Dense Selective Gate; the PF read-out at t ends with e_t, so both gates read x_t
        key_forward = x + self.dense_forward(x)
        key_flipped = x + self.dense_flipped(x)
        sigmoid_term = self.gate_sigmoid(torch.sigmoid(key_forward))
        gate_forward = self.gate_dropout(self.gate_silu(F.silu(key_forward)) + sigmoid_term)
        gate_flipped = self.gate_dropout(self.gate_silu(F.silu(key_flipped)) + sigmoid_term)
        forward = forward * gate_forward + forward
        flipped = flipped * gate_flipped + flipped
        short_term = self.gru(x, padding_mask)
        w = self.mixing
        mixed = self.projection(w[2] * forward + w[1] * flipped + w[0] * short_term)
        mixed = self.dropout(mixed)
        x = self.norm(mixed + x if self.residual else mixed)
        return self.ffn_norm(x + self.ffn_dropout(self.ffn(x)))


class SIGMA(SequenceEncoder):
    """SIGMA (Liu et al. 2024): stacked SIGMA layers over `LN(Dropout(E[s_t]))` (no position embedding).

    Layer: `m_f, m_p = Mamba(x), PF-Mamba(x)`; `m_f <- m_f (1 + g_1(x))`, `m_p <- m_p (1 + g_2(x))`;
    `o = Proj(w_3 m_f + w_2 m_p + w_1 GRU(Conv(x)))`; `x <- LN(x + FFN(LN(x + Dropout(o))))`. Hidden state at t:
    the last layer's output for the prefix 1..t; score `r_{i,t} = h_t . E_i`.
    """

    name = "sigma"
    config_class = SIGMAConfig

    def __init__(self, config: SIGMAConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.input_dropout = nn.Dropout(config.dropout)
        self.input_norm = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(SIGMALayer(config) for _ in range(config.n_layers))
        self.apply(_reference_init)
        with torch.no_grad():
            self.item_embedding.weight[config.pad_id].zero_()

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps  # SIGMA has no notion of time
        keep = padding_mask.unsqueeze(-1)
        x = self.input_norm(self.input_dropout(self.embed_inputs(item_ids, feedback, padding_mask))) * keep
        for layer in self.layers:
            x = layer(x, padding_mask) * keep
        return x


def _reference_init(module: nn.Module) -> None:
    """The released model's initialisation (RecBole `_init_weights`): N(0, 0.02) linear and embedding weights,
    zero linear biases, unit LayerNorms; Mamba's convolution, A and D keep their own."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
