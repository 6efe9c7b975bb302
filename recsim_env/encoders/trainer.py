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

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from recsim_env.encoders.base import IGNORE_TARGET, SequenceEncoder, TrainingBatch
from recsim_env.encoders.devices import autocast, peak_memory_mb, torch_threads  # noqa: F401  (re-exported)
from recsim_env.encoders.item_text import trained_items
from recsim_env.encoders.metrics import ranking_metrics, target_ranks
from recsim_env.encoders.windows import (  # noqa: F401  (re-exported)
    EvalSet,
    Split,
    Windows,
    feedback_width,
    leave_one_out_split,
    left_pad,
    select_eval_users,
    training_windows,
    window_copies,
)
from recsim_env.errors import ArgumentError

SELECTION_METRIC = "ndcg@10"


from recsim_env.encoders.trainer_config import PROTOCOLS, WINDOW_MODES, TrainerConfig, resolve_device  # noqa: E402, F401  (re-exported)


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
    if cfg.feedback_dim and feedback_width(sequences) != cfg.feedback_dim:
        raise ValueError(
            f"encoder feedback_dim={cfg.feedback_dim} but the sequences have {feedback_width(sequences)} feedback columns"
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


# -- the pieces of the training loop (shared with `distributed.train_shard`) -------------------------


class WindowTensors(NamedTuple):
    """Training windows as CPU tensors, with the target positions another window already trains on."""

    items: torch.Tensor  # [W, L + 1] int64
    times: torch.Tensor  # [W, L + 1] float64
    feedback: torch.Tensor  # [W, L + 1, F] float32
    counted_elsewhere: torch.Tensor  # [W, L] bool: True at target positions another (later) window trains on
    overlapping: bool  # whether any position is counted elsewhere (then batches mask them)
    users: np.ndarray  # [W] int64 user of each window


def window_tensors(
    encoder: SequenceEncoder, sequences, train_lengths: np.ndarray, config: TrainerConfig
) -> WindowTensors:
    """The training windows (`training_windows` under `config.windows`) over each user's first
    `train_lengths[u]` events, as tensors for `window_batch`."""
    cfg = encoder.config
    windows = training_windows(
        sequences,
        train_lengths,
        max_len=cfg.max_len,
        pad_id=cfg.pad_id,
        mode=config.windows,
        stride=config.window_stride or max(1, cfg.max_len // 2),
    )
    counted_elsewhere = torch.arange(cfg.max_len)[None] < torch.from_numpy(windows.first_target)[:, None]
    return WindowTensors(
        items=torch.from_numpy(windows.item_ids),
        times=torch.from_numpy(windows.timestamps),
        feedback=torch.from_numpy(windows.feedback),
        counted_elsewhere=counted_elsewhere,
        overlapping=bool(counted_elsewhere.any()),
        users=windows.users,
    )


def window_batch(
    encoder: SequenceEncoder,
    windows: WindowTensors,
    rows: torch.Tensor,
    device: torch.device,
    generator: torch.Generator,
) -> TrainingBatch:
    """The encoder's training batch of windows `rows` on `device`, its targets ignored where another
    window already trains on them (timestamps and feedback only go to an encoder that reads them)."""
    batch = encoder.training_batch(
        windows.items[rows].to(device),
        windows.times[rows].to(device) if encoder.uses_timestamps else None,
        windows.feedback[rows].to(device) if encoder.config.feedback_dim > 0 else None,
        generator=generator,
    )
    if windows.overlapping:
        batch.targets[windows.counted_elsewhere[rows].to(device)] = IGNORE_TARGET
    return batch


@dataclass
class ModelSelection:
    """Early stopping on validation NDCG@10 under `config.selection_protocol`: every epoch's record, and
    the best epoch's number, metrics and weights."""

    config: TrainerConfig
    """The run's settings (selection protocol, patience, time limit)."""
    best_state: dict[str, torch.Tensor]
    """The best epoch's `state_dict` (the initial weights until an epoch is scored)."""
    best_score: float = -math.inf
    """The best validation NDCG@10 among the epochs that compete."""
    best_epoch: int = 0
    """The epoch that scored `best_score` (or where the competition last restarted)."""
    best_valid: dict[str, dict[str, float]] = field(default_factory=dict)
    """The best epoch's validation metrics."""
    seconds_to_best: float = 0.0
    """Seconds of training and validation up to the end of the best epoch."""
    history: list[dict[str, float]] = field(default_factory=list)
    """One record an epoch: its loss, validation NDCG@10 (selection protocol and each protocol), seconds."""

    @classmethod
    def start(cls, encoder: SequenceEncoder, config: TrainerConfig) -> ModelSelection:
        """Nothing scored yet: the best weights are `encoder`'s initial ones."""
        return cls(config=config, best_state=copy.deepcopy(encoder.state_dict()))

    def record(
        self,
        encoder: SequenceEncoder,
        *,
        epoch: int,
        loss: float,
        valid: dict[str, dict[str, float]],
        seconds: float,
        elapsed: float,
    ) -> None:
        """Add epoch `epoch` (mean training `loss`, `valid` metrics, its `seconds`, `elapsed` seconds so
        far); keep `encoder`'s weights when it scores best."""
        score = valid[self.config.selection_protocol][SELECTION_METRIC]
        self.history.append(
            {
                "epoch": epoch,
                "loss": loss,
                "valid_ndcg@10": score,  # under the selection protocol
                **{f"valid_{p}_ndcg@10": valid[p][SELECTION_METRIC] for p in PROTOCOLS},
                "seconds": seconds,
            }
        )
        if score > self.best_score:
            self.best_score, self.best_epoch, self.best_valid = score, epoch, valid
            self.best_state = copy.deepcopy(encoder.state_dict())
            self.seconds_to_best = elapsed

    def progress(self) -> dict[str, str]:
        """The progress bar's postfix: the last epoch's loss and score, the best score and its epoch."""
        last = self.history[-1]
        return {
            "loss": f"{last['loss']:.4f}",
            "ndcg10": f"{last['valid_ndcg@10']:.4f}",
            "best": f"{self.best_score:.4f}@{self.best_epoch}",
        }

    def restart(self, epoch: int) -> None:
        """Only epochs after `epoch` compete from now on (the best weights so far stay until one scores)."""
        self.best_score, self.best_epoch = -math.inf, epoch

    def should_stop(self, epoch: int, elapsed: float) -> bool:
        """Whether `patience` epochs have passed without a better score, or `max_seconds` are spent."""
        if epoch - self.best_epoch >= self.config.patience:
            return True
        return self.config.max_seconds is not None and elapsed >= self.config.max_seconds

    def result(
        self,
        test: dict[str, dict[str, float]],
        *,
        train_seconds: float,
        peak_memory_mb: float,
        device: torch.device,
    ) -> TrainResult:
        """The `TrainResult` of the run, with the best epoch's `test` metrics."""
        return TrainResult(
            best_epoch=self.best_epoch,
            epochs_run=len(self.history),
            valid=self.best_valid,
            test=test,
            seconds_per_epoch=train_seconds / len(self.history),
            seconds_to_best=self.seconds_to_best,
            peak_memory_mb=peak_memory_mb,
            device=str(device),
            history=self.history,
        )


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
    windows = window_tensors(encoder, sequences, split.train_lengths, config)
    if encoder.has_item_text:  # items with no training event keep only their text (docs/item_text.md)
        seen = trained_items(sequences.item_ids, sequences.offsets, split.train_lengths, cfg.n_items)
        encoder.set_seen_items(torch.from_numpy(seen))
    encoder.fit_statistics(windows.items, ~windows.counted_elsewhere)

    encoder.to(device)
    optimiser = torch.optim.AdamW(
        encoder.parameters(), lr=config.lr, betas=(0.9, config.beta2), weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    # The weighted sampling draws from its own stream, leaving the shuffling and negatives unchanged.
    weight_generator = torch.Generator().manual_seed(config.seed + 1)
    window_weights = None if user_weights is None else user_weights[windows.users]
    loss_fn = torch.compile(encoder.loss) if config.compile else encoder.loss

    selection = ModelSelection.start(encoder, config)
    train_seconds, elapsed = 0.0, 0.0
    n_windows = windows.items.shape[0]
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
            batch = window_batch(encoder, windows, order[lo : lo + config.batch_size], device, generator)
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
        selection.record(
            encoder,
            epoch=epoch,
            loss=total / steps if steps else math.nan,
            valid=valid,
            seconds=epoch_seconds,
            elapsed=elapsed,
        )
        bar.set_postfix(selection.progress())
        if reweight is not None:
            new_weights = reweight(epoch, encoder)
            if new_weights is not None:
                window_weights = check_user_weights(new_weights, len(split.train_lengths))[windows.users]
                selection.restart(epoch)  # epochs trained with the new weights compete
        if selection.should_stop(epoch, elapsed):
            break
    bar.close()

    encoder.load_state_dict(selection.best_state)
    if encoder.item_text_map is not None:  # fitted to the selected epoch's ID rows; warm scores unchanged
        encoder.fit_cold_item_map()
    test = evaluate_full_ranking(encoder, split.test, device=device, batch_size=config.eval_batch_size)
    return selection.result(
        test, train_seconds=train_seconds, peak_memory_mb=peak_memory_mb(device), device=device
    )


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (weights, dropout) and numpy's legacy RNG."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - some third-party code still draws from the legacy global RNG
