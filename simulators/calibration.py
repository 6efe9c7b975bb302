"""Platt calibration of a response model's binary heads on validation windows."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from simulators.batches import window_batch, window_starts
from simulators.data import DataSchema, ExposureWindows
from simulators.response_model import FilterStart, ResponseModel

CalibrationHead = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""A binary head's logits, targets and weights (None: all alike) over the calibration positions."""


class HeadGatherer(Protocol):
    """Where the other workers' calibration heads come from (`simulators.train.OneProcess`)."""

    def calibration_heads(self, heads: list[CalibrationHead]) -> list[CalibrationHead]: ...


def calibrate(
    model: ResponseModel,
    valid: ExposureWindows,
    schema: DataSchema,
    *,
    bias: bool = True,
    filter_starts: FilterStart | None = None,
    weights: np.ndarray | None = None,
    replicas: HeadGatherer | None = None,
) -> None:
    """Fit each binary head's calibration (click, leave, each other binary signal) on `valid`: a
    temperature and, with `bias`, an offset of the logit (Platt scaling). `filter_starts`: the interest
    filter's state before each window (`ResponseModel.window_filter_starts`); `weights` [W]: each
    window's weight in the fit (None: all alike); `replicas`: where the other workers' validation logits
    come from (`simulators.train.OneProcess.calibration_heads`; None: this process's alone)."""
    heads = calibration_heads(model, valid, schema, filter_starts, weights)
    if replicas is not None:
        heads = replicas.calibration_heads(heads)
    fitted = [platt(logits.detach(), targets, bias=bias, weights=w) for logits, targets, w in heads]
    model.temperature.copy_(torch.tensor([t for t, _ in fitted], dtype=model.temperature.dtype))
    model.calibration_bias.copy_(torch.tensor([b for _, b in fitted], dtype=model.calibration_bias.dtype))


def calibration_heads(
    model: ResponseModel,
    valid: ExposureWindows,
    schema: DataSchema,
    filter_starts: FilterStart | None = None,
    weights: np.ndarray | None = None,
) -> list[CalibrationHead]:
    """What `calibrate` fits each binary head on: its logits, targets and weights over `valid`'s target
    positions (click; leave where known; each other binary signal)."""
    rows = np.arange(len(valid.items))
    items, inputs, features, batch = window_batch(valid, rows, schema, weights)
    model.eval()
    with torch.inference_mode():
        out = model.head_outputs(items, inputs, features, window_starts(filter_starts, rows))
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
    return heads


def platt(
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
