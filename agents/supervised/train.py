"""Training the click model: logged rows to examples (`click_examples`), a split by user
(`split_users`), the loop with early stopping (`fit`), and `train` from logs to a `SupervisedPolicy`."""

from __future__ import annotations

import copy
import math
import time
from typing import Any, NamedTuple

import numpy as np
import torch

from agents.dt4ier.data import ImmediateSignal
from agents.supervised.config import SupervisedConfig
from agents.supervised.losses import click_auc, click_loss, mean_click_loss
from agents.supervised.model import ClickModel
from agents.supervised.policy import SupervisedPolicy
from recsim_env.data.batching import history_windows
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import DataError

EVAL_CHUNK = 4096
"""Rows per forward pass at validation."""


class ClickExamples(NamedTuple):
    """One example per logged row: the history window before it, the item shown, and its click."""

    item_ids: np.ndarray  # [S, L] int64 history windows, left-padded with N (`history_windows`)
    feedback: np.ndarray  # [S, L, F] float32 raw feedback of the windows' items
    state: np.ndarray  # [T] int64 window row before each logged row
    item: np.ndarray  # [T] int64 logged item
    click: np.ndarray  # [T] float32 label (0 / 1)
    user: np.ndarray  # [T] int64 logged user
    n_items: int
    feedback_columns: tuple[str, ...]
    click_signal: str

    def __len__(self) -> int:
        return len(self.item)


def click_examples(data, config: SupervisedConfig) -> ClickExamples:
    """Examples from a `LoggedInteractions` (every shown item is a row; slates give one row per position).

    Raises:
        DataError: no rows, no feedback columns, non-finite feedback, or no column for the click label.
    """
    frame = data.frame
    columns = data.require_feedback("the click model needs a click label")
    try:
        signal = ImmediateSignal.parse(config.click_signal, columns)
    except DataError as error:
        raise DataError(f"SupervisedConfig.click_signal: {error}") from None
    raw = frame[list(columns)].to_numpy(np.float64)
    if not np.isfinite(raw).all():
        row = int(np.flatnonzero(~np.isfinite(raw).all(axis=1))[0]) + 1
        raise DataError(f"{data.name}: non-finite feedback at row {row}")
    windows = history_windows(data, history_len=config.history_len, feedback_columns=columns)
    return ClickExamples(
        item_ids=windows.item_ids,
        feedback=windows.feedback,
        state=windows.before,
        item=frame["item_id"].to_numpy(np.int64, copy=True),
        click=signal.of(raw, columns).astype(np.float32),
        user=frame["user_id"].to_numpy(np.int64, copy=True),
        n_items=int(data.n_items),
        feedback_columns=columns,
        click_signal=str(signal),
    )


