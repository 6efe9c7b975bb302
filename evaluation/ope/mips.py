"""Marginalised importance weighting over action embeddings (MIPS) for large action spaces.

Saito & Joachims 2022, "Off-Policy Evaluation for Large Action Spaces via Embeddings" (ICML): the weight
of a logged round is the ratio of the two policies' probabilities of the logged action's *embedding*
(e.g. the item's category), not of the action itself, so it stays small when many actions share an
embedding. Arguments follow Open Bandit Pipeline's `MarginalizedInverseProbabilityWeighting` with known
`p_e_a` (`action_embed`, `pi_b`, `p_e_a`), plus a marginal form for catalogues too large for a dense
`[n, N, K]` distribution: `embed_dist` (the evaluation policy's embedding distribution) and `embed_pscore`
(the logger's probability of the logged embedding), which a caller can compute without ever forming
`[n, N]` arrays; and an embedded form for logs that carry one propensity per row (`seqrec ope-report`):
an `ActionEmbedding` of the catalogue given to the estimator, from which it derives both marginals from
the ordinary bandit arguments, with a dense or a sparse (`SparseActionDist`) `action_dist`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluation.ope.base import (
    BANDIT_ARGUMENTS,
    BanditEstimator,
    validate_bandit_inputs,
    validated_bandit_kwargs,
)
from evaluation.ope.checks import (
    MIN_PSCORE,
    FeedbackError,
    check_action_dist,
    check_indices,
    check_pscores,
    check_reals,
    first_index,
    numeric_array,
    refuse_unknown,
)
from evaluation.ope.sparse import SparseActionDist
from recsim_env.checks import check_integer

EMBEDDING_ARGUMENTS = ("action_embed", "pi_b", "p_e_a", "embed_dist", "embed_pscore")
"""The keyword arguments MIPS takes beyond the common bandit ones."""
MIPS_ARGUMENTS = BANDIT_ARGUMENTS + EMBEDDING_ARGUMENTS


def deterministic_p_e_a(item_embed: Any, n_categories: int) -> np.ndarray:
    """`p(e | a) = 1[e = item_embed[a]]` as OBP's `p_e_a` `[N, C, 1]` (one embedding dimension).

    Args:
        item_embed: The embedding (category) of every action `[N]`, integers in `[0, n_categories)`.
        n_categories: Number of distinct embeddings C.
    """
    n_categories = check_integer("n_categories", n_categories, low=1)
    embed = numeric_array("item_embed", item_embed, integer=True)
    if embed.ndim != 1:
        raise FeedbackError(f"item_embed must be 1-dimensional [n_actions], got shape {embed.shape}")
    embed = check_indices("item_embed", embed, n_categories, f"[0, {n_categories})")
    out = np.zeros((len(embed), n_categories, 1))
    out[np.arange(len(embed)), embed, 0] = 1.0
    return out


def embedding_marginal(action_dist_rows: Any, item_embed: Any, n_categories: int) -> np.ndarray:
    """`p(e | x_i, pi) = sum_a pi(a | x_i) 1[e = e(a)]` for deterministic embeddings `[n, C]`.

    Args:
        action_dist_rows: A policy's probabilities `[n, N]` (one position), or a chunk of rows of them.
        item_embed: The embedding (category) of every action `[N]`.
        n_categories: Number of distinct embeddings C.
    """
    dist = numeric_array("action_dist_rows", action_dist_rows)
    if dist.ndim != 2:
        raise FeedbackError(f"action_dist_rows must be 2-dimensional [n, n_actions], got shape {dist.shape}")
    p_e_a = deterministic_p_e_a(item_embed, n_categories)
    if p_e_a.shape[0] != dist.shape[1]:
        raise FeedbackError(
            f"item_embed has {p_e_a.shape[0]} actions but action_dist_rows has {dist.shape[1]} (shape mismatch)"
        )
    return dist @ p_e_a[:, :, 0]


def _check_p_e_a(p_e_a: Any, n_actions: int) -> np.ndarray:
    arr = numeric_array("p_e_a", p_e_a)
    if arr.ndim != 3:
        raise FeedbackError(
            f"p_e_a must be 3-dimensional [n_actions, n_categories, n_embedding_dims], got shape {arr.shape}"
        )
    if arr.shape[0] != n_actions:
        raise FeedbackError(
            f"p_e_a has {arr.shape[0]} actions but action_dist has {n_actions} (shape mismatch)"
        )
    if 0 in arr.shape:
        raise FeedbackError(f"p_e_a has shape {arr.shape}: no categories or no embedding dimensions")

    def where(index: tuple[int, ...]) -> str:
        return f"(action {index[0]}, category {index[1]}, dimension {index[2]}; 0-based)"

    check_action_dist("p_e_a", arr, where=where)  # each p_e_a[a, :, d] sums to 1
    return arr


def _vector(name: str, value: Any, n: int, *, integer: bool = False, allow_bool: bool = False) -> np.ndarray:
    """A `[n]` array of the marginal form, its length checked against `embed_dist`'s rounds."""
    arr = numeric_array(name, value, integer=integer, allow_bool=allow_bool)
    if arr.shape != (n,):
        raise FeedbackError(f"{name} has shape {arr.shape} but embed_dist has {n} rounds (shape mismatch)")
    return arr


