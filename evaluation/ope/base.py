"""The estimator contract, the `Estimate` record, bandit input validation and the bootstrap shared by all estimators.

Every estimator takes Open Bandit Pipeline's keyword arguments (`reward`, `action`, `position`, `pscore`,
`action_dist`, `estimated_rewards_by_reg_model`) and ignores the known ones it does not need, so one dict of
logged data can be passed to any of them; an unknown keyword is an error (a misspelt `pscores=` must not be
silently dropped).

Validation is vectorised and runs before any arithmetic. A refusal of logged data is a `FeedbackError` (both
an `ArgumentError` and a `DataError`) whose message starts with the argument's name and gives the first bad
index, its value and its row, 0-based: `pscore[3] = 0.0 is outside (0, 1] (row 3, 0-based)`. A bad
hyperparameter (`alpha`, `n_bootstrap_samples`, `random_state`, `lambda_`, ...) is an `ArgumentError`.
The checks themselves live in `evaluation.ope.checks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from evaluation.ope.checks import (
    FeedbackError,
    check_action_dist,
    check_bootstrap_arguments,
    check_indices,
    check_pscores,
    check_reals,
    dist_where,
    first_index,
    numeric_array,
    refuse_unknown,
)
from evaluation.ope.sparse import RewardTable, SparseActionDist
from recsim_env.checks import check_integer, check_real, describe
from recsim_env.errors import ArgumentError

BANDIT_ARGUMENTS = ("reward", "action", "position", "pscore", "action_dist", "estimated_rewards_by_reg_model")
"""The keyword arguments a bandit estimator accepts (Open Bandit Pipeline's names)."""


# ------------------------------------------------------------------------------------------------ contract
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
        if not isinstance(self.name, str):
            raise ArgumentError(f"name: expected a string, got {type(self.name).__name__}")
        check_real("alpha", self.alpha, low=0.0, high=1.0, low_open=True, high_open=True)
        for field in ("value", "lower", "upper"):
            check_real(field, getattr(self, field))  # a NaN or infinite estimate is never reported
        if not self.lower <= self.upper:
            raise ArgumentError(f"lower ({self.lower}) must not exceed upper ({self.upper})")

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
    action_dist: np.ndarray | SparseActionDist  # [n, N, K]
    estimated_rewards_by_reg_model: np.ndarray | RewardTable | None  # [n, N, K]


def _as_1d(name: str, value: Any, n: int, *, integer: bool = False, allow_bool: bool = False) -> np.ndarray:
    arr = numeric_array(name, value, integer=integer, allow_bool=allow_bool)
    if arr.ndim != 1:
        raise FeedbackError(f"{name} must be 1-dimensional [n], got shape {arr.shape}")
    if arr.shape[0] != n:
        raise FeedbackError(f"{name} has {arr.shape[0]} rounds but action_dist has {n} (shape mismatch)")
    return arr


def _indices(name: str, value: Any, n: int, bound: int, allowed: str, what: str) -> np.ndarray:
    """`[n]` int64 indices in `[0, bound)`, the size of `action_dist`'s axis of `what`."""
    return check_indices(
        name, _as_1d(name, value, n, integer=True), bound, f"{allowed} (action_dist has {bound} {what})"
    )


def validated_bandit_kwargs(kwargs: Mapping[str, Any], owner: str, require: Sequence[str]) -> BanditInputs:
    """`validate_bandit_inputs` of an estimator's keyword arguments (`BANDIT_ARGUMENTS`; any other name is
    refused, naming `owner`), with the arguments `require` present."""
    refuse_unknown(kwargs, BANDIT_ARGUMENTS, owner)
    return validate_bandit_inputs(
        **{name: kwargs.get(name) for name in BANDIT_ARGUMENTS}, require=tuple(require)
    )


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
    """Check bandit feedback and return it as clean arrays; every given argument is checked, used or not.

    Args:
        action_dist: Evaluation policy's probabilities `[n, N, K]` (rounds, actions, positions), n >= 1; each
            `action_dist[i, :, k]` must be finite, non-negative and sum to 1 (within `ACTION_DIST_ATOL`).
            Or a `SparseActionDist` (top items plus the uniform rest, checked when it was built).
        reward: Observed rewards `[n]`: numbers or bools, finite, at most `MAX_ABS_VALUE` in magnitude.
        action: Logged actions `[n]`: integers (or integral floats, never bools) in `[0, N)`.
        position: Logged slate positions `[n]`: integers in `[0, K)`; zeros when None.
        pscore: Logging probability of the logged action at the logged position `[n]`, in
            `[MIN_PSCORE, 1]`.
        estimated_rewards_by_reg_model: Predicted rewards `[n, N, K]`, finite, at most `MAX_ABS_VALUE`; or a
            `RewardTable` (one context-free `[N, K]` table per fold, checked when it was built).
        require: Names of the arguments the calling estimator cannot do without.

    Returns:
        The validated arrays.

    Raises:
        FeedbackError: (an ArgumentError and a DataError, so a ValueError) naming the argument, the first
            offending index and its row (0-based).
    """
    given = {
        "reward": reward,
        "action": action,
        "position": position,
        "pscore": pscore,
        "action_dist": action_dist,
        "estimated_rewards_by_reg_model": estimated_rewards_by_reg_model,
    }
    for name in require:
        if given.get(name) is None:
            raise FeedbackError(f"{name} is required by this estimator but was not given")
    if action_dist is None:
        raise FeedbackError("action_dist is required but was not given")

    if isinstance(action_dist, SparseActionDist):
        dist = action_dist  # checked round by round by SparseActionDist.checked
        n, n_actions, n_positions = dist.shape
    else:
        dist = numeric_array("action_dist", action_dist)
        if dist.ndim != 3:
            raise FeedbackError(
                f"action_dist must be 3-dimensional [n, n_actions, n_positions], got shape {dist.shape}"
            )
        n, n_actions, n_positions = dist.shape
        if n == 0:
            raise FeedbackError("action_dist has no rounds (n = 0): there is nothing to evaluate")
        if n_actions == 0 or n_positions == 0:
            raise FeedbackError(f"action_dist has shape {dist.shape}: no actions or no positions")
        check_action_dist("action_dist", dist)

    if position is None:
        pos = np.zeros(n, dtype=np.int64)
    else:
        pos = _indices("position", position, n, n_positions, f"[0, {n_positions})", "positions")

    act = None
    if action is not None:
        act = _indices("action", action, n, n_actions, f"the catalogue [0, {n_actions})", "actions")

    rew = None
    if reward is not None:
        rew = _as_1d("reward", reward, n, allow_bool=True)
        check_reals("reward", rew, what="reward")

    ps = None
    if pscore is not None:
        ps = _as_1d("pscore", pscore, n)
        check_pscores("pscore", ps)

    q_hat = None
    if isinstance(estimated_rewards_by_reg_model, RewardTable):
        q_hat = estimated_rewards_by_reg_model  # its table was checked when it was built
        if q_hat.shape != dist.shape:
            raise FeedbackError(
                f"estimated_rewards_by_reg_model stands for shape {q_hat.shape} but action_dist has {dist.shape} "
                "(shape mismatch)"
            )
    elif estimated_rewards_by_reg_model is not None:
        q_hat = numeric_array("estimated_rewards_by_reg_model", estimated_rewards_by_reg_model)
        if q_hat.shape != dist.shape:
            raise FeedbackError(
                f"estimated_rewards_by_reg_model has shape {q_hat.shape} but action_dist has {dist.shape} "
                "(shape mismatch)"
            )
        check_reals("estimated_rewards_by_reg_model", q_hat, where=dist_where, what="predicted reward")

    return BanditInputs(rew, act, pos, ps, dist, q_hat)


# ------------------------------------------------------------------------------------------------ bootstrap
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
        terms: Per-unit arrays, each with the units on axis 0 (at least one unit), all finite.
        reduce: Maps arrays with a leading replicate axis `[B, n, ...]` to estimates `[B]`.
        alpha: Significance level in (0, 1); 0.05 gives a 95% interval.
        n_bootstrap_samples: Number of replicates, in `[1, MAX_BOOTSTRAP_SAMPLES]`.
        random_state: Seed (an int >= 0, None or a Generator); the same seed gives the same interval.
        chunk_elements: Memory bound: replicates are drawn in chunks of about this many resampled units.

    Returns:
        `{"mean": mean of replicates, "lower": ..., "upper": ...}`.

    Raises:
        ArgumentError: for a bad hyperparameter, no units, disagreeing lengths or non-finite terms or replicates.
    """
    check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
    chunk_elements = check_integer("chunk_elements", chunk_elements, low=1)
    if not terms:
        raise ArgumentError("terms: no per-unit arrays to resample")
    arrays = {k: np.asarray(v) for k, v in terms.items()}
    lengths = {k: (len(v) if v.ndim else 0) for k, v in arrays.items()}
    n = next(iter(lengths.values()))
    if any(length != n for length in lengths.values()):
        raise ArgumentError(f"terms: bootstrap terms disagree on the number of units: {lengths}")
    if n == 0:
        raise ArgumentError("terms: no units (n = 0) to resample")
    for key, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            unit = first_index(~np.isfinite(arr))[0]
            raise ArgumentError(f"terms[{key!r}]: not finite at unit {unit} (0-based)")
    rng = np.random.default_rng(random_state)
    per_unit = max(1, int(np.prod(next(iter(arrays.values())).shape[1:], dtype=np.int64)))
    chunk = max(1, chunk_elements // (n * per_unit))
    replicates = []
    for start in range(0, n_bootstrap_samples, chunk):
        size = min(chunk, n_bootstrap_samples - start)
        idx = rng.integers(0, n, size=(size, n))  # [B, n]
        replicates.append(np.asarray(reduce({k: v[idx] for k, v in arrays.items()}), dtype=np.float64))
    samples = np.concatenate(replicates)
    if not np.isfinite(samples).all():
        raise ArgumentError("terms: bootstrap replicates overflow float64 (the per-unit terms are too large)")
    lower, upper = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"mean": float(samples.mean()), "lower": float(lower), "upper": float(upper)}


class TermEstimator:
    """An estimator that is a reduction of per-unit terms (rounds or episodes), bootstrapped over units.

    Subclasses provide `_validated_terms(kwargs) -> {name: [n, ...]}` and `_reduce(terms) -> [R]`,
    vectorised over a leading replicate axis, so the bootstrap recomputes the whole estimator,
    normalisers included, on every resample.
    """

    estimator_name: str = "estimator"
    unit: ClassVar[str] = "row"
    """What one resampled unit is, as named in messages ("row" or "episode")."""
    overflow_arguments: ClassVar[str] = "pscore, reward"
    """The arguments named when finite inputs still overflow (importance weights times rewards)."""

    def __post_init__(self) -> None:
        if not isinstance(self.estimator_name, str) or not self.estimator_name:
            raise ArgumentError(
                f"estimator_name: expected a non-empty string, got {describe(self.estimator_name)}"
            )

    def _validated_terms(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _checked_terms(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validated per-unit terms, every one finite (else the first overflowing unit is named)."""
        with np.errstate(over="ignore", invalid="ignore"):
            terms = self._validated_terms(kwargs)
        for arr in terms.values():
            finite = np.isfinite(arr)
            if not finite.all():
                unit = first_index(~finite)[0]
                raise FeedbackError(
                    f"{self.overflow_arguments}: the {self.estimator_name} term of {self.unit} {unit} (0-based) "
                    "overflows float64 although every input is finite (importance weights times rewards too large)"
                )
        return terms

    def _point(self, terms: Mapping[str, np.ndarray]) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            value = float(self._reduce({k: v[None] for k, v in terms.items()})[0])
        if not math.isfinite(value):
            raise FeedbackError(
                f"{self.overflow_arguments}: the {self.estimator_name} estimate overflows float64 ({value}); "
                "rescale the rewards"
            )
        return value

    def _interval(
        self, terms: Mapping[str, np.ndarray], alpha: float, n_bootstrap_samples: int, random_state: Any
    ) -> dict[str, float]:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                return bootstrap_interval(
                    terms,
                    self._reduce,
                    alpha=alpha,
                    n_bootstrap_samples=n_bootstrap_samples,
                    random_state=random_state,
                )
        except ArgumentError as err:
            if str(err).startswith("terms"):  # overflowing replicates: the data's fault, not the caller's
                raise FeedbackError(f"{self.overflow_arguments}: {self.estimator_name}: {err}") from None
            raise

    def estimate_interval(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> dict[str, float]:
        """Bootstrap (percentile) confidence interval over units: `{"mean", "lower", "upper"}`."""
        check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
        return self._interval(self._checked_terms(kwargs), alpha, n_bootstrap_samples, random_state)

    def estimate(
        self, *, alpha: float = 0.05, n_bootstrap_samples: int = 1000, random_state: int = 0, **kwargs: Any
    ) -> Estimate:
        """Point estimate and bootstrap interval together, as an `Estimate`."""
        check_bootstrap_arguments(alpha, n_bootstrap_samples, random_state)
        terms = self._checked_terms(kwargs)
        value = self._point(terms)
        ci = self._interval(terms, alpha, n_bootstrap_samples, random_state)
        return Estimate(
            name=self.estimator_name, value=value, lower=ci["lower"], upper=ci["upper"], alpha=alpha
        )

    def estimate_policy_value(self, **kwargs: Any) -> float:
        """The point estimate of the evaluation policy's value; see the class docstring for the formula."""
        return self._point(self._checked_terms(kwargs))


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
        return self._terms(validated_bandit_kwargs(kwargs, type(self).__name__, self.required))

    def estimate_policy_value(self, **kwargs: Any) -> float:
        """The point estimate of the evaluation policy's value; see the class docstring for the formula.

        Args:
            **kwargs: OBP-named logged data (`reward`, `action`, `position`, `pscore`, `action_dist`,
                `estimated_rewards_by_reg_model`); known arguments this estimator does not use are still
                validated, unknown names are refused.
        """
        return self._point(self._checked_terms(kwargs))


def importance_weight(data: BanditInputs) -> np.ndarray:
    """`w_i = pi_e(a_i | x_i, k_i) / pi_b(a_i | x_i, k_i)`, the per-position importance weight `[n]`."""
    if isinstance(data.action_dist, SparseActionDist):
        return data.action_dist.prob(data.action) / data.pscore
    n = data.action_dist.shape[0]
    return data.action_dist[np.arange(n), data.action, data.position] / data.pscore


def policy_weighted_prediction(data: BanditInputs) -> np.ndarray:
    """`q_hat(x_i, pi_e, k_i) = sum_a pi_e(a | x_i, k_i) q_hat(x_i, a, k_i)` at each logged position `[n]`.

    With a `SparseActionDist` the sum is its listed items' terms plus the rest mass times the mean of
    `q_hat` over the unlisted items (exact under the uniform-rest rule, `evaluation.ope.sparse`)."""
    dist, q_hat, position = data.action_dist, data.estimated_rewards_by_reg_model, data.position
    n = dist.shape[0]
    rows = np.arange(n)
    if isinstance(dist, SparseActionDist):
        if isinstance(q_hat, RewardTable):
            return dist.expectation(q_hat.at(dist.items, position), q_hat.total(position))
        listed = q_hat[rows[:, None], dist.items, position[:, None]]  # [n, T]
        return dist.expectation(listed, q_hat[rows, :, position].sum(axis=1))
    pi_at_position = dist[rows, :, position]  # [n, N]
    if isinstance(q_hat, RewardTable):
        return (pi_at_position * q_hat.row(position)).sum(axis=1)
    q_at_position = q_hat[rows, :, position]  # [n, N]
    return (pi_at_position * q_at_position).sum(axis=1)


def factual_prediction(data: BanditInputs) -> np.ndarray:
    """`q_hat(x_i, a_i, k_i)`, the regression model's prediction for the logged action `[n]`."""
    if isinstance(data.estimated_rewards_by_reg_model, RewardTable):
        return data.estimated_rewards_by_reg_model.at(data.action, data.position)
    n = data.action_dist.shape[0]
    return data.estimated_rewards_by_reg_model[np.arange(n), data.action, data.position]
