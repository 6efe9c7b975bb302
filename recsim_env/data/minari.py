"""Minari datasets (Farama's offline-RL format, the successor of D4RL) of logged episodes, and back.

A dataset written here holds one episode per logged user (all its sessions), in Minari's layout:
`observations` in the env's Dict space (T + 1 entries, the first from the reset), `actions` (T items
or [K] slates), `rewards`, `terminations`, `truncations`, and `infos` (T + 1 entries in Gymnasium's
order: entry t + 1 comes back with the step of action t, entry 0 with the reset):

- `propensity` []: the logging policy's probability of the slate; `position_propensity` [K]: of each
  position's item given the items above it (NaN at the reset, where no action was taken);
- `feedback` {signal: [K]}: every signal of each shown item;
- `timestamp` [] (seconds), `session_id` [], `slate_id` []: the Parquet log's columns (NaN / -1 at the
  reset); `user_id` []: the world population id; `chosen_position` []: -1 when nothing was consumed.

The env spec (`SeqRec-v0` with the run's arguments) is stored, so `recover_environment()` builds
the environment the episodes came from. An episode still running when the logging budget ran out
ends with `truncations[-1] = True`. The dataset metadata key `seqrec` holds the signal names and
the logged user id of each episode, from which `LoggedInteractions.from_minari` rebuilds the log.

`minari` is imported inside the functions: `import recsim_env` does not need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from recsim_env.errors import ArgumentError, DataError

FORMAT_VERSION = 1
METADATA_KEY = "seqrec"


class RecordedEpisode(NamedTuple):
    """One episode, arrays over its T steps (observations and infos over T + 1 entries)."""

    logged_user_id: int
    observations: dict[str, np.ndarray]
    actions: np.ndarray  # [T] or [T, K]
    rewards: np.ndarray  # [T]
    terminations: np.ndarray  # [T] bool
    truncations: np.ndarray  # [T] bool
    infos: dict[str, Any]  # each value [T + 1, ...]; `feedback` a dict of them


def _take(tree: Any, index: np.ndarray) -> Any:
    if isinstance(tree, Mapping):
        return {key: _take(value, index) for key, value in tree.items()}
    return np.asarray(tree)[index]


def _concat(trees: Sequence[Any]) -> Any:
    if isinstance(trees[0], Mapping):
        return {key: _concat([tree[key] for tree in trees]) for key in trees[0]}
    return np.concatenate(trees)


class EpisodeRecorder:
    """Collects the episodes of a world logging run, as the `on_step` callback of `log_world`.

    Each call gets a `recsim_env.world.logging.LoggedStep`; `episodes()` groups what was seen into
    `RecordedEpisode`s, ordered by logged user id, leaving out episodes that took no logged step.
    """

    def __init__(self, signals: Sequence[str], slate_size: int) -> None:
        self.signals = tuple(signals)
        self.slate_size = int(slate_size)
        self._starts: list[dict[str, Any]] = []
        self._steps: list[dict[str, Any]] = []

    def __call__(self, step: Any) -> None:
        started = np.flatnonzero(step.started)
        if len(started):
            self._starts.append(
                {
                    "episode": step.episode[started],
                    "observation": _take(step.observation, started),
                    "user_id": np.asarray(step.info["user_id"])[started],
                }
            )
        live = np.asarray(step.live)
        if not len(live):
            return
        k, rows = self.slate_size, step.rows
        self._steps.append(
            {
                "episode": step.episode[live],
                "observation": _take(step.observation, live),
                "action": rows["item_id"].reshape(-1, k),
                "reward": np.asarray(step.rewards, dtype=np.float64)[live],
                "terminated": np.asarray(step.terminated)[live],
                "truncated": np.asarray(step.truncated)[live],
                "info": {
                    "propensity": rows["propensity"][::k],
                    "position_propensity": rows["position_propensity"].reshape(-1, k),
                    "feedback": {name: rows[name].reshape(-1, k) for name in self.signals},
                    "timestamp": rows["timestamp"][::k],
                    "session_id": rows["session_id"][::k],
                    "slate_id": rows["slate_id"][::k],
                    "user_id": np.asarray(step.info["user_id"])[live],
                    "chosen_position": np.asarray(step.info["chosen_position"])[live],
                },
            }
        )

    def _reset_info(self, user_id: int) -> dict[str, Any]:
        k, nan = self.slate_size, np.nan
        return {
            "propensity": np.array([nan]),
            "position_propensity": np.full((1, k), nan),
            "feedback": {name: np.full((1, k), nan) for name in self.signals},
            "timestamp": np.array([nan]),
            "session_id": np.array([-1]),
            "slate_id": np.array([-1]),
            "user_id": np.array([user_id]),
            "chosen_position": np.array([-1]),
        }

    def episodes(self) -> list[RecordedEpisode]:
        """The recorded episodes, by logged user id; the last step of an unfinished one is a truncation."""
        if not self._steps:
            return []
        starts, steps = _concat(self._starts), _concat(self._steps)
        start_of = {int(e): i for i, e in enumerate(starts["episode"])}
        order = np.argsort(steps["episode"], kind="stable")  # each episode's steps stay in time order
        ids, first = np.unique(steps["episode"][order], return_index=True)
        bounds = np.append(first, len(order))
        episodes = []
        for j, episode in enumerate(ids):
            rows = order[bounds[j] : bounds[j + 1]]
            s = start_of[int(episode)]
            first_obs = _take(starts["observation"], np.array([s]))
            observations = _concat([first_obs, _take(steps["observation"], rows)])
            infos = _concat([self._reset_info(int(starts["user_id"][s])), _take(steps["info"], rows)])
            terminations = steps["terminated"][rows].astype(bool)
            truncations = steps["truncated"][rows].astype(bool)
            truncations[-1] |= not terminations[-1]  # cut by the end of the logging budget
            actions = steps["action"][rows]
            episodes.append(
                RecordedEpisode(
                    logged_user_id=int(episode),
                    observations=observations,
                    actions=actions[:, 0] if self.slate_size == 1 else actions,
                    rewards=steps["reward"][rows],
                    terminations=terminations,
                    truncations=truncations,
                    infos=infos,
                )
            )
        return episodes


@contextlib.contextmanager
def _datasets_root(path: Path) -> Iterator[None]:
    """Points Minari's `MINARI_DATASETS_PATH` at `path` for the duration (Minari reads it at each call)."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def env_spec(env_id: str, env_kwargs: Mapping[str, Any]):
    """The registered Gymnasium spec of `env_id` with `env_kwargs` (JSON-able) as its arguments."""
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the environments)

    return dataclasses.replace(gym.spec(env_id), kwargs=dict(env_kwargs))


