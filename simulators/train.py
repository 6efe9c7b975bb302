"""Train a learned simulator on `LoggedInteractions`: split users, fit K members, calibrate.

    >>> from simulators import SimulatorConfig, fit
    >>> result = fit(logs, SimulatorConfig(ensemble_size=3), progress=True)
    >>> result.simulator.respond(...)        # a UserModel

Deterministic on CPU for a fixed `SimulatorConfig.seed`.

`user_weights` (one non-negative weight per user of the data, e.g. a poisoning defence's estimate that
the user is real) weighs each user's exposures in every loss of the fit: the training objective (each
head's mean negative log-likelihood becomes a weighted mean over the target positions), the validation
loss that early stopping watches and the Platt calibration. A weight of 0 removes the user from the fit;
equal weights fit exactly what no weights fit. The start pool keeps every user.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from recsim_env.checks import describe
from recsim_env.data import LoggedInteractions
from recsim_env.encoders.trainer import torch_threads
from recsim_env.errors import ArgumentError
from simulators.batches import window_batch, window_starts
from simulators.calibration import CalibrationHead, calibrate
from simulators.config import SimulatorConfig
from simulators.data import (
    DataSchema,
    ExposureLog,
    ExposureWindows,
    build_schema,
    exposures,
    split_users,
    window_users,
    windows,
)
from simulators.ensemble import EnsembleSimulator, simulator_of
from simulators.response_model import FilterStart, ResponseModel, nll_terms
from simulators.simulator import LearnedSimulator


@dataclass
class FitResult:
    """What `fit` returns: the simulator, its data splits and the training curve."""

    simulator: LearnedSimulator | EnsembleSimulator
    log: ExposureLog
    """All users' labelled exposure sequences."""
    train_users: np.ndarray
    valid_users: np.ndarray
    test_users: np.ndarray
    history: list[dict]
    """Per member and epoch: train loss, validation loss, seconds."""
    seconds: float


def _evaluate(
    model: ResponseModel,
    w: ExposureWindows,
    schema: DataSchema,
    monitor: str = "all",
    batch_size: int = 1024,
    starts: FilterStart | None = None,
    weights: np.ndarray | None = None,
) -> float:
    """Mean validation loss over the windows of `w` (batches weighed by their windows, or by their
    windows' total weight with `weights`)."""
    total, count = _evaluate_sums(model, w, schema, monitor, batch_size, starts, weights)
    return mean_valid_loss(total, count, weighted=weights is not None)


def _evaluate_sums(
    model: ResponseModel,
    w: ExposureWindows,
    schema: DataSchema,
    monitor: str,
    batch_size: int,
    starts: FilterStart | None,
    weights: np.ndarray | None,
) -> tuple[float, float]:
    """`(sum of batch losses times their shares, sum of shares)` of `_evaluate`: the parts that add up
    over several workers' windows."""
    model.eval()
    total, count = 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, len(w.items), batch_size):
            rows = np.arange(start, min(start + batch_size, len(w.items)))
            items, inputs, features, batch = window_batch(w, rows, schema, weights)
            out = model.head_outputs(items, inputs, features, window_starts(starts, rows))
            terms = nll_terms(out, batch, model.n_binary)
            value = model.objective(terms) if monitor == "all" else terms[monitor]
            share = len(rows) if weights is None else float(weights[rows].sum())
            total += float(value) * share
            count += share
    return total, count


def mean_valid_loss(total: float, count: float, *, weighted: bool) -> float:
    """The mean validation loss from `_evaluate_sums`' parts."""
    if not weighted:
        return total / max(count, 1)
    return total / count if count > 0 else float("inf")


