"""The interest filter's updates (`simulators.interest_filter`, equations in its module docstring) as one
compiled pass per user, for a simulator step: the torch form (the reference, which training
differentiates through) spends a step's filter time in some forty small tensor operations on `[N, K, K]`
covariances; this reads and writes each user's state once. float32 throughout, as torch.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def filter_updates(
    mean: np.ndarray,
    cov: np.ndarray,
    satiation: np.ndarray,
    a: np.ndarray,
    offset: np.ndarray,
    clicked: np.ndarray,
    present: np.ndarray,
    signals: np.ndarray,
    signal_offset: np.ndarray,
    gain: np.ndarray,
    signal_noise: np.ndarray,
    process_noise: np.ndarray,
    drift: float,
    drift_target: np.ndarray,
    radius: float,
    satiation_decay: float,
    daily_decay: float,
    gap_days: np.ndarray,
    filled: np.ndarray,
) -> None:
    """Update in place the beliefs `mean` [B, K], `cov` [B, K, K] and `satiation` [B, K] by the T exposures
    of each user, in order: item filter vectors `a` [B, T, K], click offsets `offset` [B, T], `clicked` and
    `present` [B, T] (1 or 0), the continuous signals the filter reads `signals` [B, T, R] with their item
    offsets `signal_offset` [B, T, R], gains `gain` [R] and noise variances `signal_noise` [R], the process
    noise variances `process_noise` [K], the drift weight `drift` towards `drift_target` [B, T, K] on the
    sphere of radius `radius`, the satiation decay `satiation_decay` and `daily_decay` over `gap_days`
    [B, T], and the satiation each exposure fills, `filled` [B, T, K] (zero unless clicked)."""
    batch, steps, k = a.shape
    pa = np.empty(k, dtype=np.float32)
    for b in range(batch):
        for t in range(steps):
            real = present[b, t]
            if real == 0:  # padding: the state is unchanged (the torch form's updates are all zero)
                continue
            for i in range(k):
                cov[b, i, i] += process_noise[i]
            # Laplace step on the click (Sherman-Morrison form of the extended Kalman update).
            apa = _project(cov[b], a[b, t], pa)
            logit = offset[b, t]
            for i in range(k):
                logit += a[b, t, i] * mean[b, i]
            p = 1 / (1 + math.exp(-logit))
            w = p * (1 - p)
            step = (clicked[b, t] - p) / (1 + w * apa)
            shrink = w / (1 + w * apa)
            for i in range(k):
                mean[b, i] += pa[i] * step
            _downdate(cov[b], pa, shrink)
            # Kalman steps on a consumed item's continuous signals.
            if clicked[b, t] > 0:
                for j in range(signals.shape[2]):
                    apa = _project(cov[b], a[b, t], pa)
                    g = gain[j]
                    predicted = 0.0
                    for i in range(k):
                        predicted += a[b, t, i] * mean[b, i]
                    innovation = signals[b, t, j] - g * predicted - signal_offset[b, t, j]
                    denominator = g * g * apa + signal_noise[j]
                    for i in range(k):
                        mean[b, i] += g * innovation / denominator * pa[i]
                    _downdate(cov[b], pa, g * g / denominator)
                # Drift towards the clicked item, on the sphere of radius rho.
                pulled = drift
                norm = 0.0
                for i in range(k):
                    norm += mean[b, i] * mean[b, i]
                norm = max(math.sqrt(norm), 1e-6)
                length = 0.0
                for i in range(k):
                    moved = (1 - pulled) * radius * mean[b, i] / norm + pulled * drift_target[b, t, i]
                    length += moved * moved
                shift = math.sqrt(length) / radius if pulled > 0 else 1.0
                if pulled > 0:
                    shift = max(shift, 1e-3)
                for i in range(k):
                    mean[b, i] = ((1 - pulled) * mean[b, i] + pulled * drift_target[b, t, i]) / shift
                rescale = ((1 - pulled) / shift) ** 2
                for i in range(k):
                    for j in range(k):
                        cov[b, i, j] *= rescale
            keep = satiation_decay * math.exp(-daily_decay * gap_days[b, t])
            for i in range(k):
                satiation[b, i] = keep * satiation[b, i] + filled[b, t, i]


@numba.njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _project(cov: np.ndarray, a: np.ndarray, pa: np.ndarray) -> float:
    """Write `P a` into `pa` and return `a' P a`."""
    k = a.shape[0]
    apa = 0.0
    for i in range(k):
        total = np.float32(0.0)
        for j in range(k):
            total += cov[i, j] * a[j]
        pa[i] = total
        apa += a[i] * total
    return apa


@numba.njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _downdate(cov: np.ndarray, pa: np.ndarray, weight: float) -> None:
    """`P <- P - weight (P a)(P a)'`."""
    k = pa.shape[0]
    for i in range(k):
        for j in range(k):
            cov[i, j] -= weight * pa[i] * pa[j]
