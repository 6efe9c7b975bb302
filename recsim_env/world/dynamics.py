"""The world's per-step user response, compiled once with numba and shared by every environment.

One function, batched over users, is the whole step of the world (docs/world.md, "One step"): the
single env calls it with N = 1, the vector env with N = num_envs. It is compiled (numba) because a
rich user model written as ~80 small numpy operations costs ~100 us per step at N = 1, five times
the budget of a single environment step; compiled, the same equations cost a few microseconds and
the loop over users stays out of Python.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from recsim_env.world.config import WorldConfig

# Indices into the feedback vector (recsim_env.world.SIGNALS order).
CLICK, WATCH_TIME, LIKE, FOLLOW, SHARE, HATE = range(6)


class StepCoefficients(NamedTuple):
    """The constants of one step, as floats the compiled kernel can read."""

    affinity_weight: float
    satiation_weight: float
    completion_quality_weight: float
    completion_affinity_weight: float
    completion_noise: float
    satiation_step_decay: float
    interest_drift: float
    satisfaction_memory: float
    no_click_penalty: float
    hate_penalty: float
    leave_bias: float
    leave_dissatisfaction_weight: float

    @classmethod
    def from_config(cls, config: WorldConfig) -> StepCoefficients:
        return cls(*(float(getattr(config, name)) for name in cls._fields))

    def as_array(self) -> np.ndarray:
        """[12] float64 in field order: what the kernel takes (an array is cheaper to pass than a tuple)."""
        return np.array(self, dtype=np.float64)


@numba.njit(cache=True, inline="always")
def _coefficients(values) -> StepCoefficients:
    """`StepCoefficients.as_array()` back into named fields (the same floats)."""
    return StepCoefficients(
        values[0], values[1], values[2], values[3], values[4], values[5],
        values[6], values[7], values[8], values[9], values[10], values[11],
    )  # fmt: skip


def item_table(
    embeddings: np.ndarray,
    category: np.ndarray,
    quality: np.ndarray,
    duration_s: np.ndarray,
    utility: np.ndarray,
) -> np.ndarray:
    """[n_items, D + 4] float64: each item's attributes the step reads, in one row (one memory region
    per shown item, which matters when the catalogue is far larger than the caches)."""
    return np.ascontiguousarray(
        np.column_stack([embeddings, category.astype(np.float64), quality, duration_s, utility])
    )


@numba.njit(cache=True, inline="always")
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit(cache=True, inline="always")
def _logit(u: float) -> float:
    return math.log(u / (1.0 - u))


@numba.njit(cache=True, nogil=True)
def respond_kernel(
    slates,  # [N, K] int64
    uniforms,  # [N, U] float64 in (0, 1)
    interest,  # [N, D] float64, updated in place
    satiation,  # [N, C] float64, updated in place
    satisfaction,  # [N] float64, updated in place
    patience,  # [N] float64
    items,  # [n_items, D + 4]: embedding, category, quality, duration_s, utility (`item_table`)
    position_weights,  # [>= K]: position_bias ** k
    coefficients,  # [12] float64: StepCoefficients.as_array()
    feedback,  # [N, K, 6] float32 out, zeroed by the caller
    chosen,  # [N] int64 out: consumed position or -1
    leave,  # [N] bool out
    choice,  # [N, K] float64 out: probability each position is consumed
):
    """Returns False, having changed nothing, if a slate holds an item id outside [0, n_items)."""
    c = _coefficients(coefficients)
    n_users, slate_size = slates.shape
    n_items = items.shape[0]
    for n in range(n_users):  # compiled code reads no bounds: every id is checked before any is used
        for k in range(slate_size):
            if slates[n, k] < 0 or slates[n, k] >= n_items:
                return False
    dim = interest.shape[1]
    category_col, quality_col, duration_col, utility_col = dim, dim + 1, dim + 2, dim + 3
    affinity = np.empty(slate_size)
    for n in range(n_users):
        # Choice: multinomial logit over the slate with a no-click option of utility 0.
        total = 1.0
        for k in range(slate_size):
            item = slates[n, k]
            dot = 0.0
            for d in range(dim):
                dot += interest[n, d] * items[item, d]
            affinity[k] = dot
            utility = (
                c.affinity_weight * dot
                - c.satiation_weight * satiation[n, int(items[item, category_col])]
                + items[item, utility_col]
            )
            choice[n, k] = position_weights[k] * math.exp(utility)
            total += choice[n, k]
        position = -1
        cumulative = 0.0
        for k in range(slate_size):
            choice[n, k] /= total
            cumulative += choice[n, k]
            if position < 0 and uniforms[n, 0] < cumulative:
                position = k
        chosen[n] = position

        # Consumption signals of the chosen item, or a possible hate of the unwanted top item.
        k = position if position >= 0 else 0
        item = slates[n, k]
        aff = affinity[k]
        quality = items[item, quality_col]
        category = int(items[item, category_col])
        if position >= 0:
            completion = _sigmoid(
                c.completion_quality_weight * (quality - 0.5)
                + c.completion_affinity_weight * aff
                + c.completion_noise * _logit(uniforms[n, 1])
            )
            like = _logit(uniforms[n, 2]) < -3.0 + 4.0 * completion + 1.5 * aff
            follow = _logit(uniforms[n, 3]) < -5.0 + 3.0 * aff + 2.0 * quality
            share = _logit(uniforms[n, 4]) < -5.5 + 3.0 * completion + 3.0 * quality
            hate = _logit(uniforms[n, 5]) < -6.0 + 4.0 * (1.0 - completion)
            feedback[n, k, CLICK] = 1.0
            feedback[n, k, WATCH_TIME] = items[item, duration_col] * completion
            feedback[n, k, LIKE] = like
            feedback[n, k, FOLLOW] = follow
            feedback[n, k, SHARE] = share
            experience = 2.0 * completion - 1.0 + 0.5 * like
        else:
            hate = _logit(uniforms[n, 5]) < -3.5 - 2.0 * aff + satiation[n, category]
            experience = -c.no_click_penalty
        feedback[n, k, HATE] = hate
        experience -= c.hate_penalty * hate

        # Transition: satisfaction, satiation, interest drift; then the user may leave.
        satisfaction[n] = c.satisfaction_memory * satisfaction[n] + (1.0 - c.satisfaction_memory) * experience
        for j in range(satiation.shape[1]):
            satiation[n, j] *= c.satiation_step_decay
        if position >= 0:
            satiation[n, category] += 1.0
            norm = 0.0
            for d in range(dim):
                interest[n, d] += c.interest_drift * (items[item, d] - interest[n, d])
                norm += interest[n, d] * interest[n, d]
            norm = math.sqrt(norm)
            for d in range(dim):
                interest[n, d] /= norm
        leave_logit = c.leave_bias - c.leave_dissatisfaction_weight * satisfaction[n] / patience[n]
        leave[n] = _logit(uniforms[n, 6]) < leave_logit
    return True