class OneProcess:
    """How `_fit_member` batches, backpropagates and decides in one process.

    `simulators.distributed.Replicas` overrides these hooks to run the same loop on several Ray Train
    workers in step (a global batch, summed gradients, losses and decisions combined over the workers).
    """

    def streams(self, seed: int) -> int:
        """Called once the member's weights are initialised from `seed`: the seed of its shuffling."""
        return seed

    def batches(self, rng: np.random.Generator, n_windows: int, batch_size: int) -> Iterator[np.ndarray]:
        """The window rows of each step of an epoch, from a permutation drawn from `rng`."""
        order = rng.permutation(n_windows)
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def backward(self, loss: torch.Tensor, mask: torch.Tensor, parameters: list[torch.nn.Parameter]) -> float:
        """Backpropagate the step's loss (`mask`: its target mask); returns what the epoch's loss sums."""
        loss.backward()
        return float(loss.detach())

    def epoch_loss(self, losses: list[float]) -> float:
        """The epoch's training loss from the steps' `backward` values."""
        return float(np.mean(losses))

    def valid_loss(self, total: float, count: float, *, weighted: bool) -> float:
        """The validation loss from this process's `_evaluate_sums` parts."""
        return mean_valid_loss(total, count, weighted=weighted)

    def stop(self, local: bool) -> bool:
        """Whether to stop training, given this process's decision."""
        return local

    def calibration_heads(self, heads: list[CalibrationHead]) -> list[CalibrationHead]:
        """The (logits, targets, weights) each binary head is calibrated on, from this process's."""
        return heads


ONE_PROCESS = OneProcess()


def _fit_member(
    config: SimulatorConfig,
    schema: DataSchema,
    train: tuple[ExposureLog, ExposureWindows],
    valid: tuple[ExposureLog, ExposureWindows],
    seed: int,
    deadline: float,
    history: list[dict],
    member: int,
    bar,
    item_features: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray] | None = None,
    replicas: OneProcess = ONE_PROCESS,
    content: np.ndarray | None = None,
) -> ResponseModel:
    """Train one member on `train` (stopping early on `valid`); `weights`: (train, valid) window weights;
    `replicas`: the hooks that batch, backpropagate and decide (one process, or Ray Train workers);
    `content`: the encoder's item content (`item_content`)."""
    torch.manual_seed(seed)
    model = ResponseModel(config, schema, content)
    if item_features.shape[1]:
        model.set_item_features(item_features)
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(replicas.streams(seed))
    scales = np.asarray(schema.scales, dtype=np.float32)
    (train_log, train), (valid_log, valid) = train, valid
    train_weights, valid_weights = (None, None) if weights is None else weights
    best, best_state, stale = float("inf"), None, 0
    for epoch in range(config.epochs):
        started = time.perf_counter()
        # With an interest filter, each window's filter starts from the state the user's exposures before it
        # leave (as a running simulator carries it), read with this epoch's starting weights (truncated
        # backpropagation through time: gradients stop at the window's start).
        train_starts = model.window_filter_starts(train_log, train, scales)
        model.train()
        losses = []
        for rows in replicas.batches(rng, len(train.items), config.batch_size):
            items, inputs, features, batch = window_batch(train, rows, schema, train_weights)
            loss = model.loss(items, inputs, batch, features, window_starts(train_starts, rows))
            optimizer.zero_grad()
            losses.append(replicas.backward(loss, batch["mask"], parameters))
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
        valid_starts = model.window_filter_starts(valid_log, valid, scales)
        valid_loss = replicas.valid_loss(
            *_evaluate_sums(model, valid, schema, config.early_stopping, 1024, valid_starts, valid_weights),
            weighted=valid_weights is not None,
        )
        history.append(
            {
                "member": member,
                "epoch": epoch,
                "train_loss": replicas.epoch_loss(losses),
                "valid_loss": valid_loss,
                "seconds": time.perf_counter() - started,
            }
        )
        bar.update(1)
        bar.set_postfix(member=member, valid=f"{valid_loss:.4f}")
        if valid_loss < best - 1e-4:
            best, stale = valid_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if replicas.stop(stale > config.patience or time.perf_counter() > deadline):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


