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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recsim_env.checks import describe
from recsim_env.data import LoggedInteractions
from recsim_env.encoders.trainer import torch_threads
from recsim_env.errors import ArgumentError
from simulators.config import SimulatorConfig
from simulators.data import (
    DataSchema,
    ExposureLog,
    Windows,
    build_schema,
    exposures,
    split_users,
    window_users,
    windows,
)
from simulators.response_model import FilterStart, ResponseModel, nll_terms
from simulators.simulator import LearnedSimulator


@dataclass
class FitResult:
    """What `fit` returns: the simulator, its data splits and the training curve."""

    simulator: LearnedSimulator
    log: ExposureLog
    """All users' labelled exposure sequences."""
    train_users: np.ndarray
    valid_users: np.ndarray
    test_users: np.ndarray
    history: list[dict]
    """Per member and epoch: train loss, validation loss, seconds."""
    seconds: float


def _tensors(
    w: Windows, rows: np.ndarray, schema: DataSchema, weights: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Model inputs (items, encoder inputs, user features) and aligned targets for windows `rows`.

    `weights` [W]: each window's weight (its user's), which scales the window's target mask, so that
    `nll_terms`' means become weighted means; None leaves the 0 / 1 mask."""
    items = torch.from_numpy(w.items[rows])
    inputs = torch.from_numpy(w.inputs[rows])
    features = torch.from_numpy(w.user_features[rows])
    fb = w.feedback[rows, 1:]  # targets: exposures 1..L
    scales = np.asarray(schema.scales, dtype=np.float32)
    cont = [schema.signals.index(s) for s in schema.continuous]
    other = [schema.signals.index(s) for s in schema.other_binary]
    mask = w.target_mask(rows).astype(np.float32)
    if weights is not None:
        mask = mask * weights[rows, None].astype(np.float32)
    batch = {
        "mask": torch.from_numpy(mask),
        "click": torch.from_numpy(fb[..., 0].copy()),
        "binary": torch.from_numpy(fb[..., other].copy()),
        "continuous": torch.from_numpy((fb[..., cont] / scales[cont]).astype(np.float32)),
        "leave": torch.from_numpy(w.leave[rows, 1:].copy()),
        "leave_known": torch.from_numpy(w.leave_known[rows, 1:].astype(np.float32)),
        "log_gap": torch.from_numpy(w.log_gap[rows, 1:].copy()),
    }
    return items, inputs, features, batch


def _starts(starts: FilterStart | None, rows: np.ndarray) -> FilterStart | None:
    """The interest filter's starts of windows `rows` (None without a filter)."""
    return None if starts is None else starts.take(rows)


def _evaluate(
    model: ResponseModel,
    w: Windows,
    schema: DataSchema,
    monitor: str = "all",
    batch_size: int = 1024,
    starts: FilterStart | None = None,
    weights: np.ndarray | None = None,
) -> float:
    """Mean validation loss over the windows of `w` (batches weighed by their windows, or by their
    windows' total weight with `weights`)."""
    model.eval()
    total, count = 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, len(w.items), batch_size):
            rows = np.arange(start, min(start + batch_size, len(w.items)))
            items, inputs, features, batch = _tensors(w, rows, schema, weights)
            out = model.head_outputs(items, inputs, features, _starts(starts, rows))
            terms = nll_terms(out, batch, model.n_binary)
            value = model.objective(terms) if monitor == "all" else terms[monitor]
            share = len(rows) if weights is None else float(weights[rows].sum())
            total += float(value) * share
            count += share
    if weights is None:
        return total / max(count, 1)
    return total / count if count > 0 else float("inf")