def check_new_dataset_id(dataset_id: Any) -> str | None:
    """The namespace of `dataset_id` (None without one), after checking that the id is well formed
    (`NAMESPACE/NAME-vN`) and not taken under `MINARI_DATASETS_PATH`.

    Raises:
        ArgumentError: naming `minari_id`.
    """
    from minari.storage import get_dataset_path
    from minari.utils import parse_dataset_id

    if not isinstance(dataset_id, str):
        raise ArgumentError(f"minari_id must be a string NAMESPACE/NAME-vN, got {type(dataset_id).__name__}")
    try:
        namespace, _, _ = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # minari raises TypeError for an id without its version
        raise ArgumentError(f"minari_id: {dataset_id!r} is not of the form NAMESPACE/NAME-vN") from None
    target = get_dataset_path(dataset_id)
    if target.exists():
        raise ArgumentError(f"minari_id: a Minari dataset {dataset_id!r} already exists at {target}")
    return namespace


def write_minari(
    dataset_id: str,
    episodes: Sequence[RecordedEpisode],
    *,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    signals: Sequence[str],
    algorithm_name: str,
    description: str,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
):
    """Write `episodes` as the Minari dataset `dataset_id` under `MINARI_DATASETS_PATH`; returns it opened.

    The dataset is built in a staging directory beside the others and renamed into place, so a
    failure leaves nothing under its id. Reference scores go in together or not at all.

    Raises:
        ArgumentError: the id is malformed or taken, there are no episodes, or only one reference score.
    """
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage import get_dataset_path

    namespace = check_new_dataset_id(dataset_id)
    if (ref_min_score is None) != (ref_max_score is None):
        raise ArgumentError("ref_min_score, ref_max_score: give both reference scores or neither")
    if not episodes:
        raise ArgumentError(f"minari_id {dataset_id!r}: no episode to write")
    target = get_dataset_path(dataset_id)
    root = get_dataset_path()
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=episode.observations,
            actions=episode.actions,
            rewards=episode.rewards,
            terminations=episode.terminations,
            truncations=episode.truncations,
            infos=episode.infos,
        )
        for i, episode in enumerate(episodes)
    ]
    spec = env_spec(env_id, env_kwargs)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        with _datasets_root(staging):
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=spec,
                algorithm_name=algorithm_name,
                author="recsim-env",
                code_permalink="https://github.com/recsim-env/recsim-env",
                ref_min_score=ref_min_score,
                ref_max_score=ref_max_score,
                description=description,
                requirements=["recsim-env"],
            )
            dataset.storage.update_metadata(
                {
                    METADATA_KEY: {
                        "format_version": FORMAT_VERSION,
                        "signals": list(signals),
                        "logged_user_ids": [episode.logged_user_id for episode in episodes],
                    }
                }
            )
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / dataset_id, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return minari.load_dataset(dataset_id)


