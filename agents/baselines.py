"""Persistence of the log-based baselines of `recsim_env.policies` (uniform, popularity, greedy).

    logs = log_world("uniform", steps=50_000, seed=0)        # or any LoggedInteractions with a click column
    policy = fit_baseline("greedy", logs)                    # a GreedyBaseline: a GreedyPolicy you can save
    policy.save("runs/greedy"); load_policy("runs/greedy")

The policies themselves, and the whole `Policy` contract, are `recsim_env.policies`' (`UniformPolicy`,
`PopularityPolicy`, `GreedyPolicy`); `BaselinePolicy` adds `save` and `load` to them
(`agents.policy.SavablePolicy`), and `UniformBaseline`, `PopularityBaseline` and `GreedyBaseline`
are the savable forms. A saved baseline is its `policy.json` (kind, catalogue size, slate size,
greedy's prior strength) and, for popularity and greedy, the click statistics they were fitted on
(`item_stats.safetensors`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

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
from recsim_env.policies import GreedyPolicy, LoggedItemStats, PopularityPolicy, UniformPolicy

BASELINES = ("uniform", "popularity", "greedy")
STATS_FILE = "item_stats.safetensors"
STATS_FIELDS = ("clicks", "impressions", "category", "context_clicks", "context_impressions")


class BaselinePolicy:
    """`save` and `load` of a log-based baseline: the base of `UniformBaseline`, `PopularityBaseline`
    and `GreedyBaseline`, each a `recsim_env.policies` class with this added.

    Build one with `baseline_policy(name, ...)` or `fit_baseline(name, logs)`; `load` restores any of
    the three from its saved kind.
    """

    name: str
    n_items: int
    slate_size: int
    kind: ClassVar[str]
    stats: LoggedItemStats | None = None
    prior_strength: float = 20.0
    """Greedy's smoothing; saved with every kind, so a file reads the same for all three."""

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
            "name": self.kind,
            "n_items": self.n_items,
            "slate_size": self.slate_size,
            "prior_strength": self.prior_strength,
        }
        save_policy(
            path, self.kind, config, (lambda tmp: write_tensors(tmp / STATS_FILE, arrays)) if arrays else None
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
            unknown = sorted(set(arrays) - set(STATS_FIELDS))
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
            stats = LoggedItemStats(**{key: arrays.get(key) for key in STATS_FIELDS})
        try:
            return baseline_policy(config.pop("name"), stats=stats, **config)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{artifact.root / 'policy.json'}: {error}") from None


class UniformBaseline(BaselinePolicy, UniformPolicy):
    """`recsim_env.policies.UniformPolicy` that can be saved."""

    kind = "uniform"


class PopularityBaseline(BaselinePolicy, PopularityPolicy):
    """`recsim_env.policies.PopularityPolicy` that can be saved (with its click statistics)."""

    kind = "popularity"


class GreedyBaseline(BaselinePolicy, GreedyPolicy):
    """`recsim_env.policies.GreedyPolicy` that can be saved (with its click statistics)."""

    kind = "greedy"


def baseline_policy(
    name: str,
    *,
    n_items: int,
    slate_size: int = 1,
    stats: LoggedItemStats | None = None,
    prior_strength: float = 20.0,
    seed: int | None = 0,
) -> BaselinePolicy:
    """The savable baseline `name` ("uniform", "popularity" or "greedy").

    Args:
        name: the baseline.
        n_items: catalogue size N.
        slate_size: K.
        stats: click statistics from logs (popularity and greedy; uniform ignores them).
        prior_strength: greedy's smoothing (pseudo-impressions toward the item's overall rate).
        seed: seed of the sampling generator.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if name != "uniform" and stats is None:
        raise ValueError(f"baseline {name!r} needs click statistics from logs (argument 'stats')")
    if stats is not None and len(stats.clicks) != n_items:
        raise ValueError(f"argument 'stats' covers {len(stats.clicks)} items but n_items={n_items}")
    if name == "greedy":
        return GreedyBaseline(stats, slate_size, prior_strength, seed=seed)
    policy = (
        UniformBaseline(n_items, slate_size, seed=seed)
        if name == "uniform"
        else PopularityBaseline(stats, slate_size, seed=seed)
    )
    policy.prior_strength = float(prior_strength)  # unused, but saved as given
    return policy


def fit_baseline(
    name: str, logs, *, slate_size: int = 1, click_column: str = "click", seed: int = 0
) -> BaselinePolicy:
    """A baseline fitted on `logs` (`LoggedInteractions` with a click column; uniform ignores them)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    stats = None if name == "uniform" else LoggedItemStats.from_logs(logs, click_column=click_column)
    return baseline_policy(name, n_items=logs.n_items, slate_size=slate_size, stats=stats, seed=seed)


class WorldLoggerPolicy:
    """The world's logging policy (`recsim_env.world.logging.LoggingPolicy`) as a `recsim_env.policies.Policy`.

    The reference row of offline-agent benchmarks: the policy that wrote the logs, rolled out in the
    world. Context-free, so every observation gets the same distribution. Not savable (it is rebuilt
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
