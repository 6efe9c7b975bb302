"""A learned interest filter: a Gaussian belief over the user's latent interest, updated exposure by exposure.

Users in logs click what matches a hidden interest. Given the item's filter vector `a_i = W_a e_i`
(`e_i` the response model's item vector) and a K-dimensional interest `u ~ N(m, P)`, the filter takes
the click logit to be `a_i . u + c_i` and, reading the history in order, makes for each real exposure:

    P <- P + diag(q)                                              (process noise: interests drift)
    w = p (1 - p),  p = sigmoid(a . m + c)
    m <- m + P a (y - p) / (1 + w a'Pa)                           (Laplace / extended Kalman step on
    P <- P - w / (1 + w a'Pa) (P a)(P a)'                          the click y: Sherman-Morrison)
    for each continuous signal r of a consumed item, o_r ~ N(g_r a . u + d_{i,r}, s_r^2):
    m <- m + g_r P a (o_r - g_r a . m - d_{i,r}) / (g_r^2 a'Pa + s_r^2)    (a Kalman step)
    P <- P - g_r^2 / (g_r^2 a'Pa + s_r^2) (P a)(P a)'
    after a click, the interest drifts towards the item on a sphere of radius rho, u <- rho normalise((1 - k) u
    + k W_d e_i), applied to the belief with the length n = |(1 - k) rho m / |m| + k W_d e_i| / rho that the
    step gives an interest along m:
    m <- ((1 - k) m + k W_d e_i) / n,  P <- (1 - k)^2 P / n^2

and, apart from the interest, a satiation `S` (K numbers) that each click fills and time empties,
`S <- lambda exp(-delta gap) S + click U e_i` (`gap` the days before the exposure), which lowers the
click logit of a candidate `c` by `S . V e_c` (the same-category penalty of RecSim-like worlds);
starting from the prior `m_0 = W_m f + b_m` (`f` the user's features) and `P_0 = L L'`. Every
parameter (`W_a`, `c`, `W_m`, `L`, `q`, `g`, `d`, `s`, `k`, `W_d`, `rho`, `lambda`, `delta`, `U`, `V`) is learned end to end through the updates, by the
response model's likelihood. A candidate's click logit `z` (the heads' own logit, which sees the
encoder's state: position, time) becomes `(z - S . V e_c + a_c . m) / sqrt(1 + pi a_c'P a_c / 8)`: the
probit approximation of `E[sigmoid(z + a_c . u)]` under the belief (MacKay 1992), so an uncertain
belief pulls predictions towards the middle.

This is the extended Kalman filter of the world-knowing reference in benchmarks/simulator_fidelity.py
with the world's equations replaced by learned parameters: a sequence encoder has to discover that
kind of inference from data, this module is built to do it (docs/simulators.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class InterestFilter(nn.Module):
    """Learned Laplace filter over a `dim`-dimensional interest (equations in the module docstring).

    Args:
        d_model: width of the response model's item vectors `e_i`.
        n_items: catalogue size (the padding id is `n_items`).
        n_user_features: width of the encoded user features (0: the prior mean is a learned vector).
        continuous_index: positions, in the per-exposure inputs, of the continuous signals the filter reads.
        dim: K, the interest's dimension.
    """

    def __init__(
        self, d_model: int, n_items: int, n_user_features: int, continuous_index: tuple[int, ...], dim: int
    ) -> None:
        super().__init__()
        self.dim = dim
        self.continuous_index = tuple(continuous_index)
        self.item_map = nn.Linear(d_model, dim, bias=False)
        self.click_offset = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.click_offset.weight)
        self.prior_mean = nn.Linear(n_user_features, dim) if n_user_features else None
        self.prior_bias = nn.Parameter(torch.zeros(dim)) if not n_user_features else None
        self.prior_scale = nn.Parameter(torch.eye(dim) * 0.5)  # L; P_0 = L L' (lower triangle used)
        self.log_process_noise = nn.Parameter(torch.full((dim,), -6.0))
        r = len(self.continuous_index)
        self.signal_gain = nn.Parameter(torch.full((r,), 0.5))
        self.signal_offset = nn.Embedding(n_items + 1, r)
        nn.init.zeros_(self.signal_offset.weight)
        self.log_signal_noise = nn.Parameter(torch.zeros(r))
        self.drift_logit = nn.Parameter(torch.tensor(-2.5))  # k = sigmoid(.), about 0.08 at the start
        self.drift_map = nn.Linear(d_model, dim, bias=False)
        self.log_radius = nn.Parameter(torch.zeros(()))
        self.satiation_decay_logit = nn.Parameter(torch.tensor(1.5))  # lambda = sigmoid(.), 0.82 at the start
        self.log_satiation_daily_decay = nn.Parameter(torch.zeros(()))  # delta
        self.satiation_map = nn.Linear(d_model, dim, bias=False)  # U
        self.satiation_penalty = nn.Linear(d_model, dim, bias=False)  # V
        nn.init.zeros_(self.satiation_penalty.weight)
        self.state_width = 2 * dim + dim * dim

    def initial(self, batch: int, user_features: torch.Tensor | None) -> torch.Tensor:
        """`[B, 2K + K*K]`: the packed state before any exposure, `(m_0, vec P_0, S = 0)`."""
        if self.prior_mean is not None:
            if user_features is None:
                raise ValueError("this interest filter reads user features: pass `user_features`")
            mean = self.prior_mean(user_features)
        else:
            mean = self.prior_bias.expand(batch, self.dim)
        scale = torch.tril(self.prior_scale)
        cov = (scale @ scale.T).expand(batch, self.dim, self.dim)
        return self.pack(mean, cov, torch.zeros_like(mean))

    def forward(
        self,
        items: torch.Tensor,
        item_vectors: torch.Tensor,
        inputs: torch.Tensor,
        real: torch.Tensor,
        user_features: torch.Tensor | None,
        start=None,
    ) -> torch.Tensor:
        """`[B, L, 2K + K*K]`: the state `(m, vec P, S)` after each position of left-padded histories `items`
        [B, L] with item vectors [B, L, D], inputs [B, L, F + 1] (click first, the log1p gap last) and `real`
        [B, L] (1 where an exposure is present), from `start` (a `simulators.response_model.FilterStart`:
        what the user's exposures before each window left, or the prior where `start.from_prior`), else from
        the prior."""
        prior = self.initial(items.shape[0], user_features)
        if (
            start is not None
        ):  # the prior where the window begins the user's sequence, in the graph so that it is learned
            prior = torch.where(start.from_prior[:, None], prior, start.state)
        return self.advance(prior, items, item_vectors, inputs, real, every_position=True)

    def advance(
        self,
        state: torch.Tensor,
        items: torch.Tensor,
        item_vectors: torch.Tensor,
        inputs: torch.Tensor,
        real: torch.Tensor,
        every_position: bool = False,
        *,
        compiled: bool | None = None,
    ) -> torch.Tensor:
        """The packed state `[B, 2K + K*K]` after the exposures `items` [B, T] (arguments as in `forward`)
        have been read in order (`[B, T, 2K + K*K]`, after each one, with `every_position`). `compiled`:
        the updates in one compiled pass per user (`simulators.filter_kernel`) rather than in torch; by
        default for the last state of CPU float32 tensors outside autograd (a simulator step)."""
        a = self.item_map(item_vectors)  # [B, T, K]
        offset = self.click_offset(items).squeeze(-1)  # [B, T]
        clicked = (inputs[..., 0] > 0).to(a.dtype)
        process_noise = self.log_process_noise.exp()
        noise = torch.diag_embed(process_noise)
        gain, signal_noise = self.signal_gain, self.log_signal_noise.exp() ** 2
        signal_offset = self.signal_offset(items)  # [B, T, R]
        drift = torch.sigmoid(self.drift_logit)
        drift_target = self.drift_map(item_vectors)  # [B, T, K]
        radius = self.log_radius.exp()
        satiation_decay = torch.sigmoid(self.satiation_decay_logit)
        daily_decay = self.log_satiation_daily_decay.exp()
        gap_days = torch.expm1(inputs[..., -1])  # inputs end with log1p(days since the last session)
        filled = self.satiation_map(item_vectors) * clicked[..., None]  # [B, T, K]
        if compiled is None:
            compiled = (
                not every_position
                and state.device.type == "cpu"
                and state.dtype == torch.float32
                and not torch.is_grad_enabled()
            )
        if compiled:
            return self._compiled_updates(
                state,
                a,
                offset,
                clicked,
                real,
                inputs,
                signal_offset,
                filled,
                drift_target,
                gap_days,
                parameters=(gain, signal_noise, process_noise, drift, radius, satiation_decay, daily_decay),
            )
        mean, cov, satiation = self.unpack(state)
        states = []
        for t in range(items.shape[1]):
            present = real[:, t, None]  # [B, 1]
            a_t = a[:, t]
            cov = cov + noise * present[..., None]
            # Laplace step on the click (Sherman-Morrison form of the extended Kalman update).
            pa = (cov @ a_t[..., None]).squeeze(-1)  # [B, K]
            apa = (a_t * pa).sum(-1)
            p = torch.sigmoid((a_t * mean).sum(-1) + offset[:, t])
            w = p * (1.0 - p)
            mean = mean + present * pa * ((clicked[:, t] - p) / (1.0 + w * apa))[:, None]
            shrink = present.squeeze(-1) * w / (1.0 + w * apa)
            cov = cov - shrink[:, None, None] * pa[:, :, None] * pa[:, None, :]
            # Kalman steps on a consumed item's continuous signals.
            consumed = present.squeeze(-1) * clicked[:, t]
            for j, index in enumerate(self.continuous_index):
                pa = (cov @ a_t[..., None]).squeeze(-1)
                apa = (a_t * pa).sum(-1)
                g = gain[j]
                innovation = inputs[:, t, index] - g * (a_t * mean).sum(-1) - signal_offset[:, t, j]
                denominator = g * g * apa + signal_noise[j]
                mean = mean + (consumed * g * innovation / denominator)[:, None] * pa
                cov = cov - (consumed * g * g / denominator)[:, None, None] * pa[:, :, None] * pa[:, None, :]
            # Drift towards a clicked item, on the sphere of radius rho.
            pulled = (drift * present.squeeze(-1) * clicked[:, t])[:, None]  # k where clicked, else 0
            along = radius * mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            shift = ((1.0 - pulled) * along + pulled * drift_target[:, t]).norm(dim=-1, keepdim=True) / radius
            # Only a drift rescales (elsewhere |along| / rho = 1, or 0 for a zero mean, as a learned prior
            # without user features starts).
            shift = torch.where(pulled > 0, shift.clamp_min(1e-3), torch.ones_like(shift))
            mean = ((1.0 - pulled) * mean + pulled * drift_target[:, t]) / shift
            cov = cov * ((1.0 - pulled) / shift).square()[..., None]
            keep = satiation_decay * torch.exp(-daily_decay * gap_days[:, t, None])
            satiation = torch.where(present > 0, keep * satiation + filled[:, t], satiation)
            if every_position:
                states.append(self.pack(mean, cov, satiation))
        if every_position:
            return torch.stack(states, dim=1)
        return self.pack(mean, cov, satiation)

    def _compiled_updates(
        self,
        state,
        a,
        offset,
        clicked,
        real,
        inputs,
        signal_offset,
        filled,
        drift_target,
        gap_days,
        *,
        parameters,
    ) -> torch.Tensor:
        """`advance`'s last state by `simulators.filter_kernel.filter_updates` (the arguments are the
        per-exposure terms `advance` computed, and `parameters` its transformed parameters: gains, signal
        and process noise variances, drift, radius, satiation decay and daily decay)."""
        gain, signal_noise, process_noise, drift, radius, satiation_decay, daily_decay = parameters
        from simulators.filter_kernel import filter_updates

        def array(x: torch.Tensor) -> np.ndarray:
            return x.detach().to(torch.float32).contiguous().numpy()

        parts = [m.contiguous() for m in self.unpack(state.detach().clone())]
        filter_updates(
            *(m.numpy() for m in parts),
            array(a),
            array(offset),
            array(clicked),
            array(real),
            array(inputs[..., list(self.continuous_index)]),
            array(signal_offset),
            array(gain),
            array(signal_noise),
            array(process_noise),
            float(drift),
            array(drift_target),
            float(radius),
            float(satiation_decay),
            float(daily_decay),
            array(gap_days),
            array(filled),
        )
        return self.pack(*parts)

    @staticmethod
    def pack(mean: torch.Tensor, cov: torch.Tensor, satiation: torch.Tensor) -> torch.Tensor:
        """`[..., 2K + K*K]` from `m` [..., K], `P` [..., K, K] and `S` [..., K]."""
        return torch.cat([mean, cov.flatten(-2), satiation], dim=-1)

    def unpack(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(m [..., K], P [..., K, K], S [..., K])` from a packed belief `[..., 2K + K*K]`."""
        k = self.dim
        return state[..., :k], state[..., k : k + k * k].unflatten(-1, (k, k)), state[..., k + k * k :]

    def click_logit(
        self, logit: torch.Tensor, belief: torch.Tensor, candidate_vectors: torch.Tensor
    ) -> torch.Tensor:
        """`(z - S . V e_c + a_c . m) / sqrt(1 + pi a_c'P a_c / 8)` for logits `z` [..., C], a packed state [..., 2K + K*K]
        and candidate item vectors [..., C, D]."""
        mean, cov, satiation = self.unpack(belief)
        a = self.item_map(candidate_vectors)  # [..., C, K]
        mu = (a * mean.unsqueeze(-2)).sum(-1)
        penalty = (self.satiation_penalty(candidate_vectors) * satiation.unsqueeze(-2)).sum(-1)
        if a.shape[-2] == 1 and not torch.is_grad_enabled():
            # One candidate per state (a simulator step on one-item slates): a broadcast sum costs a
            # quarter of B tiny matmuls on a CPU. Training keeps the matmul.
            variance = ((a[..., :, None] * cov.unsqueeze(-3)).sum(-2) * a).sum(-1)
        else:
            variance = ((a @ cov) * a).sum(-1)
        return (logit - penalty + mu) / torch.sqrt(1.0 + math.pi * variance / 8.0)
