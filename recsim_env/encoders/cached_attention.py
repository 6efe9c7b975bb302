"""The last query's attention of a one-block SASRec from its cached per-event terms, as one compiled pass
per sequence (eqs. C1-C3 of `recsim_env.encoders.sasrec.last_block_from_cache`, which is the reference and
runs on any device): on the CPU the torch form spends most of its time in a dozen broadcast passes over
`[B, L, D]` arrays, where this reads each cached term once (float32 throughout, as torch).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def attend_from_cache(
    u: np.ndarray,
    u_keys: np.ndarray,
    u_values: np.ndarray,
    moments: np.ndarray,
    keep: np.ndarray,
    positions: np.ndarray,
    position_keys: np.ndarray,
    position_values: np.ndarray,
    query: np.ndarray,
    centre_keys: np.ndarray,
    centre_values: np.ndarray,
    offset_keys: np.ndarray,
    offset_values: np.ndarray,
    heads: int,
    eps: float,
    last: int,
    out: np.ndarray,
) -> None:
    """Write into `out` [B, D] the attention output `y` (eq. C3, before the output map) of the queries
    `query` [B, D] over the L cached events of each sequence.

    Args: `u`, `u_keys`, `u_values` [B, L, D] and `moments` [B, L, 2] (`SASRec.cache_events`); `keep`
    [B, L] 1 at real events, 0 at padding (slot `last`, the newest event's, is always attended, as
    `last_query_mask`: the slots may be in any order);
    `positions` [L, D] the position embeddings of the slots, `position_keys` / `position_values` [L, D]
    their projections `p G_k^T`, `p G_v^T`; `centre_keys` / `centre_values` [D] `c` and `offset_keys` /
    `offset_values` [D] `k0` of eq. C1, split into keys and values.
    """
    batch, length, d = u.shape
    width = d // heads
    scale = np.float32(1.0 / math.sqrt(width))
    # Per-head views, so that every inner loop runs over range(width) (offset ranges defeat vectorisation).
    keys = u_keys.reshape(batch, length, heads, width)
    values = u_values.reshape(batch, length, heads, width)
    slot_keys = position_keys.reshape(length, heads, width)
    slot_values = position_values.reshape(length, heads, width)
    queries = query.reshape(batch, heads, width)
    centre_k = centre_keys.reshape(heads, width)
    centre_v = centre_values.reshape(heads, width)
    offset_k = offset_keys.reshape(heads, width)
    offset_v = offset_values.reshape(heads, width)
    y = out.reshape(batch, heads, width)
    p_sum = np.zeros(length, dtype=np.float32)
    p_square = np.zeros(length, dtype=np.float32)
    for t in range(length):
        for i in range(d):
            p_sum[t] += positions[t, i]
            p_square[t] += positions[t, i] * positions[t, i]
    mu = np.empty(length, dtype=np.float32)
    inv_sigma = np.empty(length, dtype=np.float32)
    scores = np.empty(length, dtype=np.float32)
    for b in range(batch):
        for t in range(length):  # eq. C1's LayerNorm statistics of x_t = u_t + p_t
            dot = np.float32(0.0)
            for i in range(d):
                dot += u[b, t, i] * positions[t, i]
            real = keep[b, t]
            mean = (moments[b, t, 0] + p_sum[t] * real) / d
            mean_square = (moments[b, t, 1] + (2 * dot + p_square[t]) * real) / d
            mu[t] = mean
            inv_sigma[t] = 1 / math.sqrt(max(mean_square - mean * mean, 0) + eps)
        for h in range(heads):
            q_centre = np.float32(0.0)
            q_offset = np.float32(0.0)
            for i in range(width):
                q_centre += queries[b, h, i] * centre_k[h, i]
                q_offset += queries[b, h, i] * offset_k[h, i]
            for t in range(length):  # eq. C2's logits
                real = keep[b, t]
                dot = np.float32(0.0)
                for i in range(width):
                    dot += queries[b, h, i] * (keys[b, t, h, i] + slot_keys[t, h, i] * real)
                scores[t] = ((dot - mu[t] * q_centre) * inv_sigma[t] + q_offset) * scale
            top = scores[last]  # the newest event is always attended (`last_query_mask`)
            for t in range(length):
                if keep[b, t] > 0 and scores[t] > top:
                    top = scores[t]
            total = np.float32(0.0)
            for t in range(length):
                scores[t] = math.exp(scores[t] - top) if keep[b, t] > 0 or t == last else 0
                total += scores[t]
            shift = np.float32(0.0)
            for i in range(width):
                y[b, h, i] = 0
            for t in range(length):  # eq. C3
                weight = scores[t] / total * inv_sigma[t]
                real = keep[b, t]
                shift += weight * mu[t]
                for i in range(width):
                    y[b, h, i] += weight * (values[b, t, h, i] + slot_values[t, h, i] * real)
            for i in range(width):
                y[b, h, i] += offset_v[h, i] - shift * centre_v[h, i]
