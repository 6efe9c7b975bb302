"""Policy-value fidelity: the value a learned simulator gives each policy of a panel, next to the world's.

A simulator exists to train and compare policies, so its headline metric is whether each policy's
simulated mean return matches the return real users give it. For every policy of a panel (a name ->
policy mapping), `policy_values` rolls the policy out for `episodes` episodes in the world and in the
simulator (same seed, same env settings, the simulator's history length on both sides) and reports:

- the mean return in each, and the relative error `(simulated - world) / world`;
- the Kolmogorov-Smirnov distance between the simulated and the world's session lengths and return gaps;
- how far the policy's behaviour is from the logging policy the simulator learned from: the KL
  divergence `KL(q || p)` of the items the policy shows in the world (`q`) from the items of the logs
  (`p`, add-one smoothed), and the share of steps that show an item of the previous item's category
  (`category_repeat_rate`), a pattern uniform logs rarely hold;
- over the policies with both values: Spearman's rank correlation of the simulated and the world's
  mean returns, and the largest absolute relative error.

A policy that reads the world's hidden user state (`needs_user_state`, the oracles) has no simulated
value: a simulator has no such state to give it, and any stand-in (the filter twin's observation-only
policy, or a world run in lockstep whose users are not the simulated ones) would be the value of a
different policy. Such policies get their world value only and are left out of the correlation.

Policies are any `recsim_env.policies.Policy` (reference policies and trained agents alike), rolled
out by `recsim_env.rollout.rollout_episodes`; `needs_user_state` marks those that read the hidden state.
`world_panel` builds the world-reference panel (baselines fitted on logs, filter policies, oracles).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsim_env.checks import check_integer
from recsim_env.policies.contract import check_policy, reads_user_state

NO_SIMULATED_VALUE = "reads the world's hidden user state, which a simulator does not have"
"""Why a policy with `needs_user_state` has no simulated value."""


@dataclass(frozen=True)
class PolicyRollout:
    """What `rollout_sessions` saw of one policy in one environment."""

    returns: np.ndarray
    """[E] return of each counted episode."""
    session_lengths: np.ndarray
    """[S] steps of each session of the counted episodes."""
    return_gaps: np.ndarray
    """[S] days until the user came back, at each session end of the counted episodes."""
    item_counts: np.ndarray
    """[n_items] how often each item was shown at the slate's first position (counted episodes)."""
    category_repeat_rate: float
    """Share of steps after an episode's first whose first item has the previous first item's category
    (NaN without item categories)."""

    def summary(self) -> dict[str, float]:
        """Mean return (with a normal 95% interval), mean session length and return gap."""
        n = len(self.returns)
        half = 1.96 * self.returns.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        mean = float(self.returns.mean())
        return {
            "mean_return": mean,
            "ci95": [mean - half, mean + half],
            "session_length": float(self.session_lengths.mean()),
            "return_gap_days": float(self.return_gaps.mean()) if len(self.return_gaps) else float("nan"),
            "episodes": n,
        }


def rollout_sessions(
    policy,
    *,
    n_episodes: int,
    seed: int = 0,
    num_envs: int = 256,
    item_category: np.ndarray | None = None,
    **env_kwargs,
) -> PolicyRollout:
    """Roll `policy` out for `n_episodes` episodes of `SeqRecVectorEnv(**env_kwargs)`, keeping every
    episode's return and every session's length and return gap.

    The protocol is `recsim_env.rollout.rollout`'s (sub-env i seeded `seed + i`, the policy reseeded
    with `policy.seed(seed)`, a fixed quota of episodes per sub-env), so the mean return is the same as
    `rollout(...).mean_return` for the same arguments.
    """
    from recsim_env.rollout import rollout_episodes

    records = rollout_episodes(policy, n_episodes=n_episodes, seed=seed, num_envs=num_envs, **env_kwargs)
    shown = np.concatenate(records.first_items) if records.first_items else np.zeros(0, np.int64)
    repeats = pairs = 0
    if item_category is not None:
        for items in records.first_items:
            if len(items) > 1:
                category = item_category[items]
                repeats += int((category[1:] == category[:-1]).sum())
                pairs += len(category) - 1
    return PolicyRollout(
        returns=records.returns.astype(np.float64),
        session_lengths=records.session_lengths,
        return_gaps=records.return_gaps,
        item_counts=np.bincount(shown, minlength=records.n_items),
        category_repeat_rate=repeats / pairs if pairs else float("nan"),
    )


def item_kl(counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """KL(q || p) in nats of the item frequencies `counts` (q) from add-one smoothed `reference_counts` (p)."""
    q = counts / max(counts.sum(), 1)
    p = (reference_counts + 1.0) / (reference_counts.sum() + len(reference_counts))
    shown = q > 0
    return float(np.sum(q[shown] * np.log(q[shown] / p[shown])))


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b).statistic) if len(a) and len(b) else float("nan")


