"""Sequential (trajectory) off-policy estimators: PDIS, WPDIS, sequential DR and weighted DR.

Episodes are arrays `[n, H]` (episodes, steps) with a boolean `mask` that is True for the steps an episode
actually has (a prefix: episodes end at different lengths). Steps after the end carry no reward and an
importance ratio of 1, so an ended episode keeps its cumulative weight (the usual absorbing-state convention,
Thomas 2015, section 3.7).

The evaluation policy is `action_dist` `[n, H, N]`, or for a large catalogue a `SparseActionDist` with one row
per step, episode-major (row `i * H + t` is episode i's step t; `evaluation.ope.sparse`). The estimators use only
`pi_e(a_t | s_t)` and, for the DR family, `q_hat(s_t, a_t)` and `v_hat(s_t) = E_{a ~ pi_e}[q_hat(s_t, a)]`; these
can be given directly as `[n, H]` arrays (`logged_action_value_prediction`, `state_value_prediction`) instead of
`state_action_value_prediction` `[n, H, N]`, so no `[n, H, N]` array is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from evaluation.ope.base import TermEstimator
from evaluation.ope.checks import (
    ACTION_DIST_ATOL,
    FeedbackError,
    check_indices,
    check_pscores,
    check_reals,
    first_index,
    numeric_array,
    refuse_any,
    refuse_unknown,
)
from evaluation.ope.sparse import SparseActionDist
from recsim_env.checks import check_integer, check_real


class EpisodeInputs(NamedTuple):
    """Validated episode arrays, truncated to the horizon; values at masked steps are zeroed."""

    reward: np.ndarray  # [n, H]
    mask: np.ndarray  # [n, H] bool
    ratio: np.ndarray  # [n, H] pi_e(a_t | s_t) / pi_b(a_t | s_t), 1 after the end
    q_logged: np.ndarray | None  # [n, H] q_hat(s_t, a_t), 0 after the end
    v_policy: np.ndarray | None  # [n, H] sum_a pi_e(a | s_t) q_hat(s_t, a), 0 after the end


SEQUENTIAL_ARGUMENTS = (
    "reward",
    "pscore",
    "mask",
    "action",
    "action_dist",
    "evaluation_pscore",
    "state_action_value_prediction",
    "logged_action_value_prediction",
    "state_value_prediction",
)
"""The keyword arguments a sequential estimator accepts."""


def episode_where(index: tuple[int, ...]) -> str:
    """`(episode i, step t; 0-based)`: where a bad entry of an episode array sits."""
    return f"(episode {index[0]}, step {index[1]}; 0-based)"


def _dist_where(index: tuple[int, ...]) -> str:
    return f"(episode {index[0]}, step {index[1]}, action {index[2]}; 0-based)"


def sparse_episode_steps(
    dist: SparseActionDist, n_episodes: int, length: int, steps: int
) -> SparseActionDist:
    """The rows of the first `steps` steps of `n_episodes` episodes of `length` steps, from `dist`'s episode-major
    rows (row `i * length + t`): a `SparseActionDist` of `n_episodes * steps` rows, in the same order.

    Raises:
        FeedbackError: when `dist` does not have one row per step.
    """
    if not isinstance(dist, SparseActionDist):
        raise FeedbackError(f"action_dist: expected a SparseActionDist, got {type(dist).__name__}")
    if len(dist.rest) != n_episodes * length:
        raise FeedbackError(
            f"action_dist: a sparse distribution over episodes needs one row per step, n * H = {n_episodes} * "
            f"{length} = {n_episodes * length} rows (episode-major), got {len(dist.rest)} (shape mismatch)"
        )
    if steps == length:
        return dist
    return dist.take((np.arange(n_episodes)[:, None] * length + np.arange(steps)).ravel())


def _mask_array(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """A mask as bools: booleans, or numbers that are exactly 0 or 1 (never strings)."""
    arr = numeric_array("mask", value, integer=True, allow_bool=True, where=episode_where)
    if arr.shape != shape:
        raise FeedbackError(f"mask has shape {arr.shape} but reward has {shape} (shape mismatch)")
    refuse_any(
        "mask", arr, [(~((arr == 0) | (arr == 1)), "is not a boolean (True/False or 0/1)")], episode_where
    )
    return arr == 1


def validate_episode_inputs(
    *,
    reward: Any,
    pscore: Any,
    mask: Any = None,
    action: Any = None,
    action_dist: Any = None,
    evaluation_pscore: Any = None,
    state_action_value_prediction: Any = None,
    logged_action_value_prediction: Any = None,
    state_value_prediction: Any = None,
    horizon: int | None = None,
    need_values: bool = False,
) -> EpisodeInputs:
    """Check episode arrays and compute the per-step importance ratios.

    Only the steps an episode has (`mask` True) are checked for values; every array is checked for its
    dtype and shape. Messages name the argument, the first bad `[episode, step]` and say it is 0-based.

    Args:
        reward: Rewards `[n, H]` (n, H >= 1), finite and at most `MAX_ABS_VALUE` in magnitude.
        pscore: Behaviour probability of the logged action `[n, H]`, in `[MIN_PSCORE, 1]`.
        mask: True on the steps an episode has `[n, H]`, a prefix per row starting at step 0 (booleans or
            0/1); all True when None.
        action: Logged actions `[n, H]`: integers (or integral floats, never bools) in `[0, N)`; needed with
            `action_dist`.
        action_dist: Evaluation policy's probabilities `[n, H, N]`, finite, non-negative, summing to 1; or a
            `SparseActionDist` (validated when built) with one row per step, episode-major (`n * H` rows).
        evaluation_pscore: Instead of `action`/`action_dist` (never with them): the evaluation policy's
            probability of the logged action `[n, H]`, in `[0, 1]` (enough for PDIS / WPDIS).
        state_action_value_prediction: Predicted `q_hat(s_t, a)` `[n, H, N]` for sequential DR, finite.
        logged_action_value_prediction: Instead of `state_action_value_prediction` (with
            `state_value_prediction`): `q_hat(s_t, a_t)` of the logged action `[n, H]`, finite.
        state_value_prediction: `v_hat(s_t) = sum_a pi_e(a | s_t) q_hat(s_t, a)` `[n, H]`, finite.
        horizon: Keep the first `horizon` steps (an int >= 1); all of them when None.
        need_values: Whether the caller needs `state_action_value_prediction`, `action` and `action_dist`.

    Raises:
        FeedbackError: (an ArgumentError and a DataError, so a ValueError) naming the argument and the
            first offending index.
        ArgumentError: for a bad `horizon`.
    """
    if horizon is not None:
        horizon = check_integer("horizon", horizon, low=1)
    rew = numeric_array("reward", reward, allow_bool=True, where=episode_where)
    if rew.ndim != 2:
        raise FeedbackError(f"reward must be 2-dimensional [n_episodes, horizon], got shape {rew.shape}")
    n, length = rew.shape
    if n == 0 or length == 0:
        raise FeedbackError(
            f"reward has no episodes or no steps (shape {rew.shape}): there is nothing to evaluate"
        )
    steps = length if horizon is None else min(horizon, length)

    def two_d(name: str, value: Any, *, integer: bool = False) -> np.ndarray:
        arr = numeric_array(name, value, integer=integer, where=episode_where)
        if arr.shape != (n, length):
            raise FeedbackError(f"{name} has shape {arr.shape} but reward has {(n, length)} (shape mismatch)")
        return arr[:, :steps]

    rew = rew[:, :steps]
    if mask is None:
        alive = np.ones((n, steps), dtype=bool)
    else:
        alive = _mask_array(mask, (n, length))[:, :steps]
        # A mask must be a prefix: once an episode ends it cannot resume. The index named is that of the
        # step before the resumed one (mask[:, 1:]'s), as this message always has; the location says which.
        resumed = alive[:, 1:] & ~alive[:, :-1]
        if resumed.any():
            i, t = first_index(resumed)
            raise FeedbackError(
                f"mask[{i}, {t}] = True is True after the episode ended (not a prefix): episode {i} resumes at "
                f"step {t + 1} after a False step (episode {i}, step {t + 1}; 0-based)"
            )
        refuse_any(
            "mask",
            alive[:, :1],
            [(~alive[:, :1], "is False: every episode needs a first step")],
            episode_where,
        )
    check_reals("reward", rew, alive=alive, where=episode_where, what="reward")
    ps = two_d("pscore", pscore)
    check_pscores("pscore", ps, alive=alive, where=episode_where)

    pair = (logged_action_value_prediction, state_value_prediction)
    if (pair[0] is None) != (pair[1] is None):
        raise FeedbackError(
            "logged_action_value_prediction and state_value_prediction are given together, or neither"
        )
    has_pair = pair[0] is not None
    if has_pair and state_action_value_prediction is not None:
        raise FeedbackError(
            "state_action_value_prediction: give either it or logged_action_value_prediction with "
            "state_value_prediction, not both"
        )
    if (
        need_values
        and not has_pair
        and (state_action_value_prediction is None or action is None or action_dist is None)
    ):
        missing = [
            name
            for name, value in (
                ("action", action),
                ("action_dist", action_dist),
                ("state_action_value_prediction", state_action_value_prediction),
            )
            if value is None
        ]
        raise FeedbackError(
            f"{missing[0]} is required: sequential DR needs action, action_dist and state_action_value_prediction "
            "(or logged_action_value_prediction with state_value_prediction)"
        )
    act = dist = None
    sparse = isinstance(action_dist, SparseActionDist)
    if action_dist is not None:
        if evaluation_pscore is not None:
            raise FeedbackError(
                "evaluation_pscore: give either evaluation_pscore or action with action_dist, not both"
            )
        if action is None:
            raise FeedbackError("action is required with action_dist")
    if sparse:
        dist = sparse_episode_steps(action_dist, n, length, steps)
        act = check_indices(
            "action",
            two_d("action", action, integer=True).astype(np.float64),
            dist.n_actions,
            f"the catalogue [0, {dist.n_actions})",
            alive=alive,
            where=episode_where,
        )
        target = dist.prob(act.ravel()).reshape(n, steps)
    elif action_dist is not None:
        dist = numeric_array("action_dist", action_dist, where=_dist_where)
        if dist.ndim != 3 or dist.shape[:2] != (n, length) or dist.shape[2] == 0:
            raise FeedbackError(
                f"action_dist must have shape [n={n}, H={length}, N >= 1], got {dist.shape} (shape mismatch)"
            )
        dist = dist[:, :steps]
        n_actions = dist.shape[2]
        # Checked as floats, so a bad action reads the same whatever its dtype (2.0, not 2).
        act = check_indices(
            "action",
            two_d("action", action, integer=True).astype(np.float64),
            n_actions,
            f"the catalogue [0, {n_actions})",
            alive=alive,
            where=episode_where,
        )
        dist = np.where(alive[..., None], dist, 0.0)
        dist[~alive, 0] = 1.0  # after the end: any valid distribution; never used
        finite = np.isfinite(dist)
        refuse_any(
            "action_dist",
            dist,
            [(~finite, "is not finite"), (finite & (dist < 0), "is negative")],
            _dist_where,
        )
        sums = dist.sum(axis=2)
        refuse_any(
            "action_dist",
            sums,
            [(~(np.abs(sums - 1.0) <= ACTION_DIST_ATOL), "is the sum over actions, not 1")],
            episode_where,
        )
        target = np.take_along_axis(dist, act[..., None], axis=2)[..., 0]
    elif evaluation_pscore is not None:
        if action is not None:  # unused here, but never unchecked
            check_indices(
                "action",
                two_d("action", action, integer=True),
                2**62,
                "[0, 2**62)",
                alive=alive,
                where=episode_where,
            )
        target = two_d("evaluation_pscore", evaluation_pscore)
        refuse_any(
            "evaluation_pscore",
            target,
            [(alive & ~((target >= 0.0) & (target <= 1.0)), "is outside [0, 1]")],
            episode_where,
        )
    else:
        raise FeedbackError(
            "action_dist is required (with action), or evaluation_pscore: the evaluation policy's probabilities"
        )

    ratio = np.where(alive, target / np.where(alive, ps, 1.0), 1.0)
    reward_alive = np.where(alive, rew, 0.0)
    q_logged = v_policy = None
    if state_action_value_prediction is not None and dist is not None:
        q = numeric_array("state_action_value_prediction", state_action_value_prediction, where=_dist_where)
        n_actions = dist.n_actions if sparse else dist.shape[2]
        if q.shape != (n, length, n_actions):
            raise FeedbackError(
                f"state_action_value_prediction has shape {q.shape} but action_dist has "
                f"{(n, length, n_actions)} (shape mismatch)"
            )
        q = q[:, :steps]
        check_reals(
            "state_action_value_prediction",
            q,
            alive=np.broadcast_to(alive[..., None], q.shape),
            where=_dist_where,
            what="predicted value",
        )
        q = np.where(alive[..., None], q, 0.0)
        q_logged = np.take_along_axis(q, act[..., None], axis=2)[..., 0]
        if sparse:
            rows = q.reshape(n * steps, n_actions)
            listed = np.take_along_axis(rows, dist.items, axis=1)
            v_policy = dist.expectation(listed, rows.sum(axis=1)).reshape(n, steps)
        else:
            v_policy = (dist * q).sum(axis=2)
    elif state_action_value_prediction is not None:
        numeric_array("state_action_value_prediction", state_action_value_prediction, where=_dist_where)
    elif has_pair:
        q_logged, v_policy = (
            np.where(alive, two_d(name, value), 0.0)
            for name, value in zip(
                ("logged_action_value_prediction", "state_value_prediction"), pair, strict=True
            )
        )
        for name, value in (
            ("logged_action_value_prediction", q_logged),
            ("state_value_prediction", v_policy),
        ):
            check_reals(name, value, alive=alive, where=episode_where, what="predicted value")
    return EpisodeInputs(reward_alive, alive, ratio, q_logged, v_policy)


@dataclass(frozen=True, kw_only=True)
class SequentialEstimator(TermEstimator):
    """Shared machinery: validation, per-episode terms, bootstrap over episodes."""

    gamma: float = 1.0
    """Discount factor in [0, 1]."""
    horizon: int | None = None
    """Evaluate the first `horizon` steps of each episode; all logged steps when None."""
    estimator_name: str = "sequential"
    """Short name used in estimates and reports."""
    needs_values: ClassVar[bool] = False

    unit: ClassVar[str] = "episode"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real("gamma", self.gamma, low=0.0, high=1.0)
        if self.horizon is not None:
            check_integer("horizon", self.horizon, low=1)

    def _terms(self, data: EpisodeInputs) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _discount(self, steps: int) -> np.ndarray:
        return self.gamma ** np.arange(steps, dtype=np.float64)

    def _validated_terms(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        refuse_unknown(kwargs, SEQUENTIAL_ARGUMENTS, type(self).__name__)
        for name in ("reward", "pscore"):
            if kwargs.get(name) is None:
                raise FeedbackError(f"{name} is required by sequential estimators but was not given")
        data = validate_episode_inputs(
            **{k: kwargs[k] for k in SEQUENTIAL_ARGUMENTS if k in kwargs},
            horizon=self.horizon,
            need_values=self.needs_values,
        )
        return self._terms(data)

    def estimate_policy_value(self, **kwargs: Any) -> float:
        """Point estimate of the discounted return `E[sum_t gamma^t r_t]` of the evaluation policy.

        Args:
            **kwargs: `reward`, `pscore`, `mask`, and `action` + `action_dist` or `evaluation_pscore`
                (plus, for DR, `state_action_value_prediction`, or `logged_action_value_prediction` with
                `state_value_prediction`), all `[n, H]` / `[n, H, N]`; unknown names are refused.
        """
        return self._point(self._checked_terms(kwargs))


def _cumulative_ratio(data: EpisodeInputs, *, may_overflow: bool = False) -> np.ndarray:
    """`rho_{0:t} = prod_{t' <= t} pi_e(a_t' | s_t') / pi_b(a_t' | s_t')` `[n, H]`.

    A product of many weights above 1 overflows float64 (0.01 propensities over 160 steps do); unless the
    caller never uses the overflowed tail (`may_overflow`), that is refused naming the first episode and step.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        rho = np.cumprod(data.ratio, axis=1)
    if not may_overflow:
        bad = ~np.isfinite(rho)
        if bad.any():
            i, t = first_index(bad)
            raise FeedbackError(
                f"pscore: the cumulative importance weight of episode {i} overflows float64 at step {t} "
                f"(episode {i}, step {t}; 0-based): evaluate a shorter horizon, or use "
                "SequentialDoublyRobust(max_weight=...)"
            )
    return rho


