"""Few-shot model extraction of a black-box sequential recommender.

Threat model: the adversary can query a served recommender (the victim) with a history and read back
its top-k list (no scores, no weights), at most `budget` times, and holds the sequences of a small
share (`fraction`, 10% or less) of the real users. From these it trains a surrogate whose top-10 lists
agree with the victim's on the real users it has never seen.

Two adversaries spend the same query budget:

* **Few-shot extraction** (Zhang & Liu, "Few-shot Model Extraction Attacks against Sequential
  Recommender Systems", arXiv:2411.11677, 2024). *Autoregressive augmentation generation*: part of the
  budget (`real_query_share`) goes to prefixes of the few-shot sequences; the rest grows synthetic
  continuations of real prefixes item by item (`augment_steps` items at most). At each step the
  victim's list for the current history is read, a *synthesis determinant signifier* (a logistic unit on the sampler's state) decides
  whether the simulated user follows the list, and the *probabilistic interaction sampler* (a SASRec
  trained on the few-shot sequences) draws the next item from the list (follows) or from the rest of the
  catalogue (does not). The surrogate is then distilled on every (prefix, list) pair with the ranking
  loss of Yue et al. plus the *bidirectional repair loss*, and trained on the few-shot sequences'
  next items.
* **Plain distillation** (the baseline): the whole budget on prefixes of the few-shot sequences (once
  those run out, random sequences, Yue et al.'s data-free queries), the ranking loss alone.

The ranking distillation loss follows Yue, He, Zeng & McAuley, "Black-Box Attacks on Sequential
Recommenders via Data-Free Model Extraction" (RecSys 2021), as their code computes it
(`NoDataRankDistillationTrainer.calculate_loss`, github.com/Yueeeeeeee/RecSys-Extraction-Attack).
Where the few-shot paper's text was not available to us (its equations; only its abstract and a
summary were), the choices are ours and docs/attacks_extraction.md lists them.

Item indices are the data's (0..N-1; the victim's catalogue must equal the data's, index for index).
Lists and histories are NumPy int64 arrays; histories are chronological, most recent item last.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from evaluation.attacks.extraction_augment import (
    fit_determinant,
    generate_augmented,
    sampler_states,
    train_sampler,
)
from evaluation.attacks.extraction_config import EVAL_K, ExtractionConfig
from evaluation.attacks.extraction_losses import bidirectional_repair_loss, ranking_distillation_loss
from evaluation.attacks.extraction_victim import (
    QueryRecords,
    VictimOracle,
    history_scores,
    random_sequences,
    real_prefixes,
    seen_items,
    top_k_lists,
)
from recsim_env.checks import check_real
from recsim_env.encoders.base import SequenceEncoder
from recsim_env.encoders.metrics import hit_rate, ndcg, target_ranks
from recsim_env.encoders.trainer import (
    autocast,
    resolve_device,
    torch_threads,
    training_windows,
)
from recsim_env.errors import ArgumentError, DataError

METHODS = ("few_shot", "distillation")


# ------------------------------------------------------------------------------------------ the surrogate
@dataclass
class SurrogateResult:
    """A trained surrogate and what its training saw."""

    encoder: SequenceEncoder
    queries_used: int
    records: int
    best_epoch: int
    epochs_run: int
    valid_agreement10: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _negatives(lists: torch.Tensor, seen: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`[B, k]` uniform negatives per row, never a listed or a seen item."""
    weight = (~seen).float().scatter_(1, lists, 0.0)
    return torch.multinomial(weight.cpu(), lists.shape[1], replacement=True, generator=generator).to(
        lists.device
    )


@torch.no_grad()
def agreement_at_k(
    encoder: SequenceEncoder, records: QueryRecords, device: torch.device, k: int = EVAL_K
) -> float:
    """Mean `|top-k of the surrogate ∩ top-k of the victim's list| / k` over `records` (seen excluded)."""
    lists = top_k_lists(encoder, records.histories(), k=k, device=device)
    return overlap_at_k(lists, records.lists, k=k)


