"""World logs as Minari datasets: the env spec of a logging run, reference scores, the named suite.

`write_world_minari` stores a recorded logging run (`recsim_env.data.minari.EpisodeRecorder`) with
the spec of `SeqRec-v0` it ran in: `slate_size`, `sessions_per_episode` (the logged sessions per
user) and the whole `world_config`, so `recover_environment()` rebuilds the same world.

The named suite, in the D4RL manner (`seqrec world minari-suite`): `seqrec/world-{name}-v0` for
each logging policy of `SUITE`, all in the default world, each with the reference scores of
`reference_scores` for `minari.get_normalized_score`: the minimum is the mean return of uniform
recommendations, the maximum the best mean return among the world's reference policies
(`recsim_env.policies.REFERENCE_POLICIES`), on the same seeds.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from recsim_env.world.config import WorldConfig
from recsim_env.world.world import SIGNALS


def world_env_kwargs(config: WorldConfig | None, slate_size: int, sessions_per_user: int) -> dict[str, Any]:
    """The `SeqRec-v0` arguments of a world logging run, JSON-able."""
    config = config if config is not None else WorldConfig()
    return {
        "slate_size": int(slate_size),
        "sessions_per_episode": int(sessions_per_user),
        "world_config": dataclasses.asdict(config),
    }


def write_world_minari(
    dataset_id: str,
    recorder,
    config: WorldConfig | None,
    slate_size: int,
    sessions_per_user: int,
    *,
    settings: Mapping[str, Any],
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
):
    """Write the episodes `recorder` saw as the Minari dataset `dataset_id`; returns it opened.

    `settings` (the logging policy and its parameters) go into the dataset's description.
    """
    from recsim_env.data.minari import write_minari

    return write_minari(
        dataset_id,
        recorder.episodes(),
        env_id="SeqRec-v0",
        env_kwargs=world_env_kwargs(config, slate_size, sessions_per_user),
        signals=SIGNALS,
        algorithm_name=f"world logging policy {settings['policy']}",
        description="Logged episodes of the recsim-env ground-truth world, with the logging policy's "
        f"exact propensities in the infos. Logging settings: {json.dumps(dict(settings), sort_keys=True)}",
        ref_min_score=ref_min_score,
        ref_max_score=ref_max_score,
    )


SUITE: dict[str, dict[str, Any]] = {
    "random": {"policy": "uniform"},
    "popularity": {"policy": "popularity"},
    "egreedy": {"policy": "epsilon-greedy", "epsilon": 0.1},
}
"""The suite's datasets, `seqrec/world-{name}-v0`, by the `log_world` settings that write them."""


def reference_scores(
    env_kwargs: Mapping[str, Any], *, episodes: int, seed: int
) -> tuple[float, float, dict[str, float]]:
    """`(ref_min_score, ref_max_score, mean return of each policy)` in `SeqRec-v0(**env_kwargs)`.

    Every policy runs `episodes` episodes on the same seeds (`recsim_env.rollout.rollout`).
    """
    from recsim_env.policies import UniformPolicy
    from recsim_env.policies.filter import REFERENCE_POLICIES, reference_policy
    from recsim_env.rollout import rollout
    from recsim_env.world.world import UserWorld

    world = UserWorld(WorldConfig(**env_kwargs["world_config"]))
    slate_size = env_kwargs["slate_size"]
    policies = {"uniform": UniformPolicy(world.n_items, slate_size)}
    policies.update({name: reference_policy(name, world, slate_size) for name in REFERENCE_POLICIES})
    returns = {
        name: float(rollout(policy, n_episodes=episodes, seed=seed, **env_kwargs).mean_return)
        for name, policy in policies.items()
    }
    best = max(value for name, value in returns.items() if name != "uniform")
    return returns["uniform"], best, returns


def build_suite(
    *,
    steps: int,
    seed: int,
    episodes: int,
    sessions_per_user: int = 3,
    world_config: WorldConfig | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write every dataset of `SUITE` (`steps` logged steps each); returns the reference scores.

    The suite's ids name the default world; `world_config` changes it (for tests). Refuses before
    logging anything if one of the ids is taken.
    """
    from recsim_env.data.minari import EpisodeRecorder, check_new_dataset_id
    from recsim_env.world.logging import log_world

    ids = {name: f"seqrec/world-{name}-v0" for name in SUITE}
    for dataset_id in ids.values():
        check_new_dataset_id(dataset_id)
    env_kwargs = world_env_kwargs(world_config, 1, sessions_per_user)
    low, high, returns = reference_scores(env_kwargs, episodes=episodes, seed=seed)
    echo(f"reference scores over {episodes} episodes: min (uniform) {low:.3f}, max {high:.3f}; {returns}")
    for name, settings in SUITE.items():
        recorder = EpisodeRecorder(SIGNALS, 1)
        log_world(
            settings["policy"],
            steps=steps,
            seed=seed,
            epsilon=settings.get("epsilon", 0.1),
            sessions_per_user=sessions_per_user,
            world_config=world_config,
            progress=progress,
            on_step=recorder,
        )
        dataset = write_world_minari(
            ids[name],
            recorder,
            world_config,
            1,
            sessions_per_user,
            settings={**settings, "seed": seed, "steps": steps},
            ref_min_score=low,
            ref_max_score=high,
        )
        echo(f"wrote {ids[name]}: {dataset.total_episodes} episodes, {dataset.total_steps} steps")
    return {"ref_min_score": low, "ref_max_score": high, "returns": returns}
