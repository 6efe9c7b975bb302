"""`RetrievalPolicy`: the retrieve-then-rank agent behind `agents.Policy`, saved as tensors + JSON.

Artifact (kind "retrieval"): `config.json` (the `RetrievalConfig`), `index.safetensors` (item
embeddings, warm-up counts, clusters), `ranker.safetensors` (the SB3 ranker's weights) and
`policy.json` (catalogue size, k, the click signal's index).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy import DeviceLoadable, as_batch, save_policy, unbatch_action, unbatch_probabilities
from agents.retrieval.candidates import CandidateGenerator
from agents.retrieval.config import KIND, RetrievalConfig
from agents.retrieval.ranker import CandidateRankerPolicy
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import resolve_device
from recsim_env.errors import CheckpointError

MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare."""


def build_ranker(generator: CandidateGenerator, config: RetrievalConfig, device: str | torch.device = "cpu"):
    """A fresh `CandidateRankerPolicy` for `generator`'s spaces (for loading weights into)."""
    from gymnasium import spaces

    return CandidateRankerPolicy(
        generator.observation_space,
        spaces.Discrete(generator.n_candidates),
        lambda _: config.ppo_kwargs["learning_rate"],
        hidden=config.hidden,
        score_prior=config.score_prior,
    ).to(device)


class RetrievalPolicy(DeviceLoadable):
    """Retrieve k candidates by inner product with the user's query, then sample (or take the best of)
    the ranker's distribution over them.

    `action_distribution` is `pi(j | s)` scattered onto the catalogue: `[n_items]` (or `[N, n_items]`),
    zero outside the step's candidates (a cluster smaller than m may list an item twice; its
    probabilities add up).

    Args:
        generator: the retrieval stage.
        ranker: a trained `CandidateRankerPolicy`.
        config: the run's config.
        seed: seed of the sampling generator.
    """

    kind = KIND

    def __init__(
        self,
        generator: CandidateGenerator,
        ranker: CandidateRankerPolicy,
        config: RetrievalConfig,
        *,
        seed: int | None = 0,
    ) -> None:
        self.generator = generator
        self.ranker = ranker
        self.ranker.set_training_mode(False)
        self.config = config
        self.n_items = generator.n_items
        self.slate_size = 1
        self.name = f"retrieval k={generator.n_candidates}"
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def candidate_probabilities(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`(candidate ids [N, k], ranker probabilities [N, k])` for a batched observation."""
        ids, ranker_obs = self.generator(batch)
        device = self.ranker.device
        with torch.no_grad():
            tensors = {key: torch.as_tensor(value, device=device) for key, value in ranker_obs.items()}
            probs = self.ranker.get_distribution(tensors).distribution.probs.double().cpu().numpy()
        return ids, probs / probs.sum(axis=1, keepdims=True)

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        batch, single = as_batch(obs)
        ids, probs = self.candidate_probabilities(batch)
        if deterministic:
            choice = probs.argmax(axis=1)
        else:
            choice = (probs.cumsum(axis=1) < self.rng.random((len(probs), 1))).sum(axis=1)
            choice = np.minimum(choice, probs.shape[1] - 1)
        return unbatch_action(ids[np.arange(len(ids)), choice][:, None], single, 1)

    def action_distribution(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        batch, single = as_batch(obs)
        ids, probs = self.candidate_probabilities(batch)
        out = np.zeros((len(ids), self.n_items))
        np.add.at(out, (np.arange(len(ids))[:, None], ids), probs)
        return unbatch_probabilities(out, single)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        def write(tmp: Path) -> None:
            write_json(tmp / "config.json", self.config.to_dict())
            write_tensors(tmp / "index.safetensors", self.generator.tensors())
            write_tensors(tmp / "ranker.safetensors", self.ranker.state_dict())

        manifest = {
            "n_items": self.n_items,
            "n_candidates": self.generator.n_candidates,
            "click_index": self.generator.click_index,
            "index_backend": self.generator.index.backend,
        }
        save_policy(path, self.kind, manifest, write)

    @classmethod
    def from_artifact(
        cls, artifact: Artifact, manifest: Mapping[str, Any], device: str = "cpu"
    ) -> RetrievalPolicy:
        where = str(artifact.root / "policy.json")
        fields = check_fields(
            manifest["config"],
            {"n_items": int, "n_candidates": int, "click_index": int, "index_backend": str},
            where=where,
        )
        missing = sorted({"n_items", "n_candidates", "click_index", "index_backend"} - set(fields))
        if missing:
            raise CheckpointError(f"{where}: missing setting(s) {missing}")
        if not 0 < fields["n_items"] <= MAX_ITEMS:
            raise CheckpointError(f"{where}: 'n_items' must be an integer in [1, {MAX_ITEMS}]")
        config = dataclass_from_json(
            RetrievalConfig, artifact.read_json("config.json"), where=str(artifact.root / "config.json")
        )
        index_file = artifact.root / "index.safetensors"
        arrays = artifact.read_tensors("index.safetensors")
        shapes = {"embeddings": 2, "counts": 1, "clusters": 1}
        if set(arrays) != set(shapes) or any(arrays[key].ndim != nd for key, nd in shapes.items()):
            raise CheckpointError(
                f"{index_file}: needs embeddings [n_items, D], counts and clusters [n_items]"
            )
        if len(arrays["embeddings"]) != fields["n_items"] or not np.isfinite(arrays["embeddings"]).all():
            raise CheckpointError(f"{index_file}: embeddings must be finite, {fields['n_items']} rows")
        backend = fields["index_backend"] if fields["index_backend"] in ("torch", "faiss") else "torch"
        try:
            generator = CandidateGenerator(
                arrays["embeddings"],
                arrays["counts"],
                arrays["clusters"],
                n_clusters=config.n_clusters,
                per_cluster=config.per_cluster,
                decay=config.consumption_decay,
                click_index=fields["click_index"],
                backend=backend,
            )
        except ValueError as error:
            raise CheckpointError(f"{index_file}: {error}") from None
        if generator.n_candidates != fields["n_candidates"]:
            raise CheckpointError(f"{where}: n_candidates differs from the config's clusters x per_cluster")
        ranker = build_ranker(generator, config, resolve_device(device))
        artifact.load_state_dict(ranker, "ranker.safetensors")
        return cls(generator, ranker, config)