@dataclass(frozen=True, kw_only=True)
class PerDecisionImportanceSampling(SequentialEstimator):
    """Per-decision importance sampling (Precup, Sutton & Singh 2000).

    V_PDIS = (1 / n) * sum_i sum_t gamma^t * rho^i_{0:t} * r^i_t,
    rho^i_{0:t} = prod_{t' <= t} pi_e(a^i_t' | s^i_t') / pi_b(a^i_t' | s^i_t')
    """

    estimator_name: str = "PDIS"

    def _terms(self, data: EpisodeInputs) -> dict[str, np.ndarray]:
        weighted = _cumulative_ratio(data) * data.reward * self._discount(data.reward.shape[1])
        return {"episode_return": weighted.sum(axis=1)}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        return terms["episode_return"].mean(axis=-1)


@dataclass(frozen=True, kw_only=True)
class WeightedPerDecisionImportanceSampling(SequentialEstimator):
    """Weighted per-decision importance sampling (Precup, Sutton & Singh 2000; Thomas 2015, eq. 3.20).

        V_WPDIS = sum_t gamma^t * (sum_i rho^i_{0:t} r^i_t) / (sum_i rho^i_{0:t})

    A step whose weights are all zero contributes 0.
    """

    estimator_name: str = "WPDIS"

    def _terms(self, data: EpisodeInputs) -> dict[str, np.ndarray]:
        rho = _cumulative_ratio(data)
        return {"weighted_reward": rho * data.reward, "weight": rho}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        numerator = terms["weighted_reward"].sum(axis=-2)  # [B, H]
        denominator = terms["weight"].sum(axis=-2)  # [B, H]
        per_step = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)
        return per_step @ self._discount(per_step.shape[-1])