def _open(dataset: Any):
    import minari

    if isinstance(dataset, minari.MinariDataset):
        return dataset
    if not isinstance(dataset, str):
        raise ArgumentError(
            f"dataset must be a Minari dataset id or a MinariDataset, got {type(dataset).__name__}"
        )
    try:
        return minari.load_dataset(dataset)
    except FileNotFoundError as error:
        raise DataError(f"Minari dataset {dataset!r}: not found ({error})") from None


def minari_frame(dataset: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A dataset written by `write_minari` as interaction rows: `(frame, LoggedInteractions.from_frame kwargs)`.

    One row per shown item: user_id (the logged user id), item_id, timestamp, session_id, position,
    slate_id, propensity, position_propensity and the feedback signals, as in the Parquet log.

    Raises:
        DataError: the dataset is missing or was not written by recsim-env (no `seqrec` metadata).
    """
    dataset = _open(dataset)
    dataset_id = dataset.spec.dataset_id
    meta = dataset.storage.metadata.get(METADATA_KEY)
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"Minari dataset {dataset_id!r}: no '{METADATA_KEY}' metadata of format {FORMAT_VERSION}; "
            "only datasets written by `seqrec world log --minari-id` can be read as logged interactions"
        )
    signals, users = list(meta["signals"]), list(meta["logged_user_ids"])
    space = dataset.action_space
    n_items = int(space.n) if hasattr(space, "n") else int(space.nvec[0])
    columns: dict[str, list[np.ndarray]] = {}
    world_users = []
    for episode in dataset.iterate_episodes():
        infos = episode.infos
        actions = np.asarray(episode.actions).reshape(len(episode.rewards), -1)  # [T, K]
        t, k = actions.shape
        per_step = {
            "user_id": np.full(t, users[episode.id], dtype=np.int64),
            "timestamp": infos["timestamp"][1:],
            "session_id": infos["session_id"][1:],
            "slate_id": infos["slate_id"][1:],
            "propensity": infos["propensity"][1:],
        }
        episode_columns = {key: np.repeat(value, k) for key, value in per_step.items()}
        episode_columns["item_id"] = actions.ravel()
        episode_columns["position"] = np.tile(np.arange(k), t)
        episode_columns["position_propensity"] = infos["position_propensity"][1:].ravel()
        for name in signals:
            episode_columns[name] = infos["feedback"][name][1:].ravel()
        for key, value in episode_columns.items():
            columns.setdefault(key, []).append(value)
        world_users.append(int(infos["user_id"][0]))
    order = ["user_id", "item_id", "timestamp", "session_id", "position", "slate_id", "propensity"]
    order += ["position_propensity", *signals]
    frame = pd.DataFrame({key: np.concatenate(columns[key]) for key in order})
    users_table = pd.DataFrame({"user_id": users, "world_user_id": np.array(world_users, dtype=np.int64)})
    kwargs = {
        "feedback_cols": signals,
        "item_catalogue": np.arange(n_items),
        "users": users_table,
        "name": dataset_id,
        "source": f"Minari dataset {dataset_id}",
    }
    return frame, kwargs
