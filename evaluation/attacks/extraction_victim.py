"""The black-box victim of model extraction: a served recommender answering top-k lists under a query
budget, and the queries an adversary records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsim_env.checks import check_integer
from recsim_env.encoders.base import SequenceEncoder
from recsim_env.encoders.trainer import (
    autocast,
    resolve_device,
)
from recsim_env.errors import ArgumentError, RecsimError


class QueryBudgetError(RecsimError, RuntimeError):
    """A query past the victim's budget: the oracle answers none of the batch."""


# ------------------------------------------------------------------------------------------ histories
def pad_histories(histories: Sequence[np.ndarray], max_len: int, pad_id: int) -> np.ndarray:
    """`[B, max_len]` left-padded last `max_len` items of each history."""
    items = np.full((len(histories), max_len), pad_id, dtype=np.int64)
    for row, history in enumerate(histories):
        tail = history[-max_len:]
        if tail.size:
            items[row, max_len - tail.size :] = tail
    return items


def seen_items(histories: Sequence[np.ndarray], n_items: int, device: torch.device) -> torch.Tensor:
    """`[B, N]` bool, True at every item of each full history."""
    rows = np.repeat(np.arange(len(histories)), [h.size for h in histories])
    items = np.concatenate([*histories, np.zeros(0, dtype=np.int64)]).astype(np.int64)
    mask = torch.zeros(len(histories), n_items, dtype=torch.bool, device=device)
    mask[torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device)] = True
    return mask


def history_scores(
    encoder: SequenceEncoder, histories: Sequence[np.ndarray], device: torch.device
) -> torch.Tensor:
    """`[B, N]` fp32 next-item scores of `histories` (the encoder's mode is the caller's)."""
    items = torch.from_numpy(pad_histories(histories, encoder.config.max_len, encoder.pad_id)).to(device)
    with autocast(device):
        state = encoder.user_state(items)
    return encoder.score(state.float()).float()


@torch.no_grad()
def top_k_lists(
    encoder: SequenceEncoder,
    histories: Sequence[np.ndarray],
    *,
    k: int,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> np.ndarray:
    """`[B, k]` int64 top-k next items of each history, best first, items of the history excluded
    (how `seqrec recommend` serves them).

    Raises:
        ArgumentError: when a history leaves fewer than `k` unseen items in the catalogue.
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    out = np.zeros((len(histories), k), dtype=np.int64)
    for lo in range(0, len(histories), batch_size):
        chunk = histories[lo : lo + batch_size]
        seen = seen_items(chunk, encoder.n_items, device)
        short = (encoder.n_items - seen.sum(1)) < k
        if bool(short.any()):
            row = lo + int(short.nonzero()[0, 0])
            raise ArgumentError(
                f"history {row} leaves {encoder.n_items - int(seen[row - lo].sum())} unseen items, fewer "
                f"than a list of {k}"
            )
        scores = history_scores(encoder, chunk, device).masked_fill(seen, float("-inf"))
        out[lo : lo + len(chunk)] = scores.topk(k, dim=1).indices.cpu().numpy()
    encoder.train(was_training)
    return out


# ------------------------------------------------------------------------------------------ the victim
class VictimOracle:
    """Black-box access to a served recommender: a history in, its top-`list_k` list out, `budget` times.

    The oracle holds the victim's encoder privately and exposes only `query`; a batch that would pass
    the budget raises `QueryBudgetError` and is answered not at all (the count stays as it was).
    """

    def __init__(
        self, encoder: SequenceEncoder, *, budget: int, list_k: int = 100, device: str | torch.device = "cpu"
    ) -> None:
        self._encoder = encoder.eval()
        self._device = torch.device(device) if isinstance(device, torch.device) else resolve_device(device)
        self._encoder.to(self._device)
        self.budget = check_integer("budget", budget, low=1)
        self.list_k = check_integer("list_k", list_k, low=1, high=encoder.n_items)
        self.queries_used = 0

    @property
    def n_items(self) -> int:
        """Catalogue size N (public: a served recommender's catalogue is visible to its users)."""
        return self._encoder.n_items

    @property
    def queries_left(self) -> int:
        return self.budget - self.queries_used

    def query(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """`[B, list_k]` int64 lists of the victim for `B` histories (each counts as one query).

        Raises:
            QueryBudgetError: when `B` exceeds the queries left.
            ArgumentError: for an item outside the catalogue.
        """
        histories = [np.asarray(h, dtype=np.int64) for h in histories]
        if len(histories) > self.queries_left:
            raise QueryBudgetError(
                f"query budget spent: {len(histories)} queries asked, {self.queries_left} of {self.budget} left"
            )
        for row, history in enumerate(histories):
            if history.size and (history.min() < 0 or history.max() >= self.n_items):
                raise ArgumentError(f"history {row}: item index outside the catalogue 0..{self.n_items - 1}")
        lists = top_k_lists(self._encoder, histories, k=self.list_k, device=self._device)
        self.queries_used += len(histories)
        return lists


# ------------------------------------------------------------------------------------------ query records
@dataclass(frozen=True)
class QueryRecords:
    """What an adversary's queries returned: each queried history (CSR) and the victim's list for it."""

    offsets: np.ndarray  # [R + 1] int64
    items: np.ndarray  # [S] int64, the histories end to end
    lists: np.ndarray  # [R, k] int64, best first

    @classmethod
    def from_histories(cls, histories: Sequence[np.ndarray], lists: np.ndarray) -> QueryRecords:
        offsets = np.concatenate([[0], np.cumsum([h.size for h in histories])]).astype(np.int64)
        items = np.concatenate([*histories, np.zeros(0, dtype=np.int64)]).astype(np.int64)
        return cls(offsets, items, np.asarray(lists, dtype=np.int64).reshape(len(histories), -1))

    @classmethod
    def concat(cls, parts: Sequence[QueryRecords]) -> QueryRecords:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ArgumentError("no query records")
        return cls.from_histories(
            [h for p in parts for h in p.histories()], np.concatenate([p.lists for p in parts])
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def histories(self, rows: Sequence[int] | np.ndarray | None = None) -> list[np.ndarray]:
        rows = range(len(self)) if rows is None else rows
        return [self.items[self.offsets[r] : self.offsets[r + 1]] for r in rows]


def real_prefixes(
    sequences: Sequence[np.ndarray], n: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to `n` distinct prefixes `s[:t]` (1 <= t < len(s)) drawn uniformly from the sequences, and the
    real next item `s[t]` of each."""
    users = np.repeat(np.arange(len(sequences)), [max(len(s) - 1, 0) for s in sequences])
    cuts = np.concatenate([np.arange(1, len(s)) for s in sequences if len(s) > 1] or [np.zeros(0, np.int64)])
    pick = rng.permutation(users.size)[: min(n, users.size)]
    prefixes = [sequences[users[i]][: cuts[i]] for i in pick]
    following = np.asarray([sequences[users[i]][cuts[i]] for i in pick], dtype=np.int64)
    return prefixes, following


def random_sequences(n: int, n_items: int, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` sequences of distinct uniform items with lengths drawn from `lengths` (Yue et al.'s random queries)."""
    drawn = rng.choice(lengths, size=n)
    return [rng.choice(n_items, size=int(t), replace=False).astype(np.int64) for t in drawn]