def config_user_split(log: ExposureLog, config: SimulatorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (train, valid, test) users of `log` under `config`'s fractions and seed: what `fit` trains on,
    stops early on and reports on (a function of the log's sequence lengths and the seed alone)."""
    return split_users(
        log.n_users,
        log.lengths(),
        valid_fraction=config.valid_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )


def fit(
    data: LoggedInteractions,
    config: SimulatorConfig | None = None,
    *,
    progress: bool = False,
    num_threads: int | None = 1,
    user_weights: np.ndarray | None = None,
) -> FitResult:
    """Train a simulator on `data` (splits by user: train / valid / test; see `SimulatorConfig`).

    Args:
        data: the logs.
        config: the simulator's settings (None: the defaults).
        progress: show a progress bar over the epochs.
        num_threads: torch intra-op threads while training (restored afterwards; None leaves torch's
            setting). The models are small: on a shared CPU, one thread avoids OpenMP workers spinning
            against each other, which we measured 20x slower on a loaded 2-core machine.
        user_weights: [n_users] non-negative finite weight of each user of `data` (by user index) in the
            training loss, the validation loss and the calibration (the module docstring); None weighs
            every exposure alike, exactly as before weights existed.

    Raises:
        ArgumentError: `user_weights` of the wrong shape, negative or not finite, or giving the training
            or the validation users no weight at all.
    """
    weights = None if user_weights is None else check_user_weights(user_weights, data.n_users)
    with torch_threads(num_threads):
        return _fit(data, config, progress=progress, user_weights=weights)


def check_user_weights(user_weights, n_users: int) -> np.ndarray:
    """`user_weights` as a float64 [n_users] array of finite non-negative numbers (`ArgumentError` else)."""
    try:
        weights = np.asarray(user_weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"user_weights must be an array of numbers, got {describe(user_weights)}"
        ) from None
    if weights.shape != (n_users,):
        raise ArgumentError(
            f"user_weights must have one weight per user of the data, shape ({n_users},), got {weights.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise ArgumentError(
            f"user_weights must be finite and >= 0; user index {int(bad[0])} has {weights[bad[0]]!r}"
        )
    return weights


def _window_weights(
    user_weights: np.ndarray, users: np.ndarray, log: ExposureLog, w: ExposureWindows
) -> np.ndarray:
    """[W] the weight of each window of `w` (cut from `log`, the sequences of `users`): its user's, over
    the windows' mean weight, so that a batch's weights sum to about its size, as the 0 / 1 mask's do."""
    weights = user_weights[users[window_users(log, w)]]
    return weights / weights.mean()


def prepare(data: LoggedInteractions, config: SimulatorConfig) -> tuple[DataSchema, np.ndarray, ExposureLog]:
    """The schema, the catalogue's encoded item features and every user's labelled exposures (negatives
    inserted) that `fit` trains on, under `config`."""
    schema = build_schema(
        data,
        session_gap_hours=config.session_gap_hours,
        user_features=config.user_features,
        item_features=config.item_features,
    )
    item_features = schema.item_features.encode(data.items, data.n_items)
    return schema, item_features, config_exposures(data, schema, config)


def config_exposures(data: LoggedInteractions, schema: DataSchema, config: SimulatorConfig) -> ExposureLog:
    """Every user's labelled exposures of `data` (negatives inserted) as `fit` builds them under `config`."""
    return exposures(
        data,
        schema,
        session_gap_hours=config.session_gap_hours,
        negative_rate=config.negative_rate,
        seed=config.seed,
    )


def item_content(
    data: LoggedInteractions, config: SimulatorConfig, item_features: np.ndarray
) -> np.ndarray | None:
    """The `[N, T]` item content the encoder reads (`SimulatorConfig.content_source`): the encoded item
    features (`prepare`) for "catalogue", the embedded `item_text` columns for "text", None for "none"."""
    source = config.content_source
    if source == "catalogue":
        return item_features
    if source == "text":
        from recsim_env.encoders.item_text import item_text_embeddings, item_texts

        return item_text_embeddings(item_texts(data, config.item_text))
    return None


def member_users(train_users: np.ndarray, config: SimulatorConfig) -> list[np.ndarray]:
    """Each ensemble member's training users: all of them for one member, else a bootstrap resample each."""
    if config.ensemble_size == 1:
        return [train_users]
    rng = np.random.default_rng(config.seed + 1)
    return [rng.choice(train_users, len(train_users)) for _ in range(config.ensemble_size)]


def _fit(
    data: LoggedInteractions,
    config: SimulatorConfig | None,
    *,
    progress: bool,
    user_weights: np.ndarray | None = None,
) -> FitResult:
    config = config or SimulatorConfig()
    started = time.perf_counter()
    deadline = started + 60.0 * config.max_train_minutes
    schema, item_features, log = prepare(data, config)
    train_users, valid_users, test_users = config_user_split(log, config)
    if user_weights is not None:
        for name, users in (("training", train_users), ("validation", valid_users)):
            if not user_weights[users].sum() > 0:
                raise ArgumentError(f"user_weights: the {name} users' weights are all 0")
    members, history = fit_members(
        config,
        schema,
        item_features,
        log,
        member_users(train_users, config),
        valid_users,
        deadline,
        progress=progress,
        user_weights=user_weights,
        content=item_content(data, config, item_features),
    )
    item_tokens = np.asarray(data.item_ids.tokens).tolist()
    simulator = simulator_of(config, schema, members, log, item_tokens)
    return FitResult(
        simulator, log, train_users, valid_users, test_users, history, time.perf_counter() - started
    )


def fit_members(
    config: SimulatorConfig,
    schema: DataSchema,
    item_features: np.ndarray,
    log: ExposureLog,
    members: list[np.ndarray],
    valid_users: np.ndarray,
    deadline: float,
    *,
    progress: bool,
    user_weights: np.ndarray | None = None,
    replicas: OneProcess = ONE_PROCESS,
    content: np.ndarray | None = None,
) -> tuple[list[ResponseModel], list[dict]]:
    """Train and calibrate each member on its users of `log` (stopping early on `valid_users`).

    Args:
        config, schema, item_features: as `prepare` gives them.
        log: the exposure sequences the users index (every user's, or one worker's shard).
        members: each member's training users (`member_users`).
        valid_users: the users early stopping and the calibration read.
        deadline: `time.perf_counter()` past which training stops at the end of an epoch.
        progress: show a progress bar over the epochs.
        user_weights: [n_users] each user's weight (`fit`), or None.
        replicas: the hooks that batch, backpropagate and decide (`OneProcess`).
        content: the encoder's `[N, T]` item content (`item_content`), or None.

    Returns:
        The trained members and the training history (per member and epoch).
    """
    from tqdm.auto import tqdm

    valid_log = log.select(valid_users)
    valid = windows(valid_log, schema, config.history_len, config.window_stride)
    valid_weights = None
    if user_weights is not None:
        valid_weights = _window_weights(user_weights, valid_users, valid_log, valid)
    models, history = [], []
    with tqdm(total=config.epochs * len(members), desc="train simulator", disable=not progress) as bar:
        for k, users in enumerate(members):
            train_log = log.select(users)
            train = windows(train_log, schema, config.history_len, config.window_stride)
            weights = None
            if user_weights is not None:
                weights = (_window_weights(user_weights, users, train_log, train), valid_weights)
            model = _fit_member(
                config,
                schema,
                (train_log, train),
                (valid_log, valid),
                config.seed + 1000 * k,
                deadline,
                history,
                k,
                bar,
                item_features,
                weights,
                replicas,
                content,
            )
            if config.calibration != "none":
                starts = model.window_filter_starts(valid_log, valid, np.asarray(schema.scales, np.float32))
                calibrate(
                    model,
                    valid,
                    schema,
                    bias=config.calibration == "platt",
                    filter_starts=starts,
                    weights=valid_weights,
                    replicas=replicas,
                )
            models.append(model)
    return models, history
