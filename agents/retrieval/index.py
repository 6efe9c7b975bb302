"""Exact maximum-inner-product search over a clustered item table, batched in torch (or faiss).

Retrieval asks, for each of B queries q_b and each of M clusters c, for the m items of the cluster
with the largest inner product:

    top-m_{i in cluster c} <q_b, e_i>        for b = 1..B, c = 1..M            (k = M m candidates)

The torch backend lays the clusters out as a padded table (S: the largest cluster; padding scores
-inf), stored as `[D, M S]`, and answers a chunk of queries with one matmul and one `torch.topk`
along the last axis. The table is read from memory once per chunk, so a batch of B queries costs
little more than one: retrieve for all users of a vector env together. The faiss backend keeps one exact `IndexFlatIP` per cluster. Both are exact: they return
the same items up to ties.
"""

from __future__ import annotations

import numpy as np
import torch

from recsim_env.errors import ArgumentError

MAX_CHUNK_SCORES = 2**24
"""Scores (`queries x padded items`) one torch search step holds at once (64 MiB of float32)."""


def faiss_available() -> bool:
    """Whether the optional `faiss` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def spherical_kmeans(vectors: np.ndarray, n_clusters: int, *, seed: int, iterations: int = 20) -> np.ndarray:
    """`[N]` cluster of each row of `vectors` `[N, D]` by spherical k-means (cosine similarity).

    Centroids start by k-means++ seeding drawn with `seed`; a cluster that empties is
    restarted at the row farthest from its centroid, so every cluster keeps at least one row.
    """
    n = len(vectors)
    if n < n_clusters:
        raise ArgumentError(f"n_clusters: {n_clusters} clusters for {n} items")
    x = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
    generator = torch.Generator().manual_seed(seed)
    # k-means++ seeding (Arthur & Vassilvitskii 2007) with the cosine distance 1 - <x, c>.
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    distance = (1.0 - x @ x[chosen[0]]).clamp(min=0.0)
    for _ in range(1, n_clusters):
        weights = distance**2
        pick = (
            int(torch.multinomial(weights, 1, generator=generator))
            if weights.sum() > 0
            else int(distance.argmax())
        )
        chosen.append(pick)
        distance = torch.minimum(distance, (1.0 - x @ x[pick]).clamp(min=0.0))
    centroids = x[chosen].clone()
    assignment = torch.zeros(n, dtype=torch.long)
    for _ in range(iterations):
        similarity = x @ centroids.T  # [N, M]
        best, assignment = similarity.max(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        sizes = torch.bincount(assignment, minlength=n_clusters)
        for empty in torch.nonzero(sizes == 0).flatten().tolist():
            far = int(best.argmin())
            sums[empty], best[far] = x[far], 1.0
            assignment[far] = empty
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return assignment.numpy().astype(np.int64)


class ClusteredIndex:
    """The m items of largest inner product with each query, in each cluster (exact search).

    Args:
        embeddings: `[n_items, D]` float32 item vectors.
        clusters: `[n_items]` cluster of each item in `[0, n_clusters)`, or -1 for an item left out of
            the index (never retrieved: items no log has shown).
        n_clusters: M.
        backend: "torch" or "faiss" (exact flat indices; needs the faiss package).
    """

    def __init__(self, embeddings: np.ndarray, clusters: np.ndarray, n_clusters: int, backend: str = "torch"):
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        clusters = np.asarray(clusters, dtype=np.int64)
        if embeddings.ndim != 2 or clusters.shape != (len(embeddings),):
            raise ArgumentError(
                f"embeddings [n_items, D] and clusters [n_items] do not match: {embeddings.shape}, {clusters.shape}"
            )
        if clusters.max(initial=-1) >= n_clusters or clusters.min(initial=0) < -1:
            raise ArgumentError(
                f"clusters must lie in [-1, {n_clusters}), got {clusters.min()}..{clusters.max()}"
            )
        if backend not in ("torch", "faiss"):
            raise ArgumentError(f"backend must be 'torch' or 'faiss', got {backend!r}")
        if backend == "faiss" and not faiss_available():
            raise ArgumentError("backend 'faiss': the faiss package is not installed")
        self.backend = backend
        self.n_clusters = int(n_clusters)
        self.dim = int(embeddings.shape[1])
        self.embeddings = embeddings
        members = [np.flatnonzero(clusters == c) for c in range(self.n_clusters)]
        if any(len(m) == 0 for m in members):
            raise ArgumentError("every cluster needs at least one indexed item")
        self.cluster_sizes = np.array([len(m) for m in members], dtype=np.int64)
        width = int(self.cluster_sizes.max())
        # Padding repeats a cluster's first item with score -inf, so it is returned only when the cluster
        # holds fewer than m items (then the cluster's items come back more than once).
        ids = np.stack([np.concatenate([m, np.full(width - len(m), m[0])]) for m in members])
        self.ids = torch.as_tensor(ids)  # [M, S]
        # [D, M S]: the layout a [B, D] @ [D, M S] matmul streams through once per batch of queries.
        self.table_t = torch.as_tensor(embeddings[ids].reshape(-1, self.dim).T.copy())
        pad = np.arange(width)[None, :] >= self.cluster_sizes[:, None]
        self.pad_bias = torch.where(torch.as_tensor(pad), float("-inf"), 0.0)  # [M, S]
        self._faiss = None
        if backend == "faiss":
            import faiss

            self._faiss = []
            for m in members:
                flat = faiss.IndexFlatIP(self.dim)
                flat.add(embeddings[m])
                self._faiss.append((flat, m))

    def search(self, queries: np.ndarray, per_cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """`(ids [B, M * m], scores [B, M * m])`: cluster c's best m items in columns `c m .. c m + m - 1`,
        best first within a cluster."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ArgumentError(f"queries must be [B, {self.dim}], got shape {queries.shape}")
        if self._faiss is not None:
            return self._search_faiss(queries, per_cluster)
        m, (n_clusters, width) = per_cluster, self.ids.shape
        chunk = max(1, MAX_CHUNK_SCORES // (n_clusters * width))
        out_ids, out_scores = [], []
        with torch.inference_mode():
            for lo in range(0, len(queries), chunk):
                q = torch.from_numpy(queries[lo : lo + chunk])
                scores = (q @ self.table_t).reshape(len(q), n_clusters, width) + self.pad_bias  # [b, M, S]
                top, where = torch.topk(scores, min(m, width), dim=2)  # [b, M, m']
                if m > width:  # clusters smaller than m: repeat the last column
                    top = torch.cat([top, top[..., -1:].expand(-1, -1, m - width)], dim=2)
                    where = torch.cat([where, where[..., -1:].expand(-1, -1, m - width)], dim=2)
                ids = torch.gather(self.ids.expand(len(q), -1, -1), 2, where)
                out_ids.append(ids.reshape(len(q), -1).numpy())
                out_scores.append(top.reshape(len(q), -1).numpy())
        if not out_ids:
            return np.zeros((0, n_clusters * m), np.int64), np.zeros((0, n_clusters * m), np.float32)
        ids, scores = np.concatenate(out_ids), np.concatenate(out_scores)
        # A cluster smaller than m returns padding (score -inf): give its repeated item its true score.
        rows, cols = np.nonzero(~np.isfinite(scores))
        if len(rows):
            scores[rows, cols] = np.einsum("nd,nd->n", queries[rows], self.embeddings[ids[rows, cols]])
        return ids.astype(np.int64), scores.astype(np.float32)

    def _search_faiss(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = [], []
        for flat, members in self._faiss:
            k = min(m, len(members))
            distance, local = flat.search(queries, k)
            if k < m:
                distance = np.concatenate([distance, np.repeat(distance[:, -1:], m - k, axis=1)], axis=1)
                local = np.concatenate([local, np.repeat(local[:, -1:], m - k, axis=1)], axis=1)
            ids.append(members[local])
            scores.append(distance)
        return np.concatenate(ids, axis=1).astype(np.int64), np.concatenate(scores, axis=1).astype(np.float32)
