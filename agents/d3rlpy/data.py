"""Minari world datasets as d3rlpy `MDPDataset`s, over a fixed vector encoding of the observation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from recsim_env.errors import DataError


def encode_observations(obs: Mapping[str, np.ndarray], n_items: int, click_index: int) -> np.ndarray:
    """`[N, 2 * n_items + 2]` float32 features of batched `SeqRec` observations (d3rlpy's vector input).

    For each user: the share of the last L shown items that are item i (padding left out), the share
    that are item i and were clicked, `log1p(session_step)` and `log1p(gap_days)`.
    """
    items = np.asarray(obs["item_ids"])  # [N, L]
    clicks = np.asarray(obs["feedback"])[:, :, click_index] > 0  # [N, L]
    n, length = items.shape
    rows = np.repeat(np.arange(n), length)
    shown = np.zeros((n, n_items + 1), dtype=np.float32)  # the extra column takes the padding
    np.add.at(shown, (rows, items.ravel()), 1.0)
    clicked = np.zeros((n, n_items + 1), dtype=np.float32)
    np.add.at(clicked, (rows, items.ravel()), clicks.ravel().astype(np.float32))
    steps = np.log1p(np.asarray(obs["session_step"], dtype=np.float32).reshape(n, 1))
    gaps = np.log1p(np.asarray(obs["gap_days"], dtype=np.float32).reshape(n, 1))
    scale = np.float32(1.0 / length)
    return np.concatenate([shown[:, :n_items] * scale, clicked[:, :n_items] * scale, steps, gaps], axis=1)


def dataset_facts(dataset: Any) -> dict[str, Any]:
    """`n_items`, `click_index` and the env arguments of a Minari dataset written by `seqrec world log`."""
    meta = dataset.storage.metadata.get("seqrec")
    dataset_id = dataset.spec.dataset_id
    if not isinstance(meta, dict) or "signals" not in meta:
        raise DataError(f"Minari dataset {dataset_id!r}: not written by `seqrec world log --minari-id`")
    space = dataset.action_space
    if not hasattr(space, "n"):
        raise DataError(
            f"Minari dataset {dataset_id!r}: slates of several items; d3rlpy's discrete algorithms take one item"
        )
    if "click" not in meta["signals"]:
        raise DataError(f"Minari dataset {dataset_id!r}: no 'click' signal among {meta['signals']}")
    return {"n_items": int(space.n), "click_index": meta["signals"].index("click")}


def to_mdp_dataset(dataset: Any):
    """A d3rlpy `MDPDataset` of a Minari world dataset (an id or a `MinariDataset`), and its facts.

    One d3rlpy episode per Minari episode; observations are `encode_observations` of the
    observation before each action; `terminals` and `timeouts` are Minari's terminations and
    truncations.
    """
    import d3rlpy
    import minari

    if isinstance(dataset, str):
        dataset = minari.load_dataset(dataset)
    facts = dataset_facts(dataset)
    parts: dict[str, list[np.ndarray]] = {
        "obs": [],
        "actions": [],
        "rewards": [],
        "terminals": [],
        "timeouts": [],
    }
    for episode in dataset.iterate_episodes():
        before = {key: np.asarray(value)[:-1] for key, value in episode.observations.items()}
        parts["obs"].append(encode_observations(before, facts["n_items"], facts["click_index"]))
        parts["actions"].append(np.asarray(episode.actions, dtype=np.int64).reshape(-1, 1))
        parts["rewards"].append(np.asarray(episode.rewards, dtype=np.float32).reshape(-1, 1))
        parts["terminals"].append(np.asarray(episode.terminations, dtype=np.float32))
        timeouts = np.asarray(episode.truncations, dtype=np.float32)
        timeouts[-1] = max(timeouts[-1], 1.0 - parts["terminals"][-1][-1])  # every episode ends
        parts["timeouts"].append(timeouts)
    joined = {key: np.concatenate(value) for key, value in parts.items()}
    mdp = d3rlpy.dataset.MDPDataset(
        observations=joined["obs"],
        actions=joined["actions"],
        rewards=joined["rewards"],
        terminals=joined["terminals"],
        timeouts=joined["timeouts"],
        action_space=d3rlpy.constants.ActionSpace.DISCRETE,
        action_size=facts["n_items"],
    )
    return mdp, facts
