"""Action distributions and reward models of large catalogues, held without an `[n, N, K]` array.

`SparseActionDist` is an evaluation policy's distribution as each round's top items and their probabilities
plus the mass of the rest, spread uniformly over the items not listed:

    pi(a | x_i) = probs[i, j]                      if a = items[i, j]
    pi(a | x_i) = rest[i] / (N - T)                otherwise (T listed items per round)

the same at every slate position. `RewardTable` is a context-free reward model's predictions, one `[N, K]`
table per cross-fitting fold: `q_hat(x_i, a, k) = table[group[i], a, k]`.

With both, the estimators' three per-round quantities come without densifying anything:

    pi(a_i | x_i)                                   a lookup among the T listed items, else rest[i] / (N - T)
    sum_a pi(a | x_i) v(a) = sum_j probs[i, j] v(items[i, j]) + rest[i] * (sum_a v(a) - sum_j v(items[i, j])) / (N - T)

for any per-action values `v` (the reward model's `q_hat(x_i, ., k_i)` for DM and DR; the never-logged
indicator for the report's support check). The rest term is the mean of `v` over the unlisted items, so
the expectation is exact, not an approximation, under the uniform-rest rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.ope.checks import ACTION_DIST_ATOL, FeedbackError, check_reals
from recsim_env.checks import check_integer


@dataclass(frozen=True, eq=False)
class SparseActionDist:
    """An action distribution `[n, N]` as `T` listed items per round plus the uniform rest (module docstring).

    Build it with `SparseActionDist.checked`, which validates every round; the constructor trusts its inputs.
    """

    items: np.ndarray
    """`[n, T]` int64 listed items of each round, distinct within a round, in `[0, N)`."""
    probs: np.ndarray
    """`[n, T]` float64 probability of each listed item."""
    rest: np.ndarray
    """`[n]` float64 mass of the `N - T` unlisted items, spread uniformly over them."""
    n_actions: int
    """Catalogue size N."""
    n_positions: int = 1
    """Slate positions K; the distribution is the same at every position."""

    @classmethod
    def checked(
        cls,
        items,
        probs,
        rest=None,
        *,
        n_actions: int,
        n_positions: int = 1,
        name: str = "action_dist",
    ) -> SparseActionDist:
        """A validated sparse distribution; `rest` defaults to `1 - probs.sum(axis=1)` (clipped at 0).

        Raises:
            FeedbackError: naming `name`, the array (`items`, `probs`, `rest`) and the first bad round:
                shapes, items outside `[0, N)` or repeated within a round, probabilities not finite or
                negative, rows not summing to 1 within `ACTION_DIST_ATOL`, or rest mass with no item left.
        """
        n_actions = check_integer("n_actions", n_actions, low=1)
        n_positions = check_integer("n_positions", n_positions, low=1)
        items = np.asarray(items)
        probs = np.asarray(probs)
        if items.ndim != 2 or probs.shape != items.shape:
            raise FeedbackError(
                f"{name}: items and probs must both be [n, T], got shapes {items.shape} and {probs.shape}"
            )
        n, top = items.shape
        if n == 0:
            raise FeedbackError(f"{name}: no rounds (n = 0): there is nothing to evaluate")
        if top > n_actions:
            raise FeedbackError(f"{name}: lists {top} items per round but the catalogue has {n_actions}")
        if items.dtype.kind not in "iu":
            raise FeedbackError(f"{name}: items must be integers, got dtype {items.dtype}")
        if probs.dtype.kind not in "fiu":
            raise FeedbackError(f"{name}: probs must be numbers, got dtype {probs.dtype}")
        outside = (items < 0) | (items >= n_actions)
        if outside.any():
            i, j = np.unravel_index(int(np.argmax(outside)), outside.shape)
            raise FeedbackError(
                f"{name}: items[{i}, {j}] = {int(items[i, j])} is outside the catalogue [0, {n_actions}) "
                f"(round {i}, 0-based)"
            )
        items = items.astype(np.int64)
        if top > 1:
            ordered = np.sort(items, axis=1)
            repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            if repeated.any():
                i = int(np.argmax(repeated))
                raise FeedbackError(
                    f"{name}: items[{i}] lists an item twice (round {i}, 0-based); each listed item is distinct"
                )
        probs = probs.astype(np.float64)
        bad = ~(probs >= 0.0) | ~np.isfinite(probs)
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise FeedbackError(
                f"{name}: probs[{i}, {j}] = {float(probs[i, j])!r} is not a finite non-negative probability "
                f"(round {i}, 0-based)"
            )
        listed = probs.sum(axis=1)
        if rest is None:
            rest = np.clip(1.0 - listed, 0.0, None)
        else:
            rest = np.asarray(rest)
            if rest.shape != (n,):
                raise FeedbackError(f"{name}: rest must be [n] = [{n}], got shape {rest.shape}")
            if rest.dtype.kind not in "fiu":
                raise FeedbackError(f"{name}: rest must be numbers, got dtype {rest.dtype}")
            rest = rest.astype(np.float64)
            bad = ~(rest >= 0.0) | ~np.isfinite(rest)
            if bad.any():
                i = int(np.argmax(bad))
                raise FeedbackError(
                    f"{name}: rest[{i}] = {float(rest[i])!r} is not a finite non-negative mass (round {i}, 0-based)"
                )
        off = ~(np.abs(listed + rest - 1.0) <= ACTION_DIST_ATOL)
        if off.any():
            i = int(np.argmax(off))
            raise FeedbackError(
                f"{name}: round {i} (0-based) sums to {float(listed[i] + rest[i]):.6g} (probs {float(listed[i]):.6g}"
                f" + rest {float(rest[i]):.6g}), not 1"
            )
        if top == n_actions and (rest > ACTION_DIST_ATOL).any():
            i = int(np.argmax(rest > ACTION_DIST_ATOL))
            raise FeedbackError(
                f"{name}: rest[{i}] = {float(rest[i]):.6g} but every item is listed (round {i}, 0-based)"
            )
        return cls(items, probs, rest, n_actions, n_positions)

    @classmethod
    def uniform(cls, n_rounds: int, n_actions: int, n_positions: int = 1) -> SparseActionDist:
        """The uniform policy: no listed item, all the mass in the rest (`pi(a | x) = 1 / N`)."""
        return cls(
            np.zeros((n_rounds, 0), np.int64),
            np.zeros((n_rounds, 0)),
            np.ones(n_rounds),
            n_actions,
            n_positions,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(n, N, K)`, the shape of the dense array it stands for."""
        return (len(self.rest), self.n_actions, self.n_positions)

    @property
    def n_listed(self) -> int:
        """T, the items listed per round."""
        return self.items.shape[1]

    def take(self, rows: np.ndarray) -> SparseActionDist:
        """The rounds `rows` (e.g. a subsample)."""
        return SparseActionDist(
            self.items[rows], self.probs[rows], self.rest[rows], self.n_actions, self.n_positions
        )

    def _rest_share(self) -> np.ndarray:
        """`[n]` the probability of each unlisted item, `rest / (N - T)` (0 when every item is listed)."""
        unlisted = self.n_actions - self.n_listed
        return self.rest / unlisted if unlisted else np.zeros_like(self.rest)

    @property
    def unlisted_prob(self) -> np.ndarray:
        """`[n]` `pi(a | x_i)` of any item row i does not list, `rest / (N - T)` (0 when every item is listed)."""
        return self._rest_share()

    def prob(self, action: np.ndarray) -> np.ndarray:
        """`[n]` `pi(action[i] | x_i)` for one action per round."""
        hit = self.items == action[:, None]  # [n, T]
        listed = (self.probs * hit).sum(axis=1)
        return np.where(hit.any(axis=1), listed, self._rest_share())

    def expectation(self, listed_values: np.ndarray, total: np.ndarray) -> np.ndarray:
        """`[n]` `sum_a pi(a | x_i) v_i(a)`, given `v_i` at the listed items `[n, T]` and `sum_a v_i(a)` `[n]`."""
        listed_sum = listed_values.sum(axis=1)
        return (self.probs * listed_values).sum(axis=1) + self._rest_share() * (total - listed_sum)

    def dense(self) -> np.ndarray:
        """The `[n, N, K]` array it stands for (for tests and small catalogues)."""
        n = len(self.rest)
        out = np.repeat(self._rest_share()[:, None], self.n_actions, axis=1)
        out[np.arange(n)[:, None], self.items] = self.probs
        return np.repeat(out[:, :, None], self.n_positions, axis=2)


