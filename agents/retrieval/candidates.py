"""Stage one of retrieve-then-rank: from `SeqRec-v0` observations to k candidates and their features.

For a batch of observations (`item_ids` [B, L], `feedback` [B, L, F], `session_step` [B, 1]), with
E the learned item embeddings and w_l = consumed_l * decay^((L - 1 - l) // K) the recency weight of
history position l (K positions per step for slates of K, most recent last; consumed: clicked):

    heuristic  h_b = normalize(sum_l w_l E[item_l])                                          [B, D]
    query      q_b = h_b, or a learned query(u_b) of the user features (which start with h_b)
    candidates the `per_cluster` items of largest <q_b, e_i> in each of the M clusters   [B, k], k = M m
    memory     r_bc = sum_l w_l [cluster(item_l) = c]       (recent consumption per cluster) [B, M]

Per-cluster retrieval keeps every cluster of the catalogue in the candidate set, so the ranker can
move a user away from a taste they have just had their fill of (the world's satiation is per
category, and `r_bc` is its observable proxy with the world's default decay of 0.85 a step).

The ranker's observation is a Dict of two float32 boxes:
- `candidates` [k, D + 6]: each candidate's embedding, then its retrieval score <q, e>, its log
  warm-up count (scaled to [0, 1]), the memory r of its cluster, its inner product with the last
  consumed item, and whether it was shown / consumed in the observed window;
- `user` [D + 4]: the heuristic query h, log1p(session_step), the recency-weighted click rate of
  the window, whether the last position was a click, and the click rate of the last 5 K positions.

`fill_slates` completes slates of K from a first item and the ranker's scores of the candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from gymnasium import spaces

from agents.retrieval.index import ClusteredIndex
from recsim_env.errors import ArgumentError

CANDIDATE_STATS = ("score", "log_count", "cluster_memory", "last_similarity", "shown", "consumed")
"""The per-candidate features after the embedding, in order."""
USER_STATS = ("log_session_step", "click_rate", "last_click", "recent_click_rate")
"""The user features after the query, in order."""
RECENT_STEPS = 5


class CandidateGenerator:
    """Retrieval (the query and k candidates) and the ranker's features, for batched observations.

    Args:
        embeddings: `[n_items, D]` float32 item embeddings (zero rows for items left out of the index).
        counts: `[n_items]` warm-up consumption counts.
        clusters: `[n_items]` cluster of each item, -1 for items left out of the index.
        n_clusters: M.
        per_cluster: m.
        decay: per-step decay of the consumption memory.
        click_index: index of the `click` signal in the observation's feedback.
        backend: the `ClusteredIndex` backend ("torch" or "faiss").
        slate_size: K, the observation's positions per step (for the recency weights).
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        counts: np.ndarray,
        clusters: np.ndarray,
        *,
        n_clusters: int,
        per_cluster: int,
        decay: float,
        click_index: int = 0,
        backend: str = "torch",
        slate_size: int = 1,
    ) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        self.n_items, self.dim = embeddings.shape
        counts = np.asarray(counts, dtype=np.float64)
        clusters = np.asarray(clusters, dtype=np.int64)
        if counts.shape != (self.n_items,) or clusters.shape != (self.n_items,):
            raise ArgumentError(
                f"counts and clusters must be [{self.n_items}], got {counts.shape} and {clusters.shape}"
            )
        self.embeddings = embeddings
        self.counts = counts
        self.clusters = clusters
        self.n_clusters = int(n_clusters)
        self.per_cluster = int(per_cluster)
        self.decay = float(decay)
        self.click_index = int(click_index)
        self.slate_size = int(slate_size)
        self.index = ClusteredIndex(embeddings, clusters, n_clusters, backend)
        # Row n_items is the pad id's: zero embedding, no cluster (column M of the memory is dropped).
        self._padded_embeddings = np.concatenate([embeddings, np.zeros((1, self.dim), np.float32)])
        self._padded_clusters = np.concatenate([np.where(clusters < 0, n_clusters, clusters), [n_clusters]])
        self._log_count = (np.log1p(counts) / max(np.log1p(counts.max()), 1.0)).astype(np.float32)

    @property
    def n_candidates(self) -> int:
        return self.n_clusters * self.per_cluster

    @property
    def observation_space(self) -> spaces.Dict:
        """The ranker's observation space (one observation, no batch axis)."""
        k, width = self.n_candidates, self.dim + len(CANDIDATE_STATS)
        return spaces.Dict(
            {
                "candidates": spaces.Box(-np.inf, np.inf, (k, width), np.float32),
                "user": spaces.Box(-np.inf, np.inf, (self.dim + len(USER_STATS),), np.float32),
            }
        )

    def tensors(self) -> dict[str, np.ndarray]:
        """What a saved policy stores to rebuild the generator."""
        return {"embeddings": self.embeddings, "counts": self.counts, "clusters": self.clusters}

    @property
    def distinct_candidates(self) -> int:
        """Distinct items among each step's k candidates (a cluster smaller than m repeats items)."""
        return int(np.minimum(self.index.cluster_sizes, self.per_cluster).sum())

    def __call__(
        self,
        batch: Mapping[str, np.ndarray],
        query: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`(candidate item ids [B, k], ranker observations {candidates [B, k, D + 6], user [B, D + 4]})`.

        `query` maps the user features `[B, D + 4]` to the retrieval queries `[B, D]` (a learned
        query); None retrieves with the heuristic query h.
        """
        items = np.asarray(batch["item_ids"], dtype=np.int64)
        if items.ndim != 2:
            raise ArgumentError(f"observation 'item_ids' must be [B, L], got shape {items.shape}")
        if "feedback" not in batch:
            raise ArgumentError(
                "observation needs a 'feedback' entry (retrieval reads which items were clicked)"
            )
        feedback = np.asarray(batch["feedback"], dtype=np.float32)
        n, length = items.shape
        real = (items >= 0) & (items < self.n_items)
        items = np.where(real, items, self.n_items)
        clicked = (feedback[..., self.click_index] > 0) & real  # [B, L]
        recency = (self.decay ** (np.arange(length - 1, -1, -1) // self.slate_size)).astype(np.float32)  # [L]
        weights = clicked * recency  # [B, L]

        history = self._padded_embeddings[items]  # [B, L, D]
        heuristic = np.einsum("bl,bld->bd", weights, history)
        norm = np.linalg.norm(heuristic, axis=1, keepdims=True)
        heuristic = np.divide(heuristic, norm, out=np.zeros_like(heuristic), where=norm > 0)
        recent = real[:, -RECENT_STEPS * self.slate_size :]
        user = np.concatenate(
            [
                heuristic,
                np.log1p(np.asarray(batch.get("session_step", np.zeros((n, 1))), np.float32).reshape(n, 1)),
                (weights.sum(axis=1) / np.maximum((real * recency).sum(axis=1), 1e-6))[:, None],
                clicked[:, -1:].astype(np.float32),
                (clicked[:, -recent.shape[1] :].sum(axis=1) / np.maximum(recent.sum(axis=1), 1))[:, None],
            ],
            axis=1,
        ).astype(np.float32)
        queries = heuristic if query is None else np.asarray(query(user), dtype=np.float32)
        if queries.shape != heuristic.shape:
            raise ArgumentError(f"query must map the user features to [B, {self.dim}], got {queries.shape}")
        ids, scores = self.index.search(queries, self.per_cluster)  # [B, k]

        memory = np.zeros((n, self.n_clusters + 1), np.float32)
        np.add.at(memory, (np.arange(n)[:, None], self._padded_clusters[items]), weights)
        last = length - 1 - np.argmax(clicked[:, ::-1], axis=1)
        last_item = np.where(clicked.any(axis=1), items[np.arange(n), last], self.n_items)
        candidate_vectors = self.embeddings[ids]  # [B, k, D]
        shown = (ids[:, :, None] == items[:, None, :]).any(axis=2)
        consumed = (ids[:, :, None] == np.where(clicked, items, -1)[:, None, :]).any(axis=2)
        stats = np.stack(
            [
                scores,
                self._log_count[ids],
                memory[np.arange(n)[:, None], self.clusters[ids]],
                np.einsum("bkd,bd->bk", candidate_vectors, self._padded_embeddings[last_item]),
                shown,
                consumed,
            ],
            axis=2,
        ).astype(np.float32)
        return ids, {"candidates": np.concatenate([candidate_vectors, stats], axis=2), "user": user}


def fill_slates(ids: np.ndarray, first: np.ndarray, scores: np.ndarray, slate_size: int) -> np.ndarray:
    """`[B, K]` slates of distinct items: candidate `first[b]` of row b, then the row's other candidates
    by decreasing `scores` (`[B, k]`, the ranker's), skipping items already in the slate.

    Raises:
        ArgumentError: a row has fewer than K distinct candidates.
    """
    ids = np.asarray(ids, dtype=np.int64)
    first = np.asarray(first, dtype=np.int64).reshape(-1)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    slates = np.empty((len(ids), slate_size), np.int64)
    for b in range(len(ids)):
        row = dict.fromkeys([int(ids[b, first[b]]), *ids[b, order[b]].tolist()])
        if len(row) < slate_size:
            raise ArgumentError(f"slate_size {slate_size}: only {len(row)} distinct candidates")
        slates[b] = list(row)[:slate_size]
    return slates