@dataclass(frozen=True, kw_only=True)
class SequentialDoublyRobust(SequentialEstimator):
    """Sequential doubly robust (Jiang & Li 2016, eq. 10; the unrolled form of Thomas & Brunskill 2016, eq. 8).

    With `rho^i_{0:t}` as in PDIS, `rho^i_{0:-1} = 1`, `q_hat(s, a)` (`state_action_value_prediction`) and
    `v_hat(s) = sum_a pi_e(a | s) q_hat(s, a)`:

        V_DR = (1 / n) * sum_i sum_t gamma^t [ rho^i_{0:t} (r^i_t - q_hat(s^i_t, a^i_t)) + rho^i_{0:t-1} v_hat(s^i_t) ]

    which equals the recursion `V^{H-t} = v_hat(s_t) + rho_t (r_t + gamma V^{H-t-1} - q_hat(s_t, a_t))`.
    Steps after the end have `q_hat = v_hat = 0` (terminal state).

    `max_weight = M` gives the sequential form of Switch-DR (Wang, Agarwal & Dudik 2017): once an
    episode's cumulative weight exceeds M (first at step k_i), its remaining value is the model's,
    `V^{H-k} = v_hat(s_k)`, instead of a correction weighted by rho > M:

        V_SwitchDR = (1 / n) * sum_i sum_t gamma^t [ 1[t < k_i] rho^i_{0:t} (r^i_t - q_hat(s^i_t, a^i_t))
                                                    + 1[t <= k_i] rho^i_{0:t-1} v_hat(s^i_t) ]

    Every weight used is at most M, which bounds the variance that collapses PDIS over long horizons;
    the price is the model's error on the switched tails. M = inf is DR; M -> 0 is the model alone.
    """

    estimator_name: str = "DR"
    needs_values: ClassVar[bool] = True
    max_weight: float | None = None
    """Switch to the model once the cumulative weight exceeds this (None: never, plain DR)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_weight is not None:
            check_real("max_weight", self.max_weight, low=0.0, low_open=True, allow_inf=True)

    def _terms(self, data: EpisodeInputs) -> dict[str, np.ndarray]:
        # With max_weight, weights past an episode's switch (where they may overflow) are never used.
        rho = _cumulative_ratio(
            data, may_overflow=self.max_weight is not None and math.isfinite(self.max_weight)
        )
        rho_before = np.concatenate([np.ones((rho.shape[0], 1)), rho[:, :-1]], axis=1)
        correct = np.ones(rho.shape, dtype=bool)  # t < k_i: the importance-weighted correction is used
        if self.max_weight is not None:
            correct = np.cumsum(rho > self.max_weight, axis=1) == 0
        # t <= k_i: v_hat(s_t) enters (weighted by rho_{0:t-1} <= M); after k_i nothing does.
        model = np.concatenate([np.ones((rho.shape[0], 1), dtype=bool), correct[:, :-1]], axis=1)
        per_step = np.where(correct, rho * (data.reward - data.q_logged), 0.0) + np.where(
            model, rho_before * data.v_policy, 0.0
        )
        return {"episode_return": (per_step * self._discount(rho.shape[1])).sum(axis=1)}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        return terms["episode_return"].mean(axis=-1)


@dataclass(frozen=True, kw_only=True)
class WeightedDoublyRobust(SequentialEstimator):
    """Weighted doubly robust (Thomas & Brunskill 2016, "Data-Efficient Off-Policy Policy Evaluation", eq. 10).

    With self-normalised weights `w^i_t = rho^i_{0:t} / sum_j rho^j_{0:t}` and `w^i_{-1} = 1 / n`:

        V_WDR = sum_i sum_t gamma^t [ w^i_t (r^i_t - q_hat(s^i_t, a^i_t)) + w^i_{t-1} v_hat(s^i_t) ]
    """

    estimator_name: str = "WDR"
    needs_values: ClassVar[bool] = True

    def _terms(self, data: EpisodeInputs) -> dict[str, np.ndarray]:
        rho = _cumulative_ratio(data)
        return {
            "weight": rho,
            "residual": data.reward - data.q_logged,
            "v_policy": data.v_policy,
        }

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        rho = terms["weight"]  # [B, n, H]
        n = rho.shape[-2]
        total = rho.sum(axis=-2, keepdims=True)
        w = np.where(total > 0, rho / np.where(total > 0, total, 1.0), 0.0)
        w_before = np.concatenate([np.full_like(w[..., :1], 1.0 / n), w[..., :-1]], axis=-1)
        per_step = (w * terms["residual"] + w_before * terms["v_policy"]).sum(axis=-2)  # [B, H]
        return per_step @ self._discount(per_step.shape[-1])