@dataclass(frozen=True, eq=False)
class RewardTable:
    """Context-free reward predictions: `q_hat(x_i, a, k) = table[group[i], a, k]` (one table per fold)."""

    table: np.ndarray
    """`[G, N, K]` float64 predictions of each fold's model."""
    group: np.ndarray
    """`[n]` int64 the table each round reads (its held-out fold)."""

    def __post_init__(self) -> None:
        if self.table.ndim != 3 or self.group.ndim != 1:
            raise FeedbackError(
                f"estimated_rewards_by_reg_model: a RewardTable needs table [G, N, K] and group [n], got "
                f"{self.table.shape} and {self.group.shape}"
            )
        if len(self.group) and (self.group.min() < 0 or self.group.max() >= self.table.shape[0]):
            raise FeedbackError(
                f"estimated_rewards_by_reg_model: group indices outside the {self.table.shape[0]} tables"
            )
        check_reals(
            "estimated_rewards_by_reg_model.table",
            self.table,
            where=lambda i: f"(fold {i[0]}, action {i[1]}, position {i[2]}; 0-based)",
            what="predicted reward",
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(n, N, K)`, the shape of the dense array it stands for."""
        return (len(self.group), self.table.shape[1], self.table.shape[2])

    def take(self, rows: np.ndarray) -> RewardTable:
        """The rounds `rows`."""
        return RewardTable(self.table, self.group[rows])

    def at(self, action: np.ndarray, position: np.ndarray) -> np.ndarray:
        """`q_hat(x_i, action[i, ...], position[i])` for actions `[n]` or `[n, T]`."""
        index = (slice(None),) + (None,) * (action.ndim - 1)
        return self.table[self.group[index], action, position[index]]

    def total(self, position: np.ndarray) -> np.ndarray:
        """`[n]` `sum_a q_hat(x_i, a, position[i])`."""
        sums = self.table.sum(axis=1)  # [G, K]
        return sums[self.group, position]

    def row(self, position: np.ndarray) -> np.ndarray:
        """`[n, N]` `q_hat(x_i, ., position[i])` (materialised: small catalogues only)."""
        return self.table[self.group, :, position]

    def dense(self) -> np.ndarray:
        """The `[n, N, K]` array it stands for."""
        return self.table[self.group]