def policy_values(
    simulator,
    policies: Mapping[str, Any],
    *,
    episodes: int = 1000,
    seed: int = 0,
    num_envs: int = 256,
    world_config=None,
    env_kwargs: Mapping[str, Any] | None = None,
    item_category: np.ndarray | None = None,
    logged_items: np.ndarray | None = None,
    on_policy: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Each policy's mean return, session lengths and return gaps in the world and in `simulator`.

    Args:
        simulator: a learned simulator (a `UserModel` with `history_len`), trained on logs of the world
            of `world_config`.
        policies: name -> `recsim_env.policies.Policy`.
        episodes: episodes per policy and environment.
        seed: rollout seed, the same in both environments.
        num_envs: users stepped together.
        world_config: the world's `WorldConfig` (None: the default world).
        env_kwargs: further `SeqRecVectorEnv` settings for both environments (reward, max_steps, ...);
            `history_len` defaults to the simulator's.
        item_category: [n_items] item categories, for `category_repeat_rate`.
        logged_items: [n_items] how often the logs show each item, for `item_kl_to_logs`.
        on_policy: called with each policy's name before it is rolled out (progress).

    Returns:
        `{"policies": {name: {...}}, "compared": [...], "spearman": rho, "max_abs_relative_error": e,
        "episodes": ..., "seed": ...}`; a policy's entry holds `world` and `simulator` summaries
        (`simulator` None, with a `note`, for a policy that reads the hidden state), `relative_error`,
        `session_length_ks`, `return_gap_ks`, `category_repeat_rate` and `item_kl_to_logs` (in the world).
    """
    from scipy.stats import spearmanr

    episodes = check_integer("episodes", episodes, 1)
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError("policies must be a non-empty mapping of name -> policy")
    for name, policy in policies.items():
        check_policy(policy, f"policies[{name!r}]")
    settings = {"history_len": simulator.history_len, **(env_kwargs or {})}
    common = {"n_episodes": episodes, "seed": seed, "num_envs": num_envs, "item_category": item_category}
    table: dict[str, dict[str, Any]] = {}
    for name, policy in policies.items():
        if on_policy is not None:
            on_policy(name)
        world = rollout_sessions(policy, world_config=world_config, **common, **settings)
        entry: dict[str, Any] = {
            "world": world.summary(),
            "category_repeat_rate": world.category_repeat_rate,
            "item_kl_to_logs": item_kl(world.item_counts, logged_items) if logged_items is not None else None,
        }
        if reads_user_state(policy):
            entry.update(simulator=None, relative_error=None, session_length_ks=None, return_gap_ks=None)
            entry["note"] = NO_SIMULATED_VALUE
        else:
            simulated = rollout_sessions(policy, user_model=simulator, **common, **settings)
            value, truth = simulated.returns.mean(), world.returns.mean()
            entry.update(
                simulator=simulated.summary(),
                relative_error=float((value - truth) / truth) if truth else float("nan"),
                session_length_ks=_ks(simulated.session_lengths, world.session_lengths),
                return_gap_ks=_ks(simulated.return_gaps, world.return_gaps),
            )
        table[name] = entry
    compared = [name for name, entry in table.items() if entry["simulator"] is not None]
    rho = float("nan")
    if len(compared) >= 2:
        rho = float(
            spearmanr(
                [table[n]["world"]["mean_return"] for n in compared],
                [table[n]["simulator"]["mean_return"] for n in compared],
            ).statistic
        )
    errors = [abs(table[n]["relative_error"]) for n in compared]
    return {
        "episodes": episodes,
        "seed": seed,
        "env_kwargs": settings,
        "policies": table,
        "compared": compared,
        "spearman": rho,
        "max_abs_relative_error": max(errors) if errors else float("nan"),
    }


def world_panel(stats, world=None, slate_size: int = 1) -> dict[str, Any]:
    """The world-reference panel: uniform, popularity and greedy (fitted on logs: `stats`, a
    `LoggedItemStats`), filter-myopic and filter-farsighted (the observation and the world's equations),
    and the two oracles (the hidden state), as in `benchmarks/reference_policies.py`."""
    from recsim_env.policies import (
        REFERENCE_POLICIES,
        GreedyPolicy,
        PopularityPolicy,
        UniformPolicy,
        reference_policy,
    )
    from recsim_env.world import UserWorld

    world = world if world is not None else UserWorld()
    panel: dict[str, Any] = {
        "uniform": UniformPolicy(world.n_items, slate_size),
        "popularity": PopularityPolicy(stats, slate_size),
        "greedy": GreedyPolicy(stats, slate_size),
    }
    for name in REFERENCE_POLICIES:
        panel[name] = reference_policy(name, world, slate_size)
    return panel
