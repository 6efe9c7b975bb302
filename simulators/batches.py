"""Model inputs and targets of a simulator's training windows, as torch tensors."""

from __future__ import annotations

import numpy as np
import torch

from simulators.data import DataSchema, ExposureWindows
from simulators.response_model import FilterStart


def window_batch(
    w: ExposureWindows, rows: np.ndarray, schema: DataSchema, weights: np.ndarray | None = None
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
        "log_gap_known": torch.from_numpy(w.log_gap_known[rows, 1:].astype(np.float32)),
    }
    return items, inputs, features, batch


def window_starts(starts: FilterStart | None, rows: np.ndarray) -> FilterStart | None:
    """The interest filter's starts of windows `rows` (None without a filter)."""
    return None if starts is None else starts.take(rows)