def split_users(users: np.ndarray, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train rows, valid rows)`: a seeded `valid_fraction` of the distinct users, all their rows held out."""
    distinct = np.unique(users)
    if len(distinct) < 2:
        raise DataError(f"{len(distinct)} logged user(s): the validation split needs at least 2")
    n_valid = min(len(distinct) - 1, max(1, round(valid_fraction * len(distinct))))
    valid_users = np.random.default_rng(seed).permutation(distinct)[:n_valid]
    held_out = np.isin(users, valid_users)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def feedback_scale(examples: ClickExamples, rows: np.ndarray) -> tuple[float, ...]:
    """Multiplier of each feedback signal in the encoder's input: 1 / its 99th percentile over the
    training rows' own feedback (at most 1, so binary signals stay as they are)."""
    windows = examples.feedback[examples.state[rows]]  # [T, L, F]
    real = examples.item_ids[examples.state[rows]] != examples.n_items
    values = np.abs(windows[real]) if real.any() else np.zeros((1, len(examples.feedback_columns)))
    high = np.quantile(values, 0.99, axis=0) if len(examples.feedback_columns) else np.zeros(0)
    return tuple(float(1.0 / max(h, 1.0)) for h in high)


@torch.inference_mode()
def predict_logits(model: ClickModel, tensors: dict[str, torch.Tensor], rows: np.ndarray) -> np.ndarray:
    """`[len(rows)]` click logits of logged rows (eval mode; bf16 autocast on CUDA, logits in float32)."""
    model.eval()
    device = tensors["items"].device
    out = []
    for lo in range(0, len(rows), EVAL_CHUNK):
        index = torch.as_tensor(rows[lo : lo + EVAL_CHUNK], device=device)
        state = tensors["state"][index]
        with autocast(device):
            logits = model(tensors["windows"][state], tensors["feedback"][state], tensors["items"][index])
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def fit(
    config: SupervisedConfig, examples: ClickExamples, *, progress: bool = True
) -> tuple[ClickModel, dict[str, Any]]:
    """Train the click model on the training users' rows, early-stopping on the validation users'.

    The best epoch's weights are restored. Bit-for-bit reproducible on CPU for a seed (and thread count).
    """
    from tqdm.auto import tqdm

    if len(examples) == 0:
        raise DataError("no logged rows to train on")
    device = resolve_device(config.device)
    train_rows, valid_rows = split_users(examples.user, config.valid_fraction, config.seed)
    valid_clicks = examples.click[valid_rows]

    # ---- the model, the optimiser, the data on the device ----
    torch.manual_seed(config.seed)
    model = ClickModel(config, examples.n_items, feedback_scale(examples, train_rows)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tensors = {
        "windows": torch.as_tensor(examples.item_ids, device=device),
        "feedback": torch.as_tensor(examples.feedback, device=device),
        "state": torch.as_tensor(examples.state, device=device),
        "items": torch.as_tensor(examples.item, device=device),
        "clicks": torch.as_tensor(examples.click, device=device),
    }
    generator = torch.Generator().manual_seed(config.seed)
    train_index = torch.as_tensor(train_rows)

    # ---- the loop: one pass over the shuffled training rows, then validation ----
    best = {"epoch": 0, "score": -math.inf, "auc": math.nan, "loss": math.nan}
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    train_seconds = 0.0
    out_of_time = False
    bar = tqdm(
        range(1, config.epochs + 1), desc=f"supervised[{config.encoder}]", unit="epoch", disable=not progress
    )
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        order = train_index[torch.randperm(len(train_index), generator=generator)]
        total, steps = 0.0, 0
        for lo in range(0, len(order), config.batch_size):
            index = order[lo : lo + config.batch_size].to(device)
            state = tensors["state"][index]
            with autocast(device):
                logits = model(tensors["windows"][state], tensors["feedback"][state], tensors["items"][index])
            loss = click_loss(logits, tensors["clicks"][index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, steps = total + float(loss.detach()), steps + 1
            if (
                config.time_budget_s is not None
                and train_seconds + time.perf_counter() - start >= config.time_budget_s
            ):
                out_of_time = True
                break
        train_seconds += time.perf_counter() - start

        valid_logits = predict_logits(model, tensors, valid_rows)
        auc, valid_loss = click_auc(valid_clicks, valid_logits), mean_click_loss(valid_clicks, valid_logits)
        history.append(
            {"epoch": epoch, "train_loss": total / max(steps, 1), "valid_auc": auc, "valid_loss": valid_loss}
        )
        score = auc if config.selection == "auc" else -valid_loss
        if best["epoch"] == 0 or score > best["score"]:
            best = {"epoch": epoch, "score": score, "auc": auc, "loss": valid_loss}
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{total / max(steps, 1):.4f}", auc=f"{auc:.4f}", best=f"{best['epoch']}")
        if out_of_time or epoch - best["epoch"] >= config.patience:
            break
    bar.close()

    model.load_state_dict(best_state)
    return model.eval(), {
        "rows": len(examples),
        "train_users": int(len(np.unique(examples.user[train_rows]))),
        "valid_users": int(len(np.unique(examples.user[valid_rows]))),
        "click_signal": examples.click_signal,
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "valid_auc": best["auc"],
        "valid_loss": best["loss"],
        "train_s": train_seconds,
        "device": str(device),
        "history": history,
    }


def train(config: SupervisedConfig, data, progress: bool = True) -> tuple[SupervisedPolicy, dict[str, Any]]:
    """Train on logs (`LoggedInteractions`); the policy and a JSON-able summary (`fit`'s, without history).

    The `fit` of the agent registry (`seqrec train --agent supervised --data PATH --out RUN`).
    """
    examples = click_examples(data, config)
    model, stats = fit(config, examples, progress=progress)
    policy = SupervisedPolicy(
        model, config, feedback_columns=examples.feedback_columns, click_signal=examples.click_signal
    )
    return policy, {key: value for key, value in stats.items() if key != "history"}
