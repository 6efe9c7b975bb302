"""Per-user features of LoRec's calibrator (`evaluation.attacks.defence`): sequence statistics and the
coherence of a user's items under item embeddings (the recommender's, or hashed character trigrams of
the item table's text)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd


def text_embeddings(items, n_items: int, dim: int) -> np.ndarray:
    """`[n_items, dim]` L2-normalised signed hashed bags of character trigrams of each item's text (all
    string columns of the item table, joined); zero rows for items without text.

    The hash is CRC-32, so the embeddings are the same in every process (Python's `hash` is salted).
    """
    table = np.zeros((n_items, dim), dtype=np.float32)
    if items is None:
        return table
    text_cols = [
        c for c in items.columns if items[c].dtype == object or pd.api.types.is_string_dtype(items[c])
    ]
    for row, values in enumerate(items[text_cols].itertuples(index=False)):
        if row >= n_items:
            break
        text = " ".join(v for v in values if isinstance(v, str) and v.strip()).lower()
        if not text:
            continue
        padded = f"  {text} "
        for i in range(len(padded) - 2):
            h = zlib.crc32(padded[i : i + 3].encode("utf-8"))
            table[row, h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    return np.divide(table, norms, out=np.zeros_like(table), where=norms > 0)


def coherence(offsets: np.ndarray, items: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`[U, 2]` per user: mean cosine of consecutive items and mean cosine of each item to the user's mean
    item, under the item embeddings `table` `[N, D]`."""
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    vectors = unit[items]  # [S, D]
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    same_user = np.r_[False, users[1:] == users[:-1]]
    consecutive = np.r_[0.0, np.einsum("sd,sd->s", vectors[1:], vectors[:-1])]
    n_pairs = np.maximum(np.bincount(users, weights=same_user, minlength=len(offsets) - 1), 1)
    step = np.bincount(users, weights=consecutive * same_user, minlength=len(offsets) - 1) / n_pairs
    sums = np.add.reduceat(vectors, offsets[:-1], axis=0) if len(vectors) else np.zeros((0, table.shape[1]))
    centre = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    to_centre = np.bincount(
        users, weights=np.einsum("sd,sd->s", vectors, centre[users]), minlength=len(offsets) - 1
    )
    return np.stack([step, to_centre / np.maximum(np.diff(offsets), 1)], axis=1)


def user_features(
    offsets: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    feedback: np.ndarray,
    *,
    popularity: np.ndarray,
    item_tables: tuple[np.ndarray, ...] = (),
) -> np.ndarray:
    """`[U, F]` float64 features of users with events (CSR `offsets` `[U + 1]`, `items`, `timestamps`,
    `feedback` `[S, F']`).

    Columns: log length; mean and std of the log popularity of the user's items (`popularity` `[N]`,
    event counts in the logs); share of events on the 5% most popular items; repetition (1 - distinct /
    length) and the largest share of one item; share of zero time gaps and the log median gap; the mean
    of each feedback column; then the two coherence columns (`coherence`) of each of `item_tables`.
    """
    n_users = len(offsets) - 1
    lengths = np.diff(offsets).astype(np.float64)
    users = np.repeat(np.arange(n_users), np.diff(offsets))
    log_pop = np.log1p(popularity.astype(np.float64))[items]
    mean_pop = np.bincount(users, weights=log_pop, minlength=n_users) / lengths
    var_pop = np.bincount(users, weights=log_pop**2, minlength=n_users) / lengths - mean_pop**2
    head = popularity >= np.quantile(popularity, 0.95)
    head_share = np.bincount(users, weights=head[items].astype(np.float64), minlength=n_users) / lengths
    base = int(items.max()) + 1 if len(items) else 1
    unique_pairs, pair_counts = np.unique(users.astype(np.int64) * base + items, return_counts=True)
    pair_user = unique_pairs // base  # each (user, item) pair once, with its count
    distinct = np.bincount(pair_user, minlength=n_users).astype(np.float64)
    top_share = np.zeros(n_users)
    np.maximum.at(top_share, pair_user, pair_counts.astype(np.float64))
    same_user = np.r_[False, users[1:] == users[:-1]]
    gaps = np.r_[0.0, np.diff(timestamps)]
    n_gaps = np.maximum(np.bincount(users, weights=same_user, minlength=n_users), 1)
    zero_gaps = np.bincount(users, weights=same_user & (gaps <= 0), minlength=n_users) / n_gaps
    median_gap = np.array(
        [
            np.median(gaps[lo + 1 : hi]) if hi - lo > 1 else 0.0
            for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)
        ]
    )
    columns = [
        np.log(lengths),
        mean_pop,
        np.sqrt(np.maximum(var_pop, 0.0)),
        head_share,
        1.0 - distinct / lengths,
        top_share / lengths,
        zero_gaps,
        np.log1p(np.maximum(median_gap, 0.0)),
    ]
    for j in range(feedback.shape[1] if feedback.ndim == 2 else 0):
        columns.append(
            np.bincount(users, weights=feedback[:, j].astype(np.float64), minlength=n_users) / lengths
        )
    features = np.stack(columns, axis=1)
    for table in item_tables:
        features = np.concatenate([features, coherence(offsets, items, table)], axis=1)
    return features
