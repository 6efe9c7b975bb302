"""`RetrievalPolicy`: the retrieve-then-rank agent behind `agents.Policy`, saved as tensors + JSON.

Artifact (kind "retrieval"): `config.json` (the `RetrievalConfig`), `index.safetensors` (item
embeddings, warm-up counts, clusters), `ranker.safetensors` (the SB3 ranker's weights: PPO's
actor-critic or DQN's Q-networks, the learned query's actor inside) and `policy.json` (catalogue
size, k, the click signal's index).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy import DeviceLoadable, as_batch, save_policy, unbatch_action, unbatch_probabilities
from agents.retrieval.candidates import CandidateGenerator, fill_slates
from agents.retrieval.config import KIND, RetrievalConfig
from agents.retrieval.ranker import CandidateRankerPolicy, LiveScorer
from recsim_env.checkpoint import Artifact, check_fields, dataclass_from_json, write_json, write_tensors
from recsim_env.encoders.trainer import resolve_device
from recsim_env.errors import CheckpointError

MAX_ITEMS = 10_000_000
"""Largest catalogue a saved policy may declare."""


def ranker_kwargs(generator: CandidateGenerator, config: RetrievalConfig) -> dict[str, Any]:
    """The SB3 `policy_kwargs` of the run's ranker (`CandidateRankerPolicy` or `CandidateDQNPolicy`)."""
    kwargs = {
        "hidden": config.hidden,
        "score_prior": config.score_prior,
        "learned_query": config.query == "learned",
        "query_radius": config.query_radius,
    }
    if config.algorithm == "dqn":
        kwargs["user_width"] = int(generator.observation_space["user"].shape[0])
    return kwargs


def build_ranker(generator: CandidateGenerator, config: RetrievalConfig, device: str | torch.device = "cpu"):
    """A fresh ranker (`CandidateRankerPolicy`, or `CandidateDQNPolicy` for DQN) for `generator`'s spaces
    (for loading weights into)."""
    from gymnasium import spaces

    actions = spaces.Discrete(generator.n_candidates)
    if config.algorithm == "dqn":
        from agents.retrieval.dqn import CandidateDQNPolicy, flat_space

        learning_rate = config.dqn_kwargs["learning_rate"]
        return CandidateDQNPolicy(
            flat_space(generator.observation_space), actions, lambda _: learning_rate,
            **ranker_kwargs(generator, config),
        ).to(device)  # fmt: skip
    learning_rate = config.ppo_kwargs["learning_rate"]
    return CandidateRankerPolicy(
        generator.observation_space, actions, lambda _: learning_rate, **ranker_kwargs(generator, config)
    ).to(device)


class RetrievalPolicy(DeviceLoadable):
    """Retrieve k candidates by inner product with the user's query (heuristic or learned), then sample
    (or take the best of) the ranker's distribution over them.

    The distribution over the candidates is PPO's `pi(j | s)`, or for DQN the greedy one (all mass on
    the largest Q-value: acting stochastically is acting greedily). `action_distribution` is it
    scattered onto the catalogue: `[n_items]` (or `[N, n_items]`), zero outside the step's candidates
    (a cluster smaller than m may list an item twice; its probabilities add up).

    Slates of K > 1: deterministic, the K distinct candidates of largest score; stochastic, a
    Plackett-Luce draw without replacement from `pi` (Gumbel top-K over the candidates, an item
    listed twice keeping its first, larger key, which is a draw with its summed probability), whose
    first position follows `action_distribution`.

    Args:
        generator: the retrieval stage.
        ranker: a trained `CandidateRankerPolicy` or `CandidateDQNPolicy`.
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
        self.scorer = LiveScorer(ranker.scorer_module)
        self.n_items = generator.n_items
        self.slate_size = config.slate_size
        self.name = f"retrieval {config.algorithm} {config.query} k={generator.n_candidates}"
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def candidate_scores(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`(candidate ids [N, k], the ranker's scores [N, k])` (PPO's logits, DQN's Q-values)."""
        query = self.scorer.query if self.scorer.learned_query else None
        ids, ranker_obs = self.generator(batch, query)
        return ids, self.scorer.scores(ranker_obs)

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        if self.config.algorithm == "dqn":
            probs = np.zeros_like(scores)
            probs[np.arange(len(scores)), scores.argmax(axis=1)] = 1.0
            return probs
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        return probs / probs.sum(axis=1, keepdims=True)

    def candidate_probabilities(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`(candidate ids [N, k], ranker probabilities [N, k])` for a batched observation."""
        ids, scores = self.candidate_scores(batch)
        return ids, self._probabilities(scores)

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = False) -> Any:
        batch, single = as_batch(obs)
        ids, scores = self.candidate_scores(batch)
        greedy = deterministic or self.config.algorithm == "dqn"
        if self.slate_size > 1:
            if not greedy:  # Gumbel top-K of log pi: a Plackett-Luce draw of distinct candidates
                with np.errstate(divide="ignore"):
                    scores = np.log(self._probabilities(scores)) + self.rng.gumbel(size=scores.shape)
            slates = fill_slates(ids, scores.argmax(axis=1), scores, self.slate_size)
            return unbatch_action(slates, single, self.slate_size)
        probs = self._probabilities(scores)
        if greedy:
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
                slate_size=config.slate_size,
            )
        except ValueError as error:
            raise CheckpointError(f"{index_file}: {error}") from None
        if generator.n_candidates != fields["n_candidates"]:
            raise CheckpointError(f"{where}: n_candidates differs from the config's clusters x per_cluster")
        ranker = build_ranker(generator, config, resolve_device(device))
        artifact.load_state_dict(ranker, "ranker.safetensors")
        return cls(generator, ranker, config)
