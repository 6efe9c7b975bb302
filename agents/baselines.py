"""The log-based baselines of `recsim_env.policies` (uniform, popularity, greedy) as `agents.Policy`.

    logs = log_world("uniform", steps=50_000, seed=0)        # or any LoggedInteractions with a click column
    policy = fit_baseline("greedy", logs)                    # agents.Policy
    policy.save("runs/greedy"); load_policy("runs/greedy")

The decision logic stays in `recsim_env.policies`; this module adds the contract (single or batched
observations, `deterministic`, probabilities, save/load). A saved baseline is its `policy.json`
(kind, catalogue size, slate size, greedy's prior strength) and, for popularity and greedy, the
click statistics they were fitted on (`item_stats.safetensors`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.policy import (
    as_batch,
    open_policy,
    sample_slates,
    save_policy,
    unbatch_action,
    unbatch_probabilities,
)
from recsim_env.checkpoint import Artifact, check_fields, write_tensors
from recsim_env.errors import CheckpointError
from recsim_env.policies import GreedyPolicy, LoggedItemStats, PopularityPolicy, UniformPolicy, one_hot, top_k

BASELINES = ("uniform", "popularity", "greedy")
STATS_FILE = "item_stats.safetensors"


class BaselinePolicy:
    """A `recsim_env.policies` baseline behind the `agents.Policy` contract.

    Stochastic baselines (uniform, popularity) sample K distinct items by the Gumbel-top-k trick
    with their own generator (`seed`); with `deterministic=True` they return their K most probable
    items (ties to the lowest index). Greedy is deterministic either way, and its distribution is
    one-hot on its first item.

    Args:
        name: "uniform", "popularity" or "greedy".
        n_items: catalogue size N.
        slate_size: K.
        stats: click statistics from logs (popularity and greedy).
        prior_strength: greedy's smoothing (pseudo-impressions toward the item's overall rate).
        seed: seed of the sampling generator.
    """

    def __init__(
        self,
        name: str,
        *,
        n_items: int,
        slate_size: int = 1,
        stats: LoggedItemStats | None = None,
        prior_strength: float = 20.0,
        seed: int | None = 0,
    ) -> None:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
        if name != "uniform" and stats is None:
            raise ValueError(f"baseline {name!r} needs click statistics from logs (argument 'stats')")
        if stats is not None and len(stats.clicks) != n_items:
            raise ValueError(f"argument 'stats' covers {len(stats.clicks)} items but n_items={n_items}")
        self.name = name
        self.n_items = int(n_items)
        self.slate_size = int(slate_size)
        self.stats = stats
        self.prior_strength = float(prior_strength)
        if name == "uniform":
            self.inner = UniformPolicy(self.n_items, self.slate_size)
        elif name == "popularity":
            self.inner = PopularityPolicy(stats, self.slate_size)
        else:
            self.inner = GreedyPolicy(stats, self.slate_size, prior_strength=self.prior_strength)
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def _greedy_slates(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.inner.act(obs, self.rng)  # [N, K], deterministic

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        batch, single = as_batch(obs)
        if self.name == "greedy":
            slates = self._greedy_slates(batch)
        elif deterministic:
            slates = sample_slates(self._probabilities(batch), self.slate_size, self.rng, deterministic=True)
        else:
            slates = self.inner.act(batch, self.rng)
        return unbatch_action(slates, single, self.slate_size)

    def _probabilities(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self.name == "greedy":
            return one_hot(top_k(self.inner.scores(batch), 1)[:, 0], self.n_items)
        return self.inner.action_distribution(batch)

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        batch, single = as_batch(obs)
        return unbatch_probabilities(self._probabilities(batch), single)

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> None:
        arrays = (
            {}
            if self.stats is None
            else {
                key: value
                for key, value in vars(self.stats).items()
                if value is not None  # category and context counts exist only for items with categories
            }
        )
        config = {
            "name": self.name,
            "n_items": self.n_items,
            "slate_size": self.slate_size,
            "prior_strength": self.prior_strength,
        }
        save_policy(
            path, self.name, config, (lambda tmp: write_tensors(tmp / STATS_FILE, arrays)) if arrays else None
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> BaselinePolicy:
        return cls.from_artifact(*open_policy(path, BASELINES))

    @classmethod
    def from_artifact(cls, artifact: Artifact, manifest: Mapping[str, Any]) -> BaselinePolicy:
        config = check_fields(
            manifest["config"],
            {"name": str, "n_items": int, "slate_size": int, "prior_strength": float},
            where=str(artifact.root / "policy.json"),
        )
        if config.get("name") != manifest["kind"]:
            raise CheckpointError(
                f"{artifact.root / 'policy.json'}: name {config.get('name')!r} is not its kind"
            )
        stats = None
        if manifest["kind"] != "uniform":
            if not artifact.has(STATS_FILE):
                raise CheckpointError(
                    f"{artifact.root / STATS_FILE}: missing (a saved {manifest['kind']} baseline needs its click statistics)"
                )
            arrays = artifact.read_tensors(STATS_FILE)
            fields = ("clicks", "impressions", "category", "context_clicks", "context_impressions")
            unknown = sorted(set(arrays) - set(fields))
            if unknown or "clicks" not in arrays or "impressions" not in arrays:
                raise CheckpointError(
                    f"{artifact.root / STATS_FILE}: needs clicks and impressions, not {unknown}"
                )
            n_items = config.get("n_items")
            for key, array in arrays.items():
                bad = array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)) or np.any(array < 0)
                if key == "category":
                    bad = bad or array.shape != (n_items,)
                elif key.startswith("context"):
                    bad = bad or array.ndim != 2 or array.shape[1] != n_items
                else:
                    bad = bad or array.shape != (n_items,)
                if bad:
                    raise CheckpointError(
                        f"{artifact.root / STATS_FILE}: {key!r} must hold finite non-negative counts for the "
                        f"{n_items} items, got shape {array.shape}"
                    )
            stats = LoggedItemStats(**{key: arrays.get(key) for key in fields})
        try:
            return cls(config.pop("name"), stats=stats, **config)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{artifact.root / 'policy.json'}: {error}") from None


def fit_baseline(
    name: str, logs, *, slate_size: int = 1, click_column: str = "click", seed: int = 0
) -> BaselinePolicy:
    """A baseline fitted on `logs` (`LoggedInteractions` with a click column; uniform ignores them)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    stats = None if name == "uniform" else LoggedItemStats.from_logs(logs, click_column=click_column)
    return BaselinePolicy(name, n_items=logs.n_items, slate_size=slate_size, stats=stats, seed=seed)