def train_surrogate(
    records: QueryRecords,
    config: ExtractionConfig,
    *,
    n_items: int,
    repair: bool,
    real_sequences=None,
    queries_used: int,
    device: torch.device,
    desc: str = "surrogate",
) -> SurrogateResult:
    """Distil a fresh `config.model` encoder from the query records.

    Objective per batch: the ranking distillation loss, plus `repair_weight` x the bidirectional repair
    loss when `repair`, plus `real_weight` x next-item cross-entropy on `batch_size // 4` random windows
    of `real_sequences` when given. A `validation_share` of the records is held back; the epoch with the
    best agreement@10 on it is kept.
    """
    from recsim_env import encoders

    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    encoder = encoders.build(
        config.model, {"n_items": n_items, "max_len": config.max_len, "d_model": config.d_model}
    )
    encoder.to(device)
    order = rng.permutation(len(records))
    n_valid = max(1, int(round(config.validation_share * len(records)))) if len(records) > 1 else 0
    valid_rows, train_rows = order[:n_valid], order[n_valid:] if len(records) > 1 else order
    valid = (
        QueryRecords.from_histories(records.histories(valid_rows), records.lists[valid_rows])
        if n_valid
        else records
    )
    histories = records.histories()
    lists = torch.from_numpy(records.lists)

    windows = None
    if real_sequences is not None and config.real_weight > 0:
        lengths = np.diff(real_sequences.offsets)
        windows = torch.from_numpy(
            training_windows(
                real_sequences,
                lengths,
                max_len=config.max_len,
                pad_id=n_items,
                mode="sliding",
                stride=max(1, config.max_len // 2),
            ).item_ids
        )
    optimiser = torch.optim.Adam(encoder.parameters(), lr=config.lr)

    best_score, best_epoch, best_state, history = -1.0, 0, copy.deepcopy(encoder.state_dict()), []
    start = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc=desc, disable=not config.progress, unit="epoch", leave=False)
    for epoch in bar:
        # ---- one pass over the shuffled training records ----
        encoder.train()
        shuffled = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
        total, steps = 0.0, 0
        for lo in range(0, len(shuffled), config.batch_size):
            rows = shuffled[lo : lo + config.batch_size]
            batch_histories = [histories[r] for r in rows]
            seen = seen_items(batch_histories, n_items, device)
            batch_lists = lists[rows].to(device)
            scores = history_scores(encoder, batch_histories, device)
            loss = ranking_distillation_loss(
                scores,
                batch_lists,
                _negatives(batch_lists, seen, generator),
                margin_topk=config.margin_topk,
                margin_negative=config.margin_negative,
            )
            if repair and config.repair_weight > 0:
                loss = loss + config.repair_weight * bidirectional_repair_loss(
                    scores, batch_lists, seen, k=config.repair_k, margin=config.repair_margin
                )
            if windows is not None:  # a quarter batch of windows: every position of each pays a full softmax
                n_real = min(max(1, config.batch_size // 4), windows.shape[0])
                picked = torch.randint(windows.shape[0], (n_real,), generator=generator)
                real_batch = encoder.training_batch(
                    windows[picked].to(device), None, None, generator=generator
                )
                with autocast(device):
                    loss = loss + config.real_weight * encoder.loss(real_batch, generator=generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(encoder.parameters(), 5.0)  # as Yue et al.'s distiller
            optimiser.step()
            total += float(loss.detach())
            steps += 1

        # ---- agreement on the held-back records and early stopping ----
        score = agreement_at_k(encoder, valid, device)
        history.append({"epoch": epoch, "loss": total / max(steps, 1), "valid_agreement10": score})
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(encoder.state_dict())
        bar.set_postfix(
            loss=f"{total / max(steps, 1):.3f}", agr10=f"{score:.3f}", best=f"{best_score:.3f}@{best_epoch}"
        )
        if epoch - best_epoch >= config.patience:
            break
        if config.max_seconds is not None and time.perf_counter() - start >= config.max_seconds:
            break
    bar.close()
    encoder.load_state_dict(best_state)
    encoder.eval()
    return SurrogateResult(
        encoder=encoder,
        queries_used=queries_used,
        records=len(records),
        best_epoch=best_epoch,
        epochs_run=len(history),
        valid_agreement10=best_score,
        seconds=time.perf_counter() - start,
        history=history,
    )


# ------------------------------------------------------------------------------------------ the adversaries
def few_shot_extraction(
    oracle: VictimOracle,
    few_shot,
    config: ExtractionConfig,
    *,
    sampler: SequenceEncoder,
    device: torch.device,
) -> SurrogateResult:
    """The few-shot adversary (Zhang & Liu 2024): real-prefix queries, autoregressive augmentation with
    the sampler and the signifier, then distillation with the bidirectional repair loss and the
    few-shot sequences' next items. `few_shot` is a `FewShotData`."""
    rng = np.random.default_rng(config.seed + 1)
    generator = torch.Generator().manual_seed(config.seed + 1)
    n_real = max(1, int(round(config.real_query_share * oracle.budget)))
    prefixes, following = real_prefixes(few_shot.histories, min(n_real, oracle.queries_left), rng)
    real_lists = oracle.query(prefixes)
    follows = torch.from_numpy((real_lists == following[:, None]).any(1)).to(device)
    determinant = fit_determinant(sampler_states(sampler, prefixes, device), follows)
    parts = [QueryRecords.from_histories(prefixes, real_lists)]
    if oracle.queries_left > 0:
        parts.append(
            generate_augmented(
                oracle,
                sampler,
                determinant,
                few_shot.histories,
                n_queries=oracle.queries_left,
                steps=config.augment_steps,
                temperature=config.sampler_temperature,
                rng=rng,
                generator=generator,
                device=device,
            )
        )
    return train_surrogate(
        QueryRecords.concat(parts),
        config,
        n_items=oracle.n_items,
        repair=True,
        real_sequences=few_shot.sequences,
        queries_used=oracle.queries_used,
        device=device,
        desc=f"few-shot surrogate (Q={oracle.budget})",
    )


def distillation_extraction(
    oracle: VictimOracle, few_shot, config: ExtractionConfig, *, device: torch.device
) -> SurrogateResult:
    """Plain distillation: the budget on real prefixes (then random sequences), the ranking loss alone."""
    rng = np.random.default_rng(config.seed + 2)
    prefixes, _ = real_prefixes(few_shot.histories, oracle.queries_left, rng)
    histories = list(prefixes)
    if oracle.queries_left > len(histories):
        lengths = np.minimum([len(s) for s in few_shot.histories], max(1, oracle.n_items - oracle.list_k - 1))
        histories += random_sequences(oracle.queries_left - len(histories), oracle.n_items, lengths, rng)
    records = QueryRecords.from_histories(histories, oracle.query(histories))
    return train_surrogate(
        records,
        config,
        n_items=oracle.n_items,
        repair=False,
        queries_used=oracle.queries_used,
        device=device,
        desc=f"distillation surrogate (Q={oracle.budget})",
    )


# ------------------------------------------------------------------------------------------ metrics
def overlap_at_k(lists_a: np.ndarray, lists_b: np.ndarray, *, k: int = EVAL_K) -> float:
    """Mean over rows of `|top-k of a ∩ top-k of b| / k` (`[U, >=k]` lists, best first)."""
    a, b = np.asarray(lists_a)[:, :k], np.asarray(lists_b)[:, :k]
    if a.shape[0] != b.shape[0]:
        raise ArgumentError(f"overlap_at_k: {a.shape[0]} lists against {b.shape[0]}")
    if a.shape[1] < k or b.shape[1] < k:
        raise ArgumentError(f"overlap_at_k: lists must hold at least k={k} items")
    if a.shape[0] == 0:
        raise ArgumentError("overlap_at_k: no lists")
    shared = [np.intersect1d(x, y).size for x, y in zip(a, b, strict=True)]
    return float(np.mean(shared) / k)


@torch.no_grad()
def leave_one_out_accuracy(
    encoder: SequenceEncoder, sequences: Sequence[np.ndarray], device: torch.device, batch_size: int = 512
) -> dict[str, float]:
    """NDCG@10 and HR@10 of ranking each sequence's last item from the rest (items of the rest excluded)."""
    encoder.eval()
    ranks = []
    for lo in range(0, len(sequences), batch_size):
        chunk = sequences[lo : lo + batch_size]
        histories = [s[:-1] for s in chunk]
        targets = torch.as_tensor([int(s[-1]) for s in chunk], device=device)
        scores = history_scores(encoder, histories, device)
        ranks.append(target_ranks(scores, targets, excluded=seen_items(histories, encoder.n_items, device)))
    rank = torch.cat(ranks)
    return {"ndcg@10": float(ndcg(rank, EVAL_K).mean()), "hr@10": float(hit_rate(rank, EVAL_K).mean())}


# ------------------------------------------------------------------------------------------ a whole run
@dataclass(frozen=True)
class FewShotData:
    """The adversary's real data and the held-out users' sequences (item index arrays)."""

    histories: list[np.ndarray]
    """The few-shot users' full sequences."""
    sequences: Any
    """The same as `UserSequences` (for next-item training)."""
    held_out: list[np.ndarray]
    """Sequences of the users the adversary does not have (at least 3 events each)."""
    n_items: int
    """Catalogue size N (the few-shot users may never touch some items)."""


def split_users(logs, fraction: float, seed: int) -> FewShotData:
    """Give the adversary `fraction` of the users with at least 2 events (at least one), chosen at random;
    the others with at least 3 events are the held-out evaluation users."""
    fraction = check_real("fraction", fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    sequences = logs.sequences()
    lengths = np.diff(sequences.offsets)
    eligible = np.flatnonzero(lengths >= 2)
    if eligible.size < 2:
        raise DataError("the data needs at least 2 users with 2 or more events to split off a few-shot share")
    rng = np.random.default_rng(seed)
    n_adversary = min(max(1, int(round(fraction * eligible.size))), eligible.size - 1)
    adversary = np.sort(rng.choice(eligible, size=n_adversary, replace=False))
    rest = np.setdiff1d(np.flatnonzero(lengths >= 3), adversary)
    if rest.size == 0:
        raise DataError("no held-out user with 3 or more events is left to evaluate on")

    def items(users: np.ndarray) -> list[np.ndarray]:
        return [sequences.item_ids[sequences.offsets[u] : sequences.offsets[u + 1]].copy() for u in users]

    few = logs.select_users(adversary).sequences()
    return FewShotData(items(adversary), few, items(rest), logs.n_items)


@dataclass
class ExtractionResult:
    """Both adversaries at every budget, measured on the held-out users."""

    config: ExtractionConfig
    users: dict[str, int]
    """`few_shot` (the adversary's users) and `held_out` (the evaluation users)."""
    victim: dict[str, float]
    """The victim's own NDCG@10 / HR@10 on the held-out users' leave-one-out items."""
    curve: list[dict[str, Any]]
    """Per budget: `{"budget": Q, "few_shot": metrics, "distillation": metrics}`."""
    surrogate: SequenceEncoder
    """The few-shot surrogate at `config.budget`."""
    device: str
    seconds: float

    def at_budget(self, budget: int | None = None) -> dict[str, Any]:
        budget = self.config.budget if budget is None else budget
        return next(point for point in self.curve if point["budget"] == budget)

    def summary(self) -> dict[str, Any]:
        """report.json's content: the headline figures at `config.budget`, the accuracy, the curve."""
        main = self.at_budget()
        return {
            "overlap10_surrogate": main["few_shot"]["overlap10"],
            "overlap10_distillation": main["distillation"]["overlap10"],
            "budget": self.config.budget,
            "fraction": self.config.fraction,
            "accuracy": {
                "victim": self.victim,
                "surrogate": {k: main["few_shot"][k] for k in ("ndcg@10", "hr@10")},
                "distillation": {k: main["distillation"][k] for k in ("ndcg@10", "hr@10")},
            },
            "users": self.users,
            "budget_curve": self.curve,
            "config": self.config.to_dict(),
            "device": self.device,
            "seconds": self.seconds,
        }


def measure_surrogate(
    result: SurrogateResult, held_out: list[np.ndarray], victim_lists: np.ndarray, device: torch.device
) -> dict[str, Any]:
    """overlap@10 with `victim_lists` (the victim's top-10 on `held_out`), leave-one-out NDCG@10 / HR@10
    on `held_out`, and what the surrogate's training saw."""
    lists = top_k_lists(result.encoder, held_out, k=EVAL_K, device=device)
    return {
        "overlap10": overlap_at_k(lists, victim_lists),
        **leave_one_out_accuracy(result.encoder, held_out, device),
        "queries_used": result.queries_used,
        "records": result.records,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "valid_agreement10": result.valid_agreement10,
        "train_seconds": round(result.seconds, 3),
    }


def run_extraction(victim: SequenceEncoder, logs, config: ExtractionConfig) -> ExtractionResult:
    """Split the users, train the sampler once, then at every budget run both adversaries against a
    fresh oracle of that budget and measure them on the held-out users.

    Args:
        victim: the served encoder (its catalogue already checked against `logs`'s).
        logs: `recsim_env.data.LoggedInteractions` with the real users.
        config: the run's settings.
    """
    if victim.n_items != logs.n_items:
        raise DataError(f"catalogue mismatch: the victim has {victim.n_items} items, the data {logs.n_items}")
    if config.list_k >= logs.n_items:
        raise ArgumentError(
            f"list_k ({config.list_k}) must be smaller than the catalogue ({logs.n_items} items)"
        )
    device = resolve_device(config.device)
    start = time.perf_counter()
    with torch_threads(config.num_threads):
        data = split_users(logs, config.fraction, config.seed)
        victim = victim.to(device).eval()
        victim_lists = top_k_lists(victim, data.held_out, k=EVAL_K, device=device)
        victim_accuracy = leave_one_out_accuracy(victim, data.held_out, device)
        sampler = train_sampler(data.sequences, data.n_items, config, device)
        curve, surrogate = [], None
        for budget in tqdm(config.budgets, desc="budgets", disable=not config.progress, unit="budget"):
            point: dict[str, Any] = {"budget": budget}
            oracle = VictimOracle(victim, budget=budget, list_k=config.list_k, device=device)
            few = few_shot_extraction(oracle, data, config, sampler=sampler, device=device)
            point["few_shot"] = measure_surrogate(few, data.held_out, victim_lists, device)
            oracle = VictimOracle(victim, budget=budget, list_k=config.list_k, device=device)
            plain = distillation_extraction(oracle, data, config, device=device)
            point["distillation"] = measure_surrogate(plain, data.held_out, victim_lists, device)
            curve.append(point)
            if budget == config.budget:
                surrogate = few.encoder
    return ExtractionResult(
        config=config,
        users={"few_shot": len(data.histories), "held_out": len(data.held_out)},
        victim=victim_accuracy,
        curve=curve,
        surrogate=surrogate,
        device=str(device),
        seconds=round(time.perf_counter() - start, 3),
    )