def _logged_embeddings(action_embed: Any, n: int, n_dims: int, n_categories: int) -> np.ndarray:
    """`action_embed` as `[n, D]` int64 in `[0, C)`; a 1-D `[n]` array is one dimension."""
    if action_embed is None:
        raise FeedbackError("action_embed is required by MIPS but was not given")
    arr = numeric_array("action_embed", action_embed, integer=True)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape != (n, n_dims):
        raise FeedbackError(
            f"action_embed has shape {np.shape(action_embed)} but {n} rounds and {n_dims} embedding dimension(s) "
            f"call for ({n}, {n_dims}) (shape mismatch)"
        )
    return check_indices("action_embed", arr, n_categories, f"the embeddings [0, {n_categories})")


@dataclass(frozen=True, eq=False)
class ActionEmbedding:
    """One discrete embedding value per action (e.g. the item's category or content cluster).

    Build it with `ActionEmbedding.checked`, which validates the values; the constructor trusts its inputs.
    """

    of_action: np.ndarray
    """`[N]` int64 embedding value of every action, in `[0, n_values)`."""
    n_values: int
    """Number of embedding values E (1 + the largest value)."""

    @classmethod
    def checked(cls, values: Any, *, n_actions: int, name: str = "action_embedding") -> ActionEmbedding:
        """Validate `values` (`[N]` integers >= 0, one per action), naming `name` in every error.

        Raises:
            FeedbackError: for a non-integer, negative or wrongly sized array.
        """
        n_actions = check_integer("n_actions", n_actions, low=1)
        arr = numeric_array(name, values, integer=True)
        if arr.ndim != 1 or len(arr) != n_actions:
            raise FeedbackError(
                f"{name}: expected one embedding value per item, {n_actions} values, got shape {arr.shape}"
            )
        arr = check_indices(
            name, arr, np.iinfo(np.int64).max, "[0, inf) (embedding values are integers >= 0)"
        )
        return cls(arr.astype(np.int64, copy=False), int(arr.max()) + 1)

    @property
    def counts(self) -> np.ndarray:
        """`[E]` number of actions with each embedding value."""
        return np.bincount(self.of_action, minlength=self.n_values)

    def policy_marginal(self, action_dist: Any, action: np.ndarray, position: np.ndarray) -> np.ndarray:
        """`p(e(a_i) | x_i, pi, k_i) = sum_{a: e(a) = e(a_i)} pi(a | x_i, k_i)`, the logged embedding's mass `[n]`.

        A `SparseActionDist` row gives its listed items with that value plus the rest mass times the share
        of the unlisted items that have it, `(count(e) - listed with e) / (N - T)` (exact under its
        uniform-rest rule); nothing of size `[n, N]` or `[n, E]` is formed. A dense `[n, N, K]` array is
        summed a block of rows at a time.
        """
        value = self.of_action[action]  # [n]
        if isinstance(action_dist, SparseActionDist):
            same = (self.of_action[action_dist.items] == value[:, None]).astype(np.float64)  # [n, T]
            return action_dist.expectation(same, self.counts[value].astype(np.float64))
        out = np.empty(len(action))
        for start in range(0, len(action), _ROW_BLOCK):
            rows = np.arange(start, min(start + _ROW_BLOCK, len(action)))
            pi = action_dist[rows, :, position[rows]]  # [B, N]
            out[rows] = (pi * (self.of_action[None, :] == value[rows, None])).sum(axis=1)
        return out

    def embedding_dist(self, action_dist: Any) -> np.ndarray:
        """`p(e | x_i, pi, k)` `[n, E, K]`, the marginal form's `embed_dist` (dense or sparse `action_dist`)."""
        if isinstance(action_dist, SparseActionDist):
            # Every item at the unlisted probability, then each listed item corrected to its own.
            n, n_listed = action_dist.items.shape
            share = action_dist.unlisted_prob[:, None]  # [n, 1]
            out = share * self.counts[None, :]  # [n, E]
            rows = np.repeat(np.arange(n), n_listed)
            listed_values = self.of_action[action_dist.items].ravel()  # [n T]
            np.add.at(out, (rows, listed_values), (action_dist.probs - share).ravel())
            return np.repeat(out[:, :, None], action_dist.n_positions, axis=2)
        dist = np.asarray(action_dist, dtype=np.float64)
        out = np.zeros((dist.shape[0], self.n_values, dist.shape[2]))
        np.add.at(out, (slice(None), self.of_action), dist)
        return out

    def logged_marginal(self, action: np.ndarray, position: np.ndarray, n_positions: int) -> np.ndarray:
        """`p_hat(e(a_i) | pi_b, k_i)` `[n]`: the logged embedding's frequency among the log's rows at its position.

        A context-free estimate of the logger's embedding marginal, the only one a log with one propensity
        per row supports; consistent for a logger whose choice of embedding ignores the context.
        """
        value = self.of_action[action]
        joint = np.zeros((self.n_values, n_positions))
        np.add.at(joint, (value, position), 1.0)
        per_position = np.bincount(position, minlength=n_positions).astype(np.float64)
        return joint[value, position] / per_position[position]


