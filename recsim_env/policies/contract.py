"""The `Policy` contract: what every policy implements and every rollout loop and evaluator calls.

Reference policies, the oracles, the world-knowing filters and every trained agent implement it; a
policy maps `SeqRec` observations (a dict of arrays: `item_ids` [L], `feedback` [L, F], ...) to items
and accepts one observation (no batch axis) or a batch (a leading N axis on every value):

    action = policy.act(obs)                             # int, or [K] for slates
    actions = policy.act(batched_obs)                    # [N], or [N, K]
    actions = policy.act(batched_obs, deterministic=True)  # the most probable items
    probs = policy.action_distribution(obs)              # [n_items] (or [N, n_items]): first slate position
    policy.seed(7)                                       # reset the policy's own generator

Randomness: a policy owns its generator. `seed(s)` resets it, and every rollout loop calls
`policy.seed(seed)` before its first step, so a seeded rollout reproduces whatever the policy
draws from (its own numpy or torch generator; never a global one, which no rollout reseeds).

Hidden state: a policy that reads the user's hidden state (the oracles) sets the class attribute
`needs_user_state = True` and takes `user_state=` (the environment's `user_state`, for the whole
batch) in `act` and `action_distribution`; callers pass it to those policies only
(`reads_user_state`), so a policy that sees only the observation may leave the keyword out.

Persistence is an extension of this contract in `agents.policy.SavablePolicy` (`save`, `load`),
with the registry of saved kinds; this module holds what the base layer needs: the Protocol, the
batching helpers and the slate samplers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recsim_env.checks import describe
from recsim_env.errors import ArgumentError


@runtime_checkable
class Policy(Protocol):
    """A policy: act on observations, report first-position probabilities, reseed its generator."""

    n_items: int
    """Catalogue size N; actions are item indices 0..N-1."""
    slate_size: int
    """K: items per action (1: a single item)."""

    def act(
        self, obs: Mapping[str, np.ndarray], deterministic: bool = False, *, user_state: Any = None
    ) -> Any:
        """Items for one observation (int, or [K]) or a batch ([N], or [N, K]); `deterministic`: the
        most probable ones. `user_state` is passed only to a policy with `needs_user_state`."""
        ...

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities of the item at the first slate position: [n_items], or [N, n_items] for a batch."""
        ...

    def seed(self, seed: int | None) -> None:
        """Reset the generator `act` samples with (a deterministic policy has nothing to reset)."""
        ...


def reads_user_state(policy: Any) -> bool:
    """Whether `policy` reads the user's hidden state (`needs_user_state`; absent means it does not)."""
    return getattr(policy, "needs_user_state", False) is True


def check_policy(policy: Any, argument: str = "policy") -> Policy:
    """`policy` if it implements the `Policy` contract, else an `ArgumentError` naming what it lacks."""
    missing = [
        name
        for name in ("n_items", "slate_size", "act", "action_distribution", "seed")
        if not hasattr(policy, name)
    ]
    if missing:
        raise ArgumentError(
            f"{argument} must implement the recsim_env Policy contract (recsim_env.policies.contract); "
            f"{describe(policy)} lacks {', '.join(missing)}"
        )
    return policy


def act_slates(
    policy: Policy, obs: Mapping[str, np.ndarray], *, deterministic: bool = False, user_state: Any = None
) -> np.ndarray:
    """[N, K] items for a batched observation, the way every rollout loop calls a policy: `user_state`
    goes only to a policy that reads it."""
    extra = {"user_state": user_state} if reads_user_state(policy) else {}
    actions = policy.act(obs, deterministic=deterministic, **extra)
    return np.asarray(actions).reshape(np.shape(obs["item_ids"])[0], -1)


# ----------------------------------------------------------------------------------- single or batched
def as_batch(obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """`(batched observation, was_single)`: adds a leading N = 1 axis to a single observation.

    A single observation has a 1-D `item_ids` ([L]); a batch has a 2-D one ([N, L]).
    """
    if not isinstance(obs, Mapping) or "item_ids" not in obs:
        raise ArgumentError(
            f"obs must be a dict with an 'item_ids' entry (a SeqRec observation), got {describe(obs)}"
        )
    items = np.asarray(obs["item_ids"])
    if items.ndim not in (1, 2):
        raise ArgumentError(f"obs['item_ids'] must be [L] or [N, L], got shape {items.shape}")
    single = items.ndim == 1
    batch = {key: np.asarray(value)[None] if single else np.asarray(value) for key, value in obs.items()}
    return batch, single


def unbatch_action(slates: np.ndarray, single: bool, slate_size: int) -> Any:
    """[N, K] slates -> the contract's shape: int / [K] for a single observation, [N] / [N, K] for a batch."""
    slates = np.asarray(slates, dtype=np.int64).reshape(-1, slate_size)
    if slate_size == 1:
        return int(slates[0, 0]) if single else slates[:, 0]
    return slates[0] if single else slates


def unbatch_probabilities(probabilities: np.ndarray, single: bool) -> np.ndarray:
    """[N, n_items] -> [n_items] for a single observation."""
    return probabilities[0] if single else probabilities


# ----------------------------------------------------------------------------------- slates
def one_hot(items: np.ndarray, n_items: int) -> np.ndarray:
    """[N, n_items] float64 distributions with all mass on `items` [N]: a deterministic policy's."""
    out = np.zeros((len(items), n_items))
    out[np.arange(len(items)), items] = 1.0
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[N, K] indices of the k largest scores per row, best first (ties to the lowest index)."""
    if k == 1:
        return np.argmax(scores, axis=1)[:, None]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def sample_without_replacement(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[N, K] items drawn without replacement with probability proportional to exp(log_weights).

    The Gumbel-top-k trick: the top k of log-weights plus Gumbel noise is a Plackett-Luce sample.
    """
    gumbel = -np.log(-np.log(rng.random(log_weights.shape)))
    return top_k(log_weights + gumbel, k)


def sample_slates(
    probabilities: np.ndarray, slate_size: int, rng: np.random.Generator, deterministic: bool
) -> np.ndarray:
    """[N, K] distinct items from [N, n_items] first-position probabilities.

    Deterministic: the K most probable items. Otherwise a Plackett-Luce draw without replacement
    (`sample_without_replacement`), whose first position follows `probabilities`.
    """
    with np.errstate(divide="ignore"):
        log_p = np.log(probabilities)
    if deterministic:
        return top_k(log_p, slate_size)
    return sample_without_replacement(log_p, slate_size, rng)
