"""Next-item training with a leave-one-out split, full-ranking evaluation and early stopping.

The split (the protocol of the SASRec, BERT4Rec and HSTU papers): for every user with at least 3 events,
the last event is the test target, the second-to-last the validation target, and the rest is training
data; users with fewer events only train. Validation ranks the valid item from the training history;
test ranks the test item from the training history plus the valid item.

Ranking is always over the full catalogue (never sampled negatives) and reported under two protocols:
`seen_excluded` removes the items already in the user's input history from the ranking (the default,
as in the SASRec and HSTU reference evaluators) and `seen_included` keeps them (as RecBole does).
"""

from __future__ import annotations

import contextlib
import copy
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from recsim_env.encoders.base import IGNORE_TARGET, SequenceEncoder
from recsim_env.encoders.metrics import ranking_metrics, target_ranks
from recsim_env.errors import ArgumentError

SELECTION_METRIC = "ndcg@10"


from recsim_env.encoders.trainer_config import PROTOCOLS, WINDOW_MODES, TrainerConfig, resolve_device  # noqa: E402, F401  (re-exported)


class Windows(NamedTuple):
    """Left-padded training windows of `max_len + 1` events."""

    item_ids: np.ndarray  # [W, L + 1] int64
    timestamps: np.ndarray  # [W, L + 1] float64
    feedback: np.ndarray  # [W, L + 1, F] float32
    first_target: np.ndarray  # [W] int64: target positions (0..L-1) before this one are another window's
    users: np.ndarray  # [W] int64 user of each window


class EvalSet(NamedTuple):
    """Histories to encode, their targets, and the items each history has seen (CSR)."""

    users: np.ndarray  # [U] user indices
    item_ids: np.ndarray  # [U, L] int64, left-padded last max_len events of the history
    timestamps: np.ndarray  # [U, L] float64
    feedback: np.ndarray  # [U, L, F] float32
    targets: np.ndarray  # [U] int64
    seen_offsets: np.ndarray  # [U + 1] int64
    seen_items: np.ndarray  # [S] int64, every item of each full history (not only the last max_len)


class Split(NamedTuple):
    """Leave-one-out split of per-user sequences."""

    train_lengths: np.ndarray  # [n_users] events of each user used for training
    valid: EvalSet
    test: EvalSet


@dataclass
class TrainResult:
    """What `train` measured. Metrics are dicts `{"seen_excluded": {...}, "seen_included": {...}}`."""

    best_epoch: int
    epochs_run: int
    valid: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    seconds_per_epoch: float
    seconds_to_best: float
    peak_memory_mb: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- devices ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: torch's setting as it is), restored after it."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on `device`, or the process's peak resident set size on CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


# -- data preparation ------------------------------------------------------------------------------


def _feedback_width(sequences) -> int:
    fb = sequences.feedback
    return int(fb.shape[1]) if fb is not None and fb.ndim == 2 else 0


