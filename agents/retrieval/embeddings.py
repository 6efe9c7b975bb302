"""Item embeddings from a logged warm-up: the items users consumed before their episodes.

No hidden state is read: the warm-up observes `warmup_users` episode starts of `SeqRec-v0` (their
observation's `item_ids`, the users' warm-start histories of consumed items, as a production log of
past consumption) and learns one vector per item from which items the same users consumed
(`cooccurrence_svd`: a spectral embedding of the co-consumption graph). Items consumed by the same
users end up close, so the space keeps the catalogue's taste structure (categories, and the
directions within them that users differ on): a query retrieves items that no training step showed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from recsim_env.errors import DataError

WARMUP_BATCH = 1024
"""Episode starts per vector-env reset in the warm-up."""


class WarmupLogs(NamedTuple):
    """The consumed items of the warm-up's episode starts."""

    histories: np.ndarray  # [H, L] int64 item ids, left-padded with n_items
    n_items: int


def warmup_histories(
    env_config: Mapping[str, Any], n_users: int, *, seed: int, progress: bool = False
) -> WarmupLogs:
    """The consumed items in the first observation of `n_users` episodes of `SeqRec-v0(**env_config)`.

    Episode j is the env seeded `seed + j`'s first episode. Items whose feedback shows no click are
    dropped (the warm-start history is all clicks; other user models may differ).
    """
    from tqdm.auto import tqdm

    from recsim_env.envs.seqrec import SeqRecVectorEnv

    batch = min(WARMUP_BATCH, n_users)
    env = SeqRecVectorEnv(num_envs=batch, **dict(env_config))
    n_items = int(env.user_model.n_items)
    click = env.signals.index("click") if "click" in env.signals else None
    rows = []
    with tqdm(total=n_users, desc="warm-up", unit="user", disable=not progress) as bar:
        for start in range(0, n_users, batch):
            obs, _ = env.reset(seed=[seed + start + i for i in range(batch)])
            items = np.asarray(obs["item_ids"], dtype=np.int64)
            if click is not None:
                items = np.where(obs["feedback"][..., click] > 0, items, n_items)
            rows.append(items[: n_users - start])
            bar.update(len(rows[-1]))
    env.close()
    return WarmupLogs(np.concatenate(rows), n_items)


def item_counts(logs: WarmupLogs) -> np.ndarray:
    """`[n_items]` how often each item was consumed in the warm-up."""
    items = logs.histories[logs.histories < logs.n_items]
    return np.bincount(items, minlength=logs.n_items).astype(np.float64)


def cooccurrence_svd(
    logs: WarmupLogs, *, dim: int, seed: int, power_iterations: int = 4, oversample: int = 8
) -> tuple[np.ndarray, dict[str, Any]]:
    """`([n_items, D] float32 unit embeddings, summary)` by truncated SVD of the normalised
    history-item matrix; items never consumed get a zero row.

    With X[h, i] = 1 / sqrt(|h| count(i)) for each item i of history h, the item factors V of
    X = U S V^T are the spectral embedding of the normalised co-consumption graph (`X^T X`, the
    items' co-occurrence counts over sqrt(count_i count_j)): skip-gram with negative sampling is an
    implicit factorisation of a shifted PMI matrix of the same counts (Levy & Goldberg 2014), and the
    direct factorisation needs a few sparse matrix products instead of thousands of gradient steps.
    Randomised range finder with power iterations (Halko, Martinsson & Tropp 2011, Alg. 4.4); the
    first component (every item's sqrt(count) direction: popularity, not taste) is dropped, and the
    embedding of item i is row i of V S, normalised.
    """
    counts = item_counts(logs)
    if not (counts > 0).any():
        raise DataError("the warm-up logged no consumed item: nothing to learn item embeddings from")
    real = logs.histories < logs.n_items
    rows, cols = np.nonzero(real)
    items = logs.histories[rows, cols]
    lengths = real.sum(axis=1)
    values = 1.0 / np.sqrt(lengths[rows] * counts[items])
    x = torch.sparse_coo_tensor(
        torch.as_tensor(np.stack([rows, items])), torch.as_tensor(values, dtype=torch.float64),
        (len(logs.histories), logs.n_items), check_invariants=True,
    ).coalesce()  # fmt: skip
    xt = x.t().coalesce()
    width = dim + 1 + oversample
    generator = torch.Generator().manual_seed(seed)
    y = torch.sparse.mm(x, torch.randn(logs.n_items, width, generator=generator, dtype=torch.float64))
    q, _ = torch.linalg.qr(y)
    for _ in range(power_iterations):
        q, _ = torch.linalg.qr(torch.sparse.mm(xt, q))
        q, _ = torch.linalg.qr(torch.sparse.mm(x, q))
    b_t = torch.sparse.mm(xt, q)  # [N, width] = (Q^T X)^T
    v, s, _ = torch.linalg.svd(b_t, full_matrices=False)  # B^T = V S W^T
    factors = (v[:, 1 : dim + 1] * s[1 : dim + 1]).numpy()
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    vectors = np.divide(factors, norms, out=np.zeros_like(factors), where=norms > 0)
    vectors[counts == 0] = 0.0
    return vectors.astype(np.float32), {
        "histories": int(len(logs.histories)),
        "consumed_items": int((counts > 0).sum()),
        "singular_values": [float(value) for value in s[: dim + 1]],
    }
