"""The estimator contract, the `Estimate` record, input validation and the bootstrap shared by all estimators.

Every estimator takes Open Bandit Pipeline's keyword arguments (`reward`, `action`, `position`, `pscore`,
`action_dist`, `estimated_rewards_by_reg_model`) and ignores the ones it does not need, so one dict of logged data
can be passed to any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from recsim_env.errors import DataError

ACTION_DIST_ATOL = 1e-4
"""How far a row of `action_dist` may sum from 1 (float32 softmax over thousands of items drifts ~1e-6)."""


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """One estimator's policy value with its bootstrap confidence interval."""

    name: str
    """The estimator's short name, e.g. "SNIPS"."""
    value: float
    """The point estimate on the full data set."""
    lower: float
    """Lower end of the (1 - alpha) bootstrap percentile interval."""
    upper: float
    """Upper end of the (1 - alpha) bootstrap percentile interval."""
    alpha: float
    """Significance level of the interval (0.05 means a 95% interval)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if not self.lower <= self.upper:
            raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")

    @property
    def confidence(self) -> float:
        """The interval's confidence level, 1 - alpha."""
        return 1.0 - self.alpha


@runtime_checkable
class Estimator(Protocol):
    """An off-policy estimator: a point value and a bootstrap interval from logged data.

    Keyword arguments follow Open Bandit Pipeline (`reward`, `action`, `position`, `pscore`, `action_dist`,
    `estimated_rewards_by_reg_model`) for bandit estimators; sequential estimators take episode arrays.
    """

    estimator_name: str

    def estimate_policy_value(self, **kwargs: Any) -> float: ...

    def estimate_interval(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> dict[str, float]: ...

    def estimate(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> Estimate: ...


class BanditInputs(NamedTuple):
    """Validated bandit feedback as float64 / int64 arrays; `position` is all zeros when it was not given."""

    reward: np.ndarray | None  # [n]
    action: np.ndarray | None  # [n] int64
    position: np.ndarray  # [n] int64
    pscore: np.ndarray | None  # [n]
    action_dist: np.ndarray  # [n, N, K]
    estimated_rewards_by_reg_model: np.ndarray | None  # [n, N, K]


def _first_index(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _fmt_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _as_1d(name: str, value: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-dimensional [n], got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} rounds but action_dist has {n} (shape mismatch)")
    return arr


def _as_int(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            idx = _first_index(~finite)
            raise DataError(f"{name}{_fmt_index(idx)} = {arr[idx]} is not a finite integer")
        fractional = arr != np.round(arr)
        if fractional.any():
            idx = _first_index(fractional)
            raise DataError(f"{name}{_fmt_index(idx)} = {arr[idx]} is not an integer")
        return arr.astype(np.int64)
    raise DataError(f"{name} must hold integers, got dtype {arr.dtype}")


def validate_bandit_inputs(
    *,
    action_dist: Any,
    reward: Any = None,
    action: Any = None,
    position: Any = None,
    pscore: Any = None,
    estimated_rewards_by_reg_model: Any = None,
    require: tuple[str, ...] = (),
) -> BanditInputs:
    """Check bandit feedback and return it as clean arrays.

    Args:
        action_dist: Evaluation policy's probabilities `[n, N, K]` (rounds, actions, positions); each
            `action_dist[i, :, k]` must be non-negative and sum to 1.
        reward: Observed rewards `[n]`, finite.
        action: Logged actions `[n]`, integers in `[0, N)`.
        position: Logged slate positions `[n]`, integers in `[0, K)`; zeros when None.
        pscore: Logging probability of the logged action at the logged position `[n]`, in `(0, 1]`.
        estimated_rewards_by_reg_model: Predicted rewards `[n, N, K]`, finite.
        require: Names of the arguments the calling estimator cannot do without.

    Returns:
        The validated arrays.

    Raises:
        DataError: (a ValueError) naming the argument and the first offending index.
    """
    given = {
        "reward": reward,
        "action": action,
        "pscore": pscore,
        "estimated_rewards_by_reg_model": estimated_rewards_by_reg_model,
    }
    for name in require:
        if given.get(name) is None:
            raise DataError(f"{name} is required by this estimator but was not given")
    if action_dist is None:
        raise DataError("action_dist is required but was not given")

    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim != 3:
        raise DataError(
            f"action_dist must be 3-dimensional [n, n_actions, n_positions], got shape {dist.shape}"
        )
    n, n_actions, n_positions = dist.shape
    if n == 0:
        raise DataError("action_dist has no rounds (n = 0)")
    if not np.isfinite(dist).all():
        idx = _first_index(~np.isfinite(dist))
        raise DataError(f"action_dist{_fmt_index(idx)} = {dist[idx]} is not finite")
    if (dist < 0).any():
        idx = _first_index(dist < 0)
        raise DataError(f"action_dist{_fmt_index(idx)} = {dist[idx]} is negative")
    sums = dist.sum(axis=1)  # [n, K]
    off = np.abs(sums - 1.0) > ACTION_DIST_ATOL
    if off.any():
        i, k = _first_index(off)
        raise DataError(f"action_dist[{i}, :, {k}] sums to {sums[i, k]:.6g}, not 1 (round {i}, position {k})")

    pos: np.ndarray
    if position is None:
        pos = np.zeros(n, dtype=np.int64)
    else:
        pos = _as_int("position", _as_1d("position", position, n))
        bad = (pos < 0) | (pos >= n_positions)
        if bad.any():
            idx = _first_index(bad)
            raise DataError(
                f"position{_fmt_index(idx)} = {pos[idx]} is outside [0, {n_positions}) "
                f"(action_dist has {n_positions} positions)"
            )

    act = None
    if action is not None:
        act = _as_int("action", _as_1d("action", action, n))
        bad = (act < 0) | (act >= n_actions)
        if bad.any():
            idx = _first_index(bad)
            raise DataError(
                f"action{_fmt_index(idx)} = {act[idx]} is outside the catalogue [0, {n_actions}) "
                f"(action_dist has {n_actions} actions)"
            )

    rew = None
    if reward is not None:
        rew = _as_1d("reward", reward, n).astype(np.float64)
        if not np.isfinite(rew).all():
            idx = _first_index(~np.isfinite(rew))
            raise DataError(f"reward{_fmt_index(idx)} = {rew[idx]} is not finite (NaN or inf reward)")

    ps = None
    if pscore is not None:
        ps = _as_1d("pscore", pscore, n).astype(np.float64)
        bad = ~((ps > 0.0) & (ps <= 1.0))  # also catches NaN
        if bad.any():
            idx = _first_index(bad)
            raise DataError(f"pscore{_fmt_index(idx)} = {ps[idx]} is outside (0, 1]")

    q_hat = None
    if estimated_rewards_by_reg_model is not None:
        q_hat = np.asarray(estimated_rewards_by_reg_model, dtype=np.float64)
        if q_hat.shape != dist.shape:
            raise DataError(
                f"estimated_rewards_by_reg_model has shape {q_hat.shape} but action_dist has {dist.shape} "
                "(shape mismatch)"
            )
        if not np.isfinite(q_hat).all():
            idx = _first_index(~np.isfinite(q_hat))
            raise DataError(f"estimated_rewards_by_reg_model{_fmt_index(idx)} = {q_hat[idx]} is not finite")

    return BanditInputs(rew, act, pos, ps, dist, q_hat)


def bootstrap_interval(
    terms: Mapping[str, np.ndarray],
    reduce: Callable[[Mapping[str, np.ndarray]], np.ndarray],
    *,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int = 0,
    chunk_elements: int = 4_000_000,
) -> dict[str, float]:
    """Nonparametric bootstrap of an estimator over independent units (rounds or episodes).

    Each replicate resamples the units with replacement and recomputes the whole estimator with `reduce`
    (so self-normalised estimators renormalise inside every replicate); the interval is the
    `[alpha / 2, 1 - alpha / 2]` percentile interval of the replicates (Efron & Tibshirani 1993).

    Args:
        terms: Per-unit arrays, each with the units on axis 0.
        reduce: Maps arrays with a leading replicate axis `[B, n, ...]` to estimates `[B]`.
        alpha: Significance level; 0.05 gives a 95% interval.
        n_bootstrap_samples: Number of replicates.
        random_state: Seed; the same seed gives the same interval.
        chunk_elements: Memory bound: replicates are drawn in chunks of about this many resampled units.

    Returns:
        `{"mean": mean of replicates, "lower": ..., "upper": ...}`.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_bootstrap_samples < 1:
        raise ValueError(f"n_bootstrap_samples must be >= 1, got {n_bootstrap_samples}")
    lengths = {k: len(v) for k, v in terms.items()}
    n = next(iter(lengths.values()))
    if any(length != n for length in lengths.values()):
        raise ValueError(f"bootstrap terms disagree on the number of units: {lengths}")
    rng = np.random.default_rng(random_state)
    per_unit = max(1, int(np.prod(next(iter(terms.values())).shape[1:], dtype=np.int64)))
    chunk = max(1, chunk_elements // (n * per_unit))
    replicates = []
    for start in range(0, n_bootstrap_samples, chunk):
        size = min(chunk, n_bootstrap_samples - start)
        idx = rng.integers(0, n, size=(size, n))  # [B, n]
        replicates.append(np.asarray(reduce({k: v[idx] for k, v in terms.items()}), dtype=np.float64))
    samples = np.concatenate(replicates)
    lower, upper = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"mean": float(samples.mean()), "lower": float(lower), "upper": float(upper)}


class TermEstimator:
    """An estimator that is a reduction of per-unit terms (rounds or episodes), bootstrapped over units.

    Subclasses provide `_validated_terms(kwargs) -> {name: [n, ...]}` and `_reduce(terms) -> [R]`,
    vectorised over a leading replicate axis, so the bootstrap recomputes the whole estimator,
    normalisers included, on every resample.
    """

    estimator_name: str = "estimator"

    def _validated_terms(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _point(self, terms: Mapping[str, np.ndarray]) -> float:
        return float(self._reduce({k: v[None] for k, v in terms.items()})[0])

    def estimate_interval(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> dict[str, float]:
        """Bootstrap (percentile) confidence interval over units: `{"mean", "lower", "upper"}`."""
        return bootstrap_interval(
            self._validated_terms(kwargs),
            self._reduce,
            alpha=alpha,
            n_bootstrap_samples=n_bootstrap_samples,
            random_state=random_state,
        )

    def estimate(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> Estimate:
        """Point estimate and bootstrap interval together, as an `Estimate`."""
        terms = self._validated_terms(kwargs)
        ci = bootstrap_interval(
            terms,
            self._reduce,
            alpha=alpha,
            n_bootstrap_samples=n_bootstrap_samples,
            random_state=random_state,
        )
        return Estimate(
            name=self.estimator_name,
            value=self._point(terms),
            lower=ci["lower"],
            upper=ci["upper"],
            alpha=alpha,
        )


class BanditEstimator(TermEstimator):
    """Shared machinery of the bandit estimators: validate, split into per-round terms, reduce, bootstrap.

    A subclass names the inputs it needs in `required`, turns validated inputs into per-round arrays in
    `_terms`, and combines those arrays into the estimate in `_reduce` (vectorised over a leading replicate
    axis, so the bootstrap recomputes the whole estimator, normalisers included, on every resample).
    """

    estimator_name: str = "estimator"
    required: ClassVar[tuple[str, ...]] = ()

    def _terms(self, data: BanditInputs) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _validated_terms(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        data = validate_bandit_inputs(
            action_dist=kwargs.get("action_dist"),
            reward=kwargs.get("reward"),
            action=kwargs.get("action"),
            position=kwargs.get("position"),
            pscore=kwargs.get("pscore"),
            estimated_rewards_by_reg_model=kwargs.get("estimated_rewards_by_reg_model"),
            require=self.required,
        )
        return self._terms(data)

    def estimate_policy_value(self, **kwargs: Any) -> float:
        """The point estimate of the evaluation policy's value; see the class docstring for the formula.

        Args:
            **kwargs: OBP-named logged data (`reward`, `action`, `position`, `pscore`, `action_dist`,
                `estimated_rewards_by_reg_model`); arguments this estimator does not use are ignored.
        """
        return self._point(self._validated_terms(kwargs))


def importance_weight(data: BanditInputs) -> np.ndarray:
    """`w_i = pi_e(a_i | x_i, k_i) / pi_b(a_i | x_i, k_i)`, the per-position importance weight `[n]`."""
    n = data.action_dist.shape[0]
    return data.action_dist[np.arange(n), data.action, data.position] / data.pscore


def policy_weighted_prediction(data: BanditInputs) -> np.ndarray:
    """`q_hat(x_i, pi_e, k_i) = sum_a pi_e(a | x_i, k_i) q_hat(x_i, a, k_i)` at each logged position `[n]`."""
    n = data.action_dist.shape[0]
    rows = np.arange(n)
    pi_at_position = data.action_dist[rows, :, data.position]  # [n, N]
    q_at_position = data.estimated_rewards_by_reg_model[rows, :, data.position]  # [n, N]
    return (pi_at_position * q_at_position).sum(axis=1)


def factual_prediction(data: BanditInputs) -> np.ndarray:
    """`q_hat(x_i, a_i, k_i)`, the regression model's prediction for the logged action `[n]`."""
    n = data.action_dist.shape[0]
    return data.estimated_rewards_by_reg_model[np.arange(n), data.action, data.position]