def left_pad(
    sequences, users: np.ndarray, ends: np.ndarray, *, max_len: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded `[U, max_len]` items, timestamps and feedback of events `max(0, end - max_len):end` per user."""
    n_rows, width = len(users), _feedback_width(sequences)
    items = np.full((n_rows, max_len), pad_id, dtype=np.int64)
    times = np.zeros((n_rows, max_len), dtype=np.float64)
    feedback = np.zeros((n_rows, max_len, width), dtype=np.float32)
    starts = sequences.offsets[users]
    for row, (start, end) in enumerate(zip(starts, starts + ends, strict=True)):
        lo = max(int(start), int(end) - max_len)
        n = int(end) - lo
        if n <= 0:
            continue
        items[row, max_len - n :] = sequences.item_ids[lo:end]
        times[row, max_len - n :] = sequences.timestamps[lo:end]
        if width:
            feedback[row, max_len - n :] = sequences.feedback[lo:end]
    return items, times, feedback


def leave_one_out_split(sequences, *, max_len: int, pad_id: int) -> Split:
    """Leave-one-out split (see the module docstring) of per-user chronological sequences.

    Args:
        sequences: `recsim_env.data.UserSequences` (offsets `[n_users + 1]`, item_ids, timestamps, feedback).
        max_len: history length kept for evaluation.
        pad_id: padding id (N).
    """
    lengths = np.diff(sequences.offsets).astype(np.int64)
    evaluated = np.flatnonzero(lengths >= 3)
    if evaluated.size == 0:
        raise ValueError("leave-one-out: no user has the 3 events needed for a validation and a test target")
    train_lengths = np.where(lengths >= 3, lengths - 2, lengths)

    def eval_set(history_lengths: np.ndarray) -> EvalSet:
        items, times, feedback = left_pad(
            sequences, evaluated, history_lengths, max_len=max_len, pad_id=pad_id
        )
        starts = sequences.offsets[evaluated]
        targets = sequences.item_ids[starts + history_lengths]
        seen = [sequences.item_ids[s : s + n] for s, n in zip(starts, history_lengths, strict=True)]
        seen_offsets = np.concatenate([[0], np.cumsum(history_lengths)]).astype(np.int64)
        return EvalSet(
            evaluated, items, times, feedback, targets.astype(np.int64), seen_offsets, np.concatenate(seen)
        )

    valid = eval_set(train_lengths[evaluated])
    test = eval_set(train_lengths[evaluated] + 1)
    return Split(train_lengths, valid, test)


def select_eval_users(eval_set: EvalSet, users: np.ndarray) -> EvalSet:
    """The rows of `eval_set` whose user is in `users` (indices), in their order in `eval_set`."""
    keep = np.flatnonzero(np.isin(eval_set.users, users))
    counts = np.diff(eval_set.seen_offsets)[keep]
    seen = [eval_set.seen_items[eval_set.seen_offsets[r] : eval_set.seen_offsets[r + 1]] for r in keep]
    return EvalSet(
        eval_set.users[keep],
        eval_set.item_ids[keep],
        eval_set.timestamps[keep],
        eval_set.feedback[keep],
        eval_set.targets[keep],
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64),
    )


def window_copies(weights: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """`[W]` int64 times each window enters an epoch for window weights `weights` `[W]` (>= 0):
    `floor(w)`, plus one more with probability `w - floor(w)` (drawn from `generator`), so the expected
    count is `w` and an integer weight is exact."""
    weights = torch.from_numpy(np.asarray(weights, dtype=np.float64))
    whole = torch.floor(weights)
    extra = torch.rand(weights.shape, generator=generator, dtype=torch.float64) < (weights - whole)
    return whole.to(torch.int64) + extra.to(torch.int64)


def training_windows(
    sequences,
    train_lengths: np.ndarray,
    *,
    max_len: int,
    pad_id: int,
    mode: str,
    stride: int | None = None,
) -> Windows:
    """Windows of `max_len + 1` events over each user's first `train_lengths[u]` events.

    "sliding" cuts each training sequence, from its end backwards, into windows ending every `stride`
    events (default `max_len`: windows that overlap by one event). Every event after a user's first is a
    target exactly once: in the window where it is among the last `stride` targets, or in the user's
    earliest window, which counts all of its targets. "last" keeps the final window.
    """
    stride = max_len if stride is None else min(int(stride), max_len)
    users, ends, first = [], [], []
    for user, n in enumerate(train_lengths):
        if n < 2:
            continue
        cuts = list(range(int(n), 1, -stride)) if mode == "sliding" else [int(n)]
        users.extend([user] * len(cuts))
        ends.extend(cuts)
        first.extend([max_len - stride] * (len(cuts) - 1) + [0])  # the earliest window counts every target
    if not users:
        raise ValueError("training windows: no user has the 2 training events needed for one target")
    items, times, feedback = left_pad(
        sequences, np.asarray(users), np.asarray(ends), max_len=max_len + 1, pad_id=pad_id
    )
    return Windows(
        items, times, feedback, np.asarray(first, dtype=np.int64), np.asarray(users, dtype=np.int64)
    )


# -- evaluation ------------------------------------------------------------------------------------


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


@torch.no_grad()
def evaluate_full_ranking(
    encoder: SequenceEncoder,
    eval_set: EvalSet,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
    ks: tuple[int, ...] = (10, 20),
) -> dict[str, dict[str, float]]:
    """HR/NDCG/MRR at `ks` of ranking each target among all N items.

    Returns:
        `{"seen_excluded": metrics, "seen_included": metrics}` (see the module docstring).
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    ranks_excluded, ranks_included = [], []
    use_feedback = encoder.config.feedback_dim > 0
    for lo in range(0, len(eval_set.users), batch_size):
        hi = min(lo + batch_size, len(eval_set.users))
        with autocast(device):
            state = encoder.user_state(
                _tensor(eval_set.item_ids[lo:hi], device),
                timestamps=_tensor(eval_set.timestamps[lo:hi], device),
                feedback=_tensor(eval_set.feedback[lo:hi], device) if use_feedback else None,
            )
        # Scores in fp32 even under bf16 autocast: bf16 keeps 8 significant bits, so many of the N scores
        # would tie with the target's, and ties count in the target's favour (`target_ranks`).
        scores = encoder.score(state.float())  # [b, N]
        targets = _tensor(eval_set.targets[lo:hi], device)
        seen = seen_mask(eval_set.seen_offsets[lo : hi + 1], eval_set.seen_items, encoder.n_items, device)
        ranks_included.append(target_ranks(scores, targets))
        ranks_excluded.append(target_ranks(scores, targets, excluded=seen))
    encoder.train(was_training)
    return {
        "seen_excluded": ranking_metrics(torch.cat(ranks_excluded), ks),
        "seen_included": ranking_metrics(torch.cat(ranks_included), ks),
    }


def seen_mask(offsets: np.ndarray, items: np.ndarray, n_items: int, device: torch.device) -> torch.Tensor:
    """`[U, N]` bool, True where item i is in row u's history `items[offsets[u]:offsets[u+1]]`."""
    counts = np.diff(offsets)
    rows = np.repeat(np.arange(len(counts)), counts)
    mask = torch.zeros(len(counts), n_items, dtype=torch.bool, device=device)
    mask[_tensor(rows, device), _tensor(items[offsets[0] : offsets[-1]], device)] = True
    return mask


# -- training --------------------------------------------------------------------------------------


Reweight = Callable[[int, SequenceEncoder], "np.ndarray | None"]


def train(
    encoder: SequenceEncoder,
    sequences,
    config: TrainerConfig,
    *,
    user_weights: np.ndarray | None = None,
    eval_users: np.ndarray | None = None,
    reweight: Reweight | None = None,
) -> TrainResult:
    """Train `encoder` on the leave-one-out training part of `sequences`, early-stopping on validation NDCG@10.

    The best epoch's weights are restored into `encoder` before the test evaluation. CPU runs are
    bit-for-bit reproducible for a fixed `config.seed` (the encoder's initialisation is seeded by the
    caller, see `seed_everything`).

    Per-user weights act by sampling: each epoch, a window of user u enters `floor(w_u)` times plus once
    more with probability `w_u - floor(w_u)` (`window_copies`), drawn from a generator of its own, so the
    shuffling, masking and negatives are those of an unweighted run, the expected weight of each of u's
    targets in the epoch is `w_u`, and all-ones weights train exactly as `user_weights=None`.

    Args:
        encoder: a freshly built encoder whose `n_items` covers the item indices of `sequences`.
        sequences: `recsim_env.data.UserSequences` (per-user chronological events).
        config: optimisation and device settings.
        user_weights: `[n_users]` float >= 0 training weight of each user; None: every window once an epoch.
        eval_users: user indices, or a `[n_users]` bool mask, of the users whose validation and test
            targets are ranked (None: every user with 3 events); early stopping watches only them.
        reweight: called as `reweight(epoch, encoder)` after each epoch's validation; new `[n_users]`
            weights it returns apply from the next epoch and restart early stopping (the best checkpoint
            and the patience count start again), None keeps the weights.
    """
    cfg = encoder.config
    if sequences.item_ids.size and int(sequences.item_ids.max()) >= cfg.n_items:
        raise ValueError(
            f"sequences hold item index {int(sequences.item_ids.max())} but the encoder has n_items={cfg.n_items}"
        )
    if cfg.feedback_dim and _feedback_width(sequences) != cfg.feedback_dim:
        raise ValueError(
            f"encoder feedback_dim={cfg.feedback_dim} but the sequences have {_feedback_width(sequences)} feedback columns"
        )
    n_users = len(sequences.offsets) - 1
    if user_weights is not None:
        user_weights = check_user_weights(user_weights, n_users)
    eval_users = None if eval_users is None else user_indices("eval_users", eval_users, n_users)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch_threads(config.num_threads):
        return _train(encoder, sequences, config, device, user_weights, eval_users, reweight)


def check_user_weights(weights, n_users: int) -> np.ndarray:
    """`weights` as a `[n_users]` float64 array of finite values >= 0, not all zero; else ArgumentError."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_users,):
        raise ArgumentError(f"user_weights: expected shape ({n_users},), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise ArgumentError("user_weights: every weight must be finite and >= 0")
    if not (weights > 0).any():
        raise ArgumentError("user_weights: every weight is 0, nothing would train")
    return weights


def user_indices(name: str, users, n_users: int) -> np.ndarray:
    """int64 user indices from indices or a `[n_users]` bool mask; else ArgumentError naming `name`."""
    users = np.asarray(users)
    if users.dtype == bool:
        if users.shape != (n_users,):
            raise ArgumentError(f"{name}: a mask must have shape ({n_users},), got {users.shape}")
        return np.flatnonzero(users)
    if users.dtype.kind not in "iu" or users.ndim != 1:
        raise ArgumentError(f"{name}: expected user indices or a bool mask, got dtype {users.dtype}")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ArgumentError(f"{name}: user index out of range 0..{n_users - 1}")
    return users.astype(np.int64)


def _train(
    encoder: SequenceEncoder,
    sequences,
    config: TrainerConfig,
    device: torch.device,
    user_weights: np.ndarray | None,
    eval_users: np.ndarray | None,
    reweight: Reweight | None,
) -> TrainResult:
    cfg = encoder.config
    split = leave_one_out_split(sequences, max_len=cfg.max_len, pad_id=cfg.pad_id)
    if eval_users is not None:
        split = Split(
            split.train_lengths,
            select_eval_users(split.valid, eval_users),
            select_eval_users(split.test, eval_users),
        )
        if len(split.valid.users) == 0:
            raise ArgumentError("eval_users: none of these users has the 3 events a validation needs")
    windows = training_windows(
        sequences,
        split.train_lengths,
        max_len=cfg.max_len,
        pad_id=cfg.pad_id,
        mode=config.windows,
        stride=config.window_stride or max(1, cfg.max_len // 2),
    )
    use_time = encoder.uses_timestamps
    use_feedback = cfg.feedback_dim > 0
    all_items, all_times, all_feedback = (
        torch.from_numpy(windows.item_ids),
        torch.from_numpy(windows.timestamps),
        torch.from_numpy(windows.feedback),
    )
    # [W, L] True at target positions another (later) window already trains on
    counted_elsewhere = torch.arange(cfg.max_len)[None] < torch.from_numpy(windows.first_target)[:, None]
    overlapping = bool(counted_elsewhere.any())

    encoder.to(device)
    optimiser = torch.optim.AdamW(
        encoder.parameters(), lr=config.lr, betas=(0.9, config.beta2), weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    # The weighted sampling draws from its own stream, leaving the shuffling and negatives unchanged.
    weight_generator = torch.Generator().manual_seed(config.seed + 1)
    window_weights = None if user_weights is None else user_weights[windows.users]
    loss_fn = torch.compile(encoder.loss) if config.compile else encoder.loss

    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(encoder.state_dict())
    best_valid: dict[str, dict[str, float]] = {}
    history: list[dict[str, float]] = []
    train_seconds, elapsed, seconds_to_best = 0.0, 0.0, 0.0
    n_windows = all_items.shape[0]
    bar = tqdm(
        range(1, config.epochs + 1), desc=f"train {encoder.name}", disable=not config.progress, unit="epoch"
    )
    for epoch in bar:
        # ---- one pass over the shuffled windows ----
        start = time.perf_counter()
        encoder.train()
        order = torch.randperm(n_windows, generator=generator)
        if window_weights is not None:
            order = torch.repeat_interleave(order, window_copies(window_weights, weight_generator)[order])
        total, steps = 0.0, 0
        for lo in range(0, len(order), config.batch_size):
            rows = order[lo : lo + config.batch_size]
            batch = encoder.training_batch(
                all_items[rows].to(device),
                all_times[rows].to(device) if use_time else None,
                all_feedback[rows].to(device) if use_feedback else None,
                generator=generator,
            )
            if overlapping:
                batch.targets[counted_elsewhere[rows].to(device)] = IGNORE_TARGET
            with autocast(device):
                loss = loss_fn(batch, generator=generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            steps += 1
        epoch_seconds = time.perf_counter() - start
        train_seconds += epoch_seconds

        # ---- validation and early stopping ----
        valid = evaluate_full_ranking(encoder, split.valid, device=device, batch_size=config.eval_batch_size)
        elapsed += time.perf_counter() - start
        score = valid[config.selection_protocol][SELECTION_METRIC]
        history.append(
            {
                "epoch": epoch,
                "loss": total / steps if steps else math.nan,
                "valid_ndcg@10": score,  # under the selection protocol
                **{f"valid_{p}_ndcg@10": valid[p][SELECTION_METRIC] for p in PROTOCOLS},
                "seconds": epoch_seconds,
            }
        )
        if score > best_score:
            best_score, best_epoch, best_valid = score, epoch, valid
            best_state = copy.deepcopy(encoder.state_dict())
            seconds_to_best = elapsed
        bar.set_postfix(
            loss=f"{history[-1]['loss']:.4f}", ndcg10=f"{score:.4f}", best=f"{best_score:.4f}@{best_epoch}"
        )
        if reweight is not None:
            new_weights = reweight(epoch, encoder)
            if new_weights is not None:
                window_weights = check_user_weights(new_weights, len(split.train_lengths))[windows.users]
                best_score, best_epoch = -math.inf, epoch  # epochs trained with the new weights compete
        if epoch - best_epoch >= config.patience:
            break
        if config.max_seconds is not None and elapsed >= config.max_seconds:
            break
    bar.close()

    encoder.load_state_dict(best_state)
    test = evaluate_full_ranking(encoder, split.test, device=device, batch_size=config.eval_batch_size)
    return TrainResult(
        best_epoch=best_epoch,
        epochs_run=len(history),
        valid=best_valid,
        test=test,
        seconds_per_epoch=train_seconds / len(history),
        seconds_to_best=seconds_to_best,
        peak_memory_mb=peak_memory_mb(device),
        device=str(device),
        history=history,
    )


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (weights, dropout) and numpy's legacy RNG."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - some third-party code still draws from the legacy global RNG