_ROW_BLOCK = 4096
"""Rows of a dense `[n, N, K]` action distribution `ActionEmbedding.policy_marginal` reads at once."""


@dataclass(frozen=True, kw_only=True)
class MarginalizedInverseProbabilityWeighting(BanditEstimator):
    """Marginalised inverse propensity score (MIPS; Saito & Joachims 2022, eq. 4-5; OBP's `mipw` with `p_e_a`).

    With action embeddings e drawn as `p(e | x, a)` (deterministic: `e = e(a)`), the marginal importance
    weight (eq. 5) and the estimator (eq. 4) are

        p(e | x, pi) = sum_a pi(a | x, k) p(e | x, a),      w(x, e) = p(e | x, pi_e) / p(e | x, pi_b)
        V_MIPS = (1 / n) * sum_i w(x_i, e_i) * r_i

    and for D embedding dimensions, as OBP, `w = prod_d p(e_d | x, pi_e) / p(e_d | x, pi_b)`. Unbiased when
    the logger covers the evaluation policy's embeddings and the reward depends on the action only through
    its embedding (no direct effect, the paper's Assumption 3.2); otherwise biased, with far smaller
    variance than IPS when many actions share an embedding.

    Inputs, one of two forms (with `reward`, and `position` for slates):

    - dense: `action_dist` and `pi_b` `[n, N, K]`, `p_e_a` `[N, C, D]`, `action_embed` `[n, D]` (or `[n]`);
    - marginal: `embed_dist` `[n, C, K]` = `p(e | x_i, pi_e, k)`, `embed_pscore` `[n]` =
      `p(e_i | x_i, pi_b, k_i)`, `action_embed` `[n]`; no `[n, N]` array is needed.

    - embedded: with `action_embedding` set, the common bandit arguments `action_dist` (dense `[n, N, K]`
      or a `SparseActionDist`), `action` and `position`: `p(e_i | x_i, pi_e, k_i)` comes from
      `ActionEmbedding.policy_marginal` and `p(e_i | pi_b, k_i)` is estimated as the logged embedding's
      frequency at its position (`ActionEmbedding.logged_marginal`), a context-free estimate; this is the
      form of a report, whose log holds one propensity per row.

    Other known arguments (`action`, `pscore`, `estimated_rewards_by_reg_model`) are validated, not used;
    in the dense form a given `action` must be able to produce its logged embedding (`p_e_a > 0`).
    """

    estimator_name: str = "MIPS"
    action_embedding: ActionEmbedding | None = None
    """The catalogue's embedding for the embedded form (None: pass `action_embed` and a marginal or dense form)."""
    required: ClassVar[tuple[str, ...]] = ("reward", "action_embed")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.action_embedding is not None and not isinstance(self.action_embedding, ActionEmbedding):
            raise FeedbackError(
                f"action_embedding: expected an ActionEmbedding or None, got {type(self.action_embedding).__name__}"
            )

    def _validated_terms(self, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self.action_embedding is not None:
            weight, reward = self._embedded_weight(kwargs)
            return self._terms_from_weight(weight, reward)
        refuse_unknown(kwargs, MIPS_ARGUMENTS, type(self).__name__)
        for name in self.required:
            if kwargs.get(name) is None:
                raise FeedbackError(f"{name} is required by this estimator but was not given")
        marginal = kwargs.get("embed_dist") is not None or kwargs.get("embed_pscore") is not None
        dense = kwargs.get("pi_b") is not None or kwargs.get("p_e_a") is not None
        if marginal and dense:
            raise FeedbackError(
                "embed_dist / embed_pscore and pi_b / p_e_a were both given: pass the marginal form or the "
                "dense form, not both"
            )
        weight, reward = self._marginal_weight(kwargs) if marginal else self._dense_weight(kwargs)
        return self._terms_from_weight(weight, reward)

    def _terms_from_weight(self, weight: np.ndarray, reward: np.ndarray) -> dict[str, np.ndarray]:
        return {"weighted_reward": weight * reward}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        return terms["weighted_reward"].mean(axis=-1)

    # ------------------------------------------------------------------------------------------ the two forms
    def _dense_weight(self, kwargs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """`w(x_i, e_i)` `[n]` from `action_dist`, `pi_b` and `p_e_a`, with the validated reward `[n]`."""
        for name in ("pi_b", "p_e_a", "action_dist"):
            if kwargs.get(name) is None:
                raise FeedbackError(
                    f"{name} is required by MIPS's dense form (or pass embed_dist and embed_pscore instead)"
                )
        data = validate_bandit_inputs(
            action_dist=kwargs["action_dist"],
            reward=kwargs["reward"],
            action=kwargs.get("action"),
            position=kwargs.get("position"),
            pscore=kwargs.get("pscore"),
            estimated_rewards_by_reg_model=kwargs.get("estimated_rewards_by_reg_model"),
        )
        if isinstance(data.action_dist, SparseActionDist):
            raise FeedbackError(
                "action_dist: MIPS's dense form needs a dense [n, N, K] action_dist, got a SparseActionDist "
                "(pass embed_dist and embed_pscore instead)"
            )
        n, n_actions, _ = data.action_dist.shape
        pi_b = numeric_array("pi_b", kwargs["pi_b"])
        if pi_b.shape != data.action_dist.shape:
            raise FeedbackError(
                f"pi_b has shape {pi_b.shape} but action_dist has {data.action_dist.shape} (shape mismatch)"
            )
        check_action_dist("pi_b", pi_b)
        p_e_a = _check_p_e_a(kwargs["p_e_a"], n_actions)
        _, n_categories, n_dims = p_e_a.shape
        embed = _logged_embeddings(kwargs["action_embed"], n, n_dims, n_categories)
        rows = np.arange(n)
        if data.action is not None:
            possible = p_e_a[data.action[:, None], embed, np.arange(n_dims)] > 0  # [n, D]
            if not possible.all():
                i, d = first_index(~possible)
                raise FeedbackError(
                    f"action_embed[{i}, {d}] = {embed[i, d]} has probability 0 under p_e_a for the logged "
                    f"action {data.action[i]} (row {i}, dimension {d}; 0-based)"
                )
        pi_e_rows = data.action_dist[rows, :, data.position]  # [n, N]
        pi_b_rows = pi_b[rows, :, data.position]  # [n, N]
        weight = np.ones(n)
        for d in range(n_dims):
            p_e_pi_e = (pi_e_rows @ p_e_a[:, :, d])[rows, embed[:, d]]  # [n]
            p_e_pi_b = (pi_b_rows @ p_e_a[:, :, d])[rows, embed[:, d]]
            uncovered = p_e_pi_b < MIN_PSCORE
            if uncovered.any():
                i = int(np.argmax(uncovered))
                raise FeedbackError(
                    f"pi_b gives the logged embedding action_embed[{i}, {d}] = {embed[i, d]} probability "
                    f"{p_e_pi_b[i]:.3g} (row {i}, 0-based): the logger must cover every logged embedding"
                )
            weight *= p_e_pi_e / p_e_pi_b
        return weight, data.reward

    def _embedded_weight(self, kwargs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """`w(x_i, e_i)` `[n]` from the bandit arguments and `action_embedding`, with the validated reward `[n]`."""
        data = validated_bandit_kwargs(
            kwargs, f"{type(self).__name__} with action_embedding", ("reward", "action", "action_dist")
        )
        embedding = self.action_embedding
        n_actions = data.action_dist.shape[1]
        if len(embedding.of_action) != n_actions:
            raise FeedbackError(
                f"action_embedding has {len(embedding.of_action)} actions but action_dist has {n_actions} "
                "(shape mismatch)"
            )
        target = embedding.policy_marginal(data.action_dist, data.action, data.position)
        logger = embedding.logged_marginal(data.action, data.position, data.action_dist.shape[2])
        return target / logger, data.reward

    def _marginal_weight(self, kwargs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """`w(x_i, e_i)` `[n]` from `embed_dist` and `embed_pscore`, with the validated reward `[n]`."""
        for name in ("embed_dist", "embed_pscore"):
            if kwargs.get(name) is None:
                raise FeedbackError(
                    f"{name} is required by MIPS's marginal form (embed_dist with embed_pscore)"
                )
        dist = numeric_array("embed_dist", kwargs["embed_dist"])
        if dist.ndim != 3:
            raise FeedbackError(
                f"embed_dist must be 3-dimensional [n, n_categories, n_positions], got shape {dist.shape}"
            )
        n, n_categories, n_positions = dist.shape
        if n == 0 or n_categories == 0 or n_positions == 0:
            raise FeedbackError(f"embed_dist has shape {dist.shape}: no rounds, categories or positions")

        def where(index: tuple[int, ...]) -> str:
            return f"(row {index[0]}, category {index[1]}, position {index[2]}; 0-based)"

        check_action_dist("embed_dist", dist, where=where)
        # Known arguments unused here are still validated, as every estimator does.
        if kwargs.get("action_dist") is not None:
            validate_bandit_inputs(action_dist=kwargs["action_dist"], action=kwargs.get("action"))
        elif kwargs.get("action") is not None:
            action = _vector("action", kwargs["action"], n, integer=True)
            check_indices("action", action, np.iinfo(np.int64).max, "[0, inf) (action ids)")
        reward = _vector("reward", kwargs["reward"], n, allow_bool=True)
        check_reals("reward", reward, what="reward")
        position = np.zeros(n, dtype=np.int64)
        if kwargs.get("position") is not None:
            position = check_indices(
                "position",
                _vector("position", kwargs["position"], n, integer=True),
                n_positions,
                f"[0, {n_positions}) (embed_dist has {n_positions} positions)",
            )
        if kwargs.get("pscore") is not None:
            check_pscores("pscore", _vector("pscore", kwargs["pscore"], n))
        if kwargs.get("estimated_rewards_by_reg_model") is not None:
            q_hat = numeric_array("estimated_rewards_by_reg_model", kwargs["estimated_rewards_by_reg_model"])
            check_reals("estimated_rewards_by_reg_model", q_hat, what="predicted reward")
        embed = _logged_embeddings(kwargs["action_embed"], n, 1, n_categories)[:, 0]
        pscore = _vector("embed_pscore", kwargs["embed_pscore"], n)
        check_pscores("embed_pscore", pscore)
        return dist[np.arange(n), embed, position] / pscore, reward

    def estimate_policy_value(self, **kwargs: Any) -> float:
        """The MIPS point estimate (eq. 4); see the class docstring for the two input forms."""
        return self._point(self._checked_terms(kwargs))


@dataclass(frozen=True, kw_only=True)
class SelfNormalizedMarginalizedInverseProbabilityWeighting(MarginalizedInverseProbabilityWeighting):
    """Self-normalised MIPS (OBP's `snmipw`): the marginal weights normalised by their sum.

        V_SNMIPS = sum_i w(x_i, e_i) * r_i / sum_i w(x_i, e_i)

    Same inputs as `MarginalizedInverseProbabilityWeighting`; 0 when every weight is 0.
    """

    estimator_name: str = "SNMIPS"

    def _terms_from_weight(self, weight: np.ndarray, reward: np.ndarray) -> dict[str, np.ndarray]:
        return {"weighted_reward": weight * reward, "weight": weight}

    def _reduce(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        total_weight = terms["weight"].sum(axis=-1)
        safe = np.where(total_weight > 0, total_weight, 1.0)
        return np.where(total_weight > 0, terms["weighted_reward"].sum(axis=-1) / safe, 0.0)
