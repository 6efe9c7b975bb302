"""A reward regression model for DM / DR, with K-fold cross-fitting (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from evaluation.ope.checks import (
    FeedbackError,
    check_indices,
    check_reals,
    numeric_array,
)
from evaluation.ope.sparse import RewardTable
from recsim_env.checks import check_integer
from recsim_env.errors import ArgumentError

DENSE_ONE_HOT_MAX_ACTIONS = 4096
"""Largest catalogue whose default one-hot action features are a dense identity; above it they are a scipy
sparse matrix (a dense `[n, N]` one-hot block is 16 GB at n = 20,000 and N = 100,000)."""


def _default_base_model() -> Any:
    return HistGradientBoostingRegressor(max_iter=100, random_state=0)


@dataclass(kw_only=True)
class RegressionModel:
    """Fits `q_hat(x, a, k) ~ E[r | x, a, k]` and predicts it for every action and position.

    Features of a (context, action, position) triple are `[x, e(a), onehot(k)]`, where `e(a)` is a row of
    `action_context` (one-hot by default; pass item embeddings for large catalogues) and the position block
    is dropped when `len_list == 1`. With `n_folds > 1` the predictions for round i come from a model that
    never saw round i (cross-fitting, Chernozhukov et al. 2018; Narita et al. 2019 for OPE), which removes the
    own-observation bias of DR.

    Attributes:
        n_actions: Catalogue size N.
        len_list: Number of slate positions K (1 for one-step bandits).
        base_model: Any scikit-learn regressor (or binary classifier with `predict_proba`, whose P(r = 1) is
            used); cloned for every fold. Default: histogram gradient boosting.
        action_context: Action features `[N, d_a]`; identity (one-hot) when None, held as a scipy sparse
            matrix above `DENSE_ONE_HOT_MAX_ACTIONS` actions (the base model must then accept sparse input,
            as `Ridge` does; the default gradient boosting does not).
        predict_batch_rows: Memory bound on the feature rows built at once when predicting for all actions.
        n_threads: OpenMP / BLAS threads for fitting and predicting (None: the libraries' default, all
            cores). One thread by default: OpenMP spin-waiting makes small fits 100x slower on a busy machine.
    """

    n_actions: int
    len_list: int = 1
    base_model: Any = field(default_factory=_default_base_model)
    action_context: np.ndarray | None = None
    predict_batch_rows: int = 1_000_000
    n_threads: int | None = 1

    def __post_init__(self) -> None:
        self.n_actions = check_integer("n_actions", self.n_actions, low=1)
        self.len_list = check_integer("len_list", self.len_list, low=1)
        self.predict_batch_rows = check_integer("predict_batch_rows", self.predict_batch_rows, low=1)
        if self.n_threads is not None:
            self.n_threads = check_integer("n_threads", self.n_threads, low=1, high=4096)
        if not (hasattr(self.base_model, "fit") and hasattr(self.base_model, "get_params")):
            raise ArgumentError(
                f"base_model: expected a scikit-learn estimator, got {type(self.base_model).__name__}"
            )
        if self.action_context is None:
            self.action_context = (
                np.eye(self.n_actions) if self.n_actions <= DENSE_ONE_HOT_MAX_ACTIONS else None
            )
        else:
            self.action_context = numeric_array("action_context", self.action_context)
            if self.action_context.ndim != 2 or self.action_context.shape[0] != self.n_actions:
                raise ArgumentError(
                    f"action_context must have shape [n_actions={self.n_actions}, d], "
                    f"got {self.action_context.shape}"
                )
            check_reals("action_context", self.action_context, what="action feature")

    def _features(self, context: np.ndarray, action: np.ndarray, position: np.ndarray):
        if self.action_context is None:
            return self._sparse_features(context, action, position)
        blocks = [context, self.action_context[action]]
        if self.len_list > 1:
            blocks.append(np.eye(self.len_list)[position])
        return np.concatenate(blocks, axis=1)

    def _sparse_features(self, context: np.ndarray, action: np.ndarray, position: np.ndarray):
        """`[x, onehot(a), onehot(k)]` as a CSR matrix: the catalogue's one-hot block is never dense."""
        import scipy.sparse as sp

        n = len(action)
        rows = np.arange(n)
        blocks = [
            sp.csr_matrix(context),
            sp.csr_matrix((np.ones(n), (rows, action)), shape=(n, self.n_actions)),
        ]
        if self.len_list > 1:
            blocks.append(sp.csr_matrix((np.ones(n), (rows, position)), shape=(n, self.len_list)))
        return sp.hstack(blocks, format="csr")

    def _predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        if is_classifier(model):
            proba = model.predict_proba(features)
            positive = np.flatnonzero(model.classes_ == 1)
            return proba[:, positive[0]] if positive.size else np.zeros(features.shape[0])
        return model.predict(features)

    def _predict_all(self, model: Any, context: np.ndarray) -> np.ndarray:
        """Predictions for every (round, action, position) `[n, N, K]`, built in bounded batches."""
        n = context.shape[0]
        n_pairs = self.n_actions * self.len_list
        actions = np.repeat(np.arange(self.n_actions), self.len_list)  # [N * K]
        positions = np.tile(np.arange(self.len_list), self.n_actions)  # [N * K]
        if context.shape[1] == 0:
            # Without context every round has the same predictions: predict the N * K pairs once.
            table = self._predict(model, self._features(np.zeros((n_pairs, 0)), actions, positions))
            return np.broadcast_to(
                table.reshape(1, self.n_actions, self.len_list), (n, self.n_actions, self.len_list)
            )
        out = np.empty((n, n_pairs))
        rounds_per_batch = max(1, self.predict_batch_rows // n_pairs)
        for start in range(0, n, rounds_per_batch):
            stop = min(n, start + rounds_per_batch)
            ctx = np.repeat(context[start:stop], n_pairs, axis=0)
            act = np.tile(actions, stop - start)
            pos = np.tile(positions, stop - start)
            out[start:stop] = self._predict(model, self._features(ctx, act, pos)).reshape(
                stop - start, n_pairs
            )
        return out.reshape(n, self.n_actions, self.len_list)

    def fit_predict(
        self,
        *,
        action: np.ndarray,
        reward: np.ndarray,
        context: np.ndarray | None = None,
        position: np.ndarray | None = None,
        n_folds: int = 3,
        random_state: int = 0,
    ) -> np.ndarray:
        """Fit on logged (context, action, position) -> reward and return `estimated_rewards_by_reg_model`.

        Args:
            action: Logged actions `[n]` in `[0, N)`.
            reward: Observed rewards `[n]`.
            context: Context features `[n, d]`; rounds are treated as context-free when None.
            position: Logged positions `[n]` in `[0, K)`; zeros when None.
            n_folds: Cross-fitting folds; 1 fits and predicts on all rounds.
            random_state: Seeds the fold split and the base model (if it takes `random_state`).

        Returns:
            Predicted rewards `[n, N, K]` for every action and position of every round.
        """
        checked = self._checked(action, reward, context, position, n_folds, random_state)
        with threadpool_limits(limits=self.n_threads):
            return self._cross_fit(*checked)

    def fit_predict_table(
        self,
        *,
        action: np.ndarray,
        reward: np.ndarray,
        position: np.ndarray | None = None,
        n_folds: int = 3,
        random_state: int = 0,
    ) -> RewardTable:
        """`fit_predict` without context, as a `RewardTable`: each fold's `[N, K]` predictions and the fold
        each round was held out in, never the `[n, N, K]` array (`fit_predict(...)` equals `.dense()`).

        Args: as `fit_predict`.
        """
        checked = self._checked(action, reward, None, position, n_folds, random_state)
        with threadpool_limits(limits=self.n_threads):
            return self._cross_fit(*checked, as_table=True)

    def _checked(self, action, reward, context, position, n_folds, random_state) -> tuple:
        """`fit_predict`'s arguments checked: `(context, action, position, reward, n_folds, random_state)`."""
        action = numeric_array("action", action, integer=True)
        if action.ndim != 1 or action.shape[0] == 0:
            raise FeedbackError(f"action must be 1-dimensional [n] with n >= 1, got shape {action.shape}")
        n = action.shape[0]
        action = check_indices("action", action, self.n_actions, f"the catalogue [0, {self.n_actions})")
        reward = numeric_array("reward", reward, allow_bool=True)
        if reward.shape != (n,):
            raise FeedbackError(f"reward has shape {reward.shape} but action has {n} rounds (shape mismatch)")
        check_reals("reward", reward, what="reward")
        if position is None:
            position = np.zeros(n, dtype=np.int64)
        else:
            position = numeric_array("position", position, integer=True)
            if position.shape != (n,):
                raise FeedbackError(
                    f"position has shape {position.shape} but action has {n} rounds (shape mismatch)"
                )
            position = check_indices("position", position, self.len_list, f"[0, {self.len_list})")
        if context is None:
            context = np.zeros((n, 0))
        else:
            context = numeric_array("context", context, allow_bool=True)
            if context.ndim != 2 or context.shape[0] != n:
                raise FeedbackError(
                    f"context must have shape [n={n}, d], got {context.shape} (shape mismatch)"
                )
            check_reals("context", context, what="context feature")
        n_folds = check_integer("n_folds", n_folds, low=1, high=n)
        random_state = check_integer("random_state", random_state, low=0, high=2**32 - 1 - n_folds)

        return context, action, position, reward, n_folds, random_state

    def _cross_fit(
        self,
        context: np.ndarray,
        action: np.ndarray,
        position: np.ndarray,
        reward: np.ndarray,
        n_folds: int,
        random_state: int,
        as_table: bool = False,
    ) -> np.ndarray | RewardTable:
        n = action.shape[0]
        features = self._features(context, action, position)
        if as_table:
            tables = np.empty((n_folds, self.n_actions, self.len_list))
            group = np.zeros(n, dtype=np.int64)
        else:
            estimated = np.empty((n, self.n_actions, self.len_list))
        if n_folds == 1:
            folds = [(np.arange(n), np.arange(n))]
        else:
            folds = list(
                KFold(n_splits=n_folds, shuffle=True, random_state=random_state).split(np.zeros((n, 1)))
            )
        for fold, (train, held_out) in enumerate(folds):
            model = clone(self.base_model)
            if "random_state" in model.get_params():
                model.set_params(random_state=random_state + fold)
            model.fit(features[train], reward[train])
            if as_table:  # context-free: one [N, K] table per fold
                tables[fold] = self._predict_all(model, context[:1])[0]
                group[held_out] = fold
            else:
                estimated[held_out] = self._predict_all(model, context[held_out])
        return RewardTable(tables, group) if as_table else estimated