def _fit_member(
    config: SimulatorConfig,
    schema: DataSchema,
    train: tuple[ExposureLog, Windows],
    valid: tuple[ExposureLog, Windows],
    seed: int,
    deadline: float,
    history: list[dict],
    member: int,
    bar,
    item_features: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray] | None = None,
) -> ResponseModel:
    """Train one member on `train` (stopping early on `valid`); `weights`: (train, valid) window weights."""
    torch.manual_seed(seed)
    model = ResponseModel(config, schema)
    if item_features.shape[1]:
        model.set_item_features(item_features)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    rng = np.random.default_rng(seed)
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
        order = rng.permutation(len(train.items))
        losses = []
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            items, inputs, features, batch = _tensors(train, rows, schema, train_weights)
            loss = model.loss(items, inputs, batch, features, _starts(train_starts, rows))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            losses.append(float(loss.detach()))
        valid_starts = model.window_filter_starts(valid_log, valid, scales)
        valid_loss = _evaluate(
            model, valid, schema, config.early_stopping, starts=valid_starts, weights=valid_weights
        )
        history.append(
            {
                "member": member,
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
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
        if stale > config.patience or time.perf_counter() > deadline:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


def calibrate(
    model: ResponseModel,
    valid: Windows,
    schema: DataSchema,
    *,
    bias: bool = True,
    filter_starts: FilterStart | None = None,
    weights: np.ndarray | None = None,
) -> None:
    """Fit each binary head's calibration (click, leave, each other binary signal) on `valid`: a
    temperature and, with `bias`, an offset of the logit (Platt scaling). `filter_starts`: the interest
    filter's state before each window (`ResponseModel.window_filter_starts`); `weights` [W]: each
    window's weight in the fit (None: all alike)."""
    rows = np.arange(len(valid.items))
    items, inputs, features, batch = _tensors(valid, rows, schema, weights)
    model.eval()
    with torch.inference_mode():
        out = model.head_outputs(items, inputs, features, _starts(filter_starts, rows))
    mask = batch["mask"] > 0
    weight = batch["mask"] if weights is not None else None
    click = batch["click"]
    branch = click.long()

    def weight_of(where: torch.Tensor) -> torch.Tensor | None:
        return None if weight is None else weight[where]

    heads = [(out.click[mask], click[mask], weight_of(mask))]
    leave_mask = mask & (batch["leave_known"] > 0)
    leave_logit = out.leave.gather(-1, branch[..., None]).squeeze(-1)
    heads.append((leave_logit[leave_mask], batch["leave"][leave_mask], weight_of(leave_mask)))
    for j in range(model.n_binary):
        logit = out.binary[..., j, :].gather(-1, branch[..., None]).squeeze(-1)
        heads.append((logit[mask], batch["binary"][..., j][mask], weight_of(mask)))
    fitted = [_platt(logits.detach(), targets, bias=bias, weights=w) for logits, targets, w in heads]
    model.temperature.copy_(torch.tensor([t for t, _ in fitted], dtype=model.temperature.dtype))
    model.calibration_bias.copy_(torch.tensor([b for _, b in fitted], dtype=model.calibration_bias.dtype))


def _platt(
    logits: torch.Tensor, targets: torch.Tensor, *, bias: bool, weights: torch.Tensor | None = None
) -> tuple[float, float]:
    """argmin_(T, b) of the binary cross-entropy of sigmoid(logits / T + b), by L-BFGS on (log T, b)
    (b fixed at 0 without `bias`); with `weights`, of the weighted mean cross-entropy."""
    if logits.numel() < 10 or targets.min() == targets.max():
        return 1.0, 0.0
    if weights is not None:
        if not float(weights.sum()) > 0:
            return 1.0, 0.0
        weights = weights / weights.mean()  # the same minimiser; L-BFGS's tolerances see a mean loss
    params = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=0.5, max_iter=100)

    def closure():
        optimizer.zero_grad()
        shift = params[1] if bias else 0.0
        loss = F.binary_cross_entropy_with_logits(logits / params[0].exp() + shift, targets, weight=weights)
        loss.backward()
        return loss

    optimizer.step(closure)
    t, b = float(params[0].detach().exp()), float(params[1].detach()) if bias else 0.0
    if not (np.isfinite(t) and np.isfinite(b)):
        return 1.0, 0.0
    return min(max(t, 0.05), 20.0), min(max(b, -5.0), 5.0)


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


def _window_weights(user_weights: np.ndarray, users: np.ndarray, log: ExposureLog, w: Windows) -> np.ndarray:
    """[W] the weight of each window of `w` (cut from `log`, the sequences of `users`): its user's, over
    the windows' mean weight, so that a batch's weights sum to about its size, as the 0 / 1 mask's do."""
    weights = user_weights[users[window_users(log, w)]]
    return weights / weights.mean()


def _fit(
    data: LoggedInteractions,
    config: SimulatorConfig | None,
    *,
    progress: bool,
    user_weights: np.ndarray | None = None,
) -> FitResult:
    from tqdm.auto import tqdm

    config = config or SimulatorConfig()
    started = time.perf_counter()
    deadline = started + 60.0 * config.max_train_minutes
    schema = build_schema(
        data,
        session_gap_hours=config.session_gap_hours,
        user_features=config.user_features,
        item_features=config.item_features,
    )
    item_features = schema.item_features.encode(data.items, data.n_items)
    log = exposures(
        data,
        schema,
        session_gap_hours=config.session_gap_hours,
        negative_rate=config.negative_rate,
        seed=config.seed,
    )
    train_users, valid_users, test_users = config_user_split(log, config)
    valid_log = log.select(valid_users)
    valid = windows(valid_log, schema, config.history_len, config.window_stride)
    valid_weights = None
    if user_weights is not None:
        for name, users in (("training", train_users), ("validation", valid_users)):
            if not user_weights[users].sum() > 0:
                raise ArgumentError(f"user_weights: the {name} users' weights are all 0")
        valid_weights = _window_weights(user_weights, valid_users, valid_log, valid)
    rng = np.random.default_rng(config.seed + 1)
    members, history = [], []
    with tqdm(
        total=config.epochs * config.ensemble_size, desc="train simulator", disable=not progress
    ) as bar:
        for k in range(config.ensemble_size):
            users = train_users if config.ensemble_size == 1 else rng.choice(train_users, len(train_users))
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
                )
            members.append(model)
    item_tokens = np.asarray(data.item_ids.tokens).tolist()
    simulator = LearnedSimulator(config, schema, members, log, item_tokens)
    return FitResult(
        simulator, log, train_users, valid_users, test_users, history, time.perf_counter() - started
    )
