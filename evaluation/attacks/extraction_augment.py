"""Autoregressive augmentation generation: the probabilistic interaction sampler and the synthesis
determinant signifier that grow synthetic sequences from few-shot prefixes by querying the victim."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.attacks.extraction_config import ExtractionConfig
from evaluation.attacks.extraction_victim import (
    QueryRecords,
    VictimOracle,
    pad_histories,
    seen_items,
)
from recsim_env.encoders.base import SequenceEncoder
from recsim_env.encoders.trainer import (
    TrainerConfig,
    autocast,
    train,
)
from recsim_env.errors import ArgumentError, DataError


# ------------------------------------------------------------------------------------------ augmentation
class SynthesisDeterminant(nn.Module):
    """The synthesis determinant signifier: `p(follow | h) = sigmoid(w . h + b)`, the probability that a
    user with sampler state `h` takes the next item from the served list."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, 1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """`[B]` probabilities from `[B, D]` states."""
        return torch.sigmoid(self.linear(state)).squeeze(-1)


def fit_determinant(
    states: torch.Tensor, follows: torch.Tensor, *, steps: int = 300, lr: float = 0.05
) -> SynthesisDeterminant:
    """Fit the signifier by logistic regression of `follows` `[R]` (1 when the real next item was in the
    victim's list for that prefix) on the sampler's states `[R, D]` (full-batch Adam, deterministic)."""
    determinant = SynthesisDeterminant(states.shape[1]).to(states.device)
    with torch.no_grad():  # start at the base rate
        rate = float(follows.float().mean().clamp(1e-3, 1 - 1e-3))
        determinant.linear.weight.zero_()
        determinant.linear.bias.fill_(math.log(rate / (1 - rate)))
    optimiser = torch.optim.Adam(determinant.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.binary_cross_entropy(determinant(states), follows.float())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return determinant.eval()


def train_sampler(sequences, n_items: int, config: ExtractionConfig, device: torch.device) -> SequenceEncoder:
    """The probabilistic interaction sampler: a `config.model` encoder trained on next-item prediction
    (the trainer's leave-one-out early stopping) over the few-shot `UserSequences`."""
    from recsim_env import encoders

    torch.manual_seed(config.seed)
    sampler = encoders.build(
        config.model, {"n_items": n_items, "max_len": config.max_len, "d_model": config.d_model}
    )
    train(
        sampler,
        sequences,
        TrainerConfig(
            epochs=config.sampler_epochs,
            patience=config.patience,
            lr=type(sampler).learning_rate,
            seed=config.seed,
            device=str(device),
            num_threads=config.num_threads,
            progress=False,
        ),
    )
    return sampler.eval()


@torch.no_grad()
def sampler_states(
    sampler: SequenceEncoder, histories: Sequence[np.ndarray], device: torch.device
) -> torch.Tensor:
    """`[B, D]` fp32 sampler states of `histories`."""
    items = torch.from_numpy(pad_histories(histories, sampler.config.max_len, sampler.pad_id)).to(device)
    with autocast(device):
        return sampler.user_state(items).float()


@torch.no_grad()
def generate_augmented(
    oracle: VictimOracle,
    sampler: SequenceEncoder,
    determinant: SynthesisDeterminant,
    sequences: Sequence[np.ndarray],
    *,
    n_queries: int,
    steps: int,
    temperature: float,
    rng: np.random.Generator,
    generator: torch.Generator,
    device: torch.device,
    batch: int = 256,
) -> QueryRecords:
    """Autoregressive augmentation generation: grow synthetic continuations of real prefixes, one victim
    query per step, until `n_queries` queries are spent.

    Each branch starts from a real prefix `s[:t]` of a few-shot sequence (`1 <= t < len(s)`, drawn
    uniformly over all such prefixes; its oldest items are dropped if it would leave fewer than a list
    of unseen items) and grows `1..steps` items. At each step the victim's list for the current history
    is read; the signifier's `p(follow)` decides whether the next item comes from that list or from the
    unseen items off it; the sampler's softmax (at `temperature`) over the allowed items draws it. Every
    (history, list) pair is kept as a distillation record.
    """
    n_items = oracle.n_items
    longest = n_items - oracle.list_k - steps - 1  # a grown history must leave a full list of unseen items
    if longest < 1:
        raise ArgumentError(
            f"a catalogue of {n_items} items cannot serve lists of {oracle.list_k} to histories grown by {steps}"
        )
    users = np.repeat(np.arange(len(sequences)), [max(len(s) - 1, 0) for s in sequences])
    cuts = np.concatenate([np.arange(1, len(s)) for s in sequences if len(s) > 1] or [np.zeros(0, np.int64)])
    if users.size == 0:
        raise DataError("augmentation needs a few-shot sequence of at least 2 events")
    histories: list[np.ndarray] = []
    lists: list[np.ndarray] = []
    while len(histories) < n_queries:
        picked = rng.integers(users.size, size=batch)
        grown = [np.asarray(sequences[users[i]][: cuts[i]][-longest:], dtype=np.int64) for i in picked]
        targets = [g.size + int(rng.integers(1, steps + 1)) for g in grown]
        while True:
            active = [i for i, g in enumerate(grown) if g.size < targets[i]][: n_queries - len(histories)]
            if not active:
                break
            prefixes = [grown[i] for i in active]
            served = oracle.query(prefixes)  # [b, k]
            histories.extend(prefixes)
            lists.extend(served)
            state = sampler_states(sampler, prefixes, device)
            follow = torch.rand(len(active), generator=generator).to(device) < determinant(state)
            logits = sampler.score(state).float() / temperature  # [b, N]
            on_list = torch.zeros(len(active), n_items, dtype=torch.bool, device=device)
            on_list.scatter_(1, torch.from_numpy(served).to(device), True)
            allowed = torch.where(follow[:, None], on_list, ~on_list & ~seen_items(prefixes, n_items, device))
            probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)
            chosen = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].numpy()
            for row, i in enumerate(active):
                grown[i] = np.append(grown[i], chosen[row])
    return QueryRecords.from_histories(histories, np.stack(lists))