class WorldLoggerPolicy:
    """The world's logging policy (`recsim_env.world.logging.LoggingPolicy`) as an `agents.Policy`.

    The reference row of offline-agent benchmarks: the policy that wrote the logs, rolled out in the
    world. Context-free, so every observation gets the same distribution. Not saveable (it is rebuilt
    from its arguments).

    Args:
        kind: a `LoggingPolicy` kind ("uniform", "popularity", "softmax", "epsilon-greedy").
        epsilon: exploration rate of "epsilon-greedy".
        seed: seed of the sampling generator.
        world_config: the world whose scorer the logger uses (default world when None).
    """

    def __init__(
        self, kind: str = "epsilon-greedy", *, epsilon: float = 0.1, seed: int = 0, world_config=None
    ):
        from recsim_env.world import UserWorld
        from recsim_env.world.logging import LoggingPolicy

        self.logger = LoggingPolicy.for_world(kind, UserWorld(world_config), epsilon=epsilon)
        self.n_items = len(self.logger.scores)
        self.slate_size = 1
        self.name = "logger"
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        batch, single = as_batch(obs)
        n = len(batch["item_ids"])
        return unbatch_probabilities(
            self.logger.probabilities(np.zeros((n, self.n_items), dtype=bool)), single
        )

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        batch, single = as_batch(obs)
        if deterministic:
            slates = sample_slates(self.action_distribution(batch), 1, self.rng, deterministic=True)
        else:
            slates, _ = self.logger.sample(len(batch["item_ids"]), self.n_items, 1, self.rng)
        return unbatch_action(slates, single, 1)

    def save(self, path: str | os.PathLike) -> None:
        raise NotImplementedError("WorldLoggerPolicy is rebuilt from its arguments, not saved")

    @classmethod
    def load(cls, path: str | os.PathLike) -> WorldLoggerPolicy:
        raise NotImplementedError("WorldLoggerPolicy is rebuilt from its arguments, not loaded")
