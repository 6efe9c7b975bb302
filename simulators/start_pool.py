"""The start pool of a learned simulator: logged exposure sequences whose prefixes start episodes.

A simulator with an interest filter starts each episode from the filter's state after the user's whole
logged prefix. Reading up to a thousand exposures per reset would dominate a step, so each member's state
is saved every `every` exposures of every start-pool sequence (the filter checkpoints) and an episode start
advances the nearest one over the rest of its prefix.
"""

from __future__ import annotations

import numpy as np
import torch

from simulators.data import ExposureLog, model_inputs

BELIEF_CHECKPOINT_EVERY = (1, 2, 4, 8, 16)
"""The start pool's filter checkpoints are saved every 1, 2, 4, 8 or 16 exposures: the densest that fits in
`BELIEF_CHECKPOINT_BYTES` (a sparser one makes each episode start advance further)."""
BELIEF_CHECKPOINT_BYTES = 256 * 2**20
"""Memory the start pool's filter checkpoints may take (all members), unless even every 16th exceeds it."""


def pool_rows(
    pool: ExposureLog, index: np.ndarray, real: np.ndarray, scales: np.ndarray, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items, raw feedback and model inputs of start-pool rows `index` [N, T] where `real`, padding elsewhere."""
    safe = np.where(real, index, 0)
    items = np.where(real, pool.items[safe], pad_id)
    feedback = pool.feedback[safe] * real[..., None]
    inputs = model_inputs(feedback, pool.gap_before[safe] * real, scales) * real[..., None]
    return items, feedback, inputs


def pool_exposures(
    pool: ExposureLog, start: np.ndarray, count: np.ndarray, width: int, scales: np.ndarray, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Items [N, width] and model inputs [N, width, F + 1] of start-pool rows `start .. start + count - 1`,
    left-aligned and padded after `count` (a padded position is no exposure)."""
    index = start[:, None] + np.arange(width)[None, :]
    items, _, inputs = pool_rows(pool, index, np.arange(width)[None, :] < count[:, None], scales, pad_id)
    return items, inputs


@torch.inference_mode()
def filter_checkpoints(
    pool: ExposureLog, members: list, scales: np.ndarray, pad_id: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Each member's interest-filter state after every `every` exposures of each sequence of `pool`, from its
    first: `(every, offsets, checkpoints)`, `offsets` [U + 1] into `checkpoints` [C, M, W] (user u's j-th
    checkpoint, after `j * every` exposures, is row `offsets[u] + j`; W = 0 without a filter)."""
    model_filter = members[0].interest_filter
    width = 0 if model_filter is None else model_filter.state_width
    for every in BELIEF_CHECKPOINT_EVERY:  # the densest that fits the memory budget
        counts = pool.lengths() // every + 1
        if int(counts.sum()) * len(members) * width * 4 <= BELIEF_CHECKPOINT_BYTES:
            break
    offsets = np.zeros(pool.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    checkpoints = np.zeros((offsets[-1], len(members), width), dtype=np.float32)
    if not width:
        return every, offsets, checkpoints
    for first in range(0, pool.n_users, 512):
        users = np.arange(first, min(first + 512, pool.n_users))
        lo, length = pool.offsets[users], pool.lengths()[users]
        features = torch.from_numpy(pool.user_features[users])
        for k, member in enumerate(members):
            belief = member.interest_filter.initial(len(users), features if features.shape[1] else None)
            for j in range(int(counts[users].max())):
                has = np.flatnonzero(j < counts[users])
                checkpoints[offsets[users[has]] + j, k] = belief[has].numpy()
                items, inputs = pool_exposures(
                    pool, lo + j * every, np.minimum(length - j * every, every), every, scales, pad_id
                )
                belief = member.advance_filter(belief, torch.from_numpy(items), torch.from_numpy(inputs))
    return every, offsets, checkpoints


class FilterCheckpoints:
    """`filter_checkpoints` of a start pool for a group of models (an ensemble's members, column k for
    member k), computed at the first episode start of any simulator that reads them."""

    def __init__(self, pool: ExposureLog, models: list, scales: np.ndarray, pad_id: int) -> None:
        self.pool, self.models, self.scales, self.pad_id = pool, list(models), scales, pad_id
        self._value: tuple[int, np.ndarray, np.ndarray] | None = None

    def get(self) -> tuple[int, np.ndarray, np.ndarray]:
        """`(every, offsets, checkpoints [C, M, W])`, as `filter_checkpoints` returns them."""
        if self._value is None:
            self._value = filter_checkpoints(self.pool, self.models, self.scales, self.pad_id)
        return self._value
