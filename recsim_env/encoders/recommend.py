"""Top-K next-item recommendations for every user of a data set from a trained encoder checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

from recsim_env.encoders.checkpoint import Checkpoint, load_checkpoint
from recsim_env.encoders.trainer import autocast, left_pad, resolve_device, seen_mask
from recsim_env.errors import DataError


def catalogue_index(checkpoint_tokens: list, data_item_ids, *, where: str) -> np.ndarray:
    """`[n_data_items]` checkpoint index of each data item token; a `DataError` names unknown tokens."""
    position = {token: i for i, token in enumerate(checkpoint_tokens)}
    data_tokens = np.asarray(data_item_ids.tokens).tolist()
    unknown = [t for t in data_tokens if t not in position]
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(
            f"{where}: catalogue mismatch: the data has {len(unknown)} item(s) the checkpoint was not trained on "
            f"({shown}{more})"
        )
    return np.asarray([position[t] for t in data_tokens], dtype=np.int64)


@torch.no_grad()
def recommend(
    checkpoint: str | os.PathLike | Checkpoint,
    logs,
    *,
    k: int = 100,
    holdout_last: int = 1,
    include_seen: bool = False,
    batch_size: int = 1024,
    device: str = "auto",
) -> pd.DataFrame:
    """Top-`k` next items per user of `logs`, from each chronological history minus its last `holdout_last` events.

    Args:
        checkpoint: checkpoint directory (or a loaded `Checkpoint`).
        logs: `recsim_env.data.LoggedInteractions`; its items must all be in the checkpoint's catalogue.
        k: recommendations per user (fewer when fewer unseen items remain).
        holdout_last: events dropped from the end of each history (0 uses the full history).
        include_seen: when False, items already in the (held-in) history are never recommended.
        batch_size: users per forward pass.
        device: "auto", "cpu" or "cuda".

    Returns:
        DataFrame with columns `user_id`, `rank` (1-based), `item_id` (raw tokens as in the data), `score`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if holdout_last < 0:
        raise ValueError(f"holdout_last must be >= 0, got {holdout_last}")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    where = str(checkpoint) if not isinstance(checkpoint, Checkpoint) else "checkpoint"
    encoder = ckpt.encoder
    cfg = encoder.config
    torch_device = resolve_device(device)
    encoder.to(torch_device).eval()

    to_checkpoint = catalogue_index(ckpt.item_tokens, logs.item_ids, where=where)
    sequences = logs.sequences()
    sequences = sequences._replace(item_ids=to_checkpoint[sequences.item_ids])
    if cfg.feedback_dim and sequences.feedback.shape[1] != cfg.feedback_dim:
        raise DataError(
            f"{where}: the encoder reads {cfg.feedback_dim} feedback column(s), the data has {sequences.feedback.shape[1]}"
        )
    lengths = np.diff(sequences.offsets)
    history = np.maximum(lengths - holdout_last, 0)
    users = np.arange(len(lengths))
    history_offsets = np.concatenate([[0], np.cumsum(history)]).astype(np.int64)
    history_items = np.concatenate(
        [sequences.item_ids[s : s + n] for s, n in zip(sequences.offsets[:-1], history, strict=True)]
        or [np.zeros(0, dtype=np.int64)]
    )
    n_out = min(k, encoder.n_items)
    user_tokens = np.asarray(logs.user_ids.tokens)
    item_tokens = np.asarray(ckpt.item_tokens, dtype=object)
    frames = []
    for lo in range(0, len(users), batch_size):
        hi = min(lo + batch_size, len(users))
        items, times, feedback = left_pad(
            sequences, users[lo:hi], history[lo:hi], max_len=cfg.max_len, pad_id=cfg.pad_id
        )
        with autocast(torch_device):
            state = encoder.user_state(
                torch.from_numpy(items).to(torch_device),
                timestamps=torch.from_numpy(times).to(torch_device),
                feedback=torch.from_numpy(feedback).to(torch_device) if cfg.feedback_dim else None,
            )
            scores = encoder.score(state).float()  # [b, N]
        if not include_seen:
            seen = seen_mask(history_offsets[lo : hi + 1], history_items, encoder.n_items, torch_device)
            scores = scores.masked_fill(seen, float("-inf"))
        top_scores, top_items = scores.topk(n_out, dim=1)
        top_scores, top_items = top_scores.cpu().numpy(), top_items.cpu().numpy()
        keep = np.isfinite(top_scores)  # fewer than k unseen items left
        rows = np.nonzero(keep)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": user_tokens[lo:hi][rows[0]],
                    "rank": (rows[1] + 1).astype(np.int32),
                    "item_id": item_tokens[top_items[keep]],
                    "score": top_scores[keep].astype(np.float32),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    if frame["item_id"].map(type).eq(int).all():
        frame["item_id"] = frame["item_id"].astype(np.int64)
    return frame
